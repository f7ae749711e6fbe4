using System.Text;
using Brickfs.Tests.Support;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A distributed volume through the real mount: one brickd per brick over loopback TCP, bricks
/// as subvolumes of one loop-mounted Btrfs image (so tests look at each brick directory), and
/// cluster/distribute in the mount. <see cref="AddBrick"/> + <see cref="Remount"/> grow it.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class DistributedMountVolume : MountedVolume
{
    public const string VolumeName = "dist";

    private readonly BtrfsImage _image;
    private readonly List<BrickProcess> _bricks = [];

    public IReadOnlyList<BrickProcess> Bricks => _bricks;

    public DistributedMountVolume(int bricks) : base("distmount")
    {
        try
        {
            _image = Own(new BtrfsImage("distmount", 3L << 30));
            for (int i = 0; i < bricks; i++) AddBrick();
            Mount(Volfile());
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Starts one more brickd on a new subvolume; the mount uses it after <see cref="Remount"/>.</summary>
    public BrickProcess AddBrick()
    {
        int i = _bricks.Count;
        var b = Own(new BrickProcess(WorkDir, $"b{i}", _image.Subvolume($"b{i}")));
        _bricks.Add(b);
        return b;
    }

    /// <summary>The client volfile over every brick started so far.</summary>
    public string Volfile()
    {
        var v = new StringBuilder();
        for (int i = 0; i < _bricks.Count; i++)
        {
            v.Append($"""
                volume {VolumeName}-client-{i}
                    type protocol/client
                    option remote-host 127.0.0.1
                    option remote-port {_bricks[i].Port}
                    option remote-subvolume {_bricks[i].Name}
                end-volume

                """);
        }
        v.Append($"volume {VolumeName}\n    type cluster/distribute\n    subvolumes {string.Join(' ', Enumerable.Range(0, _bricks.Count).Select(i => $"{VolumeName}-client-{i}"))}\nend-volume\n");
        return v.ToString();
    }

    /// <summary>Unmounts and mounts again with <see cref="Volfile"/> (the add-brick step of a client).</summary>
    public void Remount()
    {
        Shell.Must($"umount '{MountPoint}'", TimeSpan.FromSeconds(30));
        Mount(Volfile());
    }

    /// <summary>
    /// Where a path of the volume has its data: the bricks holding it as a regular file that is
    /// not a link-to (a link-to's mode is exactly the sticky bit, ---------T).
    /// </summary>
    public List<int> DataBricks(string relative) =>
        [.. Enumerable.Range(0, _bricks.Count).Where(i => IsDataFile(Path.Combine(_bricks[i].Directory, relative)))];

    public static bool IsDataFile(string path) => File.Exists(path) && File.GetUnixFileMode(path) != UnixFileMode.StickyBit;

    /// <summary>Every data file on brick i (relative paths, .brickfs and link-tos left out).</summary>
    public List<string> DataFilesOn(int i) => DataFilesIn(_bricks[i].Directory);

    /// <summary>The data files (not link-tos) of a brick directory, relative; .brickfs (with its GFID symlinks) is not walked.</summary>
    public static List<string> DataFilesIn(string brick) =>
        [.. BrickFiles(brick).Where(p => IsDataFile(Path.Combine(brick, p)))];

    private static IEnumerable<string> BrickFiles(string brick) =>
        Directory.EnumerateDirectories(brick).Where(d => Path.GetFileName(d) != ".brickfs")
            .SelectMany(d => Directory.EnumerateFiles(d, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
            .Concat(Directory.EnumerateFiles(brick))
            .Select(p => Path.GetRelativePath(brick, p));

    /// <summary>Link-to files on brick i (relative paths).</summary>
    public List<string> LinktosOn(int i)
    {
        var dir = _bricks[i].Directory;
        return [.. BrickFiles(dir).Where(p => File.GetUnixFileMode(Path.Combine(dir, p)) == UnixFileMode.StickyBit)];
    }
}

/// <summary>
/// A rebalance run in the test process (what <c>brickfs-shd rebalance</c> runs for mgmtd): its
/// own client graph from a volfile and the <see cref="Rebalancer"/> crawl over it.
/// </summary>
public static class DistributeRebalance
{
    public static async Task<RebalanceProgress> RunAsync(string volfileText, CancellationToken cancellation,
        RebalanceProgress? resume = null, Func<RebalanceProgress, ValueTask>? checkpoint = null)
    {
        var graph = GraphBuilder.BuildText(volfileText, "rebalance.vol");
        foreach (var c in graph.All.OfType<ProtocolClientTranslator>()) c.Log = new ProtocolLog(TextWriter.Null);
        await using (graph)
        {
            await graph.InitAsync(CancellationToken.None);
            var rebalancer = new Rebalancer(graph.Find<DistributeTranslator>()) { BusyRetry = TimeSpan.FromSeconds(5) };
            return await rebalancer.RunAsync(resume, checkpoint, cancellation);
        }
    }
}
