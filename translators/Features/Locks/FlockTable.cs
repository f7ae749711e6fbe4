using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// flock(2) locks on one inode: whole-file, shared or exclusive, one per owner (the open file
/// description). They never interact with fcntl locks, as on Linux.
/// </summary>
internal sealed class FlockTable : LockTable
{
    private readonly record struct Holder(LockOwnerKey Owner, LockType Type, uint Pid)
    {
        public FileLock ToFileLock() => new()
        {
            Type = Type, Start = 0, End = long.MaxValue, Pid = Pid, Owner = Owner.Owner, ClientId = Owner.ClientId,
            Kind = LockKind.Flock,
        };
    }

    /// <summary>Holders in the order they were granted.</summary>
    private readonly List<Holder> _held = [];

    public override bool HasHeld => _held.Count > 0;

    public override FileLock? FindConflict(LockOwnerKey owner, FileLock request)
    {
        foreach (var h in _held)
        {
            if (h.Owner != owner && (h.Type == LockType.Write || request.Type == LockType.Write)) return h.ToFileLock();
        }
        return null;
    }

    public override void Apply(LockOwnerKey owner, FileLock request)
    {
        int i = _held.FindIndex(h => h.Owner == owner);
        if (request.Type == LockType.Unlock)
        {
            if (i >= 0) _held.RemoveAt(i);
        }
        else if (i >= 0)
        {
            _held[i] = new Holder(owner, request.Type, request.Pid);
        }
        else
        {
            _held.Add(new Holder(owner, request.Type, request.Pid));
        }
    }

    /// <summary>
    /// Converting shared to exclusive or back first drops the owner's lock, as Linux does, so a
    /// conversion that then has to wait (or fails with EAGAIN) no longer holds the old lock;
    /// flock(2) documents that conversion is not atomic.
    /// </summary>
    public override bool PrepareConversion(LockOwnerKey owner, FileLock request)
    {
        int i = _held.FindIndex(h => h.Owner == owner);
        if (i < 0 || _held[i].Type == request.Type) return false;
        _held.RemoveAt(i);
        return true;
    }

    public override bool RemoveHeld(Func<LockOwnerKey, bool> match) => _held.RemoveAll(h => match(h.Owner)) > 0;

    public override IReadOnlyList<FileLock> Held() => _held.Select(h => h.ToFileLock()).ToList();

    protected override bool HoldsFor(string clientId) => _held.Exists(h => h.Owner.ClientId == clientId);
}
