using System.Diagnostics;
using System.Text.Json;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A real brickfs-mgmtd process on 127.0.0.1 and a free port, with its state in a temporary
/// directory, spawning the real brickd (and running the real brickfs-shd) built beside the tests.
/// Dispose sends SIGTERM (mgmtd stops its bricks), and kills any brickd a killed mgmtd left.
/// </summary>
public sealed class MgmtdProcess : IDisposable
{
    private Process? _process;

    private readonly IReadOnlyList<string> _launcher;
    private readonly IReadOnlyList<string> _extraArgs;

    public string Root { get; }
    public string StateDir => Path.Combine(Root, "state");
    public string Host { get; }
    public int Port { get; }
    public string Server => $"{Host}:{Port}";
    public string LogFile => Path.Combine(Root, "mgmtd.log");

    /// <summary>
    /// A daemon on <paramref name="host"/> (also its node address and brick listen address), run
    /// through <paramref name="launcher"/> (e.g. <c>ip netns exec NS</c>, which execs, so the pid
    /// is the daemon's) with <paramref name="extraArgs"/> (e.g. --etcd-endpoints).
    /// </summary>
    public MgmtdProcess(string root, string host = "127.0.0.1", int? port = null, IReadOnlyList<string>? launcher = null, IReadOnlyList<string>? extraArgs = null,
        string? secretFile = null)
    {
        Root = root;
        SecretFile = secretFile;
        Host = host;
        _launcher = launcher ?? [];
        _extraArgs = extraArgs ?? [];
        Directory.CreateDirectory(root);
        Port = port ?? BrickProcess.FreePort();
        Start();
    }

    /// <summary>The shared-secret file the daemon requires (--secret-file) and <see cref="Ctl"/> sends; null: none.</summary>
    public string? SecretFile { get; }

    public int Pid => _process?.Id ?? 0;

    /// <summary>Starts the daemon on the same state directory and port, and waits until it answers.</summary>
    public void Start()
    {
        var command = _launcher.Append(Programs.Find("brickfs-mgmtd")).ToList();
        var psi = new ProcessStartInfo(command[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "--state-dir", StateDir, "--listen", Server, "--brick-listen", Host }) psi.ArgumentList.Add(a);
        if (Host != "127.0.0.1") foreach (var a in new[] { "--node-address", Host }) psi.ArgumentList.Add(a);
        foreach (var a in _extraArgs) psi.ArgumentList.Add(a);
        if (SecretFile is not null) foreach (var a in new[] { "--secret-file", SecretFile }) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        var log = new StreamWriter(LogFile, append: true) { AutoFlush = true };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!Ctl("volume", "list").Ok)
        {
            if (_process.HasExited) Assert.Fail($"brickfs-mgmtd exited with {_process.ExitCode}:\n{File.ReadAllText(LogFile)}");
            if (DateTime.UtcNow > deadline) Assert.Fail("brickfs-mgmtd does not answer after 30 s");
            Thread.Sleep(100);
        }
    }

    public void Kill9()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
    }

    public bool Running => _process is { HasExited: false };

    /// <summary>Runs the real brickctl program against this daemon.</summary>
    public ShellResult Ctl(params string[] args) =>
        Shell.Run(Programs.Find("brickctl"), ["--server", Server, "--timeout", "60", .. SecretFile is null ? [] : new[] { "--secret-file", SecretFile }, .. args], TimeSpan.FromSeconds(90));

    public ShellResult MustCtl(params string[] args)
    {
        var r = Ctl(args);
        if (!r.Ok) Assert.Fail($"brickctl {string.Join(' ', args)}: {r}");
        return r;
    }

    public JsonElement Json(params string[] args) => JsonDocument.Parse(MustCtl(["--json", .. args]).Stdout).RootElement.Clone();

    /// <summary>Waits until every brick of <paramref name="volume"/> runs and accepts connections.</summary>
    public async Task WaitOnlineAsync(string volume)
    {
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () =>
        {
            var bricks = Json("volume", "status", volume).GetProperty("bricks").EnumerateArray().ToList();
            return bricks.All(b => b.GetProperty("online").GetBoolean() && Accepts(b.GetProperty("port").GetInt32()));
        }, $"every brick of {volume} is online");
    }

    private static bool Accepts(int port)
    {
        try
        {
            using var s = new System.Net.Sockets.TcpClient();
            return s.ConnectAsync(System.Net.IPAddress.Loopback, port).Wait(500) && s.Connected;
        }
        catch (AggregateException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (_process is { HasExited: false } p)
        {
            Shell.Run("kill", ["-TERM", p.Id.ToString()]);
            if (!p.WaitForExit(30_000)) p.Kill();
        }
        _process?.Dispose();
        // Bricks left by a killed daemon: only processes whose command line names this state directory.
        var run = Path.Combine(StateDir, "run");
        if (Directory.Exists(run))
        {
            foreach (var pidFile in Directory.EnumerateFiles(run, "*.pid"))
            {
                if (!int.TryParse(File.ReadAllText(pidFile).Trim(), out int pid)) continue;
                string cmdline = File.Exists($"/proc/{pid}/cmdline") ? File.ReadAllText($"/proc/{pid}/cmdline") : "";
                if (cmdline.Contains(StateDir, StringComparison.Ordinal)) Shell.Run("kill", ["-KILL", pid.ToString()]);
            }
        }
    }
}

/// <summary>
/// Makes <c>mount -t brickfs</c> run the mount.brickfs built beside the tests: mount(8) only looks
/// in /sbin, so /sbin/mount.brickfs points at the build while this lives, and is put back as it
/// was (an installed link, or nothing) on dispose.
/// </summary>
public sealed class MountHelperLink : IDisposable
{
    public const string Helper = "/sbin/mount.brickfs";
    private readonly string? _previousTarget;
    private readonly string? _backup;

    public MountHelperLink()
    {
        var info = new FileInfo(Helper);
        if (info.LinkTarget is { } target)
        {
            _previousTarget = target;
            File.Delete(Helper);
        }
        else if (info.Exists)
        {
            _backup = Helper + ".brickfs-test-backup";
            File.Move(Helper, _backup, overwrite: true);
        }
        File.CreateSymbolicLink(Helper, Programs.MountBrickfs);
    }

    public void Dispose()
    {
        File.Delete(Helper);
        if (_previousTarget is not null) File.CreateSymbolicLink(Helper, _previousTarget);
        else if (_backup is not null) File.Move(_backup, Helper);
    }
}
