using System.Buffers.Binary;
using System.Text;
using Brickfs.Translators.Interop;

namespace Brickfs.Translators.Cluster.Distribute;

/// <summary>
/// Which child of a distribute translator owns which part of the 32-bit name-hash space for one
/// directory. Each child's copy of the directory stores its own range in the
/// <c>trusted.brickfs.layout</c> xattr; the ranges of all children together must cover
/// 0..2^32-1 exactly once (<see cref="IsComplete"/>), otherwise the layout is repaired. A child
/// without a range (a new brick before fix-layout) owns no names but still holds the directory.
/// </summary>
public sealed class DirLayout
{
    /// <summary>An inclusive range of name hashes.</summary>
    public readonly record struct Range(uint Start, uint End)
    {
        public bool Contains(uint hash) => hash >= Start && hash <= End;
        public ulong Length => (ulong)End - Start + 1;
    }

    private readonly Range?[] _ranges;

    public DirLayout(uint commit, Range?[] ranges)
    {
        Commit = commit;
        _ranges = ranges;
        IsComplete = CheckComplete(ranges);
    }

    /// <summary>Bumped by every fix-layout, so a newer layout is recognisable.</summary>
    public uint Commit { get; }

    public int ChildCount => _ranges.Length;

    /// <summary>The same ranges under another commit (rebalance marking a directory complete).</summary>
    public DirLayout WithCommit(uint commit) => new(commit, _ranges);

    /// <summary>Every hash belongs to exactly one child's range: no hole, no overlap.</summary>
    public bool IsComplete { get; }

    public Range? RangeOf(int child) => child < _ranges.Length ? _ranges[child] : null;

    /// <summary>The child owning <paramref name="hash"/>; -1 only for an incomplete layout.</summary>
    public int ChildFor(uint hash)
    {
        for (int i = 0; i < _ranges.Length; i++)
        {
            if (_ranges[i] is { } r && r.Contains(hash)) return i;
        }
        return -1;
    }

    public int ChildFor(string name) => ChildFor(NameHash(name));

    /// <summary>
    /// The 32-bit hash a name is placed by: the upper half of XXH3-64 over its UTF-8 bytes.
    /// Stable across machines and library versions, so layouts written by one client hold for all.
    /// </summary>
    public static uint NameHash(string name)
    {
        int max = Encoding.UTF8.GetMaxByteCount(name.Length);
        Span<byte> buf = max <= 1024 ? stackalloc byte[max] : new byte[max];
        int n = Encoding.UTF8.GetBytes(name, buf);
        return (uint)(XxHash.Hash3(buf[..n]) >> 32);
    }

    /// <summary>
    /// The space split into equal consecutive ranges over <paramref name="holders"/> (in child
    /// order); other children get none. Deterministic, so two clients repairing the same
    /// directory at once write the same layout.
    /// </summary>
    public static DirLayout Even(int childCount, IReadOnlyList<int> holders, uint commit) =>
        Weighted(childCount, holders, null, commit);

    /// <summary>
    /// The space split into consecutive ranges over <paramref name="holders"/> (in child order),
    /// each as long as its share of <paramref name="weights"/> (indexed by child; null or a
    /// non-positive weight anywhere among the holders means an even split). Deterministic for
    /// the same weights, so clients that see the same brick sizes write the same layout.
    /// </summary>
    public static DirLayout Weighted(int childCount, IReadOnlyList<int> holders, IReadOnlyList<ulong>? weights, uint commit)
    {
        var ranges = new Range?[childCount];
        bool weighted = weights is not null && holders.All(h => h < weights.Count && weights[h] > 0);
        UInt128 total = 0;
        foreach (int h in holders) total += weighted ? weights![h] : 1UL;
        UInt128 space = (UInt128)1 << 32, before = 0;
        for (int i = 0; i < holders.Count; i++)
        {
            UInt128 w = weighted ? weights![holders[i]] : 1UL;
            ulong start = (ulong)(space * before / total);
            ulong next = (ulong)(space * (before + w) / total);
            before += w;
            // A weight too small for even one hash owns nothing rather than an inverted range.
            if (next > start) ranges[holders[i]] = new Range((uint)start, (uint)(next - 1));
        }
        return new DirLayout(commit, ranges);
    }

