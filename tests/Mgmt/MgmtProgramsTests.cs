using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Mgmt;

/// <summary>The built executables and the systemd unit, as an administrator runs them.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class MgmtProgramsTests
{
    private static string Unit(string name, [CallerFilePath] string source = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", "..", "mgmt", "systemd", name));

    [TestCase("brickfs-mgmtd.service", "brickfs-mgmtd.service", "brickfs-mgmtd", "Type=notify")]
    [TestCase("brickfs-shd@.service", "brickfs-shd@gv0.service", "brickfs-shd", "--volume %i")]
    public void The_systemd_units_pass_systemd_analyze_verify(string unit, string instance, string program, string expected)
    {
        // verify insists that ExecStart exists; point it at the build instead of the installed path.
        var text = File.ReadAllText(Unit(unit));
        Assert.That(text, Does.Contain($"ExecStart=/usr/local/bin/{program} ").And.Contain(expected));
        Assert.That(File.ReadAllText(Unit("../../install.sh")), Does.Contain($"mgmt/systemd/{unit} /etc/systemd/system/{unit}"), "install.sh installs the unit");
        var dir = Directory.CreateTempSubdirectory("brickfs-unit-").FullName;
        try
        {
            var copy = Path.Combine(dir, instance);
            File.WriteAllText(copy, text.Replace($"/usr/local/bin/{program}", Programs.Find(program)));
            // Other tests in this process may have set umask 0; verify warns about world-writable units.
            File.SetUnixFileMode(copy, (UnixFileMode)0x1A4);
            var r = Shell.Run("systemd-analyze", ["verify", copy], TimeSpan.FromSeconds(30));
            Assert.That(r.Ok && r.Stderr.Trim().Length == 0, r.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void The_programs_answer_help_and_refuse_bad_arguments_with_one_line()
    {
        var help = Shell.Run(Programs.Find("brickfs-mgmtd"), ["--help"], TimeSpan.FromSeconds(30));
        Assert.That(help.Ok && help.Stdout.StartsWith("usage: brickfs-mgmtd"), help.ToString());
        var bad = Shell.Run(Programs.Find("brickfs-mgmtd"), ["--listen"], TimeSpan.FromSeconds(30));
        Assert.That(bad.ExitCode, Is.EqualTo(2), bad.ToString());
        Assert.That(bad.Stderr, Is.EqualTo("brickfs-mgmtd: --listen needs a value\n"));
        var ctl = Shell.Run(Programs.Find("brickctl"), ["volume", "create", "--help"], TimeSpan.FromSeconds(30));
        Assert.That(ctl.Ok && ctl.Stdout.StartsWith("usage: brickctl volume create VOL [replica N [arbiter 1]] HOST:/BRICKDIR... [force]"), ctl.ToString());
    }

    [Test]
    public async Task The_real_daemon_serves_brickctl_and_exits_cleanly_on_SIGTERM()
    {
        var dir = Directory.CreateTempSubdirectory("brickfs-mgmtd-exe-").FullName;
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var psi = new ProcessStartInfo(Programs.Find("brickfs-mgmtd"))
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in new[] { "--state-dir", Path.Combine(dir, "state"), "--listen", $"127.0.0.1:{port}", "--node-address", "node1" })
            psi.ArgumentList.Add(a);
        using var daemon = Process.Start(psi)!;
        var stdout = daemon.StandardOutput.ReadToEndAsync();
        var stderr = daemon.StandardError.ReadToEndAsync();
        try
        {
            string ctl = Programs.Find("brickctl");
            string[] server = ["--server", $"127.0.0.1:{port}", "--timeout", "5"];
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), () => Shell.Run(ctl, [.. server, "volume", "list"], TimeSpan.FromSeconds(10)).Ok,
                "brickfs-mgmtd answers");
            var create = Shell.Run(ctl, [.. server, "volume", "create", "v", "node2:/srv/b"], TimeSpan.FromSeconds(10));
            Assert.That(create.Stdout, Is.EqualTo("volume create: v: success: please start the volume to access data\n"), create.ToString());
            Assert.That(File.ReadAllText(Path.Combine(dir, "state", "state.json")), Does.Contain("\"node2\""));

            Assert.That(Shell.Run("kill", ["-TERM", daemon.Id.ToString()]).Ok);
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await daemon.WaitForExitAsync(limit.Token);
            Assert.That(daemon.ExitCode, Is.EqualTo(0), await stderr + await stdout);
        }
        finally
        {
            if (!daemon.HasExited) daemon.Kill();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// The mgmtd unit in cluster mode: its ExecStart run as systemd runs it, with MGMTD_ARGS from
    /// an EnvironmentFile (split into words, as systemd splits an unquoted $VAR), against a real
    /// etcd; the daemon tells $NOTIFY_SOCKET READY=1 once its API answers, and STOPPING=1 on SIGTERM.
    /// </summary>
    [Test, CancelAfter(120_000)]
    public async Task The_mgmtd_unit_runs_in_cluster_mode_from_its_environment_file_and_notifies_readiness()
    {
        var unit = File.ReadAllLines(Unit("brickfs-mgmtd.service"));
        string envFile = unit.Single(l => l.StartsWith("EnvironmentFile=", StringComparison.Ordinal))["EnvironmentFile=".Length..].TrimStart('-');
        Assert.That(envFile, Is.EqualTo("/etc/brickfs/mgmtd.env"));
        var exec = unit.Single(l => l.StartsWith("ExecStart=", StringComparison.Ordinal))["ExecStart=".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(exec[^1], Is.EqualTo("$MGMTD_ARGS"), "the environment file's options come last, so they override the unit's");

        var dir = Directory.CreateTempSubdirectory("brickfs-unit-cluster-").FullName;
        using var etcd = new Brickfs.Tests.Integration.EtcdCluster(Path.Combine(dir, "etcd"), ["127.0.0.1"]);
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        string secret = Path.Combine(dir, "secret"), env = Path.Combine(dir, "mgmtd.env"), notify = Path.Combine(dir, "notify");
        File.WriteAllText(secret, "cluster-secret\n");
        File.WriteAllText(env, $"# as an administrator writes it\nMGMTD_ARGS=--node-address 127.0.0.1 --etcd-endpoints {etcd.ClientUrl(0)} " +
            $"--listen 127.0.0.1:{port} --state-dir {dir}/state --secret-file {secret}\n");
        string args = File.ReadLines(env).Single(l => l.StartsWith("MGMTD_ARGS=", StringComparison.Ordinal))["MGMTD_ARGS=".Length..];
        var command = exec.SelectMany(w => w == "$MGMTD_ARGS" ? args.Split(' ', StringSplitOptions.RemoveEmptyEntries) : [w]).ToList();
        Assert.That(command[0], Is.EqualTo("/usr/local/bin/brickfs-mgmtd"));

        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(notify));
        var psi = new ProcessStartInfo(Programs.Find("brickfs-mgmtd")) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        psi.Environment["NOTIFY_SOCKET"] = notify;
        using var daemon = Process.Start(psi)!;
        var output = Task.WhenAll(daemon.StandardOutput.ReadToEndAsync(), daemon.StandardError.ReadToEndAsync());
        try
        {
            Assert.That(await ReceiveAsync(socket), Is.EqualTo("READY=1"), "readiness");
            // Ready means the API answers, in cluster mode, with the secret from the unit's options.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var health = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/api/v1/health")).RootElement;
            Assert.That(health.GetProperty("cluster").GetString(), Does.EndWith(" /brickfs/"), health.ToString());
            var list = Shell.Run(Programs.Find("brickctl"), ["--server", $"127.0.0.1:{port}", "--secret-file", secret, "volume", "list"], TimeSpan.FromSeconds(30));
            Assert.That(list.Ok, Is.True, list.ToString());

            await TerminateAsync(daemon, socket, output);
        }
        finally
        {
            if (!daemon.HasExited) daemon.Kill();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>brickfs-shd (its unit is Type=notify): READY=1 once its graph is built, STOPPING=1 on SIGTERM, exit 0.</summary>
    [Test, CancelAfter(120_000)]
    public async Task The_self_heal_daemon_notifies_readiness_and_stopping()
    {
        var dir = Directory.CreateTempSubdirectory("brickfs-shd-notify-").FullName;
        string volfile = Path.Combine(dir, "rep.vol"), notify = Path.Combine(dir, "notify");
        // Bricks that do not answer: the daemon is ready all the same, and heals once they come.
        int dead = Brickfs.Tests.Integration.BrickProcess.FreePort();
        File.WriteAllText(volfile, string.Concat(Enumerable.Range(0, 2).Select(i => $"""
            volume rep-client-{i}
                type protocol/client
                option remote-host 127.0.0.1
                option remote-port {dead}
                option remote-subvolume b{i}
            end-volume

            """)) + """
            volume rep
                type cluster/replicate
                subvolumes rep-client-0 rep-client-1
            end-volume
            """);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(notify));
        var psi = new ProcessStartInfo(Programs.Find("brickfs-shd")) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--volfile", volfile }) psi.ArgumentList.Add(a);
        psi.Environment["NOTIFY_SOCKET"] = notify;
        using var daemon = Process.Start(psi)!;
        var output = Task.WhenAll(daemon.StandardOutput.ReadToEndAsync(), daemon.StandardError.ReadToEndAsync());
        try
        {
            Assert.That(await ReceiveAsync(socket), Is.EqualTo("READY=1"));
            Assert.That(daemon.HasExited, Is.False);
            await TerminateAsync(daemon, socket, output);
        }
        finally
        {
            if (!daemon.HasExited) daemon.Kill();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>SIGTERM: the daemon tells STOPPING=1 and exits 0.</summary>
    private static async Task TerminateAsync(Process daemon, Socket socket, Task<string[]> output)
    {
        Assert.That(Shell.Run("kill", ["-TERM", daemon.Id.ToString()]).Ok);
        Assert.That(await ReceiveAsync(socket), Is.EqualTo("STOPPING=1"));
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await daemon.WaitForExitAsync(limit.Token);
        Assert.That(daemon.ExitCode, Is.EqualTo(0), string.Join("\n", await output));
    }

    private static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[4096];
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        int n = await socket.ReceiveAsync(buffer, SocketFlags.None, limit.Token);
        return System.Text.Encoding.UTF8.GetString(buffer, 0, n);
    }
}
