using Brickfs.Translators.Core;
using static Brickfs.Tests.Locks.LockBench;

namespace Brickfs.Tests.Locks;

/// <summary>flock(2) locks, and what flush (close) and release drop.</summary>
public class FlockTests
{
    [Test]
    public async Task SharedFlocksCoexistAndExclusiveConflicts()
    {
        await using var b = await StartAsync();
        Assert.That((await b.SetAsync(Flock(LockType.Read, owner: 1))).Ok, Is.True);
        Assert.That((await b.SetAsync(Flock(LockType.Read, owner: 2))).Ok, Is.True);
        Assert.That((await b.SetAsync(Flock(LockType.Write, owner: 3))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That((await b.SetAsync(Flock(LockType.Read, owner: 1, client: "c2"))).Ok, Is.True);
        Assert.That(b.State.Flock, Has.Count.EqualTo(3));
    }

    [Test]
    public async Task FlockAndFcntlLocksDoNotInteract()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, long.MaxValue, owner: 1));
        Assert.That((await b.SetAsync(Flock(LockType.Write, owner: 2))).Ok, Is.True);
        Assert.That((await b.SetAsync(Posix(LockType.Write, 0, 0, owner: 3))).Error, Is.EqualTo(Errno.EAGAIN),
            "the fcntl lock still holds against fcntl");

        await b.HoldAsync(Posix(LockType.Unlock, 0, long.MaxValue, owner: 1));
        Assert.That((await b.SetAsync(Posix(LockType.Write, 0, 0, owner: 3))).Ok, Is.True, "an flock lock is no obstacle to fcntl");
        Assert.That((await b.GetAsync(Posix(LockType.Write, 5, 5, owner: 4))).Value.Type, Is.EqualTo(LockType.Unlock));
    }

    [Test]
    public async Task ConvertingSharedToExclusiveSucceedsWhenAlone()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Flock(LockType.Read, owner: 1));
        Assert.That((await b.SetAsync(Flock(LockType.Write, owner: 1))).Ok, Is.True);
        Assert.That(b.State.Flock.Single().Type, Is.EqualTo(LockType.Write));
        Assert.That((await b.SetAsync(Flock(LockType.Read, owner: 1))).Ok, Is.True);
        Assert.That((await b.SetAsync(Flock(LockType.Read, owner: 2))).Ok, Is.True, "after the downgrade others share");
    }

    [Test]
    public async Task AFailedConversionHasDroppedTheOldLockAsOnLinux()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Flock(LockType.Read, owner: 1));
        await b.HoldAsync(Flock(LockType.Read, owner: 2));

        Assert.That((await b.SetAsync(Flock(LockType.Write, owner: 1))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That(b.State.Flock.Select(l => l.Owner), Is.EqualTo(new ulong[] { 2 }));
    }

    [Test]
    public async Task ABlockingFlockIsGrantedWhenTheHolderUnlocks()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Flock(LockType.Write, owner: 1));
        var pending = b.SetWaitAsync(Flock(LockType.Write, owner: 2));
        Assert.That(b.State.FlockWaiters, Is.EqualTo(1));

        await b.HoldAsync(Flock(LockType.Unlock, owner: 1));
        Assert.That((await WithinDeadline(pending)).Ok, Is.True);
        Assert.That(b.State.Flock.Single().Owner, Is.EqualTo(2UL));
    }

    [Test]
    public async Task FlushReleasesOnlyThatOwnersPosixLocks()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 100, 109, owner: 1));
        await b.HoldAsync(Posix(LockType.Write, 10, 19, owner: 2));
        await b.HoldAsync(Posix(LockType.Write, 20, 29, owner: 1, client: "c2"));
        await b.HoldAsync(Flock(LockType.Write, owner: 1));
        var waiter = b.SetWaitAsync(Posix(LockType.Write, 0, 9, owner: 3));

        Assert.That((await b.Top.FlushAsync(Ctx("c1", lockOwner: 1), b.File)).Ok, Is.True);

        Assert.That((await WithinDeadline(waiter)).Ok, Is.True, "the flush woke the waiter");
        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Write, 0L, 9L, 3UL, "c1"),
            (LockType.Write, 10L, 19L, 2UL, "c1"),
            (LockType.Write, 20L, 29L, 1UL, "c2"),
        }));
        Assert.That(b.State.Flock, Has.Count.EqualTo(1), "close(2) of one descriptor keeps flock locks");
    }

    [Test]
    public async Task ReleaseDropsTheFlockOfThatOpenFileOnly()
    {
        await using var b = await StartAsync();
        var fd = new FileHandle(b.File.Gfid, OpenFlags.ReadOnly) { LockOwner = 0x99 };
        Assert.That((await b.Top.OpenAsync(Ctx(), fd)).Ok, Is.True);
        await b.HoldAsync(Flock(LockType.Write, owner: 0x99));
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 0x99));
        var waiter = b.SetWaitAsync(Flock(LockType.Read, owner: 0x42));

        Assert.That((await b.Top.ReleaseAsync(Ctx("c1"), fd)).Ok, Is.True);

        Assert.That((await WithinDeadline(waiter)).Ok, Is.True);
        Assert.That(b.State.Flock.Select(l => l.Owner), Is.EqualTo(new ulong[] { 0x42 }));
        Assert.That(b.State.Posix, Has.Count.EqualTo(1), "process locks are flush's business, not release's");
    }

    [Test]
    public async Task ReleaseOfAFileWithoutLockOwnerDropsNothing()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Flock(LockType.Write, owner: 0));
        var fd = new FileHandle(b.File.Gfid, OpenFlags.ReadOnly);
        Assert.That((await b.Top.OpenAsync(Ctx(), fd)).Ok, Is.True);

        Assert.That((await b.Top.ReleaseAsync(Ctx("c1"), fd)).Ok, Is.True);
        Assert.That(b.State.Flock, Has.Count.EqualTo(1));
    }
}
