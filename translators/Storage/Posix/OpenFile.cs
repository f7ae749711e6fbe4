using Brickfs.Translators.Interop;

namespace Brickfs.Translators.Storage.Posix;

/// <summary>storage/posix's state on a <see cref="Core.FileHandle"/>: the OS descriptor behind it.</summary>
internal sealed class OpenFile(PosixFd fd, bool isDirectory, bool mayHaveSetId)
{
    public PosixFd Fd { get; } = fd;
    public bool IsDirectory { get; } = isDirectory;

    /// <summary>
    /// The file had setuid/setgid bits when opened (or got them through this handle): writes by a
    /// non-root caller then run under the caller's credentials so the kernel drops the bits.
    /// Other writes skip the credential switch.
    /// </summary>
    public bool MayHaveSetId { get; set; } = mayHaveSetId;

    /// <summary>Serialises seek+getdents on a directory handle.</summary>
    public Lock DirLock { get; } = new();
}
