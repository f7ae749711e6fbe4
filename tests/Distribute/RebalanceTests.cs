using System.Text;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Distribute;

/// <summary>
/// Weighted layouts, min-free-disk, the migration guard against writers in other clients, and
/// the rebalance crawl (progress, stop and resume, remove-brick's drain), over in-memory bricks.
/// </summary>
public sealed class RebalanceTests
{
    private static readonly FopContext Root = DistributeVolume.Root;

    [Test]
    public void WeightedLayoutGivesEachChildAShareProportionalToItsWeight()
    {
        var layout = DirLayout.Weighted(3, [0, 1, 2], [1024, 3072, 4096], 1);
        Assert.That(layout.IsComplete, Is.True, layout.ToString());
        var share = Enumerable.Range(0, 3).Select(i => layout.RangeOf(i)!.Value.Length / (double)(1UL << 32)).ToList();
        Assert.That(share[0], Is.EqualTo(0.125).Within(1e-6));
        Assert.That(share[1], Is.EqualTo(0.375).Within(1e-6));
        Assert.That(share[2], Is.EqualTo(0.5).Within(1e-6));
        Assert.That(DirLayout.Weighted(3, [0, 2], [5, 0, 5], 1).RangeOf(1), Is.Null, "a non-holder gets no range");
        var unknown = DirLayout.Weighted(2, [0, 1], [7, 0], 1);
        Assert.That(unknown.RangeOf(0)!.Value.Length, Is.EqualTo(unknown.RangeOf(1)!.Value.Length), "an unknown weight means an even split");
    }

    [Test]
    public void FixLayoutAfterAddingBricksMovesOnlyTheNewBricksShare()
    {
        var two = DirLayout.Even(3, [0, 1], 1);
        var three = DirLayout.KeepingOverlap(3, [0, 1, 2], null, two, 2);
        Assert.That(three.IsComplete, Is.True, three.ToString());
        Assert.That(1 - three.Overlap(two) / (double)(1UL << 32), Is.EqualTo(1 / 3.0).Within(1e-6), $"{two} -> {three}: a third of the names move");
        var five = DirLayout.KeepingOverlap(5, [0, 1, 2, 3, 4], null, three, 3);
        Assert.That(1 - five.Overlap(three) / (double)(1UL << 32), Is.LessThan(0.45), $"{three} -> {five}");
        Assert.That(DirLayout.KeepingOverlap(3, [0, 1, 2], null, three, 3).Overlap(three), Is.EqualTo(1UL << 32), "fixing a fixed layout moves nothing");
    }

    [Test]
    public async Task NewDirectoriesAreWeightedByBrickSizeAndNamesFollow()
    {
        await using var v = await DistributeVolume.StartAsync(2, capacities: ["1GB", "3GB"]);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        var layout = await v.LayoutOnBricksAsync(d.Gfid);
        Assert.That(layout.IsComplete, Is.True);
        Assert.That(layout.RangeOf(1)!.Value.Length / (double)layout.RangeOf(0)!.Value.Length, Is.EqualTo(3.0).Within(0.001));
        for (int i = 0; i < 400; i++) await v.CreateAsync(d.Gfid, $"f{i}");
        int on0 = 0;
        for (int i = 0; i < 400; i++)
        {
            if ((await v.DataBricksAsync(d.Gfid, $"f{i}")).Single() == 0) on0++;
        }
        Assert.That(on0, Is.InRange(70, 130), "about a quarter of the names on the 1 GB brick");

        await using var even = await DistributeVolume.StartAsync(2, capacities: ["1GB", "3GB"], dhtOptions: "    option weighted-rebalance off\n");
        var e = await even.MkdirAsync(Gfid.Root, "e");
        var el = await even.LayoutOnBricksAsync(e.Gfid);
        Assert.That(el.RangeOf(0)!.Value.Length, Is.EqualTo(el.RangeOf(1)!.Value.Length), "weighted-rebalance off: even");
    }

