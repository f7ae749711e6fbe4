using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// What bitrot knows about one file while anyone (an open descriptor, the scrubber, a truncate)
/// uses it: the checksums cached from the record, the dirty range, the checksums not yet in the
/// record, the bad mark. Everything that changes data or checksums of a block holds that block in
/// <see cref="Blocks"/>; reads only take it to re-check a mismatch.
/// </summary>
internal sealed class FileState
{
    public FileState(Gfid gfid) => Gfid = gfid;

    public Gfid Gfid { get; }

    /// <summary>Serialises writers, truncates and re-signing of the same blocks; loading and closing take every block.</summary>
    public BlockLocks Blocks { get; } = new();

    /// <summary>Serialises changes of the dirty marker on disk (writers of disjoint blocks share it).</summary>
    public SemaphoreSlim MarkerLock { get; } = new(1, 1);

    /// <summary>Serialises opening and writing the sidecar record.</summary>
    public SemaphoreSlim RecordLock { get; } = new(1, 1);

    private readonly Lock _sumsLock = new();

    /// <summary>Holders (descriptors, scrubber, one-off fops); guarded by the translator's table lock.</summary>
    public int Refs;

    /// <summary>Set by load, cleared by close (both under <see cref="Lock"/>); read without it by readers.</summary>
    public volatile bool Loaded;

    public volatile bool Bad;

    /// <summary>Checksums by block (0 = unsigned). Replaced, never shrunk in place, so lock-free readers see a consistent array.</summary>
    private ulong[] _sums = [];

    /// <summary>The sidecar record, opened on load or on the first checksum to store.</summary>
    public FileHandle? Record;

    /// <summary>A private read-only descriptor for read-modify-write and re-signing (the caller's may be write-only).</summary>
    public FileHandle? Reader;

    /// <summary>The block range [DirtyLo, DirtyHi) recorded in the dirty marker on disk; empty when DirtyHi &lt;= DirtyLo. Changed under <see cref="MarkerLock"/>.</summary>
    public long DirtyLo, DirtyHi;

    /// <summary>The marker on disk was fsynced with the file (a file with a record needs that before anything the marker covers is issued).</summary>
    public bool DirtyStable;

    /// <summary>The last flush made the record, after an fsync of the file, with every block held: nothing in it can be ahead of the data, so the marker may go without more fsyncs.</summary>
    public bool FreshRecordSynced;

    /// <summary>Pages of the record (<see cref="PageEntries"/> checksums each) holding checksums not yet written there, and updates since the last flush.</summary>
    private readonly HashSet<long> _pendPages = [];
    private long _pendCount;

    /// <summary>Checksums per page of pending record updates: one page is 4 KiB of record.</summary>
    public const int PageEntries = 512;

    /// <summary>True while some checksum in memory has not reached the record: the dirty marker must stay.</summary>
    public bool RecordBehind
    {
        get { lock (_sumsLock) return _pendPages.Count > 0; }
    }

    /// <summary>Checksum updates not yet in the record, and the record pages they fall in.</summary>
    public (long Updates, int Pages) Pending
    {
        get { lock (_sumsLock) return (_pendCount, _pendPages.Count); }
    }

    /// <summary>Notes that the checksums of blocks [lo, hi) changed in memory and must reach the record.</summary>
    public void AddPending(long lo, long hi)
    {
        if (hi <= lo) return;
        lock (_sumsLock)
        {
            for (long p = lo / PageEntries; p <= (hi - 1) / PageEntries; p++) _pendPages.Add(p);
            _pendCount += hi - lo;
        }
    }

    /// <summary>
    /// Takes every pending page as runs of consecutive checksums (one record write each), clamped to
    /// the blocks the file has: entries past them mean nothing and are not written.
    /// </summary>
    public List<(long First, ulong[] Sums)> TakePending()
    {
        lock (_sumsLock)
        {
            var runs = new List<(long, ulong[])>();
            if (_pendPages.Count == 0) return runs;
            var pages = _pendPages.Order().ToArray();
            _pendPages.Clear();
            _pendCount = 0;
            var s = _sums;
            for (int i = 0; i < pages.Length;)
            {
                int j = i + 1;
                while (j < pages.Length && pages[j] == pages[j - 1] + 1) j++;
                long lo = pages[i] * PageEntries, hi = Math.Min((pages[j - 1] + 1) * PageEntries, s.Length);
                if (hi > lo) runs.Add((lo, s.AsSpan((int)lo, (int)(hi - lo)).ToArray()));
                i = j;
            }
            return runs;
        }
    }

    public long Count => Volatile.Read(ref _sums).Length;

    /// <summary>The checksum of block <paramref name="block"/>, 0 when unsigned.</summary>
    public ulong Sum(long block)
    {
        var s = Volatile.Read(ref _sums);
        return (ulong)block < (ulong)s.Length ? Volatile.Read(ref s[block]) : 0;
    }

    public void Replace(ulong[] sums)
    {
        lock (_sumsLock) Volatile.Write(ref _sums, sums);
    }

    /// <summary>Stores checksums of blocks first.. (growing the array as needed). Call holding those blocks.</summary>
    public void Set(long first, ReadOnlySpan<ulong> sums)
    {
        lock (_sumsLock) SetLocked(first, sums);
    }

    private void SetLocked(long first, ReadOnlySpan<ulong> sums)
    {
        var s = _sums;
        long need = first + sums.Length;
        if (need > s.Length)
        {
            var grown = new ulong[Math.Max(need, Math.Min(s.Length * 2L, need + (1 << 20)))];
            s.CopyTo(grown, 0);
            // Entries between the old end and first stay 0: unsigned.
            sums.CopyTo(grown.AsSpan((int)first));
            Volatile.Write(ref _sums, grown);
            return;
        }
        for (int i = 0; i < sums.Length; i++) Volatile.Write(ref s[first + i], sums[i]);
    }

    /// <summary>Forgets checksums of blocks at or past <paramref name="blocks"/>. Call holding every block.</summary>
    public void Trim(long blocks)
    {
        lock (_sumsLock)
        {
            var s = _sums;
            if (blocks < s.Length) Volatile.Write(ref _sums, s.AsSpan(0, (int)Math.Max(blocks, 0)).ToArray());
            if (blocks == 0) _pendPages.Clear();
        }
    }
}
