namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// Exclusive locks on block ranges of one file. Writes to disjoint blocks of a file run side by
/// side (a streaming writer keeps several writes in flight); a write, truncate, re-sign or load
/// that touches a block waits for every holder of an overlapping range. <see cref="LockAllAsync"/>
/// covers every block (truncate, fallocate, load, close). Waiters are not queued fairly: each
/// retries when a holder it overlapped lets go, which is enough for the few writers of one file.
/// </summary>
internal sealed class BlockLocks
{
    private sealed class Held(long lo, long hi)
    {
        public readonly long Lo = lo, Hi = hi;
        public readonly TaskCompletionSource Gone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private readonly List<Held> _held = [];
    private readonly Lock _lock = new();

    /// <summary>What a holder disposes to let go of its range.</summary>
    public readonly struct Releaser(BlockLocks owner, object held) : IDisposable
    {
        public void Dispose() => owner.Release((Held)held);
    }

    /// <summary>Waits until no one holds a block of [lo, hi) and takes them.</summary>
    public async ValueTask<Releaser> LockAsync(long lo, long hi)
    {
        if (hi <= lo) hi = lo + 1;
        var mine = new Held(lo, hi);
        while (true)
        {
            Task? wait = null;
            lock (_lock)
            {
                foreach (var h in _held)
                {
                    if (h.Lo < hi && lo < h.Hi)
                    {
                        wait = h.Gone.Task;
                        break;
                    }
                }
                if (wait is null)
                {
                    _held.Add(mine);
                    return new Releaser(this, mine);
                }
            }
            await wait;
        }
    }

    /// <summary>Every block of the file (truncate, fallocate, load, close).</summary>
    public ValueTask<Releaser> LockAllAsync() => LockAsync(0, long.MaxValue);

    private void Release(Held h)
    {
        lock (_lock) _held.Remove(h);
        h.Gone.TrySetResult();
    }
}
