using System.Security.Cryptography;
using Brickfs.Tests.Support;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Integration;

/// <summary>
/// cluster/distribute through a real mount over real brickd processes: placement on the bricks,
/// renames across bricks, a big readdir, and growth (a brick added, the client remounted, a
/// rebalance crawl) while a reader keeps reading every file.
/// </summary>
[NonParallelizable]
[CancelAfter(300_000)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class DistributeMountTests
{
    private const int SmallFiles = 300;
    private const int BigFiles = 3;
    private const int BigFileBytes = 3 * 1024 * 1024 + 123;

    private static string Sh(string script) => Shell.Must(script, TimeSpan.FromSeconds(120));

    private static string SmallContent(string name) => $"data of {name}\n";

    [Test]
    public void FilesSpreadOverTheBricksAndKeepTheirInodeAndDataWhenRenamedAcrossThem()
    {
        using var v = new DistributedMountVolume(2);
        Sh($"mkdir '{v.PathOf("d")}' && cd '{v.PathOf("d")}' && for i in $(seq 1 100); do echo \"data of f$i\" > f$i; done");
        for (int i = 1; i <= 100; i++) Assert.That(v.DataBricks($"d/f{i}"), Has.Count.EqualTo(1), $"d/f{i} has its data on exactly one brick");
        Assert.That(v.DataFilesOn(0), Is.Not.Empty, "brick 0 holds a share");
        Assert.That(v.DataFilesOn(1), Is.Not.Empty, "brick 1 holds a share");
        Assert.That(Directory.Exists(Path.Combine(v.Bricks[0].Directory, "d")) && Directory.Exists(Path.Combine(v.Bricks[1].Directory, "d")),
            "a directory exists on every brick");

        var inodes = Sh($"cd '{v.PathOf("d")}' && stat -c '%n %i' $(seq -f 'f%g' 1 50)").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')).ToDictionary(p => p[0], p => p[1]);
        Sh($"cd '{v.PathOf("d")}' && for i in $(seq 1 50); do mv f$i renamed-$i; done");

        for (int i = 1; i <= 50; i++)
        {
            Assert.That(File.Exists(v.PathOf($"d/f{i}")), Is.False);
            Assert.That(File.ReadAllText(v.PathOf($"d/renamed-{i}")), Is.EqualTo(SmallContent($"f{i}")));
            Assert.That(Sh($"stat -c %i '{v.PathOf($"d/renamed-{i}")}'").Trim(), Is.EqualTo(inodes[$"f{i}"]), $"renamed-{i} keeps f{i}'s inode");
            Assert.That(v.DataBricks($"d/renamed-{i}"), Has.Count.EqualTo(1), $"renamed-{i}: data on exactly one brick");
        }
        var linktos = v.LinktosOn(0).Concat(v.LinktosOn(1)).ToList();
        Assert.That(linktos, Is.Not.Empty, "some of 50 renames crossed bricks (their new names point at the data with a link-to)");
        Assert.That(Sh($"ls '{v.PathOf("d")}' | wc -l").Trim(), Is.EqualTo("100"), "readdir shows no link-to and no name twice");

        // Reading through a fresh mount (nothing cached) follows the link-tos.
        v.Remount();
        for (int i = 1; i <= 50; i++) Assert.That(File.ReadAllText(v.PathOf($"d/renamed-{i}")), Is.EqualTo(SmallContent($"f{i}")));
    }

    [Test]
    public void ReaddirListsTwoThousandNamesOnceEach()
    {
        using var v = new DistributedMountVolume(2);
        Sh($"mkdir '{v.PathOf("many")}' && cd '{v.PathOf("many")}' && seq -f 'name-%04g' 1 2000 | xargs touch");
        var listed = Sh($"ls -1 -f '{v.PathOf("many")}'").Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(n => n is not "." and not "..").ToList();
        Assert.That(listed, Has.Count.EqualTo(2000));
        Assert.That(listed, Is.Unique);
        Assert.That(listed.ToHashSet().SetEquals(Enumerable.Range(1, 2000).Select(i => $"name-{i:0000}")), Is.True);
        int on0 = v.DataFilesOn(0).Count, on1 = v.DataFilesOn(1).Count;
        Assert.That(on0 + on1, Is.EqualTo(2000), "every name has one data file");
        Assert.That(Math.Min(on0, on1), Is.GreaterThan(500), $"both bricks hold a fair share ({on0} / {on1})");
    }

    /// <summary>
    /// What a reader of a name that is being replaced does between open and close: fstat (every
    /// .NET open does one) and, rarer, fchmod on its descriptor. The kernel sends both by node,
    /// without the handle, and after a rename over the file or an unlink its GFID names nothing
    /// on any brick; a local filesystem still answers through the descriptor (the storm test's
    /// "Stale file handle" came from this fstat).
    /// </summary>
    [Test]
    public void AnOpenFileRenamedOverOrUnlinkedStillAnswersFstatAndFchmod()
    {
        using var v = new DistributedMountVolume(3);
        Directory.CreateDirectory(v.PathOf("held"));
        for (int i = 0; i < 6; i++)
        {
            string name = v.PathOf($"held/f{i}");
            File.WriteAllText(name, $"old {i}\n");
            using var fd = File.OpenHandle(name, FileMode.Open, FileAccess.Read);
            int n = (int)fd.DangerousGetHandle();
            if (i % 2 == 0)
            {
                File.WriteAllText(v.PathOf($"held/.f{i}.tmp"), $"the new content {i}\n");
                File.Move(v.PathOf($"held/.f{i}.tmp"), name, overwrite: true);
            }
            else File.Delete(name);
            string what = i % 2 == 0 ? "renamed over" : "unlinked";
            Assert.That(Brickfs.Translators.Interop.Sys.Stat(n, "", out var st), Is.EqualTo(Errno.None), $"f{i} {what}: fstat of the open descriptor");
            Assert.That(st.Size, Is.EqualTo((ulong)$"old {i}\n".Length), $"f{i} {what}: fstat sees the open file, not the new one");
            Assert.That(Brickfs.Translators.Interop.Sys.FChmod(n, 0x180), Is.EqualTo(Errno.None), $"f{i} {what}: fchmod of the open descriptor");
            Assert.That(Brickfs.Translators.Interop.Sys.Stat(n, "", out st), Is.EqualTo(Errno.None));
            Assert.That(st.Mode & 0xFFF, Is.EqualTo(0x180), $"f{i} {what}: the mode fchmod set");
            var buf = new byte[64];
            Assert.That(System.Text.Encoding.ASCII.GetString(buf, 0, RandomAccess.Read(fd, buf, 0)), Is.EqualTo($"old {i}\n"));
        }
        Assert.That(Directory.GetFiles(v.PathOf("held")).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "f0", "f2", "f4" }));
    }

    [Test]
    public async Task ABrickAddedAndRebalancedWhileAReaderReadsKeepsEveryFileReadableAndOnOneBrick()
    {
        using var v = new DistributedMountVolume(2);
        Sh($"mkdir -p '{v.PathOf("top/sub")}' && cd '{v.PathOf("top")}' && for i in $(seq 1 {SmallFiles / 2}); do echo \"data of s$i\" > s$i; echo \"data of t$i\" > sub/t$i; done");
        var expected = new Dictionary<string, byte[]>();
        for (int i = 1; i <= SmallFiles / 2; i++)
        {
            expected[$"top/s{i}"] = System.Text.Encoding.ASCII.GetBytes(SmallContent($"s{i}"));
            expected[$"top/sub/t{i}"] = System.Text.Encoding.ASCII.GetBytes(SmallContent($"t{i}"));
        }
        for (int i = 0; i < BigFiles; i++)
        {
            var data = RandomNumberGenerator.GetBytes(BigFileBytes);
            File.WriteAllBytes(v.PathOf($"top/big{i}"), data);
            expected[$"top/big{i}"] = data;
        }
        var before = expected.Keys.ToDictionary(k => k, k => v.DataBricks(k));
        Assert.That(before.Values, Has.All.Count.EqualTo(1));

        v.AddBrick();
        v.Remount();
        Assert.That(File.ReadAllBytes(v.PathOf("top/s1")), Is.EqualTo(expected["top/s1"]), "the grown mount reads files placed before the new brick");

        using var stop = new CancellationTokenSource();
        long reads = 0;
        var readErrors = new List<string>();
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                foreach (var (path, data) in expected)
                {
                    try
                    {
                        var got = File.ReadAllBytes(v.PathOf(path));
                        if (!got.AsSpan().SequenceEqual(data)) lock (readErrors) readErrors.Add($"{path}: {got.Length} bytes, not its content");
                    }
                    catch (IOException e)
                    {
                        lock (readErrors) readErrors.Add($"{path}: {e.Message}");
                    }
                    Interlocked.Increment(ref reads);
                }
            }
        });
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => Interlocked.Read(ref reads) >= expected.Count, "the reader read every file once");

        var summary = await DistributeRebalance.RunAsync(v.Volfile(), CancellationToken.None);
        long readsDuring = Interlocked.Read(ref reads);
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => Interlocked.Read(ref reads) >= readsDuring + expected.Count,
            "the reader made one more full round after the rebalance");
        stop.Cancel();
        await reader;

        TestContext.Progress.WriteLine($"rebalance: {summary}; reader: {reads} reads");
        Assert.That(summary.State, Is.EqualTo(RebalanceProgress.Completed));
        Assert.That(summary.Failures, Is.Zero, string.Join("; ", summary.Problems));
        Assert.That(summary.Skipped, Is.Zero, string.Join("; ", summary.Problems));
        Assert.That(summary.Directories, Is.EqualTo(3));
        Assert.That(summary.FilesMoved, Is.GreaterThan(expected.Count / 6), "a fair share moves to the new brick");
        Assert.That(readErrors, Is.Empty, "the reader saw every file whole all the while");

        foreach (var (path, data) in expected)
        {
            Assert.That(v.DataBricks(path), Has.Count.EqualTo(1), $"{path}: data on exactly one brick");
            Assert.That(File.ReadAllBytes(v.PathOf(path)), Is.EqualTo(data), path);
        }
        Assert.That(v.DataFilesOn(2), Is.Not.Empty, "the new brick holds files");
        Assert.That(v.DataFilesOn(0).Count + v.DataFilesOn(1).Count + v.DataFilesOn(2).Count, Is.EqualTo(expected.Count), "no file has two data copies");
        Assert.That(Directory.Exists(Path.Combine(v.Bricks[2].Directory, "top", "sub")), Is.True, "directories were created on the new brick");

        var again = await DistributeRebalance.RunAsync(v.Volfile(), CancellationToken.None);
        Assert.That(again.Failures, Is.Zero, string.Join("; ", again.Problems));
        Assert.That(again.FilesMoved, Is.Zero, "a second crawl finds every file on its hashed brick");
        Assert.That(again.FilesScanned, Is.EqualTo(expected.Count));

        v.Remount();
        Assert.That(Sh($"ls '{v.PathOf("top")}' | wc -l").Trim(), Is.EqualTo((SmallFiles / 2 + BigFiles + 1).ToString()), "readdir after rebalance: every name once");
        foreach (var (path, data) in expected) Assert.That(File.ReadAllBytes(v.PathOf(path)), Is.EqualTo(data), $"{path} through a fresh mount");
    }
}
