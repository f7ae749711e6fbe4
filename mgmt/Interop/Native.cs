using System.Runtime.InteropServices;

namespace Brickfs.Mgmt.Interop;

/// <summary>The few libc calls .NET does not expose: fsync of a directory, and signals (SIGTERM, SIGSTOP/SIGCONT).</summary>
internal static partial class Native
{
    private const int O_RDONLY = 0, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;
    public const int SIGTERM = 15, SIGSTOP = 19, SIGCONT = 18;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>Makes a rename or create inside <paramref name="directory"/> durable. Throws IOException on failure.</summary>
    public static void FsyncDirectory(string directory)
    {
        int fd = Open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) throw new IOException($"open {directory}: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            if (FSync(fd) != 0) throw new IOException($"fsync {directory}: errno {Marshal.GetLastPInvokeError()}");
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>Sends <paramref name="signal"/>; false if the process is gone (ESRCH) or not ours.</summary>
    public static bool Signal(int pid, int signal) => Kill(pid, signal) == 0;
}
