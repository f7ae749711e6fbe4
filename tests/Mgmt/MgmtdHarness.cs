using Brickfs.Mgmt.Api;
using Microsoft.Extensions.Logging;

namespace Brickfs.Tests.Mgmt;

/// <summary>What one brickctl run printed and returned.</summary>
public sealed record CtlRun(int Exit, string Out, string Err)
{
    public override string ToString() => $"exit {Exit}\nstdout:\n{Out}\nstderr:\n{Err}";
}

/// <summary>
/// An in-process brickfs-mgmtd on 127.0.0.1 and a free port, with a state directory in /tmp
/// and a fake brickd: a script that records its pid and arguments, writes its pid file as
/// brickd does, and sleeps. This node is "node1"; any other host name is a remote node.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MgmtdHarness : IAsyncDisposable
{
    public string Root { get; }
    public string StateDir => Path.Combine(Root, "state");
    public string FakeBrickd => Path.Combine(Root, "fake-brickd");
    public string Record => Path.Combine(Root, "brickd-runs");
    public MgmtHost Host { get; private set; } = null!;
    public string Server => $"127.0.0.1:{Host.Address.Port}";

    private MgmtdHarness(string root) => Root = root;

    public static async Task<MgmtdHarness> StartAsync(string? root = null)
    {
        var h = new MgmtdHarness(root ?? Directory.CreateTempSubdirectory("brickfs-mgmtd-").FullName);
        await File.WriteAllTextAsync(h.FakeBrickd, $"""
            #!/bin/sh
            echo "$$ $*" >> '{h.Record}'
            while [ $# -gt 0 ]; do
                if [ "$1" = --pid-file ]; then echo $$ > "$2"; fi
                shift
            done
            exec sleep 600
            """.Replace("\r", ""));
        File.SetUnixFileMode(h.FakeBrickd, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await h.RestartAsync();
        return h;
    }

    /// <summary>Stops the daemon (and so its bricks) if running and starts a new one on the same state directory.</summary>
    public async Task RestartAsync()
    {
        if (Host is not null) await Host.DisposeAsync();
        Host = MgmtHost.Create(new MgmtdOptions
        {
            StateDir = StateDir,
            ListenHost = "127.0.0.1",
            ListenPort = 0,
            NodeAddress = "node1",
            BrickdPath = FakeBrickd,
            MatchMachineAddresses = false,
            ProbeBrickPorts = false,
        }, logging => logging.SetMinimumLevel(LogLevel.Warning));
        await Host.StartAsync();
    }

    /// <summary>Runs the real brickctl code against this daemon, as `brickctl --server 127.0.0.1:PORT ARGS`.</summary>
    public Task<CtlRun> CtlAsync(params string[] args) => RunCtlAsync(["--server", Server, "--timeout", "20", .. args]);

    public static async Task<CtlRun> RunCtlAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await Brickfs.Mgmt.Cli.Brickctl.RunAsync(args, stdout, stderr);
        return new CtlRun(exit, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Lines "PID ARGS" of every fake brickd started so far.</summary>
    public List<(int Pid, string Args)> BrickdRuns() =>
        File.Exists(Record)
            ? File.ReadAllLines(Record).Select(l => (int.Parse(l[..l.IndexOf(' ')]), l[(l.IndexOf(' ') + 1)..])).ToList()
            : [];

    public static bool Alive(int pid) => File.Exists($"/proc/{pid}/cmdline") && File.ReadAllText($"/proc/{pid}/cmdline").Length > 0;

    public async ValueTask DisposeAsync()
    {
        if (Host is not null) await Host.DisposeAsync();
        foreach (var (pid, _) in BrickdRuns())
        {
            // Only our fake (now "sleep 600"), never a process that reused the pid.
            if (Alive(pid) && File.ReadAllText($"/proc/{pid}/cmdline") == "sleep\0600\0") System.Diagnostics.Process.GetProcessById(pid).Kill();
        }
        Directory.Delete(Root, recursive: true);
    }
}
