using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// A lock owner as the brick sees it: the caller's owner number scoped by its client, so equal
/// owner numbers from two mounts never share locks. The pid plays no part. OFD owners are kept
/// apart from process owners: on Linux an open file description never equals a process's lock
/// owner, and keeping them apart is what lets close(2) (flush) drop a process's locks without
/// touching OFD locks, which live until the open file description is released.
/// </summary>
internal readonly record struct LockOwnerKey(string ClientId, ulong Owner, bool OpenFileDescription)
{
    public static LockOwnerKey Of(FileLock lk) => new(lk.ClientId, lk.Owner, lk.Kind == LockKind.Ofd);

    public LockKind PosixKind => OpenFileDescription ? LockKind.Ofd : LockKind.Posix;

    public override string ToString() => $"{ClientId}/{Owner:x}{(OpenFileDescription ? "(ofd)" : "")}";
}
