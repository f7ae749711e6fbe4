using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>A real <c>brickd</c> process serving one brick directory, started from a generated volfile.</summary>
public sealed class BrickProcess : IDisposable
{
    private Process? _process;
    private readonly IReadOnlyList<string> _launcher;
    private readonly IPAddress _probe;

    public string Name { get; }
    public string Directory { get; }
    public string Volfile { get; }
    public string LogFile { get; }
    public int Port { get; }

    /// <param name="brickGraph">The brick graph below protocol/server, whose top volume is named <paramref name="name"/>; default storage/posix under features/locks.</param>
    /// <param name="leaseTimeoutSeconds">protocol/server's lease-timeout; its default when null.</param>
    /// <param name="launcher">a command prefix brickd runs under, e.g. <c>ip netns exec NS</c> (it must exec brickd, so the pid is brickd's)</param>
    /// <param name="withIndex">stack features/index between locks and posix, as brickd's full graph does (replicated volumes need it for healing)</param>
    public BrickProcess(string workDir, string name, string directory, int? port = null, string host = "127.0.0.1",
        string? brickGraph = null, double? leaseTimeoutSeconds = null, IReadOnlyList<string>? launcher = null, bool withIndex = false)
    {
        string lease = leaseTimeoutSeconds is { } l ? $"option lease-timeout {l.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "";
        Name = name;
        _launcher = launcher ?? [];
        _probe = host == "0.0.0.0" ? IPAddress.Loopback : IPAddress.Parse(host);
        Directory = directory;
        Port = port ?? FreePort();
        Volfile = Path.Combine(workDir, $"{name}.vol");
        LogFile = Path.Combine(workDir, $"{name}.log");
        brickGraph ??= $"""
            volume {name}-posix
                type storage/posix
                option directory {directory}
            end-volume
            {(withIndex ? $"volume {name}-index\n    type features/index\n    subvolumes {name}-posix\nend-volume\n" : "")}volume {name}
                type features/locks
                subvolumes {name}-{(withIndex ? "index" : "posix")}
            end-volume
            """;
        File.WriteAllText(Volfile, brickGraph + $"""

            volume {name}-server
                type protocol/server
                option listen-host {host}
                option listen-port {Port}
                {lease}
                subvolumes {name}
            end-volume
            """);
        Start();
    }

    public int? Pid => _process is { HasExited: false } p ? p.Id : null;

    /// <summary>Starts brickd and waits until its port accepts connections.</summary>
    public void Start()
    {
        var command = _launcher.Concat([Programs.Brickd, "--volfile", Volfile, "--log-file", LogFile]).ToArray();
        var psi = new ProcessStartInfo(command[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!Accepts())
        {
            if (_process.HasExited) Assert.Fail($"brickd {Name} exited with {_process.ExitCode}; log:\n{Tail()}");
            if (DateTime.UtcNow > deadline) Assert.Fail($"brickd {Name} does not listen on {Port} after 30 s; log:\n{Tail()}");
            Thread.Sleep(50);
        }
    }

    private bool Accepts()
    {
        try
        {
            using var s = new TcpClient();
            return s.ConnectAsync(_probe, Port).Wait(500) && s.Connected;
        }
        catch (AggregateException)
        {
            return false;
        }
    }

    public void Kill()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
    }

    public string Tail() => File.Exists(LogFile) ? string.Join('\n', File.ReadLines(LogFile).TakeLast(30)) : "(no log)";

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
        _process?.Dispose();
    }
}

/// <summary>A network volume: one brickd on a Btrfs loop brick, mounted over loopback TCP.</summary>
public sealed class NetworkVolume : MountedVolume
{
    public BrickProcess Brick { get; }

    public NetworkVolume(int pingTimeoutSeconds = 10) : base("net")
    {
        var image = Own(new BtrfsImage("net-brick", 8L << 30));
        Brick = Own(new BrickProcess(WorkDir, "b1", image.Subvolume("b1")));
        Mount($"""
            volume net-client-0
                type protocol/client
                option remote-host 127.0.0.1
                option remote-port {Brick.Port}
                option remote-subvolume b1
                option ping-timeout {pingTimeoutSeconds}
            end-volume
            """);
    }
}
