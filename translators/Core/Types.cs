namespace Brickfs.Translators.Core;

/// <summary>File type bits of st_mode.</summary>
public static class ModeBits
{
    public const uint TypeMask = 0xF000; // S_IFMT
    public const uint Socket = 0xC000;
    public const uint Symlink = 0xA000;
    public const uint Regular = 0x8000;
    public const uint Block = 0x6000;
    public const uint Directory = 0x4000;
    public const uint Char = 0x2000;
    public const uint Fifo = 0x1000;
    public const uint SetUid = 0x800;
    public const uint SetGid = 0x400;
    public const uint Sticky = 0x200;
    public const uint PermMask = 0xFFF;

    public static bool IsDirectory(uint mode) => (mode & TypeMask) == Directory;
    public static bool IsRegular(uint mode) => (mode & TypeMask) == Regular;
    public static bool IsSymlink(uint mode) => (mode & TypeMask) == Symlink;

    /// <summary>The d_type of a directory entry for this mode.</summary>
    public static byte ToDirentType(uint mode) => (byte)((mode & TypeMask) >> 12);
}

public readonly record struct Timespec(long Sec, uint Nsec)
{
    public static Timespec Now()
    {
        long ticks = DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks;
        return new Timespec(ticks / TimeSpan.TicksPerSecond, (uint)(ticks % TimeSpan.TicksPerSecond * 100));
    }

    public override string ToString() => $"{Sec}.{Nsec:D9}";
}

/// <summary>
/// Attributes of a file as the graph reports them (GlusterFS's iatt). <see cref="Ino"/> is
/// derived from <see cref="Gfid"/>; <see cref="Nlink"/> of a directory is 2 + subdirectories.
/// </summary>
public sealed record Iatt
{
    public Gfid Gfid { get; init; }
    public uint Mode { get; init; }
    public uint Nlink { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public ulong Rdev { get; init; }
    public long Size { get; init; }
    public long Blocks { get; init; }
    public uint BlockSize { get; init; } = 4096;
    public Timespec Atime { get; init; }
    public Timespec Mtime { get; init; }
    public Timespec Ctime { get; init; }

    /// <summary>The xattrs named in <see cref="FopContext.XattrRequest"/> that exist; null when none were asked for.</summary>
    public IReadOnlyDictionary<string, byte[]>? Xattrs { get; init; }

    public ulong Ino => Gfid.InodeNumber;
    public bool IsDirectory => ModeBits.IsDirectory(Mode);
    public bool IsRegular => ModeBits.IsRegular(Mode);
    public bool IsSymlink => ModeBits.IsSymlink(Mode);
}

/// <summary>Which attributes a setattr changes (bits follow FUSE's FATTR_*).</summary>
[Flags]
public enum SetattrValid : uint
{
    None = 0,
    Mode = 1 << 0,
    Uid = 1 << 1,
    Gid = 1 << 2,
    Size = 1 << 3,
    Atime = 1 << 4,
    Mtime = 1 << 5,
    AtimeNow = 1 << 7,
    MtimeNow = 1 << 8,
    Ctime = 1 << 10,
    /// <summary>The caller asked to drop setuid/setgid (FUSE's FATTR_KILL_SUIDGID).</summary>
    KillSuidGid = 1 << 11,
}

public sealed record SetattrRequest
{
    public SetattrValid Valid { get; init; }
    public uint Mode { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public long Size { get; init; }
    public Timespec Atime { get; init; }
    public Timespec Mtime { get; init; }
    public Timespec Ctime { get; init; }

    public bool Has(SetattrValid v) => (Valid & v) != 0;
}

/// <summary>One directory entry. <see cref="NextOffset"/> is the cookie that resumes after it.</summary>
public sealed record DirEntry
{
    public required string Name { get; init; }
    public long NextOffset { get; init; }
    /// <summary>d_type (DT_REG = 8, DT_DIR = 4, ...).</summary>
    public byte Type { get; init; }
    /// <summary>The entry's GFID; null for "." and ".." or where the translator does not know it.</summary>
    public Gfid? Gfid { get; init; }
    /// <summary>Attributes, filled by readdirplus; null for "." and "..".</summary>
    public Iatt? Attr { get; init; }
}

public sealed record StatfsInfo
{
    public ulong Blocks { get; init; }
    public ulong BlocksFree { get; init; }
    public ulong BlocksAvailable { get; init; }
    public ulong Files { get; init; }
    public ulong FilesFree { get; init; }
    public uint BlockSize { get; init; } = 4096;
    public uint FragmentSize { get; init; } = 4096;
    public uint NameMax { get; init; } = 255;
}

[Flags]
public enum RenameFlags : uint
{
    None = 0,
    NoReplace = 1,
    Exchange = 2,
    Whiteout = 4,
}

public enum LockType : byte
{
    Read = 0,   // F_RDLCK
    Write = 1,  // F_WRLCK
    Unlock = 2, // F_UNLCK
}

public enum LockCommand : byte
{
    /// <summary>F_GETLK: report a conflicting lock, or Unlock if none.</summary>
    Get,
    /// <summary>F_SETLK: take or release without waiting (EAGAIN on conflict).</summary>
    Set,
    /// <summary>F_SETLKW: wait until granted; cancelled by the context (EINTR).</summary>
    SetWait,
}

public enum LockKind : byte
{
    /// <summary>fcntl process-associated lock; owner is the kernel's lock owner.</summary>
    Posix,
    /// <summary>flock(2); owner identifies the open file description.</summary>
    Flock,
    /// <summary>open file description lock (F_OFD_SETLK); owner identifies the open file description.</summary>
    Ofd,
}

/// <summary>
/// A byte-range lock request or answer. <see cref="End"/> is inclusive; long.MaxValue means "to EOF and
/// beyond". The owner is scoped by <see cref="ClientId"/>: equal owners from two clients are different owners.
/// </summary>
public sealed record FileLock
{
    public LockType Type { get; init; }
    public long Start { get; init; }
    public long End { get; init; } = long.MaxValue;
    public uint Pid { get; init; }
    public ulong Owner { get; init; }
    public string ClientId { get; init; } = "local";
    public LockKind Kind { get; init; }
}

/// <summary>open(2) flags the graph cares about (Linux values).</summary>
public static class OpenFlags
{
    public const int AccessMask = 3;
    public const int ReadOnly = 0;
    public const int WriteOnly = 1;
    public const int ReadWrite = 2;
    public const int Create = 0x40;
    public const int Exclusive = 0x80;
    public const int NoCtty = 0x100;
    public const int Truncate = 0x200;
    public const int Append = 0x400;
    public const int NonBlock = 0x800;
    public const int DSync = 0x1000;
    public const int Direct = 0x4000;
    public const int LargeFile = 0x8000;
    public const int Directory = 0x10000;
    public const int NoFollow = 0x20000;
    public const int NoAtime = 0x40000;
    public const int CloseOnExec = 0x80000;
    public const int Sync = 0x101000;
    public const int Path = 0x200000;
}

public static class FallocateMode
{
    public const int KeepSize = 0x01;
    public const int PunchHole = 0x02;
    public const int CollapseRange = 0x08;
    public const int ZeroRange = 0x10;
    public const int InsertRange = 0x20;
    public const int UnshareRange = 0x40;
}

public static class SeekWhence
{
    public const int Set = 0;
    public const int Current = 1;
    public const int End = 2;
    public const int Data = 3;
    public const int Hole = 4;
}

public static class XattrFlags
{
    public const int Create = 1;
    public const int Replace = 2;
}
