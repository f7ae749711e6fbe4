using System.Runtime.InteropServices;

namespace Brickfs.Translators.Interop;

/// <summary>
/// Raw libc entry points used by the translators. Every call sets errno; read it with
/// <see cref="Marshal.GetLastPInvokeError"/>. Callers go through <see cref="Sys"/>, which turns
/// errno into <see cref="Core.Errno"/> results.
/// </summary>
internal static unsafe partial class Libc
{
    private const string L = "libc";

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_TRUNC = 0x200,
        O_APPEND = 0x400, O_DIRECT = 0x4000, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000, O_CLOEXEC = 0x80000,
        O_PATH = 0x200000, O_NOCTTY = 0x100, O_NONBLOCK = 0x800;

    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_EACCESS = 0x200,
        AT_SYMLINK_FOLLOW = 0x400, AT_EMPTY_PATH = 0x1000;

    public const ulong RESOLVE_NO_XDEV = 0x01, RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04,
        RESOLVE_BENEATH = 0x08;

    public const uint STATX_BASIC_STATS = 0x7ff;
    public const int F_GETFL = 3, F_SETFL = 4;
    public const long UTIME_NOW = (1L << 30) - 1, UTIME_OMIT = (1L << 30) - 2;

    [StructLayout(LayoutKind.Sequential)]
    public struct StatxTimestamp
    {
        public long Sec;
        public uint Nsec;
        private int _pad;
    }

    /// <summary>struct statx (identical on every Linux architecture, unlike struct stat).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    public struct Statx
    {
        public uint Mask;
        public uint BlkSize;
        public ulong Attributes;
        public uint Nlink;
        public uint Uid;
        public uint Gid;
        public ushort Mode;
        private ushort _pad1;
        public ulong Ino;
        public ulong Size;
        public ulong Blocks;
        public ulong AttributesMask;
        public StatxTimestamp Atime;
        public StatxTimestamp Btime;
        public StatxTimestamp Ctime;
        public StatxTimestamp Mtime;
        public uint RdevMajor;
        public uint RdevMinor;
        public uint DevMajor;
        public uint DevMinor;
    }

    /// <summary>struct statfs on 64-bit Linux.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatFs
    {
        public long Type;
        public long Bsize;
        public ulong Blocks;
        public ulong Bfree;
        public ulong Bavail;
        public ulong Files;
        public ulong Ffree;
        public ulong Fsid;
        public long Namelen;
        public long Frsize;
        public long Flags;
        public fixed long Spare[4];
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Sec;
        public long Nsec;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [LibraryImport(L, EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int OpenAt(int dirfd, string path, int flags, uint mode);

    [LibraryImport(L, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(L, EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall(long number, long a1, long a2, long a3, long a4, long a5);

    [LibraryImport(L, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int StatxAt(int dirfd, string path, int flags, uint mask, out Statx buf);

    [LibraryImport(L, EntryPoint = "fstatfs", SetLastError = true)]
    public static partial int FStatFs(int fd, out StatFs buf);

    /// <summary>statfs f_type of Btrfs.</summary>
    public const long BTRFS_SUPER_MAGIC = 0x9123683E;

    /// <summary>ioctl reading the inode flags (an int, whatever the macro's type says); FS_NOCOW_FL marks a nodatacow file.</summary>
    public const ulong FS_IOC_GETFLAGS = 0x80086601;
    public const int FS_NOCOW_FL = 0x00800000;

    [LibraryImport(L, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlGetInt(int fd, ulong request, out int value);

    /// <summary>struct fiemap without its extent array (fm_extent_count 0: the kernel only counts).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FiemapHeader
    {
        public ulong Start;
        public ulong Length;
        public uint Flags;
        public uint MappedExtents;
        public uint ExtentCount;
        public uint Reserved;
    }

    /// <summary>_IOWR('f', 11, struct fiemap).</summary>
    public const ulong FS_IOC_FIEMAP = 0xC020660B;
    public const uint FIEMAP_FLAG_SYNC = 0x1;

    [LibraryImport(L, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlFiemap(int fd, ulong request, ref FiemapHeader map);

    [LibraryImport(L, EntryPoint = "mkdirat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MkdirAt(int dirfd, string path, uint mode);

    [LibraryImport(L, EntryPoint = "mknodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MknodAt(int dirfd, string path, uint mode, ulong dev);

    [LibraryImport(L, EntryPoint = "symlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SymlinkAt(string target, int dirfd, string path);

    [LibraryImport(L, EntryPoint = "readlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint ReadlinkAt(int dirfd, string path, byte* buf, nint size);

    [LibraryImport(L, EntryPoint = "linkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int LinkAt(int olddirfd, string oldpath, int newdirfd, string newpath, int flags);

    [LibraryImport(L, EntryPoint = "unlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int UnlinkAt(int dirfd, string path, int flags);

    [LibraryImport(L, EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int RenameAt2(int olddirfd, string oldpath, int newdirfd, string newpath, uint flags);

    [LibraryImport(L, EntryPoint = "fchmodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int FChmodAt(int dirfd, string path, uint mode, int flags);

    [LibraryImport(L, EntryPoint = "fchmod", SetLastError = true)]
    public static partial int FChmod(int fd, uint mode);

    [LibraryImport(L, EntryPoint = "fchownat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int FChownAt(int dirfd, string path, uint uid, uint gid, int flags);

    [LibraryImport(L, EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int UtimensAt(int dirfd, string path, Timespec* times, int flags);

    [LibraryImport(L, EntryPoint = "futimens", SetLastError = true)]
    public static partial int FUtimens(int fd, Timespec* times);

    [LibraryImport(L, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int FTruncate(int fd, long length);

    [LibraryImport(L, EntryPoint = "truncate", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Truncate(string path, long length);

    [LibraryImport(L, EntryPoint = "pread", SetLastError = true)]
    public static partial nint PRead(int fd, byte* buf, nint count, long offset);

    [LibraryImport(L, EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint PWrite(int fd, byte* buf, nint count, long offset);

    [LibraryImport(L, EntryPoint = "fsync", SetLastError = true)]
    public static partial int FSync(int fd);

    [LibraryImport(L, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FDataSync(int fd);

    [LibraryImport(L, EntryPoint = "syncfs", SetLastError = true)]
    public static partial int SyncFs(int fd);

    [LibraryImport(L, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int FAllocate(int fd, int mode, long offset, long len);

    [LibraryImport(L, EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);

    [LibraryImport(L, EntryPoint = "getdents64", SetLastError = true)]
    public static partial nint GetDents64(int fd, byte* buf, nint count);

    [LibraryImport(L, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport(L, EntryPoint = "umask")]
    public static partial uint Umask(uint mask);

    [LibraryImport(L, EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    [LibraryImport(L, EntryPoint = "getxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint GetXattr(string path, string name, byte* value, nint size);

    [LibraryImport(L, EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint LGetXattr(string path, string name, byte* value, nint size);

    [LibraryImport(L, EntryPoint = "fgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint FGetXattr(int fd, string name, byte* value, nint size);

    [LibraryImport(L, EntryPoint = "setxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SetXattr(string path, string name, byte* value, nint size, int flags);

    [LibraryImport(L, EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int LSetXattr(string path, string name, byte* value, nint size, int flags);

    [LibraryImport(L, EntryPoint = "fsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int FSetXattr(int fd, string name, byte* value, nint size, int flags);

    [LibraryImport(L, EntryPoint = "listxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint ListXattr(string path, byte* list, nint size);

    [LibraryImport(L, EntryPoint = "removexattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int RemoveXattr(string path, string name);
}
