using Brickfs.Translators.Core;
using static Brickfs.Tests.Locks.LockBench;

namespace Brickfs.Tests.Locks;

/// <summary>Many threads contending through F_SETLKW: mutual exclusion holds and nothing is left behind.</summary>
public class ConcurrentLockTests
{
    [Test]
    public async Task WriteLocksExcludeEachOtherUnderContentionAndInterrupts()
    {
        await using var b = await StartAsync();
        int inside = 0, maxInside = 0, granted = 0, interrupted = 0;

        async Task Worker(ulong owner)
        {
            var rng = new Random((int)owner);
            for (int i = 0; i < 100; i++)
            {
                using var interrupt = new CancellationTokenSource();
                // Every third request is interrupted at some point while it may be waiting.
                if (i % 3 == 0) interrupt.CancelAfter(TimeSpan.FromTicks(rng.Next(1, 2000)));
                var r = await b.SetWaitAsync(Posix(LockType.Write, 10, 19, owner), interrupt.Token);
                if (r.Error == Errno.EINTR)
                {
                    Interlocked.Increment(ref interrupted);
                    continue;
                }
                Assert.That(r.Error, Is.EqualTo(Errno.None));
                int now = Interlocked.Increment(ref inside);
                InterlockedMax(ref maxInside, now);
                await Task.Yield();
                Interlocked.Decrement(ref inside);
                Interlocked.Increment(ref granted);
                Assert.That((await b.SetAsync(Posix(LockType.Unlock, 0, long.MaxValue, owner))).Ok, Is.True);
            }
        }

        var workers = Enumerable.Range(1, 8).Select(o => Task.Run(() => Worker((ulong)o))).ToArray();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(20));

        TestContext.Out.WriteLine($"granted {granted}, interrupted {interrupted}");
        Assert.That(maxInside, Is.EqualTo(1), "two owners held the same write range at once");
        Assert.That(granted + interrupted, Is.EqualTo(800));
        var state = b.State;
        Assert.That((state.Posix.Count, state.PosixWaiters), Is.EqualTo((0, 0)), "no lock or waiter is left behind");
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }
}
