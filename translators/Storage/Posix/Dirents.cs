using System.Buffers.Binary;

namespace Brickfs.Translators.Storage.Posix;

/// <summary>Walks a buffer filled by getdents64 (struct linux_dirent64 records).</summary>
internal static class Dirents
{
    public const byte DtUnknown = 0, DtDir = 4;

    public static bool Next(ReadOnlySpan<byte> buf, ref int pos, out long nextOffset, out byte type, out ReadOnlySpan<byte> name)
    {
        nextOffset = 0;
        type = 0;
        name = default;
        if (pos + 19 > buf.Length) return false;
        var rec = buf[pos..];
        nextOffset = BinaryPrimitives.ReadInt64LittleEndian(rec[8..]);
        int reclen = BinaryPrimitives.ReadUInt16LittleEndian(rec[16..]);
        type = rec[18];
        var raw = rec[19..reclen];
        int nul = raw.IndexOf((byte)0);
        name = nul >= 0 ? raw[..nul] : raw;
        pos += reclen;
        return true;
    }

    public static bool IsDot(ReadOnlySpan<byte> name) =>
        (name.Length == 1 && name[0] == '.') || (name.Length == 2 && name[0] == '.' && name[1] == '.');
}
