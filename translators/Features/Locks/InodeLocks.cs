using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>Every lock and waiter on one inode; exists only while something is held or waiting.</summary>
internal sealed class InodeLocks(Gfid gfid)
{
    public Gfid Gfid { get; } = gfid;

    public PosixLockTable Posix { get; } = new();

    public FlockTable Flock { get; } = new();

    public bool IsEmpty => Posix.IsEmpty && Flock.IsEmpty;

    public LockTable TableFor(LockKind kind) => kind == LockKind.Flock ? Flock : Posix;

    public bool Involves(string clientId) => Posix.Involves(clientId) || Flock.Involves(clientId);
}
