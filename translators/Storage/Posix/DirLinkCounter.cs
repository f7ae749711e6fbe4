using System.Collections.Concurrent;
using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;

namespace Brickfs.Translators.Storage.Posix;

/// <summary>
/// Link count of a directory as ext4 reports it: 2 + subdirectories. Btrfs always reports 1,
/// so there the subdirectories are counted with getdents64 and the count cached per directory
/// until its mtime, ctime, size or inode changes (or a fop of ours invalidates it, for changes
/// within one timestamp tick). Filesystems that already count (ext4, tmpfs) are trusted.
/// </summary>
internal sealed class DirLinkCounter
{
    private const int MaxEntries = 65536;
    public readonly record struct Stamp(ulong Ino, long MtimeSec, uint MtimeNsec, long CtimeSec, uint CtimeNsec, ulong Size)
    {
        public static Stamp Of(in Libc.Statx st) => new(st.Ino, st.Mtime.Sec, st.Mtime.Nsec, st.Ctime.Sec, st.Ctime.Nsec, st.Size);
    }
    private readonly ConcurrentDictionary<Gfid, (Stamp Stamp, uint Count)> _cache = new();

    /// <summary>
    /// <paramref name="dirfd"/> is any descriptor of the directory (O_PATH is fine). Call as root:
    /// counting opens the directory for reading.
    /// </summary>
    public uint Nlink(Gfid g, int dirfd, in Libc.Statx st)
    {
        bool isRoot = g == Gfid.Root;
        if (st.Nlink >= 2) return st.Nlink - (isRoot ? 1u : 0u); // the hidden .brickfs is a subdirectory of the root
        var stamp = Stamp.Of(st);
        if (_cache.TryGetValue(g, out var hit) && hit.Stamp == stamp) return hit.Count;
        if (Count(dirfd, isRoot) is not { } subdirs) return 2;
        if (_cache.Count >= MaxEntries) _cache.Clear();
        _cache[g] = (stamp, 2 + subdirs);
        return 2 + subdirs;
    }

    public void Invalidate(Gfid g) => _cache.TryRemove(g, out _);

    /// <summary>
    /// Before a fop of ours that adds or removes only non-directories in <paramref name="g"/>:
    /// the directory's stamp from <paramref name="st"/>, a stat of it taken just before (the one
    /// that resolved it), when a count is cached; null otherwise.
    /// </summary>
    public Stamp? Mark(Gfid g, in Libc.Statx st) => _cache.ContainsKey(g) ? Stamp.Of(st) : null;

    /// <summary>
    /// After such a fop: the subdirectory count is unchanged, so the cached count moves to the
    /// directory's new stamp instead of being recounted (a recount reads the whole directory:
    /// one per create would make filling a directory quadratic). Anything else that changed the
    /// directory meanwhile (our mkdir/rmdir invalidate; a stamp that is no longer the marked one)
    /// leaves it to a recount.
    /// </summary>
    public void Carry(Gfid g, int dirfd, Stamp? before)
    {
        if (before is not { } b || Sys.Stat(dirfd, "", out var st) != Errno.None) return;
        if (_cache.TryGetValue(g, out var hit) && hit.Stamp == b) _cache.TryUpdate(g, (Stamp.Of(st), hit.Count), hit);
    }

    private static uint? Count(int dirfd, bool isRoot)
    {
        if (Sys.OpenAt(dirfd, ".", Libc.O_RDONLY | Libc.O_DIRECTORY, 0, out var dir) != Errno.None) return null;
        using var owned = dir.Own();
        var buf = new byte[32768];
        uint n = 0;
        while (true)
        {
            if (Sys.GetDents(dir.Fd, buf, out int len) != Errno.None) return null;
            if (len == 0) return n;
            int pos = 0;
            while (Dirents.Next(buf.AsSpan(0, len), ref pos, out _, out byte type, out var name))
            {
                if (Dirents.IsDot(name)) continue;
                if (isRoot && name.SequenceEqual(".brickfs"u8)) continue;
                if (type == Dirents.DtUnknown)
                {
                    if (Sys.Stat(dir.Fd, Encoding.UTF8.GetString(name), out var st) == Errno.None && ModeBits.IsDirectory(st.Mode)) n++;
                }
                else if (type == Dirents.DtDir) n++;
            }
        }
    }
}
