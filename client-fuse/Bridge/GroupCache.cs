using System.Collections.Concurrent;
using System.Globalization;

namespace Brickfs.ClientFuse.Bridge;

/// <summary>
/// Supplementary groups of a calling process, read from /proc/&lt;pid&gt;/status ("Groups:") and
/// kept about a second per pid: long enough that a burst of requests from one process reads
/// /proc once, short enough that a newgrp or a recycled pid is seen quickly.
/// </summary>
internal sealed class GroupCache
{
    private sealed record Entry(uint[] Groups, long ExpiresAt);

    private readonly ConcurrentDictionary<uint, Entry> _entries = new();
    private readonly long _ttlMs;
    private long _nextSweep;

    public GroupCache(TimeSpan ttl) => _ttlMs = (long)ttl.TotalMilliseconds;

    public uint[] Get(uint pid)
    {
        if (pid == 0) return [];
        long now = Environment.TickCount64;
        if (_entries.TryGetValue(pid, out var e) && e.ExpiresAt > now) return e.Groups;
        var groups = Read(pid);
        _entries[pid] = new Entry(groups, now + _ttlMs);
        if (now > Volatile.Read(ref _nextSweep))
        {
            Volatile.Write(ref _nextSweep, now + 10 * _ttlMs);
            foreach (var kv in _entries)
                if (kv.Value.ExpiresAt <= now) _entries.TryRemove(kv);
        }
        return groups;
    }

    public static uint[] Read(uint pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (!line.StartsWith("Groups:", StringComparison.Ordinal)) continue;
                var parts = line.AsSpan(7).Trim().ToString().Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                var result = new uint[parts.Length];
                for (int i = 0; i < parts.Length; i++) result[i] = uint.Parse(parts[i], CultureInfo.InvariantCulture);
                return result;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            // The process is gone or unreadable: it gets no supplementary groups.
        }
        return [];
    }
}
