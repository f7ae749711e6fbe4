using System.Runtime.InteropServices;

namespace Brickfs.ClientFuse.Fuse;

// The Linux FUSE kernel protocol (include/uapi/linux/fuse.h), protocol 7.38. Structs are the
// kernel's byte layout: little-endian, 64-bit aligned, read and written with MemoryMarshal.

public enum FuseOpcode : uint
{
    Lookup = 1,
    Forget = 2,
    Getattr = 3,
    Setattr = 4,
    Readlink = 5,
    Symlink = 6,
    Mknod = 8,
    Mkdir = 9,
    Unlink = 10,
    Rmdir = 11,
    Rename = 12,
    Link = 13,
    Open = 14,
    Read = 15,
    Write = 16,
    Statfs = 17,
    Release = 18,
    Fsync = 20,
    Setxattr = 21,
    Getxattr = 22,
    Listxattr = 23,
    Removexattr = 24,
    Flush = 25,
    Init = 26,
    Opendir = 27,
    Readdir = 28,
    Releasedir = 29,
    Fsyncdir = 30,
    Getlk = 31,
    Setlk = 32,
    Setlkw = 33,
    Access = 34,
    Create = 35,
    Interrupt = 36,
    Bmap = 37,
    Destroy = 38,
    Ioctl = 39,
    Poll = 40,
    NotifyReply = 41,
    BatchForget = 42,
    Fallocate = 43,
    Readdirplus = 44,
    Rename2 = 45,
    Lseek = 46,
    CopyFileRange = 47,
    SetupMapping = 48,
    RemoveMapping = 49,
    Syncfs = 50,
    Tmpfile = 51,
}

public static class FuseConst
{
    public const uint KernelVersion = 7;
    public const uint KernelMinorVersion = 38;
    public const ulong RootId = 1;
    public const int MinReadBuffer = 8192;

    // INIT flags (64 bits: the upper half travels in flags2 when FUSE_INIT_EXT is set)
    public const ulong AsyncRead = 1 << 0;
    public const ulong PosixLocks = 1 << 1;
    public const ulong AtomicOTrunc = 1 << 3;
    public const ulong ExportSupport = 1 << 4;
    public const ulong BigWrites = 1 << 5;
    public const ulong DontMask = 1 << 6;
    public const ulong FlockLocks = 1 << 10;
    public const ulong AutoInvalData = 1 << 12;
    public const ulong DoReaddirplus = 1 << 13;
    public const ulong ReaddirplusAuto = 1 << 14;
    public const ulong AsyncDio = 1 << 15;
    public const ulong WritebackCache = 1 << 16;
    public const ulong ParallelDirops = 1 << 18;
    public const ulong HandleKillpriv = 1 << 19;
    /// <summary>The filesystem drops setuid/setgid on write, truncate and chown when the kernel's request says so (no security.capability probe per write).</summary>
    public const ulong HandleKillprivV2 = 1 << 28;
    public const ulong MaxPages = 1 << 22;
    public const ulong SetxattrExt = 1 << 29;
    public const ulong InitExt = 1 << 30;
    /// <summary>
    /// FUSE_PASSTHROUGH (7.40): an OPEN or CREATE reply may name a backing file (registered with
    /// FUSE_DEV_IOC_BACKING_OPEN); the kernel then reads and writes that file itself.
    /// </summary>
    public const ulong Passthrough = 1UL << 37;
    /// <summary>FUSE_OVER_IO_URING (7.42): requests may travel through per-CPU io_uring queues; offered only when the fuse module's enable_uring is Y.</summary>
    public const ulong OverIoUring = 1UL << 41;

    /// <summary>FOPEN_PASSTHROUGH: reads and writes of this open go to the backing file named by the reply's backing id.</summary>
    public const uint FopenPassthrough = 1 << 7;

    public const uint GetattrFh = 1 << 0;
    public const uint ReleaseFlush = 1 << 0;
    public const uint ReleaseFlockUnlock = 1 << 1;
    public const uint LkFlock = 1 << 0;
    public const uint WriteLockOwner = 1 << 1;
    /// <summary>FUSE_WRITE_KILL_SUIDGID: the writer lacks CAP_FSETID; drop setuid (and setgid if group-executable).</summary>
    public const uint WriteKillSuidGid = 1 << 2;
    /// <summary>FUSE_OPEN_KILL_SUIDGID (open_flags of OPEN/CREATE with O_TRUNC): as <see cref="WriteKillSuidGid"/> for the truncation.</summary>
    public const uint OpenKillSuidGid = 1 << 0;
    public const uint ReadLockOwner = 1 << 1;
    public const uint FsyncFdatasync = 1 << 0;

    public const uint FattrFh = 1 << 6;
    public const uint FattrLockOwner = 1 << 9;
    public const uint FattrKillSuidGid = 1 << 11;

