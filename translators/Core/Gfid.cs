using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Brickfs.Translators.Core;

/// <summary>
/// The 128-bit identity of a file or directory: stable across rename, equal on every replica,
/// shared by all hard links of one file. Serialised big-endian, printed as a UUID.
/// </summary>
public readonly record struct Gfid(ulong Hi, ulong Lo)
{
    public const int Size = 16;

    /// <summary>The volume root, as in GlusterFS: 00000000-0000-0000-0000-000000000001.</summary>
    public static readonly Gfid Root = new(0, 1);
    public static readonly Gfid Null = new(0, 0);

    public bool IsNull => Hi == 0 && Lo == 0;

    public static Gfid NewRandom()
    {
        Span<byte> b = stackalloc byte[Size];
        RandomNumberGenerator.Fill(b);
        b[6] = (byte)((b[6] & 0x0F) | 0x40); // UUID version 4
        b[8] = (byte)((b[8] & 0x3F) | 0x80);
        return FromBytes(b);
    }

    public static Gfid FromBytes(ReadOnlySpan<byte> b) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(b), BinaryPrimitives.ReadUInt64BigEndian(b[8..]));

    public void WriteBytes(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64BigEndian(b, Hi);
        BinaryPrimitives.WriteUInt64BigEndian(b[8..], Lo);
    }

    public byte[] ToBytes()
    {
        var b = new byte[Size];
        WriteBytes(b);
        return b;
    }

    /// <summary>
    /// The inode number the mount reports. Derived from the GFID alone, so every client, every
    /// replica and every hard link agree on it; 1 is reserved for the root.
    /// </summary>
    public ulong InodeNumber
    {
        get
        {
            if (this == Root) return 1;
            ulong ino = Hi ^ Lo;
            return ino <= 1 ? ino + 2 : ino;
        }
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[Size];
        WriteBytes(b);
        return new Guid(b, bigEndian: true).ToString("D");
    }

    public static Gfid Parse(string s)
    {
        if (!TryParse(s, out var g)) throw new FormatException($"not a GFID: '{s}'");
        return g;
    }

    public static bool TryParse(string? s, out Gfid gfid)
    {
        gfid = default;
        if (!Guid.TryParseExact(s, "D", out var guid)) return false;
        Span<byte> b = stackalloc byte[Size];
        guid.TryWriteBytes(b, bigEndian: true, out _);
        gfid = FromBytes(b);
        return true;
    }
}
