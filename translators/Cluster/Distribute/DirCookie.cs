namespace Brickfs.Translators.Cluster.Distribute;

/// <summary>
/// Readdir cookies of distribute: one 63-bit non-negative offset carrying (child index, the
/// child's own cookie). The child index takes bits 55..62 and the child's cookie bits 0..54.
/// storage/memory's cookies are small positions and storage/posix's are Btrfs d_off values
/// (directory index numbers), which fit; a child cookie that does not fit (e.g. ext4's 63-bit
/// hash cookies) is stored in a per-open-directory map and the offset names the map entry,
/// with index 255 as the marker. Mapped offsets resume only on the same open directory.
/// </summary>
internal static class DirCookie
{
    public const int ChildBits = 55;
    public const long MaxChildCookie = (1L << ChildBits) - 1;

    /// <summary>Children a distribute translator may have: indices 0..254; 255 marks a mapped cookie.</summary>
    public const int MaxChildren = 255;

    private const long MappedIndex = 255;

    public static bool TryPack(int child, long childCookie, out long cookie)
    {
        cookie = 0;
        if (childCookie < 0 || childCookie > MaxChildCookie) return false;
        cookie = ((long)child << ChildBits) | childCookie;
        return true;
    }

    public static long PackMapped(long key) => (MappedIndex << ChildBits) | key;

    /// <summary>Splits an offset; <c>Mapped</c> means <c>ChildCookie</c> is a map key, not a child cookie.</summary>
    public static (int Child, long ChildCookie, bool Mapped) Unpack(long cookie)
    {
        long index = (cookie >> ChildBits) & 0xFF;
        long low = cookie & MaxChildCookie;
        return index == MappedIndex ? (-1, low, true) : ((int)index, low, false);
    }
}
