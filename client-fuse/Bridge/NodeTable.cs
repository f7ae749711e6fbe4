using System.Collections.Concurrent;
using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Bridge;

/// <summary>
/// Kernel node ids ↔ GFIDs with the kernel's lookup counts. Node ids are allocated
/// sequentially and never reused, so a stale id can never name another file; 1 is the root
/// and is never forgotten. Resolving an id (every request) is lock-free; only entry replies
/// and FORGET take the lock.
/// </summary>
internal sealed class NodeTable
{
    private sealed class Node(ulong id, Gfid gfid)
    {
        public readonly ulong Id = id;
        public readonly Gfid Gfid = gfid;
        public ulong Lookups;

        /// <summary>The directory the kernel last looked it up in (for hard links: any one of them).</summary>
        public Gfid? Parent;

        /// <summary>The mode in the newest attributes handed to the kernel (0 = none yet).</summary>
        public uint Mode;

        /// <summary>Until this time (Environment.TickCount64) the file is known to have no security.capability.</summary>
        public long NoCapabilityUntil;

        /// <summary>Entry changes made through this mount in the directory (and changes of its own attributes).</summary>
        public long Changes;

        /// <summary>A stat of the directory started after its latest change, for the GETATTR the kernel sends next.</summary>
        public DirStat? Prefetched;
    }

    /// <summary>A stat of a directory begun when it had seen <paramref name="Changes"/> changes.</summary>
    public sealed record DirStat(long Changes, long Until, Task<FopResult<Iatt>> Stat);

    private readonly ConcurrentDictionary<ulong, Node> _byId = new();
    private readonly Dictionary<Gfid, Node> _byGfid = new();
    private readonly Lock _lock = new();
    private ulong _next = 1;

    public NodeTable()
    {
        var root = new Node(1, Gfid.Root) { Lookups = 1 };
        _byId[1] = root;
        _byGfid[Gfid.Root] = root;
    }

    public int Count => _byId.Count;

    public bool TryGetGfid(ulong nodeId, out Gfid gfid)
    {
        if (_byId.TryGetValue(nodeId, out var n))
        {
            gfid = n.Gfid;
            return true;
        }
        gfid = default;
        return false;
    }

    /// <summary>The node id the kernel knows <paramref name="gfid"/> by, if it knows it.</summary>
    public bool TryGetNodeId(Gfid gfid, out ulong nodeId)
    {
        lock (_lock)
        {
            if (_byGfid.TryGetValue(gfid, out var n))
            {
                nodeId = n.Id;
                return true;
            }
        }
        nodeId = 0;
        return false;
    }

    /// <summary>Counts one more kernel reference to <paramref name="gfid"/> (an entry reply) and returns its node id.</summary>
    public ulong Remember(Gfid gfid) => Remember(gfid, null);

    /// <summary>As <see cref="Remember(Gfid)"/>, noting the directory the entry was found in.</summary>
    public ulong Remember(Gfid gfid, Gfid? parent)
    {
        lock (_lock)
        {
            if (!_byGfid.TryGetValue(gfid, out var n))
            {
                n = new Node(++_next, gfid);
                _byGfid[gfid] = n;
                _byId[n.Id] = n;
            }
            n.Lookups++;
            if (parent is not null) n.Parent = parent;
            return n.Id;
        }
    }

    /// <summary>The kernel dropped <paramref name="count"/> references; the node goes when none are left.</summary>
    public void Forget(ulong nodeId, ulong count)
    {
        if (nodeId == 1) return;
        lock (_lock)
        {
            if (!_byId.TryGetValue(nodeId, out var n)) return;
            n.Lookups = n.Lookups > count ? n.Lookups - count : 0;
            if (n.Lookups == 0)
            {
                _byId.TryRemove(nodeId, out _);
                _byGfid.Remove(n.Gfid);
            }
        }
    }

