using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Distribute;

/// <summary>
/// A client that reads a directory's layout while another process rewrites it (the rebalance's
/// fix-layout, whose per-child writes land one by one) must not write its own layout over it:
/// the files the rebalance then moves by its layout would be off their hashed brick for every
/// other client (CI saw a second rebalance move 99 files). Both processes are distribute
/// translators over the same in-memory bricks with features/locks; a gate holds one layout
/// write, so the interleaving is fixed, not hoped for.
/// </summary>
public sealed class LayoutRaceTests
{
    private static readonly FopContext Root = DistributeVolume.Root;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Passes every fop on; when armed, holds the next layout write until released, and reports
    /// each inode lock asked through it.
    /// </summary>
    private sealed class LayoutWriteGate : Translator
    {
        private int _armed;
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Held { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource LockAsked { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Arm() => Volatile.Write(ref _armed, 1);

        public void Release() => _release.TrySetResult();

        public override async ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
        {
            if (name == DistributeTranslator.LayoutXattr && Interlocked.Exchange(ref _armed, 0) == 1)
            {
                Held.TrySetResult();
                await _release.Task;
            }
            return await base.SetxattrAsync(ctx, gfid, name, value, flags);
        }

        public override ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk)
        {
            LockAsked.TrySetResult();
            return base.InodelkAsync(ctx, domain, gfid, command, lk);
        }
    }

    /// <summary>Three bricks (features/locks over memory) shared by every client of a test.</summary>
    private static List<Translator> Bricks() => [.. Enumerable.Range(0, 3).Select(i =>
    {
        var locks = new LocksTranslator { Name = $"brick-{i}", TypeName = "features/locks" };
        locks.Attach(new MemoryStorageTranslator { Name = $"mem-{i}", TypeName = "storage/memory" });
        return (Translator)locks;
    })];

    /// <summary>A client: its own distribute over <paramref name="children"/> (each a brick, or a gate over one).</summary>
    private static DistributeTranslator Client(IEnumerable<Translator> children)
    {
        var dht = new DistributeTranslator { Name = "dht", TypeName = "cluster/distribute" };
        dht.Attach([.. children]);
        return dht;
    }

    private static List<LayoutWriteGate> Gates(List<Translator> bricks) => [.. bricks.Select(b =>
    {
        var g = new LayoutWriteGate { Name = b.Name, TypeName = "debug/layout-gate" };
        g.Attach(b);
        return g;
    })];

