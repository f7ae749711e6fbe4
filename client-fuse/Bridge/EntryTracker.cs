using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Bridge;

/// <summary>
/// The names the bridge handed to the kernel per directory (entry replies), for as long as the
/// kernel may still trust them (the entry timeout plus a second of slack), so a lock point can
/// invalidate exactly the dentries that may be stale. Bounded: at most
/// <see cref="PerDirectory"/> names per directory (the oldest go first; a dropped name is at
/// worst trusted by the kernel until its entry timeout, as without tracking) and expired names
/// and directories are pruned as they are met.
/// <para>A directory where a lock point happened in the last <see cref="LockDirectoryTime"/> is
/// a lock directory: names handed out there are not to be cached by the kernel at all (entry
/// timeout 0) and so are not tracked. Without that, every lock point in a busy directory would
/// invalidate up to <see cref="PerDirectory"/> dentries, one notification each: a .NET program
/// takes a flock on every file it opens, and 700 creates a second in one directory then cost
/// 256 notifications each. Lock points there now drop only the names handed out before the
/// directory became one, until they expire. The price is a lookup per path walk to those names,
/// which lock points made the rule there anyway.</para>
/// </summary>
internal sealed class EntryTracker(TimeSpan entryTimeout)
{
    public const int PerDirectory = 256;
    private const int PruneAllAbove = 4096;

    /// <summary>How long a directory stays a lock directory after its last lock point.</summary>
    public static readonly TimeSpan LockDirectoryTime = TimeSpan.FromSeconds(2);

    private readonly long _ttlMs = entryTimeout <= TimeSpan.Zero ? 0 : (long)entryTimeout.TotalMilliseconds + 1000;
    private readonly Dictionary<Gfid, Dictionary<string, long>> _byDirectory = [];
    /// <summary>Lock directories: when each one's last lock point was.</summary>
    private readonly Dictionary<Gfid, long> _lockDirectories = [];
    private readonly Lock _lock = new();

    /// <summary>
    /// The kernel is being given <paramref name="name"/> in <paramref name="parent"/>: true when
    /// it may cache the name for the entry timeout (and it is tracked), false when it must not
    /// cache it (a lock directory).
    /// </summary>
    public bool Handed(Gfid parent, string name)
    {
        if (_ttlMs == 0 || name is "." or "..") return true;
        long now = Environment.TickCount64;
        lock (_lock)
        {
            if (_lockDirectories.TryGetValue(parent, out long lockedAt))
            {
                if (now - lockedAt <= (long)LockDirectoryTime.TotalMilliseconds) return false;
                _lockDirectories.Remove(parent);
            }
            if (!_byDirectory.TryGetValue(parent, out var names))
            {
                if (_byDirectory.Count >= PruneAllAbove) PruneAll(now);
                _byDirectory[parent] = names = new Dictionary<string, long>(StringComparer.Ordinal);
            }
            names[name] = now;
            if (names.Count > PerDirectory)
            {
                Prune(names, now);
                while (names.Count > PerDirectory) names.Remove(names.MinBy(p => p.Value).Key);
            }
        }
        return true;
    }

    /// <summary>
    /// A lock point on a file in <paramref name="parent"/>: the directory is a lock directory
    /// from now on, and the names the kernel may still hold there are returned to invalidate.
    /// </summary>
    public List<string> LockPoint(Gfid parent)
    {
        if (_ttlMs == 0) return [];
        lock (_lock)
        {
            if (_lockDirectories.Count >= PruneAllAbove) PruneLockDirectories(Environment.TickCount64);
            _lockDirectories[parent] = Environment.TickCount64;
        }
        return NamesIn(parent);
    }

    /// <summary>Names in <paramref name="parent"/> the kernel may still hold dentries for.</summary>
    public List<string> NamesIn(Gfid parent)
    {
        long now = Environment.TickCount64;
        lock (_lock)
        {
            if (!_byDirectory.TryGetValue(parent, out var names)) return [];
            Prune(names, now);
            if (names.Count == 0)
            {
                _byDirectory.Remove(parent);
                return [];
            }
            return [.. names.Keys];
        }
    }

    /// <summary>How many directories are tracked (tests check the bound).</summary>
    public int Directories
    {
        get { lock (_lock) return _byDirectory.Count; }
    }

    private void Prune(Dictionary<string, long> names, long now)
    {
        foreach (var (name, at) in names)
        {
            if (now - at > _ttlMs) names.Remove(name);
        }
    }

    private void PruneLockDirectories(long now)
    {
        foreach (var (dir, at) in _lockDirectories)
        {
            if (now - at > (long)LockDirectoryTime.TotalMilliseconds) _lockDirectories.Remove(dir);
        }
    }

    private void PruneAll(long now)
    {
        foreach (var (dir, names) in _byDirectory)
        {
            Prune(names, now);
            if (names.Count == 0) _byDirectory.Remove(dir);
        }
    }
}
