using System.Text;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Distribute;

public class DistributeTests
{
    private static readonly FopContext Root = DistributeVolume.Root;

    /// <summary>The first name with <paramref name="prefix"/> that hashes to <paramref name="brick"/> under <paramref name="layout"/>.</summary>
    private static string NameOn(DirLayout layout, int brick, string prefix)
    {
        for (int i = 0; ; i++)
        {
            string n = $"{prefix}-{i}";
            if (layout.ChildFor(n) == brick) return n;
        }
    }

    [Test]
    public async Task FilesSpreadOverChildrenEachOnlyOnItsHashedChild()
    {
        await using var v = await DistributeVolume.StartAsync(4);
        var dir = await v.MkdirAsync(Gfid.Root, "spread");
        var perBrick = new int[4];
        for (int i = 0; i < 1000; i++) await v.CreateAsync(dir.Gfid, $"file-{i}");
        for (int i = 0; i < 1000; i++)
        {
            string name = $"file-{i}";
            var holders = await v.DataBricksAsync(dir.Gfid, name);
            int hashed = await v.HashedBrickAsync(dir.Gfid, name);
            Assert.That(holders, Is.EqualTo(new[] { hashed }), $"{name} exists exactly on its hashed brick");
            perBrick[hashed]++;
        }
        Assert.That(perBrick, Has.All.GreaterThan(150), $"every brick gets a share: {string.Join(",", perBrick)}");
    }

    [Test]
    public void NameHashSpreadsUniformlyOverFourChildren()
    {
        var layout = DirLayout.Even(4, [0, 1, 2, 3], 1);
        var counts = new int[4];
        for (int i = 0; i < 100_000; i++) counts[layout.ChildFor($"name-{i}.dat")]++;
        foreach (int c in counts) Assert.That(Math.Abs(c - 25_000) / 25_000.0, Is.LessThan(0.05), string.Join(",", counts));
    }

