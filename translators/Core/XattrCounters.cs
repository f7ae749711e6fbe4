using System.Buffers.Binary;

namespace Brickfs.Translators.Core;

/// <summary>
/// The encoding of counter xattrs changed by <see cref="Translator.XattropAsync"/>: a big-endian
/// int64 array. Adding vectors of different lengths pads the shorter with zeros.
/// </summary>
public static class XattrCounters
{
    public static long[] Decode(ReadOnlySpan<byte> raw)
    {
        var values = new long[raw.Length / 8];
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadInt64BigEndian(raw[(i * 8)..]);
        return values;
    }

    public static byte[] Encode(ReadOnlySpan<long> values)
    {
        var raw = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteInt64BigEndian(raw.AsSpan(i * 8), values[i]);
        return raw;
    }

    public static long[] Add(ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        var sum = new long[Math.Max(a.Length, b.Length)];
        for (int i = 0; i < sum.Length; i++) sum[i] = (i < a.Length ? a[i] : 0) + (i < b.Length ? b[i] : 0);
        return sum;
    }
}
