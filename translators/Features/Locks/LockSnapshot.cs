using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// The lock state of one inode at one moment, for diagnostics (statedump) and tests: held fcntl
/// (POSIX and OFD) ranges ordered by start, held flock locks in grant order, and how many
/// requests wait in each queue.
/// </summary>
public sealed record LockSnapshot(
    IReadOnlyList<FileLock> Posix,
    IReadOnlyList<FileLock> Flock,
    int PosixWaiters,
    int FlockWaiters)
{
    public static readonly LockSnapshot Empty = new([], [], 0, 0);
}
