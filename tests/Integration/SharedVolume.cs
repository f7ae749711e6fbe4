using System.Text.RegularExpressions;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// One network volume (one brickd on a Btrfs loop brick) mounted several times with the real
/// mount.brickfs, each mount its own client (own process, own client id, own lease): what
/// several machines see of one volume, on one host. Dispose resumes stopped mounts, unmounts
/// every mount and stops the brick.
/// </summary>
public sealed class SharedVolume : IDisposable
{
    private readonly BtrfsImage _image;
    private readonly List<ClientMount> _mounts = [];

    public BrickProcess Brick { get; }
    public string WorkDir { get; }
    public TimeSpan Lease { get; }

    public IReadOnlyList<ClientMount> Mounts => _mounts;

    /// <param name="mountOptions">mount.brickfs -o options for every client ("" for none).</param>
    public SharedVolume(int clients, double leaseSeconds = 10, string mountOptions = "")
    {
        Lease = TimeSpan.FromSeconds(leaseSeconds);
        WorkDir = Path.Combine("/var/tmp/brickfs-tests", $"shared-{Guid.NewGuid():N}"[..20]);
        Directory.CreateDirectory(WorkDir);
        _image = new BtrfsImage("shared-brick", 4L << 30);
        try
        {
            Brick = new BrickProcess(WorkDir, "b1", _image.Subvolume("b1"), leaseTimeoutSeconds: leaseSeconds);
            for (int i = 0; i < clients; i++) _mounts.Add(new ClientMount(this, i, mountOptions));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public ClientMount this[int i] => _mounts[i];

    public void Dispose()
    {
        foreach (var m in _mounts) m.Dispose();
        Brick?.Dispose();
        _image.Dispose();
        try
        {
            Directory.Delete(WorkDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>One client of a <see cref="SharedVolume"/>: its mount point and its mount.brickfs process.</summary>
public sealed class ClientMount : MountedVolume
{
    public int Index { get; }

    internal ClientMount(SharedVolume volume, int index, string mountOptions) : base($"client{index}")
    {
        Index = index;
        Mount($"""
            volume shared-client-0
                type protocol/client
                option remote-host 127.0.0.1
                option remote-port {volume.Brick.Port}
                option remote-subvolume b1
                option client-id client{index}-{Guid.NewGuid():N}
            end-volume
            """, mountOptions);
        Pid = ReadPid();
    }

    /// <summary>The mount.brickfs daemon serving this mount.</summary>
    public int Pid { get; }

    private bool _stopped;

    private int ReadPid()
    {
        var log = Path.Combine(WorkDir, "mount.log");
        foreach (var line in File.ReadLines(log))
        {
            var m = Regex.Match(line, @"mount\.serving .*pid=(\d+)");
            if (m.Success) return int.Parse(m.Groups[1].Value);
        }
        Assert.Fail($"no pid in {log}:\n{LogTail()}");
        return 0;
    }

    /// <summary>kill -9 of the client: its connection closes at once, the mount goes dead.</summary>
    public void Kill() => Shell.Must($"kill -KILL {Pid}");

    /// <summary>Freezes the client (SIGSTOP): its TCP connection stays open and silent.</summary>
    public void Stop()
    {
        Shell.Must($"kill -STOP {Pid}");
        _stopped = true;
    }

    public void Continue()
    {
        Shell.Must($"kill -CONT {Pid}");
        _stopped = false;
    }

    public override void Dispose()
    {
        if (_stopped) Shell.Sh($"kill -CONT {Pid}");
        base.Dispose();
    }
}
