using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A real Brickfs volume mounted with the real <c>mount.brickfs</c> on /dev/fuse, over bricks on
/// loop-mounted Btrfs. Subclasses decide what the volfile is (local graph, network bricks, ...).
/// Dispose unmounts (lazily if it must) and removes the bricks.
/// </summary>
public abstract class MountedVolume : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public string MountPoint { get; }
    public string WorkDir { get; }

    protected MountedVolume(string name)
    {
        WorkDir = Path.Combine("/var/tmp/brickfs-tests", $"{name}-{Guid.NewGuid():N}"[..Math.Min(name.Length + 13, 60)]);
        MountPoint = Path.Combine(WorkDir, "mnt");
        Directory.CreateDirectory(MountPoint);
    }

    protected T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }

    /// <summary>Mounts <paramref name="volfileText"/> and fails the test with mount.brickfs's message if it cannot.</summary>
    protected void Mount(string volfileText, string options = "")
    {
        var volfile = Path.Combine(WorkDir, "client.vol");
        File.WriteAllText(volfile, volfileText);
        var args = new List<string> { "--volfile", volfile };
        args.AddRange(["-o", $"log-file={Path.Combine(WorkDir, "mount.log")}" + (options.Length > 0 ? "," + options : "")]);
        args.Add(MountPoint);
        var r = Shell.Run(Programs.MountBrickfs, args, TimeSpan.FromSeconds(60));
        if (!r.Ok) Assert.Fail($"mount.brickfs failed: {r}\nlog:\n{LogTail()}");
        var fsType = Shell.Must($"stat -f -c %T '{MountPoint}'").Trim();
        if (!fsType.StartsWith("fuse", StringComparison.Ordinal)) Assert.Fail($"{MountPoint} is {fsType} after mount.brickfs returned");
    }

    public string LogTail()
    {
        var log = Path.Combine(WorkDir, "mount.log");
        return File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(40)) : "(no log)";
    }

    public string PathOf(string relative) => Path.Combine(MountPoint, relative);

    public virtual void Dispose()
    {
        Shell.Sh($"umount '{MountPoint}' 2>/dev/null || umount -l '{MountPoint}'", TimeSpan.FromSeconds(30));
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        try
        {
            Directory.Delete(WorkDir, recursive: true);
        }
        catch (IOException)
        {
        }
        GC.SuppressFinalize(this);
    }
}

/// <summary>The local volume: storage/posix and features/locks inside the mount process, brick on Btrfs.</summary>
public sealed class LocalVolume : MountedVolume
{
    public string BrickDir { get; }

    public LocalVolume() : base("local")
    {
        var image = Own(new BtrfsImage("local-brick", 8L << 30));
        BrickDir = image.Subvolume("b1");
        Mount($"""
            volume local-posix
                type storage/posix
                option directory {BrickDir}
            end-volume
            volume local-locks
                type features/locks
                subvolumes local-posix
            end-volume
            """);
    }
}
