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
    public List<string> DataFilesOn(int i)
    {
        var dir = _bricks[i].Directory;
        return [.. Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(dir, p))
            .Where(p => !p.StartsWith(".brickfs", StringComparison.Ordinal) && IsDataFile(Path.Combine(dir, p)))];
    }

    /// <summary>Link-to files on brick i (relative paths).</summary>
    public List<string> LinktosOn(int i)
    {
        var dir = _bricks[i].Directory;
        return [.. Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(dir, p))
            .Where(p => !p.StartsWith(".brickfs", StringComparison.Ordinal) && File.GetUnixFileMode(Path.Combine(dir, p)) == UnixFileMode.StickyBit)];
    }
}

/// <summary>What one rebalance crawl did.</summary>
public sealed record RebalanceSummary(int Directories, int Moved, int AlreadyHashed, IReadOnlyList<string> Failures);

/// <summary>
/// A small rebalance driver (what <c>brickctl volume rebalance</c> runs): its own client graph
/// from a volfile, a walk from the root that looks up every directory (which creates it on new
/// bricks), fixes its layout, and migrates every file to its hashed brick.
/// </summary>
public static class DistributeRebalance
{
    public static async Task<RebalanceSummary> RunAsync(string volfileText, CancellationToken cancellation)
    {
        var graph = GraphBuilder.BuildText(volfileText, "rebalance.vol");
        foreach (var c in graph.All.OfType<ProtocolClientTranslator>()) c.Log = new ProtocolLog(TextWriter.Null);
        await using (graph)
        {
            await graph.InitAsync(cancellation);
            var dht = graph.Find<DistributeTranslator>();
            var ctx = FopContext.Internal(cancellation);
            int dirs = 0, moved = 0, hashed = 0;
            var failures = new List<string>();

            async Task CrawlAsync(Gfid dir, string path)
            {
                cancellation.ThrowIfCancellationRequested();
                dirs++;
                var layout = await dht.FixLayoutAsync(dir, cancellation);
                if (!layout.Ok) failures.Add($"fix-layout {path}: {layout.Error}");
                var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
                var open = await dht.OpendirAsync(ctx, fd);
                if (!open.Ok)
                {
                    failures.Add($"opendir {path}: {open.Error}");
                    return;
                }
                var entries = new List<DirEntry>();
                try
                {
                    for (long cookie = 0; ;)
                    {
                        var r = await dht.ReaddirplusAsync(ctx, fd, cookie, 64 * 1024);
                        if (!r.Ok)
                        {
                            failures.Add($"readdir {path}: {r.Error}");
                            break;
                        }
                        if (r.Value.Count == 0) break;
                        entries.AddRange(r.Value.Where(e => e.Name is not "." and not ".."));
                        cookie = r.Value[^1].NextOffset;
                    }
                }
                finally
                {
                    await dht.ReleasedirAsync(ctx, fd);
                }
                foreach (var e in entries)
                {
                    string child = $"{path.TrimEnd('/')}/{e.Name}";
                    if (e.Attr is { IsDirectory: true })
                    {
                        var look = await dht.LookupAsync(ctx, dir, e.Name);
                        if (look.Ok) await CrawlAsync(look.Value.Gfid, child);
                        else failures.Add($"lookup {child}: {look.Error}");
                        continue;
                    }
                    var m = await dht.MigrateFileAsync(dir, e.Name, cancellation);
                    if (!m.Ok) failures.Add($"migrate {child}: {m.Error}");
                    else if (m.Value == MigrationOutcome.Moved) moved++;
                    else hashed++;
                }
            }

            await CrawlAsync(Gfid.Root, "/");
            return new RebalanceSummary(dirs, moved, hashed, failures);
        }
    }
}
