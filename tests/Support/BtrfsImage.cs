namespace Brickfs.Tests.Support;

/// <summary>
/// A loop-mounted Btrfs image for a test: created, formatted and mounted on construction,
/// unmounted and deleted on dispose. Missing prerequisites (no root, no btrfs, no loop devices)
/// fail the test: CI must run every test.
/// </summary>
public sealed class BtrfsImage : IDisposable
{
    public string Image { get; }
    public string MountPoint { get; }

    public BtrfsImage(string name, long sizeBytes = 2L << 30)
    {
        var root = Path.Combine("/var/tmp/brickfs-tests", $"{name}-{Guid.NewGuid():N}"[..Math.Min(name.Length + 13, 60)]);
        Directory.CreateDirectory(root);
        Image = Path.Combine(root, "brick.img");
        MountPoint = Path.Combine(root, "mnt");
        Directory.CreateDirectory(MountPoint);
        Shell.Must($"truncate -s {sizeBytes} '{Image}' && mkfs.btrfs -q -f '{Image}' && mount -o loop '{Image}' '{MountPoint}'",
            TimeSpan.FromSeconds(60));
        var fsType = Shell.Must($"stat -f -c %T '{MountPoint}'").Trim();
        if (fsType != "btrfs") Assert.Fail($"{MountPoint} is {fsType}, not btrfs");
    }

    /// <summary>Creates a Btrfs subvolume (one per brick, so snapshots are cheap) and returns its path.</summary>
    public string Subvolume(string name)
    {
        var path = Path.Combine(MountPoint, name);
        Shell.Must($"btrfs subvolume create '{path}' >/dev/null");
        return path;
    }

    public void Dispose()
    {
        Shell.Sh($"umount '{MountPoint}' || umount -l '{MountPoint}'", TimeSpan.FromSeconds(60));
        try
        {
            Directory.Delete(Path.GetDirectoryName(Image)!, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
