using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;

namespace Brickfs.Translators.Storage.Posix;

/// <summary>
/// O_PATH descriptors of recently used directories by GFID, least recently used evicted first.
/// A descriptor follows its directory through renames, so entries stay right until the
/// directory is removed. Leases are reference counted: eviction never closes a descriptor a
/// fop is still using. The lock is held only for dictionary and list updates.
/// </summary>
internal sealed class DirFdCache : IDisposable
{
    private readonly int _capacity;
    private readonly Dictionary<Gfid, LinkedListNode<(Gfid Gfid, PosixFd Fd)>> _map = new();
    private readonly LinkedList<(Gfid Gfid, PosixFd Fd)> _lru = new();
    private readonly Lock _lock = new();

    public DirFdCache(int capacity) => _capacity = capacity;

    public int Count
    {
        get { lock (_lock) return _map.Count; }
    }

    public bool TryLease(Gfid g, out FdLease lease)
    {
        lock (_lock)
        {
            if (_map.TryGetValue(g, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                lease = node.Value.Fd.Lease();
                return true;
            }
        }
        lease = default;
        return false;
    }

    /// <summary>Caches <paramref name="fd"/> (or keeps the entry another thread added first) and leases it.</summary>
    public FdLease AddAndLease(Gfid g, PosixFd fd)
    {
        PosixFd? evicted = null;
        FdLease lease;
        lock (_lock)
        {
            if (_map.TryGetValue(g, out var existing))
            {
                lease = existing.Value.Fd.Lease();
                evicted = fd;
            }
            else
            {
                _map[g] = _lru.AddFirst((g, fd));
                lease = fd.Lease();
                if (_map.Count > _capacity)
                {
                    var last = _lru.Last!;
                    _lru.RemoveLast();
                    _map.Remove(last.Value.Gfid);
                    evicted = last.Value.Fd;
                }
            }
        }
        evicted?.Dispose();
        return lease;
    }

    public void Remove(Gfid g)
    {
        PosixFd? fd = null;
        lock (_lock)
        {
            if (_map.Remove(g, out var node))
            {
                _lru.Remove(node);
                fd = node.Value.Fd;
            }
        }
        fd?.Dispose();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var (_, fd) in _lru) fd.Dispose();
            _lru.Clear();
            _map.Clear();
        }
    }
}
