using System.Runtime.InteropServices;

namespace Brickfs.Translators.Interop;

/// <summary>
/// xxHash from Debian's libxxhash0 (libxxhash.so.0): XXH3-64 for block checksums and name
/// hashes, XXH64 where a seed-compatible classic hash is wanted. Both are stable across
/// machines and versions of the library, so values may be stored on disk and sent on the wire.
/// </summary>
public static partial class XxHash
{
    private const string Lib = "libxxhash.so.0";

    [LibraryImport(Lib, EntryPoint = "XXH3_64bits")]
    private static unsafe partial ulong Xxh3(byte* data, nuint length);

    [LibraryImport(Lib, EntryPoint = "XXH3_64bits_withSeed")]
    private static unsafe partial ulong Xxh3Seed(byte* data, nuint length, ulong seed);

    [LibraryImport(Lib, EntryPoint = "XXH64")]
    private static unsafe partial ulong Xxh64(byte* data, nuint length, ulong seed);

    public static unsafe ulong Hash3(ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data) return Xxh3(p, (nuint)data.Length);
    }

    public static unsafe ulong Hash3(ReadOnlySpan<byte> data, ulong seed)
    {
        fixed (byte* p = data) return Xxh3Seed(p, (nuint)data.Length, seed);
    }

    public static unsafe ulong Hash64(ReadOnlySpan<byte> data, ulong seed = 0)
    {
        fixed (byte* p = data) return Xxh64(p, (nuint)data.Length, seed);
    }
}
