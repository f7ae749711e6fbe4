using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Bridge;

/// <summary>
/// The names the bridge handed to the kernel per directory (entry replies), for as long as the
/// kernel may still trust them (the entry timeout plus a second of slack), so a lock point can
/// invalidate exactly the dentries that may be stale. Bounded: at most
/// <see cref="PerDirectory"/> names per directory (the oldest go first; a dropped name is at
/// worst trusted by the kernel until its entry timeout, as without tracking) and expired names
/// and directories are pruned as they are met.
/// </summary>
internal sealed class EntryTracker(TimeSpan entryTimeout)
{
    public const int PerDirectory = 256;
    private const int PruneAllAbove = 4096;

    private readonly long _ttlMs = entryTimeout <= TimeSpan.Zero ? 0 : (long)entryTimeout.TotalMilliseconds + 1000;
    private readonly Dictionary<Gfid, Dictionary<string, long>> _byDirectory = [];
    private readonly Lock _lock = new();

    /// <summary>The kernel was given <paramref name="name"/> in <paramref name="parent"/> just now.</summary>
    public void Handed(Gfid parent, string name)
    {
        if (_ttlMs == 0 || name is "." or "..") return;
        long now = Environment.TickCount64;
        lock (_lock)
        {
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

    private void PruneAll(long now)
    {
        foreach (var (dir, names) in _byDirectory)
        {
            Prune(names, now);
            if (names.Count == 0) _byDirectory.Remove(dir);
        }
    }
}
