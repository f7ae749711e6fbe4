using System.Text;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Tests.Support;
using static Brickfs.Tests.Replicate.ReplicaBench;

namespace Brickfs.Tests.Replicate;

/// <summary>
/// Eager lock and delayed post-op: a batch of fops under one lock and one pre-op, blame recorded
/// the moment a child misses a fop, counters settled when the batch ends, crash safety.
/// </summary>
public class EagerLockTests
{
    [Test]
    public async Task AStreamOfWritesPaysOnePreOpAndTheBatchEndsClean()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("f");
        for (int n = 0; n < 10; n++) await v.MustWriteAsync(fd, n * 4, $"{n:D4}");

        for (int i = 0; i < 3; i++)
        {
            for (int k = 0; k < 3; k++)
            {
                Assert.That(await v.RawPendingAsync(i, fd.Gfid, k), Is.EqualTo(new long[] { 1, 0, 0 }),
                    $"b{i} key b{k}: one uniform mark for the whole batch, not one per write");
            }
        }
        Assert.That(await v.AllCountersZeroAsync(fd.Gfid), Is.True, "the batch's post-op removes the mark");
        for (int i = 0; i < 3; i++) Assert.That(v.Index(i).ListPending(), Does.Not.Contain(fd.Gfid), $"index of b{i}");
        var first = await v.ContentAsync(0, fd.Gfid);
        for (int i = 1; i < 3; i++) Assert.That(await v.ContentAsync(i, fd.Gfid), Is.EqualTo(first));
    }

    [Test]
    public async Task TheBatchEndsByItselfAfterThePostOpDelay()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 0.1");
        var fd = await v.CreateAsync("f");
        await v.MustWriteAsync(fd, 0, "x");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), async () =>
            (await v.RawPendingAsync(0, fd.Gfid, 0)).All(c => c == 0) && (await v.RawPendingAsync(0, Gfid.Root, 0)).All(c => c == 0),
            "the idle timer ends the file's and the directory's batches");
    }

    [Test]
    public async Task AChildThatFailsMidStreamIsBlamedBeforeTheWriteIsAnswered()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("f");
        await v.MustWriteAsync(fd, 0, "aaaa");
        v.Down(2);
        await v.MustWriteAsync(fd, 4, "bbbb");

        for (int i = 0; i < 2; i++)
        {
            var own = await v.RawPendingAsync(i, fd.Gfid, i);
            var b2 = await v.RawPendingAsync(i, fd.Gfid, 2);
            Assert.That(b2[0], Is.GreaterThan(own[0]), $"b{i} already accuses b2 above its own batch mark");
        }
        await v.MustWriteAsync(fd, 8, "cccc");
        v.Up(2);
        for (int i = 0; i < 2; i++)
        {
            Assert.That(await v.PendingAsync(i, fd.Gfid, 2), Is.EqualTo(new long[] { 1, 0, 0 }), $"b{i} blames b2 exactly once after the batch");
            Assert.That(await v.PendingAsync(i, fd.Gfid, i), Is.EqualTo(new long[] { 0, 0, 0 }));
        }
        Assert.That(await v.TextAsync(2, fd.Gfid), Is.EqualTo("aaaa"));
        Assert.That((await v.Replicate.HealAsync(fd.Gfid)).Outcome, Is.EqualTo(HealOutcome.Healed));
        Assert.That(await v.TextAsync(2, fd.Gfid), Is.EqualTo("aaaabbbbcccc"));
    }

    [Test]
    public async Task ReadsOfThisClientSkipAChildThatFailedInTheBatch()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20", "read-subvolume-index 0");
        var fd = await v.CreateAsync("f");
        await v.MustWriteAsync(fd, 0, "old!");
        v.Down(0);
        await v.MustWriteAsync(fd, 0, "new!");
        v.Up(0);
        Assert.That((await v.Top.LookupAsync(Ctx(), Gfid.Root, "f")).Ok, Is.True, "a lookup in the batch re-reads the counters");
        Assert.That((await v.ReadTextAsync(fd)).Value, Is.EqualTo("new!"), "never from b0, though it is the preferred reader");
    }

    [Test]
    public async Task TwoWritersHandTheLockOverAndLoseNothing()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 0.2");
        var fd = await v.CreateAsync("f");
        var other = await v.SecondClientAsync(options: ("post-op-delay-secs", "0.2"));
        await using var _ = other;
        var fd2 = await v.OpenAsync(fd.Gfid, other);

        var one = Task.Run(async () =>
        {
            for (int n = 0; n < 20; n++) Assert.That((await v.Top.WriteAsync(Ctx(), fd, n * 8, Encoding.ASCII.GetBytes($"A{n:D7}"))).Ok, Is.True);
        });
        var two = Task.Run(async () =>
        {
            for (int n = 0; n < 20; n++) Assert.That((await other.WriteAsync(Ctx("c2"), fd2, 160 + n * 8, Encoding.ASCII.GetBytes($"B{n:D7}"))).Ok, Is.True);
        });
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await Task.WhenAll(one, two).WaitAsync(limit.Token);

        string expected = string.Concat(Enumerable.Range(0, 20).Select(n => $"A{n:D7}")) + string.Concat(Enumerable.Range(0, 20).Select(n => $"B{n:D7}"));
        for (int i = 0; i < 3; i++) Assert.That(await v.TextAsync(i, fd.Gfid), Is.EqualTo(expected), $"b{i}");
        await other.FlushEagerAsync();
        Assert.That(await v.AllCountersZeroAsync(fd.Gfid), Is.True);
    }

    [Test]
    public async Task AClientThatDiesMidBatchLeavesCountersThatMakeHealPickAGoodCopy()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var writer = await v.SecondClientAsync(options: ("post-op-delay-secs", "20"));
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await writer.CreateAsync(Ctx("c2"), Gfid.Root, "f", ReplicaBench.FileMode, fd)).Ok, Is.True);
        Assert.That((await writer.WriteAsync(Ctx("c2"), fd, 0, "first"u8.ToArray())).Ok, Is.True);
        v.Down(0); // the copy that a heal without a verdict would take first
        Assert.That((await writer.WriteAsync(Ctx("c2"), fd, 0, "FIRST"u8.ToArray())).Ok, Is.True, "acknowledged with b1 and b2");
        v.Up(0);

        // The writer dies: no post-op, no unlock; the bricks drop its locks with its connection.
        for (int i = 0; i < 3; i++) v.Locks(i).ReleaseClient("c2");
        for (int i = 0; i < 3; i++)
        {
            Assert.That((await v.RawPendingAsync(i, fd.Gfid, i))[0], Is.GreaterThan(0), $"b{i} is left dirty");
        }

        var heal = await v.Replicate.HealAsync(fd.Gfid);
        Assert.That(heal.Outcome, Is.EqualTo(HealOutcome.Healed));
        Assert.That(heal.Sinks, Does.Contain("b0"));
        for (int i = 0; i < 3; i++) Assert.That(await v.TextAsync(i, fd.Gfid), Is.EqualTo("FIRST"), $"b{i} has the acknowledged write");
        Assert.That(await v.AllCountersZeroAsync(fd.Gfid), Is.True);
    }

    [Test]
    public async Task AClientThatDiesAfterAPreOpWithoutFailuresLeavesAllCopiesUsable()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var writer = await v.SecondClientAsync(options: ("post-op-delay-secs", "20"));
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await writer.CreateAsync(Ctx("c2"), Gfid.Root, "f", ReplicaBench.FileMode, fd)).Ok, Is.True);
        Assert.That((await writer.WriteAsync(Ctx("c2"), fd, 0, "data"u8.ToArray())).Ok, Is.True);
        for (int i = 0; i < 3; i++) v.Locks(i).ReleaseClient("c2");

        var status = await v.Replicate.InspectAsync(fd.Gfid);
        Assert.That(status.SplitBrain, Is.EqualTo(SplitBrainKind.None), "a uniform mark accuses nobody");
        Assert.That((await v.Replicate.HealAsync(fd.Gfid)).Outcome, Is.Not.EqualTo(HealOutcome.SplitBrain));
        for (int i = 0; i < 3; i++) Assert.That(await v.TextAsync(i, fd.Gfid), Is.EqualTo("data"), $"b{i}");
        Assert.That(await v.AllCountersZeroAsync(fd.Gfid), Is.True);
        Assert.That((await v.Replicate.HealAsync(Gfid.Root)).Outcome, Is.Not.EqualTo(HealOutcome.SplitBrain));
        Assert.That(await v.AllCountersZeroAsync(Gfid.Root), Is.True, "the directory's batch mark is healed too");
    }

    [Test]
    public async Task CreatesInOneDirectoryShareOneBatchAndAMissedCreateIsBlamed()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        for (int n = 0; n < 5; n++) await v.CreateAsync($"f{n}");
        for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(0, Gfid.Root, k), Is.EqualTo(new long[] { 0, 0, 1 }), $"key b{k}: one mark for five creates");
        v.Down(1);
        await v.CreateAsync("missed-by-b1");
        v.Up(1);
        Assert.That(await v.PendingAsync(0, Gfid.Root, 1), Is.EqualTo(new long[] { 0, 0, 1 }), "b1 blamed for the directory's entries");
        Assert.That(await v.PendingAsync(0, Gfid.Root, 0), Is.EqualTo(new long[] { 0, 0, 0 }));
        Assert.That((await v.Replicate.HealAsync(Gfid.Root)).Outcome, Is.EqualTo(HealOutcome.Healed));
        Assert.That((await v.LookupOnAsync(1, Gfid.Root, "missed-by-b1")).Ok, Is.True);
    }

    [Test]
    public async Task FsyncEndsTheBatchAndCloseGivesTheLockUp()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("f");
        await v.MustWriteAsync(fd, 0, "x");
        Assert.That((await v.Top.FsyncAsync(Ctx(), fd, false)).Ok, Is.True);
        for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(1, fd.Gfid, k), Is.EqualTo(new long[] { 0, 0, 0 }), "fsync settled the counters");

        var other = await v.SecondClientAsync();
        await using var _ = other;
        var fd2 = await v.OpenAsync(fd.Gfid, other);
        Assert.That((await v.Top.FlushAsync(Ctx(), fd)).Ok, Is.True);
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var ctx2 = new FopContext { Uid = 0, Gid = 0, Pid = 1, ClientId = "c2", LockOwner = 1, Cancellation = limit.Token };
        Assert.That((await other.WriteAsync(ctx2, fd2, 0, "y"u8.ToArray())).Ok, Is.True, "the closed file's lock is free for another client at once");
    }
    [Test]
    public async Task AByGfidChangeOfAFileOpenForWritingStartsTheBatchItsWritesUse()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("f");
        await v.Replicate.FlushEagerAsync();
        var chown = await v.Top.SetattrAsync(Ctx(), fd.Gfid, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = 0x180 });
        Assert.That(chown.Error, Is.EqualTo(Errno.None), "fchmod, which the kernel sends without the handle");
        await v.MustWriteAsync(fd, 0, "journal");
        for (int i = 0; i < 3; i++)
        {
            for (int k = 0; k < 3; k++)
            {
                Assert.That(await v.RawPendingAsync(i, fd.Gfid, k), Is.EqualTo(new long[] { 1, 1, 0 }),
                    $"b{i} key b{k}: one batch, opened by the metadata change, covers the writes after it");
            }
        }
        Assert.That((await v.Top.FlushAsync(Ctx(), fd)).Ok, Is.True);
        Assert.That((await v.Top.ReleaseAsync(Ctx(), fd)).Ok, Is.True);
        for (int i = 0; i < 3; i++)
        {
            for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(i, fd.Gfid, k), Is.EqualTo(new long[] { 0, 0, 0 }), $"b{i} key b{k}: close ended the batch by the time the handle is released");
        }

        // Once no handle is open for writing, a by-GFID change is a transaction of its own again.
        Assert.That((await v.Top.SetattrAsync(Ctx(), fd.Gfid, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = 0x1A4 })).Ok, Is.True);
        for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(0, fd.Gfid, k), Is.EqualTo(new long[] { 0, 0, 0 }), $"key b{k}: no batch left open");
    }

    /// <summary>Holds every xattrop (pre-op, post-op) passing through while <see cref="Holding"/>, until <see cref="Open"/>.</summary>
    private sealed class HeldXattrops : FopHookTranslator
    {
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public volatile bool Holding;
        public int Held;

        public void Open() => _open.TrySetResult();

        protected override async ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx)
        {
            if (fop != Fop.Xattrop || !Holding) return Errno.None;
            Interlocked.Increment(ref Held);
            await _open.Task;
            return Errno.None;
        }
    }

    private static async Task<(ReplicateTranslator Client, HeldXattrops[] Gates)> ClientWithHeldXattropsAsync(ReplicaBench v)
    {
        var gates = new HeldXattrops[v.Count];
        var client = await v.SecondClientAsync(i => gates[i] = new HeldXattrops(), ("post-op-delay-secs", "20"));
        return (client, gates);
    }

    [Test]
    public async Task CloseIsAnsweredWhileTheBatchEndsAndTheReleaseOfTheHandleWaitsForTheEnd()
    {
        await using var v = await StartAsync(3);
        var (client, gates) = await ClientWithHeldXattropsAsync(v);
        await using var _ = client;
        try
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
            Assert.That((await client.CreateAsync(Ctx(), Gfid.Root, "f", ReplicaBench.FileMode, fd)).Ok, Is.True);
            Assert.That((await client.WriteAsync(Ctx(), fd, 0, "data"u8.ToArray())).Ok, Is.True);

            foreach (var g in gates) g.Holding = true;
            var flush = client.FlushAsync(Ctx(), fd).AsTask();
            Assert.That(await Task.WhenAny(flush, Task.Delay(TimeSpan.FromSeconds(10))), Is.SameAs(flush), "close does not wait for the post-op");
            Assert.That(flush.Result.Ok, Is.True);
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), () => gates.Sum(g => g.Held) >= 3, "the post-op is under way");
            var release = client.ReleaseAsync(Ctx(), fd).AsTask();
            await Task.Delay(200);
            Assert.That(release.IsCompleted, Is.False, "the handle's release waits for the post-op, which may use it");

            foreach (var g in gates) g.Open();
            Assert.That((await release.WaitAsync(TimeSpan.FromSeconds(10))).Ok, Is.True);
            for (int i = 0; i < 3; i++)
            {
                for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(i, fd.Gfid, k), Is.EqualTo(new long[] { 0, 0, 0 }), $"b{i} key b{k}");
            }
            Assert.That(await v.TextAsync(2, fd.Gfid), Is.EqualTo("data"));
        }
        finally
        {
            foreach (var g in gates) g.Open(); // a failed check must not leave the disposal waiting
        }
    }

    [Test]
    public async Task CloseOfAFileThisClientLockedWaitsForTheEndOfItsBatch()
    {
        await using var v = await StartAsync(3);
        var (client, gates) = await ClientWithHeldXattropsAsync(v);
        await using var _ = client;
        try
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
            Assert.That((await client.CreateAsync(Ctx(lockOwner: 7), Gfid.Root, "f", ReplicaBench.FileMode, fd)).Ok, Is.True);
            var whole = new FileLock { Type = LockType.Write, Start = 0, End = long.MaxValue, Owner = 7, Pid = 1, Kind = LockKind.Posix };
            Assert.That((await client.LkAsync(Ctx(lockOwner: 7), fd, LockCommand.Set, whole)).Ok, Is.True);
            Assert.That((await client.WriteAsync(Ctx(lockOwner: 7), fd, 0, "data"u8.ToArray())).Ok, Is.True);

            // close(2) drops the lock: another client that then takes it must find the counters settled.
            foreach (var g in gates) g.Holding = true;
            var flush = client.FlushAsync(Ctx(lockOwner: 7), fd).AsTask();
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), () => gates.Sum(g => g.Held) >= 3, "the post-op is under way");
            await Task.Delay(200);
            Assert.That(flush.IsCompleted, Is.False, "close waits for the post-op");
            foreach (var g in gates) g.Open();
            Assert.That((await flush.WaitAsync(TimeSpan.FromSeconds(10))).Ok, Is.True);
            for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(0, fd.Gfid, k), Is.EqualTo(new long[] { 0, 0, 0 }), $"key b{k}: settled when close returned");
            await client.ReleaseAsync(Ctx(lockOwner: 7), fd);
        }
        finally
        {
            foreach (var g in gates) g.Open(); // a failed check must not leave the disposal waiting
        }
    }

    [Test]
    public async Task AnApplicationUnlockIsAnsweredWithTheReplicateLockAlreadyFree()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("f");
        var whole = new FileLock { Type = LockType.Write, Start = 0, End = long.MaxValue, Owner = 7, Pid = 1, Kind = LockKind.Posix };
        Assert.That((await v.Top.LkAsync(Ctx(lockOwner: 7), fd, LockCommand.Set, whole)).Ok, Is.True);
        await v.MustWriteAsync(fd, 0, "under the lock");
        Assert.That((await v.Top.LkAsync(Ctx(lockOwner: 7), fd, LockCommand.Set, whole with { Type = LockType.Unlock })).Ok, Is.True);

        for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(0, fd.Gfid, k), Is.EqualTo(new long[] { 0, 0, 0 }), $"key b{k}: settled before the unlock");
        var probe = new FileLock { Type = LockType.Write, Start = 0, End = long.MaxValue, Owner = 99, Pid = 2, Kind = LockKind.Posix };
        for (int i = 0; i < 3; i++)
        {
            var r = await v.Brick(i).InodelkAsync(Ctx("c2", 99), "replicate", fd.Gfid, LockCommand.Set, probe);
            Assert.That(r.Error, Is.EqualTo(Errno.None), $"b{i}: another client takes the replicate lock at once");
            await v.Brick(i).InodelkAsync(Ctx("c2", 99), "replicate", fd.Gfid, LockCommand.Set, probe with { Type = LockType.Unlock });
            var app = await v.Brick(i).LkAsync(Ctx("c2", 99), fd, LockCommand.Get, probe);
            Assert.That(app.Ok && app.Value.Type == LockType.Unlock, Is.True, $"b{i}: the application lock is free");
        }
    }

    [Test]
    public async Task AnEntryFopLeavesItsNameUnlockedForOthers()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("journal");
        Assert.That((await v.Top.UnlinkAsync(Ctx(), Gfid.Root, "journal")).Ok, Is.True, "this client's next fop on the name");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), async () =>
        {
            for (int i = 0; i < 3; i++)
            {
                var r = await v.Brick(i).EntrylkAsync(Ctx("c2", 5), "replicate", Gfid.Root, "journal", LockCommand.Set, LockType.Write);
                if (!r.Ok) return false;
                await v.Brick(i).EntrylkAsync(Ctx("c2", 5), "replicate", Gfid.Root, "journal", LockCommand.Set, LockType.Unlock);
            }
            return true;
        }, "the name locks of the create and the unlink are released on every brick");
        Assert.That((await v.Top.ReleaseAsync(Ctx(), fd)).Ok, Is.True);
    }
    [Test]
    public async Task TheWriteAfterAnFsyncKeepsTheLockAndOnlyOpensANewBatch()
    {
        await using var v = await StartAsync(3, "post-op-delay-secs 20");
        var fd = await v.CreateAsync("f");
        var probe = new FileLock { Type = LockType.Write, Start = 0, End = long.MaxValue, Owner = 99, Pid = 2, Kind = LockKind.Posix };
        async Task<ulong> HolderAsync(int brick)
        {
            var r = await v.Brick(brick).InodelkAsync(Ctx("c2", 99), ReplicateTranslator.LockDomain, fd.Gfid, LockCommand.Get, probe);
            Assert.That(r.Ok && r.Value.Type != LockType.Unlock, Is.True, $"b{brick}: the file's replicate lock is held");
            return r.Value.Owner;
        }

        await v.MustWriteAsync(fd, 0, "page");
        var before = await Task.WhenAll(Enumerable.Range(0, 3).Select(HolderAsync));
        Assert.That((await v.Top.FsyncAsync(Ctx(), fd, true)).Ok, Is.True);
        await v.MustWriteAsync(fd, 0, "head");
        var after = await Task.WhenAll(Enumerable.Range(0, 3).Select(HolderAsync));
        Assert.That(after, Is.EqualTo(before), "the same lock, not a new one");
        for (int k = 0; k < 3; k++) Assert.That(await v.RawPendingAsync(0, fd.Gfid, k), Is.EqualTo(new long[] { 1, 0, 0 }), $"key b{k}: a new batch covers the write");
        Assert.That(await v.AllCountersZeroAsync(fd.Gfid), Is.True);
    }
}