    [Test]
    public async Task AFullBrickSendsNewFilesElsewhereBehindALinkto()
    {
        await using var v = await DistributeVolume.StartAsync(2, capacities: ["1MB", "1GB"], dhtOptions: "    option min-free-disk 10\n    option statfs-interval 0\n    option weighted-rebalance off\n");
        var d = await v.MkdirAsync(Gfid.Root, "d");
        // Fill brick 0 past 90 % with a file whose name hashes there.
        string big = Enumerable.Range(0, 1000).Select(i => $"big{i}").First(n => (v.HashedBrickAsync(d.Gfid, n).GetAwaiter().GetResult()) == 0);
        await v.CreateAsync(d.Gfid, big, new string('x', 950 * 1024));
        Assert.That(await v.DataBricksAsync(d.Gfid, big), Is.EqualTo(new[] { 0 }));

        var names = Enumerable.Range(0, 60).Select(i => $"n{i}").ToList();
        foreach (var n in names) await v.CreateAsync(d.Gfid, n, $"content of {n}");
        int redirected = 0;
        foreach (var n in names)
        {
            Assert.That(await v.DataBricksAsync(d.Gfid, n), Is.EqualTo(new[] { 1 }), $"{n}: data on the brick with room");
            if (await v.HashedBrickAsync(d.Gfid, n) == 0)
            {
                redirected++;
                Assert.That((await v.OnBrickAsync(0, d.Gfid, n))?.LinktoTarget, Is.EqualTo("brick-1"), $"{n}: a link-to on its full hashed brick");
            }
        }
        Assert.That(redirected, Is.GreaterThan(10), "names hashing to the full brick were created");
        await using var fresh = v.Remount();
        foreach (var n in names)
        {
            var a = await fresh.LookupAsync(d.Gfid, n);
            Assert.That(await fresh.ReadAsync(a.Gfid), Is.EqualTo($"content of {n}"), $"{n} through another client");
        }
        var listed = (await fresh.ListAsync(d.Gfid)).Select(e => e.Name).Where(n => n is not "." and not "..").ToList();
        Assert.That(listed, Is.Unique);
        Assert.That(listed, Has.Count.EqualTo(names.Count + 1));

        // A rebalance leaves them where they are: their hashed brick has no room.
        var grownNothing = await new Rebalancer(v.Dht) { BusyRetry = TimeSpan.Zero }.RunAsync(null, null, CancellationToken.None);
        Assert.That(grownNothing.FilesMoved, Is.Zero);
        Assert.That(grownNothing.Skipped, Is.EqualTo(redirected), string.Join("; ", grownNothing.Problems));
        Assert.That(grownNothing.Failures, Is.Zero, string.Join("; ", grownNothing.Problems));
    }