    /// <summary>The directory <paramref name="gfid"/> was last found in, while the kernel holds it.</summary>
    public bool TryGetParent(Gfid gfid, out Gfid parent)
    {
        lock (_lock)
        {
            if (_byGfid.TryGetValue(gfid, out var n) && n.Parent is { } p)
            {
                parent = p;
                return true;
            }
        }
        parent = default;
        return false;
    }

    /// <summary>Notes the mode of attributes about to be handed to the kernel for <paramref name="nodeId"/>.</summary>
    public void NoteMode(ulong nodeId, uint mode)
    {
        if (_byId.TryGetValue(nodeId, out var n)) Volatile.Write(ref n.Mode, mode);
    }

    /// <summary>The mode the kernel was last given for <paramref name="nodeId"/>; 0 when unknown.</summary>
    public uint ModeOf(ulong nodeId) => _byId.TryGetValue(nodeId, out var n) ? Volatile.Read(ref n.Mode) : 0;

    /// <summary>Notes that <paramref name="nodeId"/> has no security.capability, as known now, until <paramref name="until"/>.</summary>
    public void NoteNoCapability(ulong nodeId, long until)
    {
        if (_byId.TryGetValue(nodeId, out var n)) Volatile.Write(ref n.NoCapabilityUntil, until);
    }

    /// <summary>Forgets what <see cref="NoteNoCapability"/> noted (a capability is being set or removed).</summary>
    public void ForgetNoCapability(ulong nodeId)
    {
        if (_byId.TryGetValue(nodeId, out var n)) Volatile.Write(ref n.NoCapabilityUntil, 0);
    }

    /// <summary>True while <paramref name="nodeId"/> is known to have no security.capability.</summary>
    public bool KnownWithoutCapability(ulong nodeId) =>
        _byId.TryGetValue(nodeId, out var n) && Environment.TickCount64 < Volatile.Read(ref n.NoCapabilityUntil);

    /// <summary>
    /// Counts a change of directory <paramref name="nodeId"/> made through this mount (an entry
    /// added, removed or renamed, or its attributes set); a stat begun before it no longer
    /// answers for the directory. Returns the new count (0 for a node the kernel does not hold).
    /// </summary>
    public long DirChanged(ulong nodeId)
    {
        if (!_byId.TryGetValue(nodeId, out var n)) return 0;
        Volatile.Write(ref n.Prefetched, null);
        return Interlocked.Increment(ref n.Changes);
    }

    /// <summary>How many changes of directory <paramref name="nodeId"/> were counted (0 for a node the kernel does not hold).</summary>
    public long ChangesOf(ulong nodeId) => _byId.TryGetValue(nodeId, out var n) ? Volatile.Read(ref n.Changes) : 0;

    /// <summary>Keeps <paramref name="stat"/>, begun after change <paramref name="changes"/>, for the directory's next GETATTR.</summary>
    public void KeepDirStat(ulong nodeId, DirStat stat)
    {
        if (_byId.TryGetValue(nodeId, out var n) && Volatile.Read(ref n.Changes) == stat.Changes) Volatile.Write(ref n.Prefetched, stat);
    }

    /// <summary>
    /// Takes the kept stat of directory <paramref name="nodeId"/> if no change came after it
    /// began and it has not expired; each kept stat answers one GETATTR.
    /// </summary>
    public Task<FopResult<Iatt>>? TakeDirStat(ulong nodeId)
    {
        if (!_byId.TryGetValue(nodeId, out var n)) return null;
        var kept = Interlocked.Exchange(ref n.Prefetched, null);
        if (kept is null || kept.Changes != Volatile.Read(ref n.Changes) || Environment.TickCount64 >= kept.Until) return null;
        return kept.Stat;
    }

    public ulong LookupsOf(ulong nodeId)
    {
        lock (_lock) return _byId.TryGetValue(nodeId, out var n) ? n.Lookups : 0;
    }
}
