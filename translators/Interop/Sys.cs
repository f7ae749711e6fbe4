using System.Runtime.InteropServices;
using System.Text;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Interop;

/// <summary>
/// Safe wrappers over <see cref="Libc"/>: spans instead of pointers, <see cref="Errno"/> instead of
/// -1/errno. Every descriptor opened here is close-on-exec. Nothing here follows a symlink unless
/// the method says so.
/// </summary>
internal static unsafe class Sys
{
    private const long SysOpenat2 = 437, SysFaccessat2 = 439;

    private static Errno Err() => (Errno)Marshal.GetLastPInvokeError();
    private static Errno Check(int rc) => rc == 0 ? Errno.None : Err();

    /// <summary>"/proc/self/fd/N": a path that lands on exactly the object behind the descriptor (a symlink itself, for an O_PATH|O_NOFOLLOW descriptor of one).</summary>
    public static string ProcPath(int fd) => "/proc/self/fd/" + fd.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static Errno OpenAt(int dirfd, string path, int flags, uint mode, out PosixFd fd)
    {
        int r = Libc.OpenAt(dirfd, path, flags | Libc.O_CLOEXEC, mode);
        fd = r >= 0 ? new PosixFd(r) : null!;
        return r >= 0 ? Errno.None : Err();
    }

    /// <summary>openat2(2): the kernel enforces <paramref name="resolve"/> (RESOLVE_BENEATH etc.) on the whole walk.</summary>
    public static Errno OpenAt2(int dirfd, string path, int flags, uint mode, ulong resolve, out PosixFd fd)
    {
        var how = new Libc.OpenHow { Flags = (ulong)(uint)(flags | Libc.O_CLOEXEC), Mode = mode, Resolve = resolve };
        int len = Encoding.UTF8.GetByteCount(path);
        Span<byte> p = len < 1024 ? stackalloc byte[len + 1] : new byte[len + 1];
        Encoding.UTF8.GetBytes(path, p);
        p[len] = 0;
        long r;
        fixed (byte* pp = p)
            r = Libc.Syscall(SysOpenat2, dirfd, (long)pp, (long)&how, sizeof(Libc.OpenHow), 0);
        fd = r >= 0 ? new PosixFd((int)r) : null!;
        return r >= 0 ? Errno.None : Err();
    }

    /// <summary>statx of <paramref name="path"/> under <paramref name="dirfd"/> without following a final symlink; "" means the descriptor itself.</summary>
    public static Errno Stat(int dirfd, string path, out Libc.Statx st)
    {
        int flags = Libc.AT_SYMLINK_NOFOLLOW | (path.Length == 0 ? Libc.AT_EMPTY_PATH : 0);
        return Check(Libc.StatxAt(dirfd, path, flags, Libc.STATX_BASIC_STATS, out st));
    }

    public static Errno FStatFs(int fd, out Libc.StatFs st) => Check(Libc.FStatFs(fd, out st));

    /// <summary>
    /// Writes back the file's dirty pages and waits for the writes to complete (FIEMAP with
    /// FIEMAP_FLAG_SYNC). On Btrfs that includes its ordered extents: the file extent items are
    /// in the running transaction when this returns. No log tree write, no cache flush.
    /// </summary>
    public static Errno WriteBackAndWait(int fd)
    {
        var map = new Libc.FiemapHeader { Start = 0, Length = ulong.MaxValue, Flags = Libc.FIEMAP_FLAG_SYNC, ExtentCount = 0 };
        return Check(Libc.IoctlFiemap(fd, Libc.FS_IOC_FIEMAP, ref map));
    }

    /// <summary>The inode flags of an open (not O_PATH) descriptor (FS_IOC_GETFLAGS).</summary>
    public static Errno GetInodeFlags(int fd, out int flags) => Check(Libc.IoctlGetInt(fd, Libc.FS_IOC_GETFLAGS, out flags));
    public static Errno MkdirAt(int dirfd, string name, uint mode) => Check(Libc.MkdirAt(dirfd, name, mode));
    public static Errno MknodAt(int dirfd, string name, uint mode, ulong dev) => Check(Libc.MknodAt(dirfd, name, mode, dev));
    public static Errno SymlinkAt(string target, int dirfd, string name) => Check(Libc.SymlinkAt(target, dirfd, name));

    /// <summary>Links <paramref name="oldPath"/> (not following a final symlink) as <paramref name="newPath"/>.</summary>
    public static Errno LinkAt(int olddirfd, string oldPath, int newdirfd, string newPath, int flags = 0) =>
        Check(Libc.LinkAt(olddirfd, oldPath, newdirfd, newPath, flags));

