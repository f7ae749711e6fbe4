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

    /// <summary>
    /// Whether the file is nodatacow (FS_NOCOW_FL), read once per handle: 0 = not read yet,
    /// 1 = copy-on-write, 2 = nodatacow or unknown. The flag can only change while a file is empty.
    /// </summary>
    public int NoCow;

    /// <summary>The inode's write tracking once this handle wrote (see PosixTranslator.Durability.cs).</summary>
    public UnsyncedWrites? Unsynced;

    /// <summary>Serialises seek+getdents on a directory handle.</summary>
    public Lock DirLock { get; } = new();
}

/// <summary>
/// Writes through open handles of one inode: <see cref="Written"/> counts completed writes,
/// <see cref="Synced"/> is the count a completed sync covered (a sync covers the writes that
/// completed before it started). <see cref="Handles"/> = handles that wrote and are open;
/// -1 once the entry is retired.
/// </summary>
internal sealed class UnsyncedWrites
{
    public long Written;
    public long Synced;
    public int Handles;

    /// <summary>Held by whoever syncs the file through this tracking, so a second sync waits for the first and finds nothing left.</summary>
    public readonly Lock SyncLock = new();

    public void MarkSynced(long upTo)
    {
        long seen;
        while ((seen = Interlocked.Read(ref Synced)) < upTo && Interlocked.CompareExchange(ref Synced, upTo, seen) != seen) { }
    }
}
