using System.Security.Cryptography;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

// The migration guard: how a migrating file is kept safe from writers in any client.
//
// Every client's distribute holds a shared inode lock in the MigrationDomain on a file's data
// child for as long as it has the file open for writing (taken before the open or create, so
// the handle is guarded from its first byte), and for the length of each metadata change made
// without a write handle (truncate, chmod, xattrs). A migration takes the exclusive lock
// without waiting: it gets it only when no client writes the file, and holds it until the old
// copy is gone, so writers opening meanwhile wait and then find the file at its new place.
// Locks live on the bricks (features/locks) under the client's lease: a client that dies stops
// blocking migrations when its lease ends. Children without inode locks (ENOSYS: in-memory test
// bricks) are unguarded; there only this translator's own open-for-write count protects files.
public sealed partial class DistributeTranslator
{
    /// <summary>The inodelk domain of the guard: apart from applications' locks and replicate's.</summary>
    public const string MigrationDomain = "brickfs.dht.migrate";

    private int ChildIndex(Translator c)
    {
        for (int i = 0; i < Children.Count; i++)
        {
            if (ReferenceEquals(Children[i], c)) return i;
        }
        throw new ArgumentException("not a child of this translator", nameof(c));
    }

    private static ulong NewLockOwner() => BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1UL << 63;

    /// <summary>
    /// Takes the guard on <paramref name="child"/>: shared (writers) or exclusive (a migration);
    /// waits for a shared one (cancelled by the caller's context), never for an exclusive one
    /// (EAGAIN when anyone holds it). True when held; false when the child has no inode locks.
    /// </summary>
    private ValueTask<FopResult<bool>> GuardAsync(FopContext ctx, int child, Gfid gfid, ulong owner, bool exclusive) =>
        InodeLockAsync(ctx, MigrationDomain, child, gfid, owner, exclusive, wait: !exclusive);

    private ValueTask ReleaseGuardAsync(FopContext ctx, int child, Gfid gfid, ulong owner) =>
        InodeUnlockAsync(ctx, MigrationDomain, child, gfid, owner);

    /// <summary>
    /// An inode lock of this translator's own (the migration guard, the layout lock) on
    /// <paramref name="child"/>, owned by <paramref name="owner"/>; with <paramref name="wait"/>
    /// it waits until granted or the caller's context is cancelled (EINTR). True when held; false
    /// when the child has no inode locks (ENOSYS: in-memory bricks without features/locks).
    /// </summary>
    private async ValueTask<FopResult<bool>> InodeLockAsync(FopContext ctx, string domain, int child, Gfid gfid, ulong owner, bool exclusive, bool wait)
    {
        var lctx = new FopContext { ClientId = ctx.ClientId, Cancellation = ctx.Cancellation, LockOwner = owner };
        var lk = new FileLock { Type = exclusive ? LockType.Write : LockType.Read, Owner = owner, ClientId = ctx.ClientId };
        var r = await Children[child].InodelkAsync(lctx, domain, gfid, wait ? LockCommand.SetWait : LockCommand.Set, lk);
        if (r.Ok) return true;
        return r.Error is Errno.ENOSYS or Errno.ENOTSUP ? false : r.Error;
    }

    private async ValueTask InodeUnlockAsync(FopContext ctx, string domain, int child, Gfid gfid, ulong owner)
    {
        var lctx = new FopContext { ClientId = ctx.ClientId, LockOwner = owner };
        await Children[child].InodelkAsync(lctx, domain, gfid, LockCommand.Set, new FileLock { Type = LockType.Unlock, Owner = owner, ClientId = ctx.ClientId });
    }

    /// <summary>
    /// A change to a file made without a write handle (setattr, xattrs), under the shared guard on
    /// its data child, so a migration never copies the file while it changes. A file that moved
    /// meanwhile answers ENOENT there and is found again by <see cref="OnGfidAsync"/>.
    /// </summary>
    private ValueTask<FopResult<T>> OnFileGuardedAsync<T>(FopContext ctx, Gfid gfid, Func<Translator, ValueTask<FopResult<T>>> onFile,
        Func<ValueTask<FopResult<T>>> onDir) =>
        OnGfidAsync(gfid, async c =>
        {
            int child = ChildIndex(c);
            ulong owner = NewLockOwner();
            var g = await GuardAsync(ctx, child, gfid, owner, exclusive: false);
            if (!g.Ok) return g.Error;
            try
            {
                return await onFile(c);
            }
            finally
            {
                if (g.Value) await ReleaseGuardAsync(ctx, child, gfid, owner);
            }
        }, onDir);
}
