using Brickfs.ClientFuse.Host;
using Brickfs.Translators.Cluster.Distribute;
using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Storage;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Distribute;

/// <summary>
/// lookup-optimize (a miss on the hashed child of a complete directory is the answer), the
/// volume commit rebalance maintains for it, and children appended to a running distribute
/// (add-brick reaching a mounted client), over in-memory bricks.
/// </summary>
public sealed class LookupOptimizeTests
{
    private static readonly FopContext Root = DistributeVolume.Root;

    /// <summary>A name of the form prefix-N whose hash lands on a brick other than <paramref name="not"/> under the layout of <paramref name="dir"/>.</summary>
    private static async Task<(string Name, int Hashed)> NameNotOnAsync(DistributeVolume v, Gfid dir, int not, string prefix)
    {
        for (int i = 0; ; i++)
        {
            int h = await v.HashedBrickAsync(dir, $"{prefix}-{i}");
            if (h != not) return ($"{prefix}-{i}", h);
        }
    }

    /// <summary>Puts a data file straight on brick <paramref name="brick"/> (no link-to anywhere): a file off its hashed child.</summary>
    private static async Task<Gfid> StrayAsync(DistributeVolume v, int brick, Gfid dir, string name)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        Assert.That((await v.Bricks[brick].CreateAsync(Root, dir, name, 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
        await v.Bricks[brick].ReleaseAsync(Root, fd);
        return fd.Gfid;
    }

    [Test]
    public async Task AMissOnTheHashedChildOfACompleteDirectoryIsTheAnswerUntilRebalanceStartsAndAfterItEnds()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        Assert.That((await v.LayoutOnBricksAsync(d.Gfid)).Commit, Is.EqualTo(DistributeTranslator.InitialCommit), "a new directory carries the volume commit");
        var (name, _) = await NameNotOnAsync(v, d.Gfid, 0, "stray");
        var gfid = await StrayAsync(v, 0, d.Gfid, name);

        Assert.That((await v.Dht.LookupAsync(Root, d.Gfid, name)).Error, Is.EqualTo(Errno.ENOENT),
            "lookup-optimize: the hashed child alone answers for a complete directory");
        await using (var plain = await DistributeVolume.StartAsync(1, dhtOptions: "    option lookup-optimize off\n"))
            Assert.That(plain.Dht.CanReconfigure(["lookup-optimize"]), Is.Not.Null, "lookup-optimize is not a live option");

        Assert.That((await v.Dht.SetxattrAsync(Root, Gfid.Root, DistributeTranslator.CommitXattr, new byte[4], 0)).Error, Is.EqualTo(Errno.EPERM),
            "callers cannot set the volume commit");
        Assert.That((await v.Dht.ListxattrAsync(Root, Gfid.Root)).Value, Does.Not.Contain(DistributeTranslator.CommitXattr));

        // Rebalance start: a new volume commit that no layout carries; every miss asks everyone again.
        Assert.That((await v.Dht.SetVolumeCommitAsync(77)).Error, Is.EqualTo(Errno.None));
        await using var other = v.Remount();
        Assert.That((await other.LookupAsync(d.Gfid, name)).Gfid, Is.EqualTo(gfid), "a client reading the new volume commit looks everywhere");

        var progress = await new Rebalancer(other.Dht).RunAsync(null, null, CancellationToken.None);
        Assert.That(progress.State, Is.EqualTo(RebalanceProgress.Completed), string.Join("; ", progress.Problems));
        Assert.That(progress.Commit, Is.Not.EqualTo(77u).And.Not.EqualTo(0u), "the run set a volume commit of its own");
        Assert.That(progress.DirectoriesMarked, Is.EqualTo(2), "root and d were marked complete");
        Assert.That((await v.LayoutOnBricksAsync(d.Gfid)).Commit, Is.EqualTo(progress.Commit));
        Assert.That((await v.LayoutOnBricksAsync(Gfid.Root)).Commit, Is.EqualTo(progress.Commit));

        await using var after = v.Remount();
        Assert.That((await after.LookupAsync(d.Gfid, name)).Gfid, Is.EqualTo(gfid), "the stray is on its hashed brick now (migrated)");
        var (fresh, _) = await NameNotOnAsync(v, d.Gfid, 0, "later");
        await StrayAsync(v, 0, d.Gfid, fresh);
        Assert.That((await after.Dht.LookupAsync(Root, d.Gfid, fresh)).Error, Is.EqualTo(Errno.ENOENT), "the marked directory is trusted again");
    }

    [Test]
    public async Task CreateOpensAFileAlreadyOnTheHashedChildAndFollowsALinkto()
    {
        await using var v = await DistributeVolume.StartAsync(3, locks: true);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        var made = await v.CreateAsync(d.Gfid, "a", "first");
        // Renamed across children: b's hashed child holds a link-to, the data stays where it was.
        var (b, hashedB) = await NameNotOnAsync(v, d.Gfid, await v.HashedBrickAsync(d.Gfid, "a"), "b");
        Assert.That((await v.Dht.RenameAsync(Root, d.Gfid, "a", d.Gfid, b, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That((await v.OnBrickAsync(hashedB, d.Gfid, b))?.LinktoTarget, Is.Not.Null);

        await using var other = v.Remount();
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var opened = await other.Dht.CreateAsync(Root, d.Gfid, b, 0x1A4, fd);
        Assert.That(opened.Error, Is.EqualTo(Errno.None));
        Assert.That(opened.Value.Gfid, Is.EqualTo(made.Gfid), "create without O_EXCL opens the existing file behind the link-to");
        await other.Dht.ReleaseAsync(Root, fd);
        var excl = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        Assert.That((await other.Dht.CreateAsync(Root, d.Gfid, b, 0x1A4, excl)).Error, Is.EqualTo(Errno.EEXIST));
        Assert.That(await other.DataBricksAsync(d.Gfid, b), Has.Count.EqualTo(1), "no second file was made");
    }

    [Test]
    public async Task ChildrenAppendedToARunningDistributeTakeNewDirectoriesAndAfterFixLayoutNewFiles()
    {
        await using var v = await DistributeVolume.StartAsync(2);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        for (int i = 0; i < 40; i++) await v.CreateAsync(d.Gfid, $"old{i}", $"old {i}");

        var added = new MemoryStorageTranslator { Name = "brick-2", TypeName = "storage/memory" };
        Assert.That(v.Dht.CanChangeSubvolumes(["brick-0", "brick-1"], ["brick-0"]), Does.Contain("only appended"));
        Assert.That(v.Dht.CanChangeSubvolumes(["brick-0", "brick-1"], ["brick-1", "brick-0", "brick-2"]), Does.Contain("only appended"));
        Assert.That(v.Dht.CanChangeSubvolumes(["brick-0", "brick-1"], ["brick-0", "brick-1", "brick-2"]), Is.Null);
        await v.Dht.ChangeSubvolumesAsync([.. v.Dht.Children, added]);
        Assert.That(v.Dht.Children, Has.Count.EqualTo(3));

        for (int i = 0; i < 40; i++) Assert.That(await v.Dht.LookupAsync(Root, d.Gfid, $"old{i}"), Has.Property("Ok").True, $"old{i} after the add");
        var e = await v.Dht.MkdirAsync(Root, Gfid.Root, "e", 0x1ED, Gfid.NewRandom());
        Assert.That(e.Error, Is.EqualTo(Errno.None));
        Assert.That((await added.StatAsync(Root, e.Value.Gfid, null)).Value.IsDirectory, Is.True, "mkdir makes the directory on the added child");
        int onAdded = 0;
        for (int i = 0; i < 60; i++)
        {
            var f = await v.CreateAsync(e.Value.Gfid, $"n{i}");
            if ((await added.StatAsync(Root, f.Gfid, null)).Ok) onAdded++;
        }
        Assert.That(onAdded, Is.GreaterThan(5), "a directory made after the add spreads over the added child");

        // fix-layout (after the lookup heals d onto the added child): new names of d go there too.
        await v.LookupAsync(Gfid.Root, "d");
        Assert.That((await v.Dht.FixLayoutAsync(d.Gfid)).Error, Is.EqualTo(Errno.None));
        onAdded = 0;
        for (int i = 0; i < 60; i++)
        {
            var f = await v.CreateAsync(d.Gfid, $"new{i}");
            if ((await added.StatAsync(Root, f.Gfid, null)).Ok) onAdded++;
        }
        Assert.That(onAdded, Is.GreaterThan(5));
        var listed = (await v.ListAsync(d.Gfid)).Select(x => x.Name).Where(n => n is not "." and not "..").ToList();
        Assert.That(listed, Is.Unique);
        Assert.That(listed, Has.Count.EqualTo(100));
    }

    private static string Volfile(int bricks, string decommissioned = "")
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < bricks; i++) sb.AppendLine($"volume brick-{i}\n    type storage/memory\nend-volume");
        string option = decommissioned.Length > 0 ? $"    option decommissioned-bricks {decommissioned}\n" : "";
        sb.AppendLine($"volume dht\n    type cluster/distribute\n{option}    subvolumes {string.Join(' ', Enumerable.Range(0, bricks).Select(i => $"brick-{i}"))}\nend-volume");
        return sb.ToString();
    }

    [Test]
    public async Task AGrownVolfileAppendsTheNewSubvolumeToTheRunningGraphAndARemovalIsRefused()
    {
        string two = Volfile(2), three = Volfile(3);
        await using var graph = GraphBuilder.BuildText(two);
        await graph.InitAsync(CancellationToken.None);
        var dht = graph.Find<DistributeTranslator>();
        var kept = dht.Children.ToList();

        Assert.That(VolfileWatcher.TryReconfigure(graph, two, three, out _), Does.StartWith("the graph changed shape"), "the options-only form refuses");
        var grown = await VolfileWatcher.TryReconfigureAsync(graph.All, two, three);
        Assert.That(grown.Reason, Is.Null);
        Assert.That(grown.Applied, Does.Contain("dht.subvolumes=brick-0,brick-1,brick-2"));
        Assert.That(grown.Added, Has.Count.EqualTo(1));
        Assert.That(dht.Children.Select(c => c.Name), Is.EqualTo(new[] { "brick-0", "brick-1", "brick-2" }));
        Assert.That(dht.Children.Take(2), Is.EqualTo(kept), "the running children are kept, not rebuilt");
        Assert.That((await dht.MkdirAsync(Root, Gfid.Root, "x", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.None), "the added child was started");

        var running = graph.All.Concat(grown.Added.SelectMany(g => g.All)).ToList();
        var drained = await VolfileWatcher.TryReconfigureAsync(running, three, Volfile(3, "brick-2"));
        Assert.That(drained.Reason, Is.Null, "remove-brick start reaches the client live");
        Assert.That(drained.Applied, Does.Contain("dht.decommissioned-bricks=brick-2"));
        var removed = await VolfileWatcher.TryReconfigureAsync(running, Volfile(3, "brick-2"), two);
        Assert.That(removed.Reason, Does.Contain("only appended"));
        Assert.That(dht.Children, Has.Count.EqualTo(3), "nothing changed");
        foreach (var g in grown.Added) await g.DisposeAsync();
    }

    [Test]
    public async Task EachSubtreeBuiltForANewSubvolumeIsHandedOverStartedAndBeforeItIsAttached()
    {
        // The mount hooks the new subtree's lock-loss notices here: nothing may go through it first.
        string two = Volfile(2), three = Volfile(3);
        await using var graph = GraphBuilder.BuildText(two);
        await graph.InitAsync(CancellationToken.None);
        var dht = graph.Find<DistributeTranslator>();
        var seen = new List<(string Top, int ChildrenThen, Errno Probe)>();
        var grown = await VolfileWatcher.TryReconfigureAsync(graph.All, two, three, started: g =>
        {
            var probe = g.Top.StatAsync(Root, Gfid.Root, null).AsTask().GetAwaiter().GetResult().Error;
            seen.Add((g.Top.Name, dht.Children.Count, probe));
        });
        Assert.That(grown.Reason, Is.Null);
        Assert.That(seen, Is.EqualTo(new[] { ("brick-2", 2, Errno.None) }), "once, started (answers a stat), not yet a child of dht");
        Assert.That(dht.Children, Has.Count.EqualTo(3));
        foreach (var g in grown.Added) await g.DisposeAsync();
    }

    /// <summary>Counts the fops that pass it, per fop.</summary>
    private sealed class Counting : FopHookTranslator
    {
        public readonly ConcurrentDictionary<Fop, int> Calls = new();

        protected override ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx)
        {
            Calls.AddOrUpdate(fop, 1, (_, n) => n + 1);
            return ValueTask.FromResult(Errno.None);
        }
    }

    /// <summary>
    /// The requests a new small file costs, as the kernel asks for it (LOOKUP that misses, CREATE,
    /// WRITE, FLUSH, RELEASE), with and without lookup-optimize: the figure behind the scaling
    /// benchmark (every request is a round trip and CPU on client and brick).
    /// </summary>
    [TestCase(true, 1, 2)]
    [TestCase(false, 3, 5)]
    public async Task ANewFileCostsOneLookupRequestWhereTheHashedChildIsTrusted(bool optimize, int lookupRequests, int createRequests)
    {
        var counters = Enumerable.Range(0, 3).Select(i => new Counting { Name = $"count-{i}", TypeName = "debug/count" }).ToList();
        for (int i = 0; i < 3; i++)
        {
            var brick = new Brickfs.Translators.Features.LocksTranslator { Name = $"locks-{i}", TypeName = "features/locks" };
            brick.Attach(new MemoryStorageTranslator { Name = $"mem-{i}", TypeName = "storage/memory" });
            counters[i].Attach(brick);
        }
        var dht = new DistributeTranslator(TranslatorOptions.From(DistributeTranslator.OptionSpecs, ("lookup-optimize", optimize ? "on" : "off"),
            ("dir-stat-cache", "3600"))) // copies kept for the whole test, however slowly it runs
        {
            Name = "dht", TypeName = "cluster/distribute",
        };
        dht.Attach([.. counters]);
        var d = await dht.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom());
        Assert.That(d.Error, Is.EqualTo(Errno.None));
        await dht.LookupAsync(Root, d.Value.Gfid, "warm-up"); // layouts and sizes cached, as in a busy directory
        await dht.StatAsync(Root, d.Value.Gfid, null); // and the directory's copies, as the stats after earlier creates keep them

        int Total() => counters.Sum(c => c.Calls.Values.Sum());
        int Of(Fop f) => counters.Sum(c => c.Calls.GetValueOrDefault(f));
        foreach (var c in counters) c.Calls.Clear();
        Assert.That((await dht.LookupAsync(Root, d.Value.Gfid, "new-file")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That(Total(), Is.EqualTo(lookupRequests), "the kernel's LOOKUP of a new name");
        foreach (var c in counters) c.Calls.Clear();
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await dht.CreateAsync(Root, d.Value.Gfid, "new-file", 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
        Assert.That(Total(), Is.EqualTo(createRequests), $"CREATE: lookups {Of(Fop.Lookup)}, inodelk {Of(Fop.Inodelk)}, create {Of(Fop.Create)}");
        foreach (var c in counters) c.Calls.Clear();
        Assert.That((await dht.StatAsync(Root, d.Value.Gfid, null)).Error, Is.EqualTo(Errno.None));
        Assert.That(Total(), Is.EqualTo(1), "the parent's GETATTR after the entry change: only the child that holds the new entry");
        foreach (var c in counters) c.Calls.Clear();
        await dht.WriteAsync(Root, fd, 0, new byte[4096]);
        await dht.FlushAsync(Root, fd);
        await dht.ReleaseAsync(Root, fd);
        Assert.That(Total(), Is.EqualTo(4), $"WRITE, FLUSH, RELEASE and the guard's unlock: inodelk {Of(Fop.Inodelk)}");
        TestContext.Out.WriteLine($"lookup-optimize {(optimize ? "on" : "off")}: LOOKUP {lookupRequests}, CREATE {createRequests}, GETATTR of the parent 1, WRITE+FLUSH+RELEASE {Total()} requests");
    }

    /// <summary>
    /// The requests a stat of an existing file costs in a complete directory (the kernel's LOOKUP
    /// after its caches were dropped) and a stat of the file and of its directory after that.
    /// </summary>
    [Test]
    public async Task AnExistingFileCostsOneLookupRequestAndItsStatsOneEach()
    {
        var counters = Enumerable.Range(0, 3).Select(i => new Counting { Name = $"count-{i}", TypeName = "debug/count" }).ToList();
        for (int i = 0; i < 3; i++) counters[i].Attach(new MemoryStorageTranslator { Name = $"mem-{i}", TypeName = "storage/memory" });
        // Copies kept for an hour: the count below does not depend on how fast the test runs.
        var dht = new DistributeTranslator(TranslatorOptions.From(DistributeTranslator.OptionSpecs, ("dir-stat-cache", "3600")))
        {
            Name = "dht", TypeName = "cluster/distribute",
        };
        dht.Attach([.. counters]);
        var d = (await dht.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Value;
        var files = new List<Gfid>();
        for (int i = 0; i < 12; i++)
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
            Assert.That((await dht.CreateAsync(Root, d.Gfid, $"f{i}", 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
            await dht.ReleaseAsync(Root, fd);
            files.Add(fd.Gfid);
        }
        int Total() => counters.Sum(c => c.Calls.Values.Sum());
        for (int i = 0; i < files.Count; i++)
        {
            foreach (var c in counters) c.Calls.Clear();
            var l = await dht.LookupAsync(Root, d.Gfid, $"f{i}");
            Assert.That(l.Error, Is.EqualTo(Errno.None));
            Assert.That(l.Value.Gfid, Is.EqualTo(files[i]));
            Assert.That(Total(), Is.EqualTo(1), $"lookup of f{i}: the hashed child alone");
            foreach (var c in counters) c.Calls.Clear();
            Assert.That((await dht.StatAsync(Root, files[i], null)).Error, Is.EqualTo(Errno.None));
            Assert.That(Total(), Is.EqualTo(1), $"stat of f{i}: its data child alone");
        }
        foreach (var c in counters) c.Calls.Clear();
        Assert.That((await dht.StatAsync(Root, d.Gfid, null)).Error, Is.EqualTo(Errno.None));
        Assert.That(Total(), Is.EqualTo(3), "the directory's first stat: every copy");
        foreach (var c in counters) c.Calls.Clear();
        Assert.That((await dht.StatAsync(Root, d.Gfid, null)).Error, Is.EqualTo(Errno.None));
        Assert.That(Total(), Is.EqualTo(1), "unchanged since: the first child's copy alone is read again");
    }

    /// <summary>The merged times of a directory's copies as the bricks hold them now.</summary>
    private static async Task<(Timespec Mtime, Timespec Ctime)> NewestOnBricksAsync(DistributeVolume v, Gfid dir)
    {
        var copies = new List<Iatt>();
        foreach (var b in v.Bricks) copies.Add((await b.StatAsync(Root, dir, null)).Value);
        var m = copies.Max(c => (c.Mtime.Sec, c.Mtime.Nsec));
        var t = copies.Max(c => (c.Ctime.Sec, c.Ctime.Nsec));
        return (new Timespec(m.Sec, m.Nsec), new Timespec(t.Sec, t.Nsec));
    }

    [Test]
    public async Task ADirectoryStatShowsThisClientsEntryChangesAtOnceOnWhicheverChildTheyLand()
    {
        await using var v = await DistributeVolume.StartAsync(3, dhtOptions: "    option dir-stat-cache 3600\n");
        var d = await v.MkdirAsync(Gfid.Root, "d");
        var seen = new HashSet<int>();
        for (int i = 0; seen.Count < 3 || i < 6; i++)
        {
            Assert.That((await v.Dht.StatAsync(Root, d.Gfid, null)).Error, Is.EqualTo(Errno.None), "copies kept");
            await Task.Delay(2); // a tick of the clock between changes, so each one moves the times
            var f = await v.CreateAsync(d.Gfid, $"f{i}");
            seen.Add((await v.DataBricksAsync(d.Gfid, $"f{i}")).Single());
            var s = (await v.Dht.StatAsync(Root, d.Gfid, null)).Value;
            Assert.That((s.Mtime, s.Ctime), Is.EqualTo(await NewestOnBricksAsync(v, d.Gfid)), $"after creating f{i}");
            if (i % 2 == 1)
            {
                await Task.Delay(2);
                Assert.That((await v.Dht.UnlinkAsync(Root, d.Gfid, $"f{i}")).Error, Is.EqualTo(Errno.None));
                s = (await v.Dht.StatAsync(Root, d.Gfid, null)).Value;
                Assert.That((s.Mtime, s.Ctime), Is.EqualTo(await NewestOnBricksAsync(v, d.Gfid)), $"after unlinking f{i}");
            }
        }
        await Task.Delay(2);
        Assert.That((await v.Dht.SetattrAsync(Root, d.Gfid, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = 0x1C0 })).Error, Is.EqualTo(Errno.None));
        var after = (await v.Dht.StatAsync(Root, d.Gfid, null)).Value;
        Assert.That(after.Mode & ModeBits.PermMask, Is.EqualTo(0x1C0u), "chmod through this client");
        Assert.That((after.Mtime, after.Ctime), Is.EqualTo(await NewestOnBricksAsync(v, d.Gfid)));
    }

    [TestCase("0")]
    [TestCase("1")]
    public async Task AnotherClientsEntryOnAnotherChildShowsInTheDirectoryStatWithinDirStatCache(string seconds)
    {
        await using var v = await DistributeVolume.StartAsync(3, dhtOptions: $"    option dir-stat-cache {seconds}\n");
        var d = await v.MkdirAsync(Gfid.Root, "d");
        await using var other = v.Remount();
        for (int i = 0; i < 6; i++)
        {
            Assert.That((await v.Dht.StatAsync(Root, d.Gfid, null)).Error, Is.EqualTo(Errno.None), "copies kept by the first client");
            await Task.Delay(2);
            await other.CreateAsync(d.Gfid, $"f{i}");
            var newest = await NewestOnBricksAsync(v, d.Gfid);
            async Task<bool> Shows() => ((await v.Dht.StatAsync(Root, d.Gfid, null)).Value is var s) && (s.Mtime, s.Ctime) == newest;
            if (seconds == "0") Assert.That(await Shows(), Is.True, $"f{i}: every child asked every time");
            else await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), Shows, $"f{i} made by another client shows in the directory's times");
        }
    }
}
