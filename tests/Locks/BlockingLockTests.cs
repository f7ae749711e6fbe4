using Brickfs.Translators.Core;
using static Brickfs.Tests.Locks.LockBench;

namespace Brickfs.Tests.Locks;

/// <summary>F_SETLKW and blocking flock: waiting without polling, grants on release, interruption, client loss.</summary>
public class BlockingLockTests
{
    [Test]
    public async Task SetlkwWaitsAndIsGrantedWhenTheHolderUnlocks()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));

        var pending = b.SetWaitAsync(Posix(LockType.Write, 5, 15, owner: 2));
        Assert.That(pending.IsCompleted, Is.False, "the range is held by another owner");
        Assert.That(b.State.PosixWaiters, Is.EqualTo(1));

        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 1));
        var granted = await WithinDeadline(pending);

        Assert.That(granted.Ok, Is.True);
        Assert.That(b.PosixRanges, Is.EqualTo(new[] { (LockType.Write, 5L, 15L, 2UL, "c1") }),
            "the lock is in the table by the time the waiter hears of it");
        Assert.That(b.State.PosixWaiters, Is.Zero);
    }

    [Test]
    public async Task AWaiterIsGrantedOnlyOnceEveryConflictingRangeIsFree()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 99, owner: 1));

        var pending = b.SetWaitAsync(Posix(LockType.Write, 10, 19, owner: 2));
        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 1));
        Assert.That(pending.IsCompleted, Is.False, "bytes 10..19 are still held");

        await b.HoldAsync(Posix(LockType.Unlock, 5, 49, owner: 1));
        Assert.That((await WithinDeadline(pending)).Ok, Is.True, "a partial unlock that frees the range grants it");
    }

    [Test]
    public async Task ADowngradeWakesWaitingReaders()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 99, owner: 1));
        var reader = b.SetWaitAsync(Posix(LockType.Read, 0, 9, owner: 2));
        var writer = b.SetWaitAsync(Posix(LockType.Write, 50, 59, owner: 3));

        await b.HoldAsync(Posix(LockType.Read, 0, 99, owner: 1));

        Assert.That((await WithinDeadline(reader)).Ok, Is.True);
        Assert.That(writer.IsCompleted, Is.False, "a write still conflicts with the read lock");
        Assert.That(b.State.PosixWaiters, Is.EqualTo(1));
    }

    [Test]
    public async Task WaitersForTheSameBytesAreGrantedInArrivalOrder()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        var second = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 2));
        var third = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 3));

        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 1));
        Assert.That((await WithinDeadline(second)).Ok, Is.True);
        Assert.That(third.IsCompleted, Is.False);

        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 2));
        Assert.That((await WithinDeadline(third)).Ok, Is.True);
        Assert.That(b.PosixRanges, Is.EqualTo(new[] { (LockType.Write, 0L, 9L, 3UL, "c1") }));
    }

    [Test]
    public async Task AllReadersWaitingBehindAWriterAreGrantedTogether()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        var readers = Enumerable.Range(2, 3).Select(o => b.SetWaitAsync(Posix(LockType.Read, 0, 9, owner: (ulong)o)).AsTask()).ToList();

        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 1));
        var results = await Task.WhenAll(readers).WaitAsync(Deadline);

        Assert.That(results.Select(r => r.Error), Is.All.EqualTo(Errno.None));
        Assert.That(b.State.Posix.Select(l => l.Owner), Is.EquivalentTo(new ulong[] { 2, 3, 4 }));
    }

    [Test]
    public async Task AnInterruptedSetlkwEndsWithEintrAndLeavesNoGhostWaiter()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        using var interrupt = new CancellationTokenSource();

        var pending = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 2), interrupt.Token);
        Assert.That(b.State.PosixWaiters, Is.EqualTo(1));
        await interrupt.CancelAsync();

        Assert.That((await WithinDeadline(pending)).Error, Is.EqualTo(Errno.EINTR));
        Assert.That(b.State.PosixWaiters, Is.Zero);

        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 1));
        Assert.That(b.State.Posix, Is.Empty, "the interrupted request was not granted behind the caller's back");
        Assert.That((await b.SetAsync(Posix(LockType.Write, 0, 9, owner: 3))).Ok, Is.True);
    }

    [Test]
    public async Task ASetlkwAlreadyInterruptedFailsWithoutQueueing()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        using var interrupt = new CancellationTokenSource();
        await interrupt.CancelAsync();

        var r = await WithinDeadline(b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 2), interrupt.Token));
        Assert.That(r.Error, Is.EqualTo(Errno.EINTR));
        Assert.That(b.State.PosixWaiters, Is.Zero);
        Assert.That((await WithinDeadline(b.SetWaitAsync(Posix(LockType.Write, 10, 19, owner: 2), interrupt.Token))).Ok, Is.True,
            "a request that need not wait is granted even under a cancelled token");
    }

    [Test]
    public async Task ACycleOfProcessOwnersWaitingForEachOtherIsEdeadlk()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        await b.HoldAsync(Posix(LockType.Write, 10, 19, owner: 2));
        var first = b.SetWaitAsync(Posix(LockType.Write, 10, 19, owner: 1));

        var closing = await WithinDeadline(b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 2)));
        Assert.That(closing.Error, Is.EqualTo(Errno.EDEADLK));
        Assert.That(b.State.PosixWaiters, Is.EqualTo(1), "the refused request does not wait");

        await b.HoldAsync(Posix(LockType.Unlock, 10, 19, owner: 2));
        Assert.That((await WithinDeadline(first)).Ok, Is.True);
    }

    [Test]
    public async Task TwoReadersUpgradingAtOnceIsEdeadlkForTheSecond()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Read, 0, 9, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 0, 9, owner: 2));
        var first = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 1));

        Assert.That((await WithinDeadline(b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 2)))).Error, Is.EqualTo(Errno.EDEADLK));
        Assert.That(first.IsCompleted, Is.False);
        await b.HoldAsync(Posix(LockType.Unlock, 0, 9, owner: 2));
        Assert.That((await WithinDeadline(first)).Ok, Is.True);
        Assert.That(b.PosixRanges, Is.EqualTo(new[] { (LockType.Write, 0L, 9L, 1UL, "c1") }));
    }

    [Test]
    public async Task ReleasingAClientFreesItsLocksAndWakesOtherClientsWaiters()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1, client: "gone"));
        await b.HoldAsync(Flock(LockType.Write, owner: 1, client: "gone"));
        await b.HoldAsync(Posix(LockType.Write, 20, 29, owner: 5, client: "stays"));
        var posixWaiter = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 1, client: "stays"));
        var flockWaiter = b.SetWaitAsync(Flock(LockType.Read, owner: 2, client: "stays"));
        var goneWaiter = b.SetWaitAsync(Posix(LockType.Read, 20, 20, owner: 1, client: "gone"));

        b.Locks.ReleaseClient("gone");

        Assert.That((await WithinDeadline(posixWaiter)).Ok, Is.True);
        Assert.That((await WithinDeadline(flockWaiter)).Ok, Is.True);
        Assert.That((await WithinDeadline(goneWaiter)).Error, Is.EqualTo(Errno.ENOTCONN), "the gone client's own waiter ends too");
        var state = b.State;
        Assert.That(state.Posix.Concat(state.Flock).Select(l => l.ClientId), Is.All.EqualTo("stays"));
        Assert.That(state.PosixWaiters + state.FlockWaiters, Is.Zero);

        await b.HoldAsync(Posix(LockType.Write, 100, 109, owner: 1, client: "gone"));
        Assert.That(b.State.Posix.Count(l => l.ClientId == "gone"), Is.EqualTo(1), "the client may come back and lock again");
    }

    [Test]
    public async Task StoppingTheBrickEndsPendingWaiters()
    {
        var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        var pending = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 2));

        await b.DisposeAsync();
        Assert.That((await WithinDeadline(pending)).Error, Is.EqualTo(Errno.ENOTCONN));
    }
}
