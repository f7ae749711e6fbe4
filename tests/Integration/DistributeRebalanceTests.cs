using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Brickfs.Tests.Support;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Integration;

/// <summary>
/// Online growth and renames at scale through a real mount over real brickd processes: 20,000
/// files rebalanced onto an added brick while a checker reads and rewrites files, and a storm
/// of renames over existing names across bricks while readers keep opening those names.
/// </summary>
[NonParallelizable]
[CancelAfter(900_000)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class DistributeRebalanceTests
{
    private const int Dirs = 20, PerDir = 1000;

    private static byte[] Content(string path, int version) => Encoding.ASCII.GetBytes($"{path} version {version} " + new string('.', 40 + path.Length % 17) + "\n");

    private static int HashedBrick(DistributedMountVolume v, string dir, string name) =>
        HashedBrick([.. v.Bricks.Select(b => b.Directory)], dir, name);

    /// <summary>The brick a name in <paramref name="dir"/> hashes to, from the layout xattrs on the brick directories.</summary>
    internal static int HashedBrick(IReadOnlyList<string> brickDirs, string dir, string name)
    {
        var ranges = new DirLayout.Range?[brickDirs.Count];
        for (int i = 0; i < brickDirs.Count; i++)
        {
            if (Brickfs.Translators.Interop.Sys.GetXattr(Path.Combine(brickDirs[i], dir), DistributeTranslator.LayoutXattr, follow: false, out var raw) != Errno.None) continue;
            if (DirLayout.TryDecodeEntry(raw, out _, out var r)) ranges[i] = r;
        }
        var layout = new DirLayout(0, ranges);
        Assert.That(layout.IsComplete, Is.True, $"layout of {dir}: {layout}");
        return layout.ChildFor(name);
    }

    [Test]
    public async Task TwentyThousandFilesStayWholeAndEndOnTheirHashedBrickWhenABrickIsAddedAndRebalancedUnderLoad()
    {
        using var v = new DistributedMountVolume(2);
        var expected = new ConcurrentDictionary<string, byte[]>();
        var clock = Stopwatch.StartNew();
        for (int d = 0; d < Dirs; d++) Directory.CreateDirectory(v.PathOf($"d{d}"));
        await Parallel.ForEachAsync(Enumerable.Range(0, Dirs * PerDir), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (k, ct) =>
        {
            string path = $"d{k / PerDir}/f{k % PerDir}";
            var data = Content(path, 0);
            await File.WriteAllBytesAsync(v.PathOf(path), data, ct);
            expected[path] = data;
        });
        TestContext.Progress.WriteLine($"wrote {expected.Count} files in {clock.Elapsed.TotalSeconds:0.0} s");

        v.AddBrick();
        v.Remount();

        // The checker rewrites a hot set and reads hot and cold files, comparing every byte.
        var hot = expected.Keys.Where((_, i) => i % 100 == 0).Order(StringComparer.Ordinal).ToList();
        var all = expected.Keys.Order(StringComparer.Ordinal).ToList();
        var errors = new ConcurrentQueue<string>();
        long checks = 0, rewrites = 0;
        using var stop = new CancellationTokenSource();
        var checker = Task.Run(() =>
        {
            var rnd = new Random(7);
            int version = 0;
            while (!stop.IsCancellationRequested)
            {
                version++;
                foreach (var path in hot)
                {
                    if (stop.IsCancellationRequested) break;
                    try
                    {
                        var data = Content(path, version);
                        File.WriteAllBytes(v.PathOf(path), data);
                        expected[path] = data;
                        Interlocked.Increment(ref rewrites);
                        Check(path);
                        Check(all[rnd.Next(all.Count)]);
                    }
                    catch (IOException e)
                    {
                        errors.Enqueue($"{path}: {e.Message}");
                    }
                }
            }

            void Check(string p)
            {
                var got = File.ReadAllBytes(v.PathOf(p));
                if (!got.AsSpan().SequenceEqual(expected[p])) errors.Enqueue($"{p}: read {got.Length} bytes that are not its content");
                Interlocked.Increment(ref checks);
            }
        });
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => Interlocked.Read(ref checks) > 50, "the checker is running");

        clock.Restart();
        var first = await DistributeRebalance.RunAsync(v.Volfile(), CancellationToken.None);
        var rebalanceTime = clock.Elapsed;
        long checksDuring = Interlocked.Read(ref checks);
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => Interlocked.Read(ref checks) > checksDuring + 20, "the checker goes on after the rebalance");
        stop.Cancel();
        await checker;
        TestContext.Progress.WriteLine($"rebalance: {first} in {rebalanceTime.TotalSeconds:0.0} s; checker: {checks} reads checked, {rewrites} rewrites");
        Assert.That(errors, Is.Empty, "the checker saw every file whole all the while");
        Assert.That(first.State, Is.EqualTo(RebalanceProgress.Completed));
        Assert.That(first.Failures, Is.Zero, string.Join("; ", first.Problems));
        Assert.That(first.FilesMoved, Is.GreaterThan(Dirs * PerDir / 5), "about a third of the files belong to the new brick");

        // Files the checker kept open for writing were left for later; a second pass moves them.
        var second = await DistributeRebalance.RunAsync(v.Volfile(), CancellationToken.None);
        Assert.That(second.Failures + second.Skipped, Is.Zero, string.Join("; ", second.Problems));
        Assert.That(first.FilesMoved + second.FilesMoved, Is.LessThanOrEqualTo(Dirs * PerDir));

        // Every file checked where it lives (fast: the brick's own filesystem), a sample also through a fresh mount.
        v.Remount();
        int onNew = 0;
        foreach (var (path, k) in all.Select((p, k) => (p, k)))
        {
            string dir = Path.GetDirectoryName(path)!, name = Path.GetFileName(path);
            int hashed = HashedBrick(v, dir, name);
            Assert.That(v.DataBricks(path), Is.EqualTo(new[] { hashed }), $"{path}: its data only on its hashed brick");
            if (hashed == 2) onNew++;
            Assert.That(File.ReadAllBytes(Path.Combine(v.Bricks[hashed].Directory, path)).AsSpan().SequenceEqual(expected[path]), Is.True, $"{path}: byte-identical on its brick");
            if (k % 20 == 0) Assert.That(File.ReadAllBytes(v.PathOf(path)).AsSpan().SequenceEqual(expected[path]), Is.True, $"{path}: byte-identical through the mount");
        }
        Assert.That(onNew, Is.GreaterThan(Dirs * PerDir / 5));
    }

    [Test]
    public async Task ReadersNeverMissANameThatRenamesAcrossBricksKeepReplacing()
    {
        using var v = new DistributedMountVolume(3);
        const int Names = 40;
        Directory.CreateDirectory(v.PathOf("storm"));
        for (int i = 0; i < Names; i++) File.WriteAllText(v.PathOf($"storm/t{i}"), $"v0 t{i}\n");

        var errors = new ConcurrentQueue<string>();
        long reads = 0, renames = 0;
        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 3).Select(r => Task.Run(() =>
        {
            var rnd = new Random(r);
            while (!stop.IsCancellationRequested)
            {
                int i = rnd.Next(Names);
                try
                {
                    var text = File.ReadAllText(v.PathOf($"storm/t{i}"));
                    if (!System.Text.RegularExpressions.Regex.IsMatch(text, $"^v[0-9]+ t{i}\n$")) errors.Enqueue($"t{i}: read '{text}'");
                }
                catch (IOException e)
                {
                    errors.Enqueue($"t{i}: {e.GetType().Name}: {e.Message}");
                }
                Interlocked.Increment(ref reads);
            }
        })).ToList();

        // Each round writes a new version under a temporary name and renames it over the old one
        // (what editors and package managers do); temporary and final names hash to different bricks.
        var clock = Stopwatch.StartNew();
        for (int round = 1; round <= 15; round++)
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, Names), new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (i, ct) =>
            {
                string tmp = v.PathOf($"storm/.t{i}.{round}.tmp");
                await File.WriteAllTextAsync(tmp, $"v{round} t{i}\n", ct);
                File.Move(tmp, v.PathOf($"storm/t{i}"), overwrite: true);
                Interlocked.Increment(ref renames);
            });
        }
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => Interlocked.Read(ref reads) > renames, "the readers kept up");
        stop.Cancel();
        await Task.WhenAll(readers);
        TestContext.Progress.WriteLine($"{renames} renames, {reads} reads in {clock.Elapsed.TotalSeconds:0.0} s");
        Assert.That(errors, Is.Empty, "no reader found a name missing or a file half-made");
        Assert.That(v.LinktosOn(0).Count + v.LinktosOn(1).Count + v.LinktosOn(2).Count, Is.GreaterThan(0), "renames crossed bricks");
        var names = Directory.EnumerateFileSystemEntries(v.PathOf("storm")).Select(Path.GetFileName).Order().ToList();
        Assert.That(names, Is.EqualTo(Enumerable.Range(0, Names).Select(i => $"t{i}").Order()), "only the final names remain, each once");
        for (int i = 0; i < Names; i++)
        {
            Assert.That(File.ReadAllText(v.PathOf($"storm/t{i}")), Is.EqualTo($"v15 t{i}\n"));
            Assert.That(v.DataBricks($"storm/t{i}"), Has.Count.EqualTo(1), $"t{i}: one data copy");
        }
    }
}

/// <summary>The POSIX suite (sqlite3 included) through a mount of distribute over three brickd processes.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class DistributedVolumePosixTests : VolumePosixSuite
{
    protected override MountedVolume CreateVolume() => new DistributedMountVolume(3);
}