    /// <summary>A directory "d" made with <paramref name="files"/> files while only bricks 0 and 1 were in the volume.</summary>
    private static async Task<(Gfid Dir, List<string> Names)> TwoBrickDirectoryAsync(List<Translator> bricks, int files)
    {
        var before = Client(bricks.Take(2));
        var d = await before.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom());
        Assert.That(d.Error, Is.EqualTo(Errno.None));
        var names = Enumerable.Range(0, files).Select(i => $"f{i}").ToList();
        foreach (var n in names)
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
            Assert.That((await before.CreateAsync(Root, d.Value.Gfid, n, 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
            Assert.That((await before.ReleaseAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        }
        return (d.Value.Gfid, names);
    }

    /// <summary>What fix-layout wrote is what the bricks hold, whoever looked the directory up meanwhile.</summary>
    private static async Task AssertBricksHoldAsync(List<Translator> bricks, Gfid dir, DirLayout written)
    {
        var stored = await DistributeVolume.LayoutOnBricksAsync(bricks, dir);
        Assert.That(stored.ToString(), Is.EqualTo(written.ToString()), "the bricks keep the layout fix-layout wrote");
    }

    /// <summary>
    /// The rebalance moves every file by its layout; then a second rebalance (another process,
    /// reading the layout from the bricks) finds each one on its hashed brick.
    /// </summary>
    private static async Task AssertSecondRebalanceMovesNothingAsync(DistributeTranslator rebalance, List<Translator> bricks, Gfid dir, List<string> names)
    {
        int moved = 0;
        foreach (var n in names)
        {
            var m = await rebalance.MigrateFileAsync(dir, n);
            Assert.That(m.Error, Is.EqualTo(Errno.None), n);
            if (m.Value.Outcome == MigrationOutcome.Moved) moved++;
        }
        Assert.That(moved, Is.GreaterThan(0), "the first rebalance moves a share to the new brick");
        var again = Client(bricks);
        Assert.That((await again.LookupAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.None));
        Assert.That((await again.FixLayoutAsync(dir)).Error, Is.EqualTo(Errno.None));
        var movedAgain = new List<string>();
        foreach (var n in names)
        {
            var m = await again.MigrateFileAsync(dir, n);
            Assert.That(m.Error, Is.EqualTo(Errno.None), n);
            if (m.Value.Outcome == MigrationOutcome.Moved) movedAgain.Add(n);
        }
        Assert.That(movedAgain, Is.Empty, "a second rebalance finds every file on its hashed brick");
    }

    [Test]
    public async Task ALookupReadingAHalfWrittenFixLayoutLeavesTheRebalancersLayoutInPlace()
    {
        var bricks = Bricks();
        var (dir, names) = await TwoBrickDirectoryAsync(bricks, 60);

        // A client mounted after add-brick: its lookup puts d on brick 2 (no range there yet).
        var reader = Client(bricks);
        Assert.That((await reader.LookupAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.None));

        // The rebalance's fix-layout: bricks 0 and 1 get their new ranges, brick 2's write is held.
        var gates = Gates(bricks);
        var rebalance = Client(gates);
        Assert.That((await rebalance.LookupAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.None));
        gates[2].Arm();
        var fix = rebalance.FixLayoutAsync(dir).AsTask();
        await gates[2].Held.Task.WaitAsync(Deadline);

        // The reader looks d up now: it sees new ranges on two bricks and the old (none) on the third.
        var readerGates = Gates(bricks);
        var racing = Client(readerGates);
        var look = racing.LookupAsync(Root, Gfid.Root, "d").AsTask();
        await Task.WhenAny(look, readerGates[0].LockAsked.Task).WaitAsync(Deadline);
        gates[2].Release();
        var written = await fix.WaitAsync(Deadline);
        Assert.That(written.Error, Is.EqualTo(Errno.None));
        Assert.That((await look.WaitAsync(Deadline)).Error, Is.EqualTo(Errno.None));
        Assert.That(written.Value.IsComplete, Is.True, written.Value.ToString());

        await AssertBricksHoldAsync(bricks, dir, written.Value);
        await AssertSecondRebalanceMovesNothingAsync(rebalance, bricks, dir, names);
    }

    [Test]
    public async Task AClientFillingInAnEmptyEntryDoesNotEraseTheRangeFixLayoutGaveThatBrick()
    {
        var bricks = Bricks();
        var (dir, names) = await TwoBrickDirectoryAsync(bricks, 60);

        // A client mounted after add-brick looks d up: it puts d on brick 2 and then writes brick
        // 2 an explicit empty entry, held here until the fix-layout below has run.
        var readerGates = Gates(bricks);
        var reader = Client(readerGates);
        Assert.That((await reader.LookupAsync(Root, Gfid.Root, "nothing")).Error, Is.EqualTo(Errno.ENOENT), "the root's layout settled first");
        readerGates[2].Arm();
        var look = reader.LookupAsync(Root, Gfid.Root, "d").AsTask();
        await readerGates[2].Held.Task.WaitAsync(Deadline);

        var gates = Gates(bricks);
        var rebalance = Client(gates);
        var fix = rebalance.FixLayoutAsync(dir).AsTask();
        await Task.WhenAny(fix, gates[0].LockAsked.Task).WaitAsync(Deadline);
        readerGates[2].Release();
        Assert.That((await look.WaitAsync(Deadline)).Error, Is.EqualTo(Errno.None));
        var written = await fix.WaitAsync(Deadline);
        Assert.That(written.Error, Is.EqualTo(Errno.None));
        Assert.That(written.Value.RangeOf(2), Is.Not.Null, $"fix-layout gives the new brick a range: {written.Value}");

        await AssertBricksHoldAsync(bricks, dir, written.Value);
        await AssertSecondRebalanceMovesNothingAsync(rebalance, bricks, dir, names);
    }
}