    public const int NotifyInvalInode = 2;
    public const int NotifyInvalEntry = 3;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseInHeader
{
    public uint Len;
    public FuseOpcode Opcode;
    public ulong Unique;
    public ulong NodeId;
    public uint Uid;
    public uint Gid;
    public uint Pid;
    public ushort TotalExtLen;
    public ushort Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseOutHeader
{
    public uint Len;
    public int Error;
    public ulong Unique;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseAttr
{
    public ulong Ino;
    public ulong Size;
    public ulong Blocks;
    public ulong Atime;
    public ulong Mtime;
    public ulong Ctime;
    public uint AtimeNsec;
    public uint MtimeNsec;
    public uint CtimeNsec;
    public uint Mode;
    public uint Nlink;
    public uint Uid;
    public uint Gid;
    public uint Rdev;
    public uint BlkSize;
    public uint Flags;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseEntryOut
{
    public ulong NodeId;
    public ulong Generation;
    public ulong EntryValid;
    public ulong AttrValid;
    public uint EntryValidNsec;
    public uint AttrValidNsec;
    public FuseAttr Attr;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseAttrOut
{
    public ulong AttrValid;
    public uint AttrValidNsec;
    public uint Dummy;
    public FuseAttr Attr;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseForgetIn { public ulong NLookup; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseForgetOne { public ulong NodeId; public ulong NLookup; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseBatchForgetIn { public uint Count; public uint Dummy; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseGetattrIn { public uint GetattrFlags; public uint Dummy; public ulong Fh; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseMknodIn { public uint Mode; public uint Rdev; public uint Umask; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseMkdirIn { public uint Mode; public uint Umask; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseRenameIn { public ulong NewDir; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseRename2In { public ulong NewDir; public uint Flags; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseLinkIn { public ulong OldNodeId; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseSetattrIn
{
    public uint Valid;
    public uint Padding;
    public ulong Fh;
    public ulong Size;
    public ulong LockOwner;
    public ulong Atime;
    public ulong Mtime;
    public ulong Ctime;
    public uint AtimeNsec;
    public uint MtimeNsec;
    public uint CtimeNsec;
    public uint Mode;
    public uint Unused4;
    public uint Uid;
    public uint Gid;
    public uint Unused5;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseOpenIn { public uint Flags; public uint OpenFlags; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseCreateIn { public uint Flags; public uint Mode; public uint Umask; public uint OpenFlags; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseOpenOut { public ulong Fh; public uint OpenFlags; public int BackingId; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseReleaseIn { public ulong Fh; public uint Flags; public uint ReleaseFlags; public ulong LockOwner; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseFlushIn { public ulong Fh; public uint Unused; public uint Padding; public ulong LockOwner; }

/// <summary>fuse_read_in; also the layout of READDIR/READDIRPLUS requests.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseReadIn
{
    public ulong Fh;
    public ulong Offset;
    public uint Size;
    public uint ReadFlags;
    public ulong LockOwner;
    public uint Flags;
    public uint Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseWriteIn
{
    public ulong Fh;
    public ulong Offset;
    public uint Size;
    public uint WriteFlags;
    public ulong LockOwner;
    public uint Flags;
    public uint Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseWriteOut { public uint Size; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseStatfsOut
{
    public ulong Blocks;
    public ulong Bfree;
    public ulong Bavail;
    public ulong Files;
    public ulong Ffree;
    public uint Bsize;
    public uint NameLen;
    public uint Frsize;
    public uint Padding;
    public uint Spare0, Spare1, Spare2, Spare3, Spare4, Spare5;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseFsyncIn { public ulong Fh; public uint FsyncFlags; public uint Padding; }

/// <summary>The setxattr_in layout without FUSE_SETXATTR_EXT (which Brickfs never negotiates).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseSetxattrInCompat { public uint Size; public uint Flags; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseGetxattrIn { public uint Size; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseGetxattrOut { public uint Size; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseFileLock { public ulong Start; public ulong End; public uint Type; public uint Pid; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseLkIn { public ulong Fh; public ulong Owner; public FuseFileLock Lk; public uint LkFlags; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseLkOut { public FuseFileLock Lk; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseAccessIn { public uint Mask; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseInitIn
{
    public uint Major;
    public uint Minor;
    public uint MaxReadahead;
    public uint Flags;
    public uint Flags2;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseInitOut
{
    public uint Major;
    public uint Minor;
    public uint MaxReadahead;
    public uint Flags;
    public ushort MaxBackground;
    public ushort CongestionThreshold;
    public uint MaxWrite;
    public uint TimeGran;
    public ushort MaxPages;
    public ushort MapAlignment;
    public uint Flags2;
    /// <summary>How deep the backing files of passthrough opens may be stacked (7.40; 0 = passthrough off).</summary>
    public uint MaxStackDepth;
    public uint Unused1, Unused2, Unused3, Unused4, Unused5, Unused6;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseInterruptIn { public ulong Unique; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseFallocateIn { public ulong Fh; public ulong Offset; public ulong Length; public uint Mode; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseLseekIn { public ulong Fh; public ulong Offset; public uint Whence; public uint Padding; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseLseekOut { public ulong Offset; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseDirent { public ulong Ino; public ulong Off; public uint NameLen; public uint Type; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseNotifyInvalInodeOut { public ulong Ino; public long Off; public long Len; }

[StructLayout(LayoutKind.Sequential)]
public struct FuseNotifyInvalEntryOut { public ulong Parent; public uint NameLen; public uint Flags; }