    [Test]
    public async Task AFileOpenForWritingInAnotherClientIsNotMigratedUntilItIsClosed()
    {
        await using var v = await DistributeVolume.StartAsync(2, locks: true);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        var names = Enumerable.Range(0, 40).Select(i => $"f{i}").ToList();
        foreach (var n in names) await v.CreateAsync(d.Gfid, n, $"v1 {n}");
        // Rename every file to a name hashing to the other brick: its data stays, a link-to points at it.
        var moved = new List<(string Name, Gfid Gfid)>();
        foreach (var n in names)
        {
            int from = await v.HashedBrickAsync(d.Gfid, n);
            string to = Enumerable.Range(0, 1000).Select(i => $"{n}-r{i}").First(x => v.HashedBrickAsync(d.Gfid, x).GetAwaiter().GetResult() != from);
            Assert.That((await v.Dht.RenameAsync(Root, d.Gfid, n, d.Gfid, to, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
            moved.Add((to, (await v.LookupAsync(d.Gfid, to)).Gfid));
        }
        // Another client (its own distribute, same bricks) holds the first file open for writing.
        await using var writer = v.Remount();
        var (busyName, busyGfid) = moved[0];
        var fd = new FileHandle(busyGfid, OpenFlags.ReadWrite);
        Assert.That((await writer.Dht.OpenAsync(new FopContext { ClientId = "writer" }, fd)).Error, Is.EqualTo(Errno.None));

        var migrator = v.Remount();
        Assert.That((await migrator.Dht.MigrateFileAsync(d.Gfid, busyName)).Error, Is.EqualTo(Errno.EBUSY), "open for writing elsewhere");
        var other = await migrator.Dht.MigrateFileAsync(d.Gfid, moved[1].Name);
        Assert.That(other.Error, Is.EqualTo(Errno.None), "a closed file moves");
        Assert.That(other.Value.Outcome, Is.EqualTo(MigrationOutcome.Moved));

        // Writes through the open handle land in the file that stays; after close it moves with them.
        Assert.That((await writer.Dht.WriteAsync(Root, fd, 0, Encoding.UTF8.GetBytes("v2"))).Error, Is.EqualTo(Errno.None));
        Assert.That((await writer.Dht.ReleaseAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        Assert.That((await migrator.Dht.MigrateFileAsync(d.Gfid, busyName)).Value.Outcome, Is.EqualTo(MigrationOutcome.Moved));
        Assert.That(await migrator.ReadAsync(busyGfid), Is.EqualTo("v2 " + names[0]));

        // The writer client still has the old place cached: a new open for writing finds the new one.
        var fd2 = new FileHandle(busyGfid, OpenFlags.ReadWrite);
        Assert.That((await writer.Dht.OpenAsync(Root, fd2)).Error, Is.EqualTo(Errno.None));
        Assert.That((await writer.Dht.WriteAsync(Root, fd2, 0, Encoding.UTF8.GetBytes("v3"))).Error, Is.EqualTo(Errno.None));
        Assert.That((await writer.Dht.ReleaseAsync(Root, fd2)).Error, Is.EqualTo(Errno.None));
        Assert.That(await v.DataBricksAsync(d.Gfid, busyName), Is.EqualTo(new[] { await v.HashedBrickAsync(d.Gfid, busyName) }));
        Assert.That(await migrator.ReadAsync(busyGfid), Is.EqualTo("v3 " + names[0]));
    }

    [Test]
    public async Task ARebalanceStoppedMidwayResumesFromItsCheckpointAndFinishes()
    {
        await using var v = await DistributeVolume.StartAsync(2);
        var dirs = new List<Iatt>();
        for (int k = 0; k < 6; k++)
        {
            var dir = await v.MkdirAsync(Gfid.Root, $"dir{k}");
            dirs.Add(dir);
            for (int i = 0; i < 30; i++) await v.CreateAsync(dir.Gfid, $"f{i}", $"{k}/{i}");
        }
        var grown = v.Grow(1);
        RebalanceProgress? saved = null;
        using var stop = new CancellationTokenSource();
        var first = await new Rebalancer(grown.Dht) { CheckpointInterval = TimeSpan.Zero, Parallel = 1 }.RunAsync(null, p =>
        {
            saved = p;
            if (p.Directories >= 3) stop.Cancel();
            return ValueTask.CompletedTask;
        }, stop.Token);
        Assert.That(first.State, Is.EqualTo(RebalanceProgress.Stopped));
        Assert.That(saved!.State, Is.EqualTo(RebalanceProgress.Stopped), "the last checkpoint says stopped");
        Assert.That(saved.DoneTrees, Is.Not.Empty, "finished directories are in the checkpoint");
        long scannedBefore = saved.FilesScanned;
        TestContext.Out.WriteLine($"checkpoint: {saved}; trees {string.Join(",", saved.DoneTrees)}; files {string.Join(",", saved.DoneFiles)}; at {saved.CurrentDir}@{saved.CurrentOffset}");
        Assert.That(scannedBefore, Is.LessThan(180));

        var second = await new Rebalancer(grown.Dht).RunAsync(saved, null, CancellationToken.None);
        Assert.That(second.State, Is.EqualTo(RebalanceProgress.Completed));
        Assert.That(second.Runs, Is.EqualTo(2));
        Assert.That(second.Failures + second.Skipped, Is.Zero, string.Join("; ", second.Problems));
        Assert.That(second.FilesScanned, Is.LessThanOrEqualTo(180 + 30), "the resumed run did not scan finished directories again");
        Assert.That(second.FilesMoved, Is.GreaterThan(180 / 6));
        for (int k = 0; k < 6; k++)
        {
            for (int i = 0; i < 30; i++)
            {
                Assert.That(await grown.DataBricksAsync(dirs[k].Gfid, $"f{i}"), Is.EqualTo(new[] { await grown.HashedBrickAsync(dirs[k].Gfid, $"f{i}") }));
                Assert.That(await grown.ReadAsync((await grown.LookupAsync(dirs[k].Gfid, $"f{i}")).Gfid), Is.EqualTo($"{k}/{i}"));
            }
        }
    }

    [Test]
    public async Task RemoveBrickDrainMovesEveryFileOffTheDecommissionedBrick()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        for (int i = 0; i < 90; i++) await v.CreateAsync(d.Gfid, $"f{i}", $"c{i}");
        // The drain's own client: the same bricks, brick-1 decommissioned (as mgmtd's rebalance volfile says).
        var drainer = new DistributeTranslator(TranslatorOptions.From(DistributeTranslator.OptionSpecs, ("decommissioned-bricks", "brick-1")))
        {
            Name = "dht", TypeName = "cluster/distribute",
        };
        drainer.Attach([.. v.Bricks]);
        var p = await new Rebalancer(drainer).RunAsync(null, null, CancellationToken.None);
        Assert.That(p.State, Is.EqualTo(RebalanceProgress.Completed));
        Assert.That(p.Failures + p.Skipped, Is.Zero, string.Join("; ", p.Problems));
        Assert.That((await v.LayoutOnBricksAsync(d.Gfid)).RangeOf(1), Is.Null, "the decommissioned brick owns no names");
        await using var client = v.Remount();
        for (int i = 0; i < 90; i++)
        {
            Assert.That(await v.DataBricksAsync(d.Gfid, $"f{i}"), Does.Not.Contain(1), $"f{i} left brick 1");
            Assert.That(await client.ReadAsync((await client.LookupAsync(d.Gfid, $"f{i}")).Gfid), Is.EqualTo($"c{i}"));
        }
    }
}