    public static Errno UnlinkAt(int dirfd, string name, bool dir = false) => Check(Libc.UnlinkAt(dirfd, name, dir ? Libc.AT_REMOVEDIR : 0));

    public static Errno RenameAt2(int olddirfd, string oldName, int newdirfd, string newName, uint flags) =>
        Check(Libc.RenameAt2(olddirfd, oldName, newdirfd, newName, flags));

    /// <summary>chmod of the object at <paramref name="path"/>, following symlinks (use a /proc path to pin the object).</summary>
    public static Errno Chmod(string path, uint mode) => Check(Libc.FChmodAt(Libc.AT_FDCWD, path, mode, 0));

    public static Errno FChmod(int fd, uint mode) => Check(Libc.FChmod(fd, mode));

    /// <summary>chown of the descriptor's object itself (O_PATH descriptors allowed); uint.MaxValue leaves a field.</summary>
    public static Errno FChown(int fd, uint uid, uint gid) =>
        Check(Libc.FChownAt(fd, "", uid, gid, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW));

    /// <summary>Sets times; a null side is left alone, <see cref="Libc.UTIME_NOW"/> nanoseconds mean now.</summary>
    public static Errno Utimens(int fd, string? path, (long Sec, long Nsec)? atime, (long Sec, long Nsec)? mtime)
    {
        var ts = stackalloc Libc.Timespec[2];
        ts[0] = atime is { } a ? new Libc.Timespec { Sec = a.Sec, Nsec = a.Nsec } : new Libc.Timespec { Nsec = Libc.UTIME_OMIT };
        ts[1] = mtime is { } m ? new Libc.Timespec { Sec = m.Sec, Nsec = m.Nsec } : new Libc.Timespec { Nsec = Libc.UTIME_OMIT };
        return path is null ? Check(Libc.FUtimens(fd, ts)) : Check(Libc.UtimensAt(Libc.AT_FDCWD, path, ts, 0));
    }

    public static Errno FTruncate(int fd, long size) => Check(Libc.FTruncate(fd, size));
    public static Errno Truncate(string path, long size) => Check(Libc.Truncate(path, size));

    public static Errno PRead(int fd, Span<byte> buffer, long offset, out int count)
    {
        count = 0;
        fixed (byte* p = buffer)
        {
            while (count < buffer.Length)
            {
                nint r = Libc.PRead(fd, p + count, buffer.Length - count, offset + count);
                if (r < 0)
                {
                    var e = Err();
                    if (e == Errno.EINTR) continue;
                    return count > 0 ? Errno.None : e;
                }
                if (r == 0) break;
                count += (int)r;
            }
        }
        return Errno.None;
    }

    public static Errno PWrite(int fd, ReadOnlySpan<byte> data, long offset, out int count)
    {
        count = 0;
        fixed (byte* p = data)
        {
            while (count < data.Length)
            {
                nint r = Libc.PWrite(fd, p + count, data.Length - count, offset + count);
                if (r < 0)
                {
                    var e = Err();
                    if (e == Errno.EINTR) continue;
                    return count > 0 ? Errno.None : e;
                }
                count += (int)r;
            }
        }
        return Errno.None;
    }

    public static Errno FSync(int fd, bool dataOnly) => Check(dataOnly ? Libc.FDataSync(fd) : Libc.FSync(fd));

    /// <summary>Commits the whole filesystem holding <paramref name="fd"/> (not an O_PATH descriptor).</summary>
    public static Errno SyncFs(int fd) => Check(Libc.SyncFs(fd));
    public static Errno FAllocate(int fd, int mode, long offset, long length) => Check(Libc.FAllocate(fd, mode, offset, length));

    public static Errno LSeek(int fd, long offset, int whence, out long result)
    {
        result = Libc.LSeek(fd, offset, whence);
        return result >= 0 ? Errno.None : Err();
    }

    public static Errno GetDents(int fd, Span<byte> buffer, out int count)
    {
        nint r;
        fixed (byte* p = buffer) r = Libc.GetDents64(fd, p, buffer.Length);
        count = (int)Math.Max(r, 0);
        return r >= 0 ? Errno.None : Err();
    }

    public static Errno GetFlags(int fd, out int flags)
    {
        flags = Libc.Fcntl(fd, Libc.F_GETFL, 0);
        return flags >= 0 ? Errno.None : Err();
    }

