using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// A blocked F_SETLKW or blocking flock. It sits in its table's queue until the table grants it
/// (the lock is already in the table when <see cref="Completion"/> fires) or it is taken out
/// (cancelled, or its client released). Only code holding the inode's stripe lock touches
/// <see cref="Node"/>; completing happens after that lock is dropped.
/// </summary>
internal sealed class LockWaiter(LockOwnerKey owner, FileLock request)
{
    public LockOwnerKey Owner { get; } = owner;
    public FileLock Request { get; } = request;

    /// <summary>Continuations run asynchronously, so completing never runs a caller's code inline.</summary>
    public TaskCompletionSource<FopResult<FileLock>> Completion { get; } =
        new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The waiter's place in its queue; null once granted or removed.</summary>
    public LinkedListNode<LockWaiter>? Node { get; set; }

    public bool IsQueued => Node is not null;
}