    /// <summary>
    /// A new layout over <paramref name="holders"/> (weighted as <see cref="Weighted"/>) whose
    /// ranges overlap <paramref name="old"/> as much as a simple search finds, so that fix-layout
    /// after add-brick moves few names: children keep the order of their old ranges and each
    /// child without one is inserted where the total overlap is largest (GlusterFS maximises
    /// overlap likewise). Deterministic for the same inputs.
    /// </summary>
    public static DirLayout KeepingOverlap(int childCount, IReadOnlyList<int> holders, IReadOnlyList<ulong>? weights, DirLayout? old, uint commit)
    {
        if (old is null || !old.IsComplete) return Weighted(childCount, holders, weights, commit);
        var order = holders.Where(h => old.RangeOf(h) is not null).OrderBy(h => old.RangeOf(h)!.Value.Start).ToList();
        foreach (int added in holders.Where(h => old.RangeOf(h) is null))
        {
            int bestAt = order.Count;
            ulong best = 0;
            for (int at = 0; at <= order.Count; at++)
            {
                var trial = new List<int>(order);
                trial.Insert(at, added);
                ulong overlap = Weighted(childCount, trial, weights, commit).Overlap(old);
                if (overlap > best) (best, bestAt) = (overlap, at);
            }
            order.Insert(bestAt, added);
        }
        return Weighted(childCount, order, weights, commit);
    }

    /// <summary>How many hashes both layouts give to the same child.</summary>
    public ulong Overlap(DirLayout other)
    {
        ulong total = 0;
        for (int i = 0; i < _ranges.Length; i++)
        {
            if (_ranges[i] is not { } a || other.RangeOf(i) is not { } b) continue;
            ulong start = Math.Max(a.Start, b.Start), end = Math.Min(a.End, b.End);
            if (end >= start) total += end - start + 1;
        }
        return total;
    }

    private static bool CheckComplete(Range?[] ranges)
    {
        var sorted = ranges.Where(r => r.HasValue).Select(r => r!.Value).OrderBy(r => r.Start).ToList();
        if (sorted.Count == 0 || sorted[0].Start != 0) return false;
        for (int i = 1; i < sorted.Count; i++)
        {
            if (sorted[i - 1].End == uint.MaxValue || sorted[i].Start != sorted[i - 1].End + 1) return false;
        }
        return sorted[^1].End == uint.MaxValue && sorted.All(r => r.End >= r.Start);
    }

    // ---- the xattr ------------------------------------------------------------------------
    // 16 bytes, big-endian: format (1), flags (bit 0: has a range), 2 reserved, commit, start, end.

    public const int EncodedSize = 16;
    private const byte Format = 1;

    public byte[] Encode(int child) => EncodeEntry(Commit, RangeOf(child));

    public static byte[] EncodeEntry(uint commit, Range? range)
    {
        var b = new byte[EncodedSize];
        b[0] = Format;
        b[1] = range.HasValue ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), commit);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), range?.Start ?? 0);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), range?.End ?? 0);
        return b;
    }

    /// <summary>Reads one child's xattr; false for anything malformed (which then counts as missing).</summary>
    public static bool TryDecodeEntry(ReadOnlySpan<byte> b, out uint commit, out Range? range)
    {
        commit = 0;
        range = null;
        if (b.Length != EncodedSize || b[0] != Format) return false;
        commit = BinaryPrimitives.ReadUInt32BigEndian(b[4..]);
        uint start = BinaryPrimitives.ReadUInt32BigEndian(b[8..]), end = BinaryPrimitives.ReadUInt32BigEndian(b[12..]);
        if ((b[1] & 1) != 0)
        {
            if (end < start) return false;
            range = new Range(start, end);
        }
        return true;
    }

    public override string ToString() =>
        $"commit {Commit}: " + string.Join(", ", _ranges.Select((r, i) => r is { } x ? $"{i}=[{x.Start:x8}..{x.End:x8}]" : $"{i}=none"));
}