    public static Errno SetFlags(int fd, int flags) => Libc.Fcntl(fd, Libc.F_SETFL, flags) >= 0 ? Errno.None : Err();

    /// <summary>faccessat2 with AT_EACCESS, so the check uses this thread's fsuid/fsgid and groups.</summary>
    public static Errno Access(string path, int mask)
    {
        int len = Encoding.UTF8.GetByteCount(path);
        Span<byte> p = stackalloc byte[len + 1];
        Encoding.UTF8.GetBytes(path, p);
        p[len] = 0;
        long r;
        fixed (byte* pp = p) r = Libc.Syscall(SysFaccessat2, Libc.AT_FDCWD, (long)pp, mask, Libc.AT_EACCESS, 0);
        return r == 0 ? Errno.None : Err();
    }

    public static Errno ReadLink(int dirfd, string path, out string target)
    {
        target = "";
        var buf = new byte[4096 + 1];
        nint r;
        fixed (byte* p = buf) r = Libc.ReadlinkAt(dirfd, path, p, buf.Length);
        if (r < 0) return Err();
        target = Encoding.UTF8.GetString(buf, 0, (int)r);
        return Errno.None;
    }

    public static uint Umask(uint mask) => Libc.Umask(mask);

    // ---- xattrs: by path. follow=true for /proc/self/fd/N paths (lands on the object), false for names in a directory.

    public static Errno GetXattr(string path, string name, bool follow, out byte[] value)
    {
        value = [];
        for (int attempt = 0; attempt < 4; attempt++)
        {
            nint size = follow ? Libc.GetXattr(path, name, null, 0) : Libc.LGetXattr(path, name, null, 0);
            if (size < 0) return Err();
            var buf = new byte[size];
            nint r;
            fixed (byte* p = buf) r = follow ? Libc.GetXattr(path, name, p, size) : Libc.LGetXattr(path, name, p, size);
            if (r >= 0)
            {
                value = r == size ? buf : buf[..(int)r];
                return Errno.None;
            }
            if (Err() != Errno.ERANGE) return Err();
        }
        return Errno.ERANGE;
    }

    /// <summary>Reads a fixed-size xattr into <paramref name="value"/>; the count read is returned in <paramref name="length"/>.</summary>
    public static Errno GetXattrInto(string path, string name, bool follow, Span<byte> value, out int length)
    {
        nint r;
        fixed (byte* p = value) r = follow ? Libc.GetXattr(path, name, p, value.Length) : Libc.LGetXattr(path, name, p, value.Length);
        length = (int)Math.Max(r, 0);
        return r >= 0 ? Errno.None : Err();
    }

    public static Errno FGetXattrInto(int fd, string name, Span<byte> value, out int length)
    {
        nint r;
        fixed (byte* p = value) r = Libc.FGetXattr(fd, name, p, value.Length);
        length = (int)Math.Max(r, 0);
        return r >= 0 ? Errno.None : Err();
    }

    public static Errno SetXattr(string path, string name, ReadOnlySpan<byte> value, int flags, bool follow)
    {
        fixed (byte* p = value)
            return Check(follow ? Libc.SetXattr(path, name, p, value.Length, flags) : Libc.LSetXattr(path, name, p, value.Length, flags));
    }

    public static Errno FSetXattr(int fd, string name, ReadOnlySpan<byte> value, int flags)
    {
        fixed (byte* p = value) return Check(Libc.FSetXattr(fd, name, p, value.Length, flags));
    }

    /// <summary>Lists xattr names of the object at a /proc path (following it to the object).</summary>
    public static Errno ListXattr(string path, out List<string> names)
    {
        names = [];
        for (int attempt = 0; attempt < 4; attempt++)
        {
            nint size = Libc.ListXattr(path, null, 0);
            if (size < 0) return Err();
            if (size == 0) return Errno.None;
            var buf = new byte[size];
            nint r;
            fixed (byte* p = buf) r = Libc.ListXattr(path, p, size);
            if (r < 0)
            {
                if (Err() == Errno.ERANGE) continue;
                return Err();
            }
            int start = 0;
            for (int i = 0; i < r; i++)
            {
                if (buf[i] != 0) continue;
                if (i > start) names.Add(Encoding.UTF8.GetString(buf, start, i - start));
                start = i + 1;
            }
            return Errno.None;
        }
        return Errno.ERANGE;
    }

    public static Errno RemoveXattr(string path, string name) => Check(Libc.RemoveXattr(path, name));
}