    [Test]
    public async Task DirectoriesExistOnEveryChildWithComplementaryLayouts()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var a = await v.MkdirAsync(Gfid.Root, "a");
        var b = await v.MkdirAsync(a.Gfid, "b");
        foreach (var (parent, name, gfid) in new[] { (Gfid.Root, "a", a.Gfid), (a.Gfid, "b", b.Gfid) })
        {
            for (int i = 0; i < 3; i++)
            {
                var on = await v.OnBrickAsync(i, parent, name);
                Assert.That(on?.Attr.IsDirectory, Is.True, $"{name} on brick {i}");
                Assert.That(on!.Value.Attr.Gfid, Is.EqualTo(gfid), "the same GFID on every brick");
            }
            var layout = await v.LayoutOnBricksAsync(gfid);
            Assert.That(layout.IsComplete, Is.True, layout.ToString());
            var lengths = Enumerable.Range(0, 3).Select(i => layout.RangeOf(i)!.Value.Length).ToList();
            Assert.That(lengths.Max() - lengths.Min(), Is.LessThanOrEqualTo(1UL), "an even split");
        }
        Assert.That((await v.LayoutOnBricksAsync(Gfid.Root)).IsComplete, Is.True, "the root gets a layout on first use");
    }

    [Test]
    public async Task ReaddirListsEveryNameOnceAndResumesFromAnyCookie()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var dir = await v.MkdirAsync(Gfid.Root, "d");
        var names = new List<string>();
        for (int i = 0; i < 150; i++)
        {
            names.Add($"f{i:D3}");
            await v.CreateAsync(dir.Gfid, names[^1]);
        }
        for (int i = 0; i < 8; i++)
        {
            names.Add($"sub{i}");
            await v.MkdirAsync(dir.Gfid, names[^1]);
        }
        // Renames leave link-to files on other bricks; they must not show.
        for (int i = 0; i < 30; i++)
        {
            Assert.That((await v.Dht.RenameAsync(Root, dir.Gfid, $"f{i:D3}", dir.Gfid, $"moved{i}", RenameFlags.None)).Error, Is.EqualTo(Errno.None));
            names[i] = $"moved{i}";
        }
        var all = await v.ListAsync(dir.Gfid, sizeHint: 200);
        Assert.That(all.Take(2).Select(e => e.Name), Is.EqualTo(new[] { ".", ".." }));
        Assert.That(all.Skip(2).Select(e => e.Name).Order(StringComparer.Ordinal), Is.EqualTo(names.Order(StringComparer.Ordinal)),
            "every name exactly once, no link-to files");
        Assert.That(all.Select(e => e.NextOffset).Distinct().Count(), Is.EqualTo(all.Count), "cookies are unique");

        var fd = new FileHandle(dir.Gfid, OpenFlags.ReadOnly, isDirectory: true);
        Assert.That((await v.Dht.OpendirAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        foreach (int k in new[] { 0, 1, 5, 40, 77, 120, all.Count - 2 })
        {
            var rest = new List<string>();
            long cookie = all[k].NextOffset;
            while ((await v.Dht.ReaddirAsync(Root, fd, cookie, 300)).Value is { Count: > 0 } batch)
            {
                rest.AddRange(batch.Select(e => e.Name));
                cookie = batch[^1].NextOffset;
            }
            Assert.That(rest, Is.EqualTo(all.Skip(k + 1).Select(e => e.Name)), $"resuming after entry {k}");
        }
        var plus = await v.ListAsync(dir.Gfid, sizeHint: 1000, plus: true);
        Assert.That(plus.Skip(2).All(e => e.Attr is not null && e.Attr.Gfid == e.Gfid && e.Attr.Xattrs is null), Is.True);
        await v.Dht.ReleasedirAsync(Root, fd);
    }

    [Test]
    public async Task ChildCookiesTooLargeToPackAreMappedPerOpenDirectory()
    {
        var bricks = Enumerable.Range(0, 2).Select(i => new BigCookieTranslator(new MemoryStorageTranslator()) { Name = $"big-{i}" }).ToArray();
        var dht = new DistributeTranslator { Name = "dht", TypeName = "cluster/distribute" };
        dht.Attach(bricks);
        var names = new List<string>();
        for (int i = 0; i < 40; i++)
        {
            names.Add($"n{i}");
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
            Assert.That((await dht.CreateAsync(Root, Gfid.Root, names[^1], 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
        }
        var dir = new FileHandle(Gfid.Root, OpenFlags.ReadOnly, isDirectory: true);
        Assert.That((await dht.OpendirAsync(Root, dir)).Error, Is.EqualTo(Errno.None));
        var seen = new List<DirEntry>();
        long cookie = 0;
        while ((await dht.ReaddirAsync(Root, dir, cookie, 100)).Value is { Count: > 0 } batch)
        {
            seen.AddRange(batch);
            cookie = batch[^1].NextOffset;
        }
        Assert.That(seen.Skip(2).Select(e => e.Name).Order(StringComparer.Ordinal), Is.EqualTo(names.Order(StringComparer.Ordinal)));
        Assert.That(seen.All(e => e.NextOffset > 0), Is.True, "offsets stay positive");
        var tail = (await dht.ReaddirAsync(Root, dir, seen[20].NextOffset, 1 << 20)).Value;
        Assert.That(tail.Select(e => e.Name), Is.EqualTo(seen.Skip(21).Select(e => e.Name)));
    }

    [Test]
    public async Task RenameWithinAndAcrossChildrenKeepsContentAndGfid()
    {
        await using var v = await DistributeVolume.StartAsync(3, errorGen: true);
        var dir = await v.MkdirAsync(Gfid.Root, "r");
        var layout = await v.LayoutOnBricksAsync(dir.Gfid);
        string src = NameOn(layout, 0, "src"), same = NameOn(layout, 0, "same"), across = NameOn(layout, 2, "across");
        var f = await v.CreateAsync(dir.Gfid, src, "payload");

        Assert.That((await v.Dht.RenameAsync(Root, dir.Gfid, src, dir.Gfid, same, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That(await v.DataBricksAsync(dir.Gfid, same), Is.EqualTo(new[] { 0 }));
        Assert.That((await v.Dht.LookupAsync(Root, dir.Gfid, src)).Error, Is.EqualTo(Errno.ENOENT));

        Assert.That((await v.Dht.RenameAsync(Root, dir.Gfid, same, dir.Gfid, across, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That((await v.Dht.LookupAsync(Root, dir.Gfid, same)).Error, Is.EqualTo(Errno.ENOENT), "the old name is gone");
        Assert.That(await v.DataBricksAsync(dir.Gfid, across), Is.EqualTo(new[] { 0 }), "the data stays where it was");
        var pointer = await v.OnBrickAsync(2, dir.Gfid, across);
        Assert.That(pointer?.LinktoTarget, Is.EqualTo("gen-0"), "a link-to on the new hashed brick names the data brick");
        Assert.That(pointer!.Value.Attr.Gfid, Is.EqualTo(f.Gfid));
        Assert.That(pointer.Value.Attr.Mode & ModeBits.PermMask, Is.EqualTo(ModeBits.Sticky), "---------T");

        // Another client finds it through the link-to alone: lookups on brick 1 fail.
        await using var other = v.Remount();
        var bystander = (ErrorGenTranslator)v.Bricks[1];
        bystander.Active = true;
        var found = await other.LookupAsync(dir.Gfid, across);
        Assert.That(bystander.Injected, Is.Zero, "brick 1 was never asked");
        Assert.That(found.Gfid, Is.EqualTo(f.Gfid));
        Assert.That(found.IsRegular && found.Mode != (ModeBits.Regular | ModeBits.Sticky), Is.True, "the data file's attributes, not the pointer's");
        bystander.Active = false;
        Assert.That(await other.ReadAsync(f.Gfid), Is.EqualTo("payload"));
    }

    [Test]
    public async Task RenameOverAnExistingFileOnAnotherChildRemovesTheOldTarget()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var dir = await v.MkdirAsync(Gfid.Root, "r");
        var layout = await v.LayoutOnBricksAsync(dir.Gfid);
        string a = NameOn(layout, 0, "a"), b = NameOn(layout, 1, "b");
        var fa = await v.CreateAsync(dir.Gfid, a, "from a");
        var fb = await v.CreateAsync(dir.Gfid, b, "old b");
        Assert.That((await v.Dht.RenameAsync(Root, dir.Gfid, a, dir.Gfid, b, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        var now = await v.LookupAsync(dir.Gfid, b);
        Assert.That(now.Gfid, Is.EqualTo(fa.Gfid));
        Assert.That(await v.ReadAsync(fa.Gfid), Is.EqualTo("from a"));
        Assert.That(await v.DataBricksAsync(dir.Gfid, b), Is.EqualTo(new[] { 0 }), "the old target's data on brick 1 is gone");
        Assert.That((await v.OnBrickAsync(1, dir.Gfid, b))?.LinktoTarget, Is.EqualTo("brick-0"));
        Assert.That((await v.Dht.StatAsync(Root, fb.Gfid, null)).Error, Is.EqualTo(Errno.ESTALE));
        Assert.That((await v.Dht.LookupAsync(Root, dir.Gfid, a)).Error, Is.EqualTo(Errno.ENOENT));
        var listed = (await v.ListAsync(dir.Gfid)).Skip(2).Select(e => e.Name).ToList();
        Assert.That(listed, Is.EqualTo(new[] { b }));
    }

    [Test]
    public async Task HardLinksAcrossChildren()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var d1 = await v.MkdirAsync(Gfid.Root, "d1");
        var d2 = await v.MkdirAsync(Gfid.Root, "d2");
        var l1 = await v.LayoutOnBricksAsync(d1.Gfid);
        var l2 = await v.LayoutOnBricksAsync(d2.Gfid);
        string orig = NameOn(l1, 0, "orig"), link = NameOn(l2, 2, "link");
        var f = await v.CreateAsync(d1.Gfid, orig, "shared");
        var r = await v.Dht.LinkAsync(Root, f.Gfid, d2.Gfid, link);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value.Nlink, Is.EqualTo(2u));
        Assert.That(await v.DataBricksAsync(d2.Gfid, link), Is.EqualTo(new[] { 0 }), "the link is made where the data is");
        Assert.That((await v.OnBrickAsync(2, d2.Gfid, link))?.LinktoTarget, Is.EqualTo("brick-0"));
        Assert.That((await v.LookupAsync(d2.Gfid, link)).Gfid, Is.EqualTo(f.Gfid));
        Assert.That((await v.Dht.LinkAsync(Root, f.Gfid, d2.Gfid, link)).Error, Is.EqualTo(Errno.EEXIST));
        Assert.That((await v.Dht.UnlinkAsync(Root, d1.Gfid, orig)).Error, Is.EqualTo(Errno.None));
        var after = await v.LookupAsync(d2.Gfid, link);
        Assert.That(after.Nlink, Is.EqualTo(1u));
        Assert.That(await v.ReadAsync(f.Gfid), Is.EqualTo("shared"));
        Assert.That((await v.Dht.UnlinkAsync(Root, d2.Gfid, link)).Error, Is.EqualTo(Errno.None));
        Assert.That(await v.OnBrickAsync(2, d2.Gfid, link), Is.Null, "unlink removes the link-to too");
        Assert.That((await v.Dht.StatAsync(Root, f.Gfid, null)).Error, Is.EqualTo(Errno.ESTALE));
    }

    [Test]
    public async Task RmdirFailsOnRealEntriesAndIgnoresStaleLinktos()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        await v.CreateAsync(d.Gfid, "file");
        Assert.That((await v.Dht.RmdirAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.ENOTEMPTY));
        Assert.That((await v.Dht.UnlinkAsync(Root, d.Gfid, "file")).Error, Is.EqualTo(Errno.None));

        // A link-to whose file is gone, as a crash between unlink steps leaves it.
        var stale = Gfid.NewRandom();
        Assert.That((await v.Bricks[1].MknodAsync(Root, d.Gfid, "ghost", ModeBits.Regular | ModeBits.Sticky, 0, stale)).Error, Is.EqualTo(Errno.None));
        Assert.That((await v.Bricks[1].SetxattrAsync(Root, stale, DistributeTranslator.LinktoXattr, "brick-2"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        Assert.That((await v.ListAsync(d.Gfid)).Count, Is.EqualTo(2), "only the dots are listed");
        Assert.That((await v.Dht.RmdirAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.None));
        for (int i = 0; i < 3; i++) Assert.That(await v.OnBrickAsync(i, Gfid.Root, "d"), Is.Null, $"removed on brick {i}");
        Assert.That((await v.Dht.LookupAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.ENOENT));
    }

    [Test]
    public async Task StaleLinktoIsRemovedByLookupAndTheNameIsFree()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var layout = await LayoutOfRootAsync(v);
        string name = NameOn(layout, 1, "ghost");
        var stale = Gfid.NewRandom();
        await v.Bricks[1].MknodAsync(Root, Gfid.Root, name, ModeBits.Regular | ModeBits.Sticky, 0, stale);
        await v.Bricks[1].SetxattrAsync(Root, stale, DistributeTranslator.LinktoXattr, "brick-0"u8.ToArray(), 0);
        Assert.That((await v.Dht.LookupAsync(Root, Gfid.Root, name)).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That(await v.OnBrickAsync(1, Gfid.Root, name), Is.Null, "the dangling link-to is cleaned");
        var f = await v.CreateAsync(Gfid.Root, name, "new");
        Assert.That(await v.ReadAsync(f.Gfid), Is.EqualTo("new"));
    }

    [Test]
    public async Task StatfsSumsTheChildren()
    {
        await using var v = await DistributeVolume.StartAsync(3, capacities: ["1GB", "2GB", "3GB"]);
        var r = await v.Dht.StatfsAsync(Root, Gfid.Root);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value.Blocks * r.Value.FragmentSize, Is.EqualTo((1UL + 2 + 3) << 30), "capacities 1, 2 and 3 GB");
        Assert.That(r.Value.Files, Is.EqualTo(3_000_000UL));
        Assert.That(r.Value.BlocksFree, Is.LessThanOrEqualTo(r.Value.Blocks));
    }

    [Test]
    public async Task LookupRecreatesAMissingDirectoryAndLayout()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        await v.CreateAsync(d.Gfid, "inside", "x");
        // Brick 1 loses the directory (it was empty there, or the brick was replaced); brick 2 its layout.
        foreach (var e in await ListBrickAsync(v.Bricks[1], d.Gfid)) await v.Bricks[1].UnlinkAsync(Root, d.Gfid, e);
        Assert.That((await v.Bricks[1].RmdirAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.None));
        Assert.That((await v.Bricks[2].RemovexattrAsync(Root, d.Gfid, DistributeTranslator.LayoutXattr)).Error, Is.EqualTo(Errno.None));

        await using var other = v.Remount();
        var healed = await other.LookupAsync(Gfid.Root, "d");
        Assert.That(healed.Gfid, Is.EqualTo(d.Gfid));
        var onBrick = await v.OnBrickAsync(1, Gfid.Root, "d");
        Assert.That(onBrick?.Attr.Gfid, Is.EqualTo(d.Gfid), "recreated with the same GFID");
        Assert.That(onBrick!.Value.Attr.Mode & ModeBits.PermMask, Is.EqualTo(d.Mode & ModeBits.PermMask));
        var layout = await v.LayoutOnBricksAsync(d.Gfid);
        Assert.That(layout.IsComplete, Is.True, layout.ToString());
        Assert.That((await v.Bricks[2].GetxattrAsync(Root, d.Gfid, DistributeTranslator.LayoutXattr)).Ok, Is.True, "brick 2 has a layout again");
        Assert.That((await other.LookupAsync(d.Gfid, "inside")).IsRegular, Is.True);
        for (int i = 0; i < 20; i++) await other.CreateAsync(d.Gfid, $"more-{i}");
        Assert.That((await other.ListAsync(d.Gfid)).Count, Is.EqualTo(2 + 21));
    }

    [Test]
    public async Task OverlappingLayoutIsDetectedAndRepaired()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        var whole = DirLayout.EncodeEntry(1, new DirLayout.Range(0, uint.MaxValue));
        await v.Bricks[0].SetxattrAsync(Root, d.Gfid, DistributeTranslator.LayoutXattr, whole, 0);
        Assert.That((await v.LayoutOnBricksAsync(d.Gfid)).IsComplete, Is.False);
        await using var other = v.Remount();
        await other.LookupAsync(Gfid.Root, "d");
        var layout = await v.LayoutOnBricksAsync(d.Gfid);
        Assert.That(layout.IsComplete, Is.True, layout.ToString());
        Assert.That(layout.Commit, Is.GreaterThan(1u), "a repaired layout has a newer commit");
    }

    [Test]
    public async Task AfterAddingAChildLookupsStillFindEverything()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var (dirs, files) = await PopulateAsync(v);
        var grown = v.Grow(1);
        foreach (var (parent, name, gfid) in dirs.Concat(files))
            Assert.That((await grown.LookupAsync(parent, name)).Gfid, Is.EqualTo(gfid), name);
        Assert.That((await grown.LayoutOnBricksAsync(Gfid.Root)).RangeOf(3), Is.Null, "the new brick owns no names before fix-layout");
        Assert.That((await grown.OnBrickAsync(3, Gfid.Root, "sub"))?.Attr.IsDirectory, Is.True, "lookup created the directory on the new brick");
        await grown.CreateAsync(Gfid.Root, "after-grow", "new");
        Assert.That((await grown.ListAsync(Gfid.Root)).Count, Is.EqualTo(2 + 1 + 100 + 1));
    }

    [Test]
    public async Task FixLayoutAndMigrationMoveFilesToTheirNewHashedChild()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var (dirs, files) = await PopulateAsync(v);
        var grown = v.Grow(1);
        // The crawl a rebalance does: look up each directory (heals it onto the new brick), fix its layout, migrate its files.
        Assert.That((await grown.Dht.FixLayoutAsync(dirs[0].Gfid)).Error, Is.EqualTo(Errno.ESTALE), "not yet on the new brick: look it up first");
        foreach (var (parent, name, _) in dirs) await grown.LookupAsync(parent, name);
        foreach (var dir in new[] { Gfid.Root }.Concat(dirs.Select(d => d.Gfid)))
        {
            var fixedLayout = await grown.Dht.FixLayoutAsync(dir);
            Assert.That(fixedLayout.Error, Is.EqualTo(Errno.None));
            Assert.That(fixedLayout.Value.RangeOf(3), Is.Not.Null, "the new brick gets a range");
        }
        int moved = 0;
        foreach (var (parent, name, _) in files)
        {
            var r = await grown.Dht.MigrateFileAsync(parent, name);
            Assert.That(r.Error, Is.EqualTo(Errno.None), name);
            if (r.Value.Outcome == MigrationOutcome.Moved) moved++;
        }
        Assert.That(moved, Is.InRange(files.Count / 8, files.Count / 2), "about the new brick's share moves (a quarter)");
        int onNew = 0;
        foreach (var (parent, name, gfid) in files)
        {
            int hashed = await grown.HashedBrickAsync(parent, name);
            Assert.That(await grown.DataBricksAsync(parent, name), Is.EqualTo(new[] { hashed }), $"{name} only on its hashed brick");
            if (hashed == 3) onNew++;
            var attr = await grown.LookupAsync(parent, name);
            Assert.That(attr.Gfid, Is.EqualTo(gfid), "the GFID survives migration");
            Assert.That(attr.Mode & ModeBits.PermMask, Is.EqualTo(0x1A4u));
            Assert.That(await grown.ReadAsync(gfid), Is.EqualTo($"content of {name}"));
            Assert.That((await grown.Dht.GetxattrAsync(Root, gfid, "user.tag")).Value, Is.EqualTo(Encoding.UTF8.GetBytes(name)), "user xattrs move along");
        }
        Assert.That(onNew, Is.GreaterThan(0));
        var listed = (await grown.ListAsync(Gfid.Root)).Skip(2).Select(e => e.Name).ToList();
        Assert.That(listed, Is.Unique);
        Assert.That(listed.Count, Is.EqualTo(1 + 100));
        await using var fresh = grown.Remount();
        foreach (var (parent, name, gfid) in files) Assert.That((await fresh.LookupAsync(parent, name)).Gfid, Is.EqualTo(gfid));
        Assert.That((await grown.Dht.MigrateFileAsync(files[0].Parent, files[0].Name)).Value.Outcome, Is.EqualTo(MigrationOutcome.AlreadyHashed));
    }

    [Test]
    public async Task MigrationLeavesOpenForWriteAndHardLinkedFilesAlone()
    {
        await using var v = await DistributeVolume.StartAsync(2);
        var d = await v.MkdirAsync(Gfid.Root, "d");
        var layout = await v.LayoutOnBricksAsync(d.Gfid);
        string open = NameOn(layout, 0, "open"), linked = NameOn(layout, 0, "linked");
        var fo = await v.CreateAsync(d.Gfid, open, "busy");
        var fl = await v.CreateAsync(d.Gfid, linked, "two names");
        await v.Dht.LinkAsync(Root, fl.Gfid, d.Gfid, "second-name");
        // Move both off their hashed brick by changing the layout.
        var swapped = new DirLayout(5, [layout.RangeOf(1), layout.RangeOf(0)]);
        for (int i = 0; i < 2; i++) await v.Bricks[i].SetxattrAsync(Root, d.Gfid, DistributeTranslator.LayoutXattr, swapped.Encode(i), 0);
        await using var client = v.Remount();
        var writer = new FileHandle(fo.Gfid, OpenFlags.WriteOnly);
        Assert.That((await client.Dht.OpenAsync(Root, writer)).Error, Is.EqualTo(Errno.None));
        Assert.That((await client.Dht.MigrateFileAsync(d.Gfid, open)).Error, Is.EqualTo(Errno.EBUSY));
        Assert.That((await client.Dht.MigrateFileAsync(d.Gfid, linked)).Error, Is.EqualTo(Errno.EMLINK));
        await client.Dht.ReleaseAsync(Root, writer);
        Assert.That((await client.Dht.MigrateFileAsync(d.Gfid, open)).Value.Outcome, Is.EqualTo(MigrationOutcome.Moved));
        Assert.That(await v.DataBricksAsync(d.Gfid, open), Is.EqualTo(new[] { 1 }));
        Assert.That(await client.ReadAsync(fo.Gfid), Is.EqualTo("busy"));
        Assert.That(await client.ReadAsync(fl.Gfid), Is.EqualTo("two names"));
    }

    [Test]
    public async Task OpenFileFollowsItsDataAfterAnotherClientRenamesIt()
    {
        await using var v = await DistributeVolume.StartAsync(3);
        var layout = await LayoutOfRootAsync(v);
        string a = NameOn(layout, 0, "a"), b = NameOn(layout, 1, "b");
        var f = await v.CreateAsync(Gfid.Root, a, "abc");
        await using var other = v.Remount();
        Assert.That((await other.Dht.RenameAsync(Root, Gfid.Root, a, Gfid.Root, b, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That(await v.ReadAsync(f.Gfid), Is.EqualTo("abc"));
        Assert.That((await v.LookupAsync(Gfid.Root, b)).Gfid, Is.EqualTo(f.Gfid));
        Assert.That((await v.Dht.LookupAsync(Root, Gfid.Root, a)).Error, Is.EqualTo(Errno.ENOENT));
    }

    // ---- helpers --------------------------------------------------------------------------------

    private static async Task<DirLayout> LayoutOfRootAsync(DistributeVolume v)
    {
        await v.Dht.LookupAsync(Root, Gfid.Root, "warm-up");
        return await v.LayoutOnBricksAsync(Gfid.Root);
    }

    /// <summary>100 files in the root and 100 in a subdirectory, each with its own content and a user xattr.</summary>
    private static async Task<(List<(Gfid Parent, string Name, Gfid Gfid)> Dirs, List<(Gfid Parent, string Name, Gfid Gfid)> Files)> PopulateAsync(DistributeVolume v)
    {
        var sub = await v.MkdirAsync(Gfid.Root, "sub");
        var dirs = new List<(Gfid, string, Gfid)> { (Gfid.Root, "sub", sub.Gfid) };
        var files = new List<(Gfid, string, Gfid)>();
        foreach (var parent in new[] { Gfid.Root, sub.Gfid })
        {
            for (int i = 0; i < 100; i++)
            {
                string name = $"file-{i}";
                var f = await v.CreateAsync(parent, name, $"content of {name}");
                Assert.That((await v.Dht.SetxattrAsync(Root, f.Gfid, "user.tag", Encoding.UTF8.GetBytes(name), 0)).Error, Is.EqualTo(Errno.None));
                files.Add((parent, name, f.Gfid));
            }
        }
        return (dirs, files);
    }

    private static async Task<List<string>> ListBrickAsync(Translator brick, Gfid dir)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
        await brick.OpendirAsync(Root, fd);
        var r = await brick.ReaddirAsync(Root, fd, 0, 1 << 20);
        await brick.ReleasedirAsync(Root, fd);
        return r.Value.Select(e => e.Name).Where(n => n is not "." and not "..").ToList();
    }
}

/// <summary>A brick whose readdir cookies do not fit distribute's packing (like ext4's 63-bit hashes).</summary>
internal sealed class BigCookieTranslator : Translator
{
    private const long Bias = 1L << 60;

    public BigCookieTranslator(Translator child)
    {
        TypeName = "test/big-cookie";
        Attach(child);
    }

    public override async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Shift(await Child.ReaddirAsync(ctx, fd, offset == 0 ? 0 : offset - Bias, sizeHint));

    public override async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Shift(await Child.ReaddirplusAsync(ctx, fd, offset == 0 ? 0 : offset - Bias, sizeHint));

    private static FopResult<IReadOnlyList<DirEntry>> Shift(FopResult<IReadOnlyList<DirEntry>> r) =>
        r.Ok ? r.Value.Select(e => e with { NextOffset = e.NextOffset + Bias }).ToList() : r;
}
