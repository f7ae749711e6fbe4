using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Brickfs.Tests.Coherence.Interop;

/// <summary>fcntl(2) byte-range locks on an open file (Linux x86-64/arm64 struct flock).</summary>
internal static partial class Fcntl
{
    public const short ReadLock = 0, WriteLock = 1, Unlock = 2;
    private const int F_SETLK = 6, F_SETLKW = 7, F_OFD_SETLKW = 38;

    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Len;
        public int Pid;
    }

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int FcntlLock(nint fd, int cmd, ref Flock lk);

    /// <summary>Takes (type Unlock: releases) a whole-file lock; <paramref name="wait"/> blocks (F_SETLKW). Returns 0 or the errno.</summary>
    public static int Lock(SafeFileHandle file, short type, bool wait = true, bool ofd = false)
    {
        var lk = new Flock { Type = type, Whence = 0, Start = 0, Len = 0 };
        int cmd = ofd ? F_OFD_SETLKW : wait ? F_SETLKW : F_SETLK;
        return FcntlLock(file.DangerousGetHandle(), cmd, ref lk) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }
}
