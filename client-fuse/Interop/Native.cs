using System.Runtime.InteropServices;

namespace Brickfs.ClientFuse.Interop;

/// <summary>
/// The libc calls the FUSE session and the mount program need. Every call returns -1 (or a
/// negative count) on failure with the errno in <see cref="Marshal.GetLastPInvokeError"/>;
/// the wrappers return the errno as a positive number instead, so callers never touch it.
/// </summary>
internal static unsafe partial class Native
{
    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_RDWR = 2;
    public const int O_CREAT = 0x40;
    public const int O_APPEND = 0x400;
    public const int O_CLOEXEC = 0x80000;

    public const ulong MS_RDONLY = 1;
    public const ulong MS_NOSUID = 2;
    public const ulong MS_NODEV = 4;

    public const int MNT_DETACH = 2;

    public const int EINTR = 4;
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int ENODEV = 19;
    public const int EAGAIN = 11;
    public const int ENOSYS = 38;
    public const int ENOTCONN = 107;
    public const int ECONNABORTED = 103;
    public const int ECANCELED = 125;
    public const int EOPNOTSUPP = 95;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenRaw(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int CloseRaw(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadRaw(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    private static partial nint WritevRaw(int fd, IoVec* iov, int count);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MountRaw(string source, string target, string fstype, ulong flags, string? data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2Raw(string target, int flags);

    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    private static partial int SetsidRaw();

    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    private static partial int Dup2Raw(int oldFd, int newFd);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    private static partial int EventFdRaw(uint initval, int flags);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteRaw(int fd, void* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetaffinityRaw(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlRaw(int fd, nuint request, void* arg);

    /// <summary>struct fuse_backing_map (linux/fuse.h, 7.40): the descriptor the kernel reads and writes through.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct FuseBackingMap
    {
        public int Fd;
        public uint Flags;
        public ulong Padding;
    }

    /// <summary>FUSE_DEV_IOC_BACKING_OPEN = _IOW(229, 1, struct fuse_backing_map).</summary>
    private const nuint FuseDevIocBackingOpen = (1u << 30) | (16u << 16) | (229u << 8) | 1;
    /// <summary>FUSE_DEV_IOC_BACKING_CLOSE = _IOW(229, 2, uint32_t).</summary>
    private const nuint FuseDevIocBackingClose = (1u << 30) | (4u << 16) | (229u << 8) | 2;

    /// <summary>
    /// Registers <paramref name="fileFd"/> with the FUSE connection on <paramref name="fuseFd"/> as
    /// a passthrough backing file: the backing id (positive), or -errno.
    /// </summary>
    public static int OpenBacking(int fuseFd, int fileFd)
    {
        var map = new FuseBackingMap { Fd = fileFd };
        int id = IoctlRaw(fuseFd, FuseDevIocBackingOpen, &map);
        return id > 0 ? id : -Errno();
    }

    /// <summary>Drops a backing id (files opened with it keep their backing file); 0 or the errno.</summary>
    public static int CloseBacking(int fuseFd, int backingId)
    {
        uint id = (uint)backingId;
        return IoctlRaw(fuseFd, FuseDevIocBackingClose, &id) == 0 ? 0 : Errno();
    }

    private static int Errno() => Marshal.GetLastPInvokeError();

    /// <summary>open(2); returns the descriptor, or -errno.</summary>
    public static int Open(string path, int flags, int mode = 0)
    {
        int fd = OpenRaw(path, flags, mode);
        return fd >= 0 ? fd : -Errno();
    }

    public static void Close(int fd) => CloseRaw(fd);

    /// <summary>read(2) into <paramref name="buffer"/>: the count read, or -errno.</summary>
    public static int Read(int fd, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            nint n = ReadRaw(fd, p, (nuint)buffer.Length);
            return n >= 0 ? (int)n : -Errno();
        }
    }

    /// <summary>One writev(2) of up to three segments (a FUSE reply must be written in one call).</summary>
    public static int Writev(int fd, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b = default, ReadOnlySpan<byte> c = default)
    {
        fixed (byte* pa = a)
        fixed (byte* pb = b)
        fixed (byte* pc = c)
        {
            IoVec* iov = stackalloc IoVec[3];
            int n = 0;
            iov[n++] = new IoVec { Base = pa, Length = (nuint)a.Length };
            if (b.Length > 0) iov[n++] = new IoVec { Base = pb, Length = (nuint)b.Length };
            if (c.Length > 0) iov[n++] = new IoVec { Base = pc, Length = (nuint)c.Length };
            nint r = WritevRaw(fd, iov, n);
            return r >= 0 ? (int)r : -Errno();
        }
    }

    /// <summary>write(2) of a whole span to an ordinary file or pipe (retries short writes).</summary>
    public static int WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            int n = Writev(fd, data);
            if (n == -EINTR) continue;
            if (n < 0) return n;
            data = data[n..];
        }
        return 0;
    }

    /// <summary>mount(2); 0 or the errno.</summary>
    public static int Mount(string source, string target, string fstype, ulong flags, string? data) =>
        MountRaw(source, target, fstype, flags, data) == 0 ? 0 : Errno();

    /// <summary>umount2(2); 0 or the errno.</summary>
    public static int Umount2(string target, int flags) => Umount2Raw(target, flags) == 0 ? 0 : Errno();

    public static int Setsid() => SetsidRaw() >= 0 ? 0 : Errno();

    public static int Dup2(int oldFd, int newFd) => Dup2Raw(oldFd, newFd) >= 0 ? 0 : Errno();

    /// <summary>eventfd(2) with EFD_CLOEXEC: the descriptor, or -errno.</summary>
    public static int EventFd()
    {
        int fd = EventFdRaw(0, O_CLOEXEC);
        return fd >= 0 ? fd : -Errno();
    }

    /// <summary>Adds 1 to an eventfd's counter (wakes whoever waits on it); 0 or the errno.</summary>
    public static int EventFdSignal(int fd)
    {
        ulong one = 1;
        return WriteRaw(fd, &one, 8) == 8 ? 0 : Errno();
    }

    /// <summary>Pins the calling thread to <paramref name="cpu"/> (sched_setaffinity(0, ...)); 0 or the errno.</summary>
    public static int PinCurrentThread(int cpu)
    {
        if (cpu < 0 || cpu >= 1024) return 22; // EINVAL
        ulong* mask = stackalloc ulong[16];
        for (int i = 0; i < 16; i++) mask[i] = 0;
        mask[cpu / 64] = 1UL << (cpu % 64);
        return SchedSetaffinityRaw(0, 16 * sizeof(ulong), mask) == 0 ? 0 : Errno();
    }

    /// <summary>strerror text for an errno (for one-line error messages).</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
