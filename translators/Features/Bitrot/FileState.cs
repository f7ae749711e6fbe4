using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// What bitrot knows about one file while anyone (an open descriptor, the scrubber, a truncate)
/// uses it: the checksums cached from the record, the dirty range, the bad mark. Everything that
/// changes data or checksums holds <see cref="Lock"/>; reads only take it to re-check a mismatch.
/// </summary>
internal sealed class FileState
{
    public FileState(Gfid gfid) => Gfid = gfid;

    public Gfid Gfid { get; }

    /// <summary>Serialises writers, truncates, re-signing and loading of this file.</summary>
    public SemaphoreSlim Lock { get; } = new(1, 1);

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

    /// <summary>The block range [DirtyLo, DirtyHi) recorded in the dirty marker on disk; empty when DirtyHi &lt;= DirtyLo.</summary>
    public long DirtyLo, DirtyHi;

    /// <summary>A checksum update did not reach the record: keep the dirty marker until the record is rewritten.</summary>
    public bool RecordBehind;

    public long Count => Volatile.Read(ref _sums).Length;

    /// <summary>The checksum of block <paramref name="block"/>, 0 when unsigned.</summary>
    public ulong Sum(long block)
    {
        var s = Volatile.Read(ref _sums);
        return (ulong)block < (ulong)s.Length ? Volatile.Read(ref s[block]) : 0;
    }

    public void Replace(ulong[] sums) => Volatile.Write(ref _sums, sums);

    /// <summary>Stores checksums of blocks first.. (growing the array as needed). Call under <see cref="Lock"/>.</summary>
    public void Set(long first, ReadOnlySpan<ulong> sums)
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

    /// <summary>Forgets checksums of blocks at or past <paramref name="blocks"/>. Call under <see cref="Lock"/>.</summary>
    public void Trim(long blocks)
    {
        var s = _sums;
        if (blocks >= s.Length) return;
        Volatile.Write(ref _sums, s.AsSpan(0, (int)Math.Max(blocks, 0)).ToArray());
    }

    public ReadOnlyMemory<ulong> Slice(long first, int count)
    {
        var s = _sums;
        var copy = new ulong[count];
        for (int i = 0; i < count; i++) copy[i] = first + i < s.Length ? s[first + i] : 0;
        return copy;
    }
}
