using System.Runtime.InteropServices;

namespace Brickfs.ClientFuse.Interop;

/// <summary>
/// A minimal io_uring (include/uapi/linux/io_uring.h) for the FUSE-over-io-uring transport:
/// 128-byte SQEs, one issuer. Created and used by ONE thread only: the ring is set up with
/// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, so completions (and the kernel's
/// task work that fills FUSE request buffers) run only when that thread calls
/// <see cref="Enter"/>. No method is thread-safe.
/// </summary>
internal sealed unsafe partial class IoUring : IDisposable
{
    public const uint SetupSqe128 = 1u << 10;
    public const uint SetupSingleIssuer = 1u << 12;
    public const uint SetupDeferTaskrun = 1u << 13;
    private const uint FeatSingleMmap = 1u << 0;
    private const uint EnterGetEvents = 1u << 0;

    private const byte OpRead = 22;
    private const byte OpUringCmd = 46;

    private const int SqeSize = 128;
    private const int CqeSize = 16;
    private const long OffSqRing = 0;
    private const long OffSqes = 0x10000000;

    private const int SysIoUringSetup = 425;
    private const int SysIoUringEnter = 426;

    [StructLayout(LayoutKind.Sequential)]
    private struct SqOffsets
    {
        public uint Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1;
        public ulong UserAddr;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CqOffsets
    {
        public uint Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1;
        public ulong UserAddr;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Params
    {
        public uint SqEntries, CqEntries, Flags, SqThreadCpu, SqThreadIdle, Features, WqFd;
        public fixed uint Resv[3];
        public SqOffsets SqOff;
        public CqOffsets CqOff;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(void* addr, nuint length);

    private readonly int _fd;
    private readonly byte* _ring;
    private readonly nuint _ringSize;
    private readonly byte* _sqes;
    private readonly nuint _sqesSize;
    private readonly uint* _sqHead, _sqTail, _cqHead, _cqTail;
    private readonly uint _sqMask, _sqEntries, _cqMask;
    private readonly byte* _cqes;
    private readonly IoVec* _iovecs;
    private readonly int _iovecSlots;
    private uint _sqLocalTail;
    private uint _toSubmit;
    private bool _disposed;

    private IoUring(int fd, in Params p, byte* ring, nuint ringSize, byte* sqes, nuint sqesSize, int iovecSlots)
    {
        _fd = fd;
        _ring = ring;
        _ringSize = ringSize;
        _sqes = sqes;
        _sqesSize = sqesSize;
        _sqHead = (uint*)(ring + p.SqOff.Head);
        _sqTail = (uint*)(ring + p.SqOff.Tail);
        _sqMask = *(uint*)(ring + p.SqOff.RingMask);
        _sqEntries = *(uint*)(ring + p.SqOff.RingEntries);
        _cqHead = (uint*)(ring + p.CqOff.Head);
        _cqTail = (uint*)(ring + p.CqOff.Tail);
        _cqMask = *(uint*)(ring + p.CqOff.RingMask);
        _cqes = ring + p.CqOff.Cqes;
        // SQ slot i always names SQE i: submission order is the SQE order.
        uint* array = (uint*)(ring + p.SqOff.Array);
        for (uint i = 0; i < _sqEntries; i++) array[i] = i;
        _sqLocalTail = *_sqTail;
        _iovecSlots = iovecSlots;
        _iovecs = (IoVec*)NativeMemory.AllocZeroed((nuint)(iovecSlots * 2 * sizeof(IoVec)));
    }

    /// <summary>SQEs prepared but not yet handed to the kernel.</summary>
    public uint Unsubmitted => _toSubmit;

    /// <summary>
    /// io_uring_setup(2) with <paramref name="flags"/> plus the mappings; 0 or the errno
    /// (ENOSYS/EPERM: io_uring unavailable or disabled by sysctl; EINVAL: a flag unknown to this
    /// kernel). <paramref name="iovecSlots"/> two-segment iovecs are kept for REGISTER commands,
    /// one per slot, valid for the ring's life.
    /// </summary>
    public static int Create(uint entries, uint flags, int iovecSlots, out IoUring? ring)
    {
        ring = null;
        Params p = default;
        p.Flags = flags;
        long fd = Syscall(SysIoUringSetup, entries, (long)&p, 0, 0, 0, 0);
        if (fd < 0) return Marshal.GetLastPInvokeError();
        if ((p.Features & FeatSingleMmap) == 0)
        {
            Native.Close((int)fd);
            return Native.ENOSYS;
        }
        nuint sqSize = p.SqOff.Array + p.SqEntries * sizeof(uint);
        nuint cqSize = p.CqOff.Cqes + p.CqEntries * (uint)CqeSize;
        nuint ringSize = Math.Max(sqSize, cqSize);
        const int prot = 3; // PROT_READ | PROT_WRITE
        const int mapFlags = 0x1 | 0x8000; // MAP_SHARED | MAP_POPULATE
        byte* r = (byte*)Mmap(null, ringSize, prot, mapFlags, (int)fd, OffSqRing);
        if (r == (byte*)-1)
        {
            int e = Marshal.GetLastPInvokeError();
            Native.Close((int)fd);
            return e;
        }
        nuint sqesSize = p.SqEntries * (uint)SqeSize;
        byte* s = (byte*)Mmap(null, sqesSize, prot, mapFlags, (int)fd, OffSqes);
        if (s == (byte*)-1)
        {
            int e = Marshal.GetLastPInvokeError();
            Munmap(r, ringSize);
            Native.Close((int)fd);
            return e;
        }
        ring = new IoUring((int)fd, p, r, ringSize, s, sqesSize, iovecSlots);
        return 0;
    }

    private byte* NextSqe()
    {
        uint head = Volatile.Read(ref *_sqHead);
        if (_sqLocalTail - head >= _sqEntries) return null;
        byte* sqe = _sqes + (nuint)((_sqLocalTail & _sqMask) * SqeSize);
        new Span<byte>(sqe, SqeSize).Clear();
        return sqe;
    }

    private void Push()
    {
        _sqLocalTail++;
        _toSubmit++;
        Volatile.Write(ref *_sqTail, _sqLocalTail);
    }

    /// <summary>
    /// Queues an IORING_OP_URING_CMD on <paramref name="fd"/> whose 80-byte command area starts
    /// with <paramref name="cmd"/>. With <paramref name="iovecSlot"/> &gt;= 0 the SQE carries a
    /// two-segment iovec (addr/len) of [<paramref name="buffer"/>, +<paramref name="headerLength"/>)
    /// and [<paramref name="buffer"/> + <paramref name="payloadOffset"/>, +<paramref name="payloadLength"/>);
    /// the buffer must be pinned for as long as the kernel may use it. False when the SQ is full.
    /// </summary>
    public bool PrepUringCmd(int fd, uint cmdOp, ulong userData, ReadOnlySpan<byte> cmd,
        byte[]? buffer = null, int headerLength = 0, int payloadOffset = 0, int payloadLength = 0, int iovecSlot = -1)
    {
        if (cmd.Length > 80) throw new ArgumentException("uring command data is at most 80 bytes", nameof(cmd));
        byte* sqe = NextSqe();
        if (sqe == null) return false;
        sqe[0] = OpUringCmd;
        *(int*)(sqe + 4) = fd;
        *(uint*)(sqe + 8) = cmdOp;
        *(ulong*)(sqe + 32) = userData;
        if (iovecSlot >= 0)
        {
            if (buffer is null || iovecSlot >= _iovecSlots) throw new ArgumentOutOfRangeException(nameof(iovecSlot));
            byte* b = (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(buffer, 0);
            IoVec* iov = _iovecs + iovecSlot * 2;
            iov[0] = new IoVec { Base = b, Length = (nuint)headerLength };
            iov[1] = new IoVec { Base = b + payloadOffset, Length = (nuint)payloadLength };
            *(ulong*)(sqe + 16) = (ulong)iov;
            *(uint*)(sqe + 24) = 2;
        }
        cmd.CopyTo(new Span<byte>(sqe + 48, 80));
        Push();
        return true;
    }

    /// <summary>Queues an IORING_OP_READ of <paramref name="buffer"/> (pinned) from <paramref name="fd"/>. False when the SQ is full.</summary>
    public bool PrepRead(int fd, byte[] buffer, ulong userData)
    {
        byte* sqe = NextSqe();
        if (sqe == null) return false;
        sqe[0] = OpRead;
        *(int*)(sqe + 4) = fd;
        *(ulong*)(sqe + 8) = ulong.MaxValue; // offset -1: the file position (an eventfd has none)
        *(ulong*)(sqe + 16) = (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(buffer, 0);
        *(uint*)(sqe + 24) = (uint)buffer.Length;
        *(ulong*)(sqe + 32) = userData;
        Push();
        return true;
    }

    /// <summary>
    /// io_uring_enter(2): submits what is queued and, with GETEVENTS, runs the ring's task work
    /// and waits for at least <paramref name="minComplete"/> completions. 0 or the errno (EINTR:
    /// a signal; the caller loops). SQEs the kernel did not take stay queued for the next call.
    /// </summary>
    public int Enter(uint minComplete)
    {
        long r = Syscall(SysIoUringEnter, _fd, _toSubmit, minComplete, EnterGetEvents, 0, 0);
        if (r < 0) return Marshal.GetLastPInvokeError();
        _toSubmit -= (uint)Math.Min(r, _toSubmit);
        return 0;
    }

    /// <summary>Takes the next completion, if any.</summary>
    public bool TryReap(out ulong userData, out int result)
    {
        uint head = *_cqHead;
        if (head == Volatile.Read(ref *_cqTail))
        {
            userData = 0;
            result = 0;
            return false;
        }
        byte* cqe = _cqes + (nuint)((head & _cqMask) * CqeSize);
        userData = *(ulong*)cqe;
        result = *(int*)(cqe + 8);
        Volatile.Write(ref *_cqHead, head + 1);
        return true;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Munmap(_sqes, _sqesSize);
        Munmap(_ring, _ringSize);
        NativeMemory.Free(_iovecs);
        Native.Close(_fd);
    }
}
