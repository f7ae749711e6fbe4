using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// fcntl byte-range locks (process-associated and OFD) on one inode, with fcntl(2) semantics:
/// read locks are shared, write locks exclusive, an owner never conflicts with itself, and
/// setting a lock over an owner's own ranges replaces them there. The table stays canonical:
/// one owner's ranges never overlap, and its adjacent or overlapping ranges of one type are
/// merged, so what it reports matches what Linux would report for the same calls.
/// </summary>
internal sealed class PosixLockTable : LockTable
{
    private readonly record struct Range(LockOwnerKey Owner, LockType Type, long Start, long End, uint Pid)
    {
        public bool Overlaps(long start, long end) => Start <= end && start <= End;

        /// <summary>Touches [start, end] end to end without overlapping it.</summary>
        public bool Abuts(long start, long end) =>
            (End != long.MaxValue && End + 1 == start) || (end != long.MaxValue && end + 1 == Start);

        public FileLock ToFileLock() => new()
        {
            Type = Type, Start = Start, End = End, Pid = Pid, Owner = Owner.Owner, ClientId = Owner.ClientId,
            Kind = Owner.PosixKind,
        };
    }

    /// <summary>Held ranges ordered by start; conflicts are reported lowest start first.</summary>
    private List<Range> _held = [];

    public override bool HasHeld => _held.Count > 0;

    public override FileLock? FindConflict(LockOwnerKey owner, FileLock request)
    {
        foreach (var r in _held)
        {
            if (r.Start > request.End) break;
            if (Conflicts(r, owner, request.Type, request.Start, request.End)) return r.ToFileLock();
        }
        return null;
    }

    private static bool Conflicts(in Range held, LockOwnerKey owner, LockType type, long start, long end) =>
        held.Owner != owner && held.Overlaps(start, end) && (held.Type == LockType.Write || type == LockType.Write);

    public override void Apply(LockOwnerKey owner, FileLock request)
    {
        long start = request.Start, end = request.End;
        bool set = request.Type != LockType.Unlock;
        var next = new List<Range>(_held.Count + 2);
        foreach (var r in _held)
        {
            if (r.Owner != owner)
            {
                next.Add(r);
            }
            else if (set && r.Type == request.Type && (r.Overlaps(request.Start, request.End) || r.Abuts(request.Start, request.End)))
            {
                // Same type, touching: absorbed into the new range. Comparing with the request's
                // own bounds is enough, because an owner's same-type ranges never touch each other.
                start = Math.Min(start, r.Start);
                end = Math.Max(end, r.End);
            }
            else if (r.Overlaps(request.Start, request.End))
            {
                // Replaced (other type) or unlocked where the request covers it; the rest stays.
                if (r.Start < request.Start) next.Add(r with { End = request.Start - 1 });
                if (r.End > request.End) next.Add(r with { Start = request.End + 1 });
            }
            else
            {
                next.Add(r);
            }
        }
        if (set) next.Add(new Range(owner, request.Type, start, end, request.Pid));
        next.Sort(static (a, b) => a.Start.CompareTo(b.Start));
        _held = next;
    }

    public override bool RemoveHeld(Func<LockOwnerKey, bool> match) => _held.RemoveAll(r => match(r.Owner)) > 0;

    public override IReadOnlyList<FileLock> Held() => _held.Select(r => r.ToFileLock()).ToList();

    protected override bool HoldsFor(string clientId) => _held.Exists(r => r.Owner.ClientId == clientId);

    /// <summary>
    /// True when <paramref name="owner"/> waiting for <paramref name="request"/> would close a
    /// cycle of process owners each waiting for the next on this inode (fcntl's EDEADLK). Like
    /// Linux, OFD owners are left out: they are not processes, so a wait on one proves nothing.
    /// Cycles through other files are not seen: the files may live on other bricks.
    /// </summary>
    public bool WouldDeadlock(LockOwnerKey owner, FileLock request)
    {
        if (owner.OpenFileDescription) return false;
        var seen = new HashSet<LockOwnerKey>();
        var pending = new Stack<LockOwnerKey>();
        PushBlockers(owner, request, pending);
        while (pending.TryPop(out var blocker))
        {
            if (blocker == owner) return true;
            if (blocker.OpenFileDescription || !seen.Add(blocker)) continue;
            foreach (var w in Waiters)
            {
                if (w.Owner == blocker) PushBlockers(w.Owner, w.Request, pending);
            }
        }
        return false;
    }

    private void PushBlockers(LockOwnerKey owner, FileLock request, Stack<LockOwnerKey> into)
    {
        foreach (var r in _held)
        {
            if (Conflicts(r, owner, request.Type, request.Start, request.End)) into.Push(r.Owner);
        }
    }
}
