using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// The locks of one kind (POSIX/OFD byte ranges, or flock) on one inode, with the queue of
/// requests waiting for them. Not thread-safe: the owning translator holds the inode's stripe
/// lock around every call.
/// </summary>
/// <remarks>
/// Grant rule: a request, new or queued, is granted as soon as no lock HELD by another owner
/// conflicts with it; queued waiters never block anyone. On every change the queue is scanned in
/// arrival order, so among waiters that compete for the same bytes the oldest wins, and each
/// grant is visible to the waiters behind it. This is what Linux does and what fcntl(2)
/// requires of F_SETLK (it must succeed when no held lock conflicts). The price is that a stream
/// of overlapping readers can starve a waiting writer; making later readers queue behind it would
/// add wait-for edges POSIX does not have, and with them deadlocks between processes that POSIX
/// promises cannot deadlock (and that EDEADLK detection could not explain). Writers that must not
/// starve use a whole-range lock protocol such as SQLite's PENDING byte.
/// </remarks>
internal abstract class LockTable
{
    private readonly LinkedList<LockWaiter> _waiters = new();

    public abstract bool HasHeld { get; }

    public int WaiterCount => _waiters.Count;

    public bool IsEmpty => !HasHeld && _waiters.Count == 0;

    protected IEnumerable<LockWaiter> Waiters => _waiters;

    /// <summary>The first lock held by another owner that conflicts with <paramref name="request"/>, or null.</summary>
    public abstract FileLock? FindConflict(LockOwnerKey owner, FileLock request);

    /// <summary>Takes or (Type Unlock) releases <paramref name="request"/> for its owner; the caller checked conflicts.</summary>
    public abstract void Apply(LockOwnerKey owner, FileLock request);

    /// <summary>
    /// Prepares a request of an owner that already holds a lock here; returns true when that
    /// changed the table (so waiters must be re-examined). Only flock needs it.
    /// </summary>
    public virtual bool PrepareConversion(LockOwnerKey owner, FileLock request) => false;

    /// <summary>Drops every held lock whose owner matches; true if any was dropped.</summary>
    public abstract bool RemoveHeld(Func<LockOwnerKey, bool> match);

    /// <summary>A snapshot of the held locks, in the order conflicts are reported.</summary>
    public abstract IReadOnlyList<FileLock> Held();

    protected abstract bool HoldsFor(string clientId);

    /// <summary>True while the client holds or waits for anything in this table.</summary>
    public bool Involves(string clientId)
    {
        if (HoldsFor(clientId)) return true;
        foreach (var w in _waiters)
        {
            if (w.Owner.ClientId == clientId) return true;
        }
        return false;
    }

    public void Enqueue(LockWaiter waiter) => waiter.Node = _waiters.AddLast(waiter);

    /// <summary>Takes a still-queued waiter out; false when it was already granted or removed.</summary>
    public bool TryRemove(LockWaiter waiter)
    {
        if (waiter.Node is not { } node) return false;
        _waiters.Remove(node);
        waiter.Node = null;
        return true;
    }

    /// <summary>Takes out every waiter whose owner matches, adding it to <paramref name="removed"/>.</summary>
    public void RemoveWaiters(Func<LockOwnerKey, bool> match, List<LockWaiter> removed)
    {
        for (var node = _waiters.First; node is not null;)
        {
            var next = node.Next;
            if (match(node.Value.Owner))
            {
                TryRemove(node.Value);
                removed.Add(node.Value);
            }
            node = next;
        }
    }

    /// <summary>
    /// Grants, in arrival order, every waiter that no held lock conflicts with any more (see the
    /// grant rule above). Granted locks are in the table on return; the caller completes them.
    /// </summary>
    public void Wake(List<LockWaiter> granted)
    {
        // A grant can itself free bytes (a waiter's read request replaces its owner's write lock
        // over the same range), so scan again until a pass grants nothing.
        bool grantedAny;
        do
        {
            grantedAny = false;
            for (var node = _waiters.First; node is not null;)
            {
                var next = node.Next;
                var w = node.Value;
                if (FindConflict(w.Owner, w.Request) is null)
                {
                    Apply(w.Owner, w.Request);
                    TryRemove(w);
                    granted.Add(w);
                    grantedAny = true;
                }
                node = next;
            }
        }
        while (grantedAny && _waiters.Count > 0);
    }
}
