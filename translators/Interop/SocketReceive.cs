using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Brickfs.Translators.Interop;

/// <summary>
/// A receive that sleeps in the kernel on the calling thread. .NET keeps a socket non-blocking
/// once it has been used asynchronously and then emulates a synchronous <c>Receive</c> by waiting
/// for its epoll thread to signal readiness: two thread wake-ups per message. Here the calling
/// thread itself waits in poll(2) and reads with recv(2), so the kernel wakes exactly the
/// thread that decodes the frame. The socket's descriptor is held (SafeHandle reference) for
/// the duration, so a concurrent close cannot let the number be reused under us; closing
/// shuts the socket down first, which ends the wait.
/// </summary>
internal static unsafe partial class SocketReceive
{
    private const int MSG_DONTWAIT = 0x40;
    private const short POLLIN = 0x1;
    private const int EINTR = 4, EAGAIN = 11;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte* buf, nuint len, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    /// <summary>
    /// Reads at least one byte into <paramref name="buffer"/> (blocking until some arrive) and
    /// returns how many; 0 at end of stream (the peer closed, or the socket was shut down).
    /// Throws <see cref="IOException"/> for socket errors, <see cref="ObjectDisposedException"/>
    /// once the socket is closed.
    /// </summary>
    public static int Receive(SafeSocketHandle handle, Span<byte> buffer)
    {
        if (buffer.Length == 0) return 0;
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            fixed (byte* p = buffer)
            {
                while (true)
                {
                    nint n = Recv(fd, p, (nuint)buffer.Length, MSG_DONTWAIT);
                    if (n >= 0) return (int)n;
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    if (errno != EAGAIN) throw new IOException($"receive failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                    var pfd = new PollFd { Fd = fd, Events = POLLIN };
                    if (Poll(&pfd, 1, -1) < 0)
                    {
                        errno = Marshal.GetLastPInvokeError();
                        if (errno != EINTR) throw new IOException($"poll failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                    }
                }
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }
}
