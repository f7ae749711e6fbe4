using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>Every lock and waiter on one inode; exists only while something is held or waiting.</summary>
internal sealed class InodeLocks(Gfid gfid)
{
    private Dictionary<DomainKey, PosixLockTable>? _domains;

    public Gfid Gfid { get; } = gfid;

    public PosixLockTable Posix { get; } = new();

    public FlockTable Flock { get; } = new();

    public bool IsEmpty => Posix.IsEmpty && Flock.IsEmpty && (_domains is null || _domains.Values.All(t => t.IsEmpty));

    public LockTable TableFor(LockKind kind) => kind == LockKind.Flock ? Flock : Posix;

    /// <summary>
    /// The table of an inodelk or entrylk domain (created on first use). Each domain is its own
    /// namespace, apart from the application's fcntl locks and from every other domain.
    /// </summary>
    public PosixLockTable Domain(DomainKey key)
    {
        _domains ??= [];
        if (!_domains.TryGetValue(key, out var table)) _domains[key] = table = new PosixLockTable();
        return table;
    }

    /// <summary>Forgets domain tables that hold and wait for nothing.</summary>
    public void TidyDomains()
    {
        if (_domains is null) return;
        foreach (var key in _domains.Where(p => p.Value.IsEmpty).Select(p => p.Key).ToList()) _domains.Remove(key);
    }

    /// <summary>Every table of the inode: fcntl, flock and all domains.</summary>
    public IEnumerable<LockTable> AllTables()
    {
        yield return Posix;
        yield return Flock;
        if (_domains is null) yield break;
        foreach (var t in _domains.Values) yield return t;
    }

    public bool Involves(string clientId) => AllTables().Any(t => t.Involves(clientId));
}

/// <summary>An internal lock namespace: inode locks (byte ranges) or entry locks (names) of one domain.</summary>
internal readonly record struct DomainKey(string Domain, bool Entry);
