using Brickfs.Translators.Core;
using static Brickfs.Tests.Locks.LockBench;

namespace Brickfs.Tests.Locks;

/// <summary>fcntl byte-range locks through features/locks, F_SETLK and F_GETLK, as fcntl(2) defines them.</summary>
public class PosixLockTests
{
    private const long Eof = long.MaxValue;

    [Test]
    public async Task ReadLocksOfTwoOwnersShareBytes()
    {
        await using var b = await StartAsync();
        Assert.That((await b.SetAsync(Posix(LockType.Read, 0, 99, owner: 1))).Ok, Is.True);
        Assert.That((await b.SetAsync(Posix(LockType.Read, 50, 149, owner: 2))).Ok, Is.True);
        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Read, 0L, 99L, 1UL, "c1"),
            (LockType.Read, 50L, 149L, 2UL, "c1"),
        }));
    }

    [Test]
    public async Task WriteConflictsWithAnotherOwnersLockWithEagain()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Read, 0, 99, owner: 1));
        await b.HoldAsync(Posix(LockType.Write, 200, 299, owner: 1));

        Assert.That((await b.SetAsync(Posix(LockType.Write, 99, 99, owner: 2))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That((await b.SetAsync(Posix(LockType.Read, 250, 250, owner: 2))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That((await b.SetAsync(Posix(LockType.Write, 100, 199, owner: 2))).Ok, Is.True, "the gap between the locks is free");
        Assert.That((await b.SetAsync(Posix(LockType.Read, 0, 10, owner: 2))).Ok, Is.True, "read over read is shared");
    }

    [Test]
    public async Task AnOwnerNeverConflictsWithItself()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 99, owner: 1));
        Assert.That((await b.SetAsync(Posix(LockType.Write, 50, 60, owner: 1))).Ok, Is.True);
        Assert.That((await b.SetAsync(Posix(LockType.Read, 0, 200, owner: 1))).Ok, Is.True);
        Assert.That((await b.GetAsync(Posix(LockType.Write, 0, Eof, owner: 1))).Value.Type, Is.EqualTo(LockType.Unlock));
        Assert.That(b.PosixRanges, Is.EqualTo(new[] { (LockType.Read, 0L, 200L, 1UL, "c1") }),
            "the read lock replaced the owner's write lock where they overlap");
    }

    [Test]
    public async Task UnlockingASubRangeSplitsTheLock()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 99, owner: 1));
        Assert.That((await b.SetAsync(Posix(LockType.Unlock, 40, 59, owner: 1))).Ok, Is.True);

        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Write, 0L, 39L, 1UL, "c1"),
            (LockType.Write, 60L, 99L, 1UL, "c1"),
        }));
        Assert.That((await b.SetAsync(Posix(LockType.Write, 40, 59, owner: 2))).Ok, Is.True);
        Assert.That((await b.SetAsync(Posix(LockType.Write, 39, 39, owner: 3))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That((await b.SetAsync(Posix(LockType.Write, 60, 60, owner: 3))).Error, Is.EqualTo(Errno.EAGAIN));
    }

    [Test]
    public async Task UnlockToEofSplitsAnEofLock()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 100, Eof, owner: 1));
        Assert.That((await b.SetAsync(Posix(LockType.Write, 1L << 40, 1L << 40, owner: 2))).Error, Is.EqualTo(Errno.EAGAIN),
            "a lock to EOF covers every later offset");
        await b.HoldAsync(Posix(LockType.Unlock, 200, 299, owner: 1));
        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Write, 100L, 199L, 1UL, "c1"),
            (LockType.Write, 300L, Eof, 1UL, "c1"),
        }));
    }

    [Test]
    public async Task AdjacentAndOverlappingRangesOfOneOwnerAndTypeMerge()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Read, 0, 9, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 10, 19, owner: 1));
        Assert.That(b.PosixRanges, Is.EqualTo(new[] { (LockType.Read, 0L, 19L, 1UL, "c1") }), "adjacent ranges merge");

        await b.HoldAsync(Posix(LockType.Read, 40, 50, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 15, 30, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 31, 39, owner: 1));
        Assert.That(b.PosixRanges, Is.EqualTo(new[] { (LockType.Read, 0L, 50L, 1UL, "c1") }), "a range bridging two merges all three");

        await b.HoldAsync(Posix(LockType.Write, 51, 60, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 61, 70, owner: 2));
        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Read, 0L, 50L, 1UL, "c1"),
            (LockType.Write, 51L, 60L, 1UL, "c1"),
            (LockType.Read, 61L, 70L, 2UL, "c1"),
        }), "another type or another owner does not merge");
    }

    [Test]
    public async Task UpgradeAndDowngradeOfASubRangeHappenInPlace()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Read, 0, 99, owner: 1));

        Assert.That((await b.SetAsync(Posix(LockType.Write, 40, 59, owner: 1))).Ok, Is.True, "upgrade while alone");
        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Read, 0L, 39L, 1UL, "c1"),
            (LockType.Write, 40L, 59L, 1UL, "c1"),
            (LockType.Read, 60L, 99L, 1UL, "c1"),
        }));
        Assert.That((await b.SetAsync(Posix(LockType.Read, 45, 45, owner: 2))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That((await b.SetAsync(Posix(LockType.Read, 39, 39, owner: 2))).Ok, Is.True);

        Assert.That((await b.SetAsync(Posix(LockType.Read, 40, 59, owner: 1))).Ok, Is.True, "downgrade");
        Assert.That(b.PosixRanges.Where(r => r.Item4 == 1), Is.EqualTo(new[] { (LockType.Read, 0L, 99L, 1UL, "c1") }),
            "the downgraded range merges back with its read neighbours");
        Assert.That((await b.SetAsync(Posix(LockType.Read, 45, 45, owner: 2))).Ok, Is.True);
    }

    [Test]
    public async Task AnUpgradeThatConflictsFailsAndKeepsTheReadLock()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Read, 0, 99, owner: 1));
        await b.HoldAsync(Posix(LockType.Read, 50, 50, owner: 2));

        Assert.That((await b.SetAsync(Posix(LockType.Write, 0, 99, owner: 1))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That(b.PosixRanges, Is.EqualTo(new[]
        {
            (LockType.Read, 0L, 99L, 1UL, "c1"),
            (LockType.Read, 50L, 50L, 2UL, "c1"),
        }));
    }

    [Test]
    public async Task GetlkReportsTheConflictingLockOrUnlock()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 10, 19, owner: 1, pid: 4242));
        await b.HoldAsync(Posix(LockType.Read, 30, 39, owner: 1, pid: 4242));

        var conflict = (await b.GetAsync(Posix(LockType.Read, 0, 100, owner: 2))).Value;
        Assert.That((conflict.Type, conflict.Start, conflict.End, conflict.Pid, conflict.Owner, conflict.ClientId),
            Is.EqualTo((LockType.Write, 10L, 19L, 4242u, 1UL, "c1")));

        var readConflict = (await b.GetAsync(Posix(LockType.Write, 25, 35, owner: 2))).Value;
        Assert.That((readConflict.Type, readConflict.Start, readConflict.End), Is.EqualTo((LockType.Read, 30L, 39L)));

        var free = (await b.GetAsync(Posix(LockType.Read, 25, 35, owner: 2))).Value;
        Assert.That((free.Type, free.Start, free.End), Is.EqualTo((LockType.Unlock, 25L, 35L)), "read over read would not conflict");
        Assert.That((await b.GetAsync(Posix(LockType.Write, 0, Eof, owner: 1))).Value.Type, Is.EqualTo(LockType.Unlock),
            "the owner's own locks never conflict");
        Assert.That(b.PosixRanges.Count(), Is.EqualTo(2), "GETLK takes nothing");
    }

    [Test]
    public async Task EqualOwnerNumbersFromTwoClientsAreDifferentOwners()
    {
        await using var b = await StartAsync();
        await b.HoldAsync(Posix(LockType.Write, 0, 9, owner: 7, client: "c1"));

        Assert.That((await b.SetAsync(Posix(LockType.Write, 0, 9, owner: 7, client: "c2"))).Error, Is.EqualTo(Errno.EAGAIN));
        var conflict = (await b.GetAsync(Posix(LockType.Read, 0, 0, owner: 7, client: "c2"))).Value;
        Assert.That((conflict.Type, conflict.Owner, conflict.ClientId), Is.EqualTo((LockType.Write, 7UL, "c1")));
    }

    [Test]
    public async Task OfdLocksShareTheTableButAreNotTheProcesssLocks()
    {
        await using var b = await StartAsync();
        var ofd = Posix(LockType.Write, 0, 9, owner: 5) with { Kind = LockKind.Ofd };
        await b.HoldAsync(ofd);

        Assert.That((await b.SetAsync(Posix(LockType.Read, 5, 5, owner: 5))).Error, Is.EqualTo(Errno.EAGAIN),
            "a process lock conflicts with an OFD lock even under the same owner number");
        var flushed = await b.Top.FlushAsync(Ctx("c1", lockOwner: 5), b.File);
        Assert.That(flushed.Ok, Is.True);
        Assert.That(b.State.Posix.Single().Kind, Is.EqualTo(LockKind.Ofd), "close(2) does not drop OFD locks");

        var fd = new FileHandle(b.File.Gfid, OpenFlags.ReadWrite) { LockOwner = 5 };
        Assert.That((await b.Top.OpenAsync(Ctx(), fd)).Ok, Is.True);
        Assert.That((await b.Top.ReleaseAsync(Ctx(), fd)).Ok, Is.True);
        Assert.That(b.State.Posix, Is.Empty, "releasing the open file description drops its OFD locks");
    }

    [TestCase(-1L, 10L, LockCommand.Set, LockType.Write)]
    [TestCase(10L, 9L, LockCommand.Set, LockType.Read)]
    [TestCase(0L, 9L, LockCommand.Get, LockType.Unlock)]
    public async Task MalformedRequestsFailWithEinval(long start, long end, LockCommand command, LockType type)
    {
        await using var b = await StartAsync();
        var lk = Posix(type, start, end, owner: 1);
        var r = await b.Top.LkAsync(Ctx(), b.File, command, lk);
        Assert.That(r.Error, Is.EqualTo(Errno.EINVAL));
        Assert.That(b.State.Posix, Is.Empty);
    }
}
