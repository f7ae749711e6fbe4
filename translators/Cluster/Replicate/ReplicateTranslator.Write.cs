using System.Collections.Concurrent;
using System.Diagnostics;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Replicate;

public sealed partial class ReplicateTranslator
{
    // ---- inode writes ------------------------------------------------------------------------

    public override async ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data) =>
        (await TransactAsync(ctx, InodeTxn(fd.Gfid, fd, DataBit), i =>
            IsArbiter(i) ? ValueTask.FromResult(FopResult<int>.Success(data.Length)) : Children[i].WriteAsync(ctx, FdFor(i, fd)!, offset, data))).Result;

    /// <summary>A size change is a data change (the arbiter gets the rest of the request); the other attributes are metadata.</summary>
    public override async ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest request)
    {
        bool size = request.Has(SetattrValid.Size);
        int slots = (size ? DataBit : 0) | (request.Valid != SetattrValid.Size ? MetadataBit : 0);
        var arbiterRequest = request with { Valid = request.Valid & ~SetattrValid.Size };
        var r = (await TransactAsync(ctx, InodeTxn(gfid, fd, slots) with { Fd = fd is not null && Opened(fd) != 0 ? fd : null }, i =>
        {
            if (IsArbiter(i) && size)
            {
                return arbiterRequest.Valid == SetattrValid.None
                    ? ValueTask.FromResult(FopResult<Iatt>.Success(new Iatt { Gfid = gfid }))
                    : Children[i].SetattrAsync(ctx, gfid, FdFor(i, fd), arbiterRequest);
            }
            return Children[i].SetattrAsync(ctx, gfid, FdFor(i, fd), request);
        })).Result;
        return r.Ok ? Present(r.Value, ctx) : r;
    }

    public override async ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length) =>
        (await TransactAsync(ctx, InodeTxn(fd.Gfid, fd, DataBit), i =>
            IsArbiter(i) ? ValueTask.FromResult(FopResult<bool>.Success(true)) : Plain(Children[i].FallocateAsync(ctx, FdFor(i, fd)!, mode, offset, length)))).Result.AsPlain();

    public override async ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
    {
        if (name.StartsWith(PendingPrefix, StringComparison.Ordinal)) return Errno.EPERM;
        return (await TransactAsync(ctx, InodeTxn(gfid, null, MetadataBit), i => Plain(Children[i].SetxattrAsync(ctx, gfid, name, value, flags)))).Result.AsPlain();
    }

    public override async ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (name.StartsWith(PendingPrefix, StringComparison.Ordinal)) return Errno.EPERM;
        return (await TransactAsync(ctx, InodeTxn(gfid, null, MetadataBit), i => Plain(Children[i].RemovexattrAsync(ctx, gfid, name)))).Result.AsPlain();
    }

    // ---- namespace ------------------------------------------------------------------------------

    /// <summary>A new inode is readable exactly where it was created.</summary>
    private async ValueTask<FopResult<Iatt>> CreateEntryAsync(FopContext ctx, Gfid parent, string name, Gfid newGfid, Func<int, ValueTask<FopResult<Iatt>>> fop)
    {
        long generation = ReturnGeneration;
        var (r, ok) = await TransactAsync(ctx, EntryTxn(parent, name), fop);
        if (ok != 0 && r.Ok && r.Value.Gfid == newGfid) Remember(newGfid, new InodeState(ok & DataMask, ok, ok, 0, r.Value.Mode), generation);
        return r.Ok ? Present(r.Value, ctx) : r;
    }

    public override ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid) =>
        CreateEntryAsync(ctx, parent, name, newGfid, i => Children[i].MknodAsync(ctx, parent, name, mode, rdev, newGfid));

    public override ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid) =>
        CreateEntryAsync(ctx, parent, name, newGfid, i => Children[i].MkdirAsync(ctx, parent, name, mode, newGfid));

    public override ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid) =>
        CreateEntryAsync(ctx, parent, name, newGfid, i => Children[i].SymlinkAsync(ctx, parent, name, target, newGfid));

    public override async ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName)
    {
        var r = (await TransactAsync(ctx, EntryTxn(newParent, newName), i => Children[i].LinkAsync(ctx, gfid, newParent, newName))).Result;
        return r.Ok ? Present(r.Value, ctx) : r;
    }

    public override async ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name) =>
        (await TransactAsync(ctx, EntryTxn(parent, name), i => Plain(Children[i].UnlinkAsync(ctx, parent, name)))).Result.AsPlain();

    public override async ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name) =>
        (await TransactAsync(ctx, EntryTxn(parent, name), i => Plain(Children[i].RmdirAsync(ctx, parent, name)))).Result.AsPlain();

    /// <summary>Locks both names (in a fixed order, so two renames cannot deadlock) and marks both parents.</summary>
    public override async ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags)
    {
        var locks = new[] { new LockTarget(oldParent, oldName, Entry: true), new LockTarget(newParent, newName, Entry: true) }
            .Distinct().OrderBy(t => t.Gfid.Hi).ThenBy(t => t.Gfid.Lo).ThenBy(t => t.Name, StringComparer.Ordinal).ToArray();
        var changes = oldParent == newParent
            ? new[] { new ChangeTarget(oldParent, null, EntryBit) }
            : [new ChangeTarget(oldParent, null, EntryBit), new ChangeTarget(newParent, null, EntryBit)];
        return (await TransactAsync(ctx, new TxnSpec(locks, changes), i =>
            Plain(Children[i].RenameAsync(ctx, oldParent, oldName, newParent, newName, flags)))).Result.AsPlain();
    }

    // ---- open files ------------------------------------------------------------------------------

    /// <summary>
    /// Opens on every up child; succeeds where any child opened it (reads need one good copy).
    /// O_TRUNC changes data, so such an open is a data transaction like ftruncate.
    /// </summary>
    public override async ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        var st = StateOf(fd);
        if ((fd.Flags & OpenFlags.Truncate) != 0 && fd.CanWrite)
        {
            var (r, ok) = await TransactAsync(ctx, InodeTxn(fd.Gfid, null, DataBit), i => Plain(Children[i].OpenAsync(ctx, fd)));
            Interlocked.Or(ref st.Opened, ok);
            if (!r.Ok && ok != 0) await ReleaseOnAsync(ctx, fd, ok, directory: false);
            if (r.Ok) NoteWriterOpened(fd);
            return r.AsPlain();
        }
        var opened = await OpenAllAsync(ctx, fd, st, i => Children[i].OpenAsync(ctx, fd), directory: false);
        if (opened.Ok) NoteWriterOpened(fd);
        return opened;
    }

    public override ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd) =>
        OpenAllAsync(ctx, fd, StateOf(fd), i => Children[i].OpendirAsync(ctx, fd), directory: true);

    private async ValueTask<FopResult> OpenAllAsync(FopContext ctx, FileHandle fd, FdState st, Func<int, ValueTask<FopResult>> open, bool directory)
    {
        int up = UpMask;
        if (up == 0) return Errno.ENOTCONN;
        var results = new FopResult[N];
        await Task.WhenAll(Bits(up).Select(async i =>
        {
            results[i] = await open(i);
            Observe(i, results[i].Error);
            if (results[i].Ok) Interlocked.Or(ref st.Opened, 1 << i);
        }));
        if (Volatile.Read(ref st.Opened) != 0) return FopResult.Success;
        return FirstError([.. results.Select(r => r.Error)], up);
    }

    public override async ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd)
    {
        var st = StateOf(fd);
        long generation = ReturnGeneration;
        var (r, ok) = await TransactAsync(ctx, EntryTxn(parent, name), i => CreateOnAsync(ctx, i, parent, name, mode, fd));
        Interlocked.Or(ref st.Opened, ok);
        if (!r.Ok)
        {
            if (ok != 0) await ReleaseOnAsync(ctx, fd, ok, directory: false);
            return r;
        }
        if (r.Value.Gfid == fd.Gfid) Remember(fd.Gfid, new InodeState(ok & DataMask, ok, ok, 0, r.Value.Mode), generation);
        NoteWriterOpened(fd);
        return Present(r.Value, ctx);
    }

    /// <summary>
    /// Create on one child. A child that other copies blame for the parent's entries may still
    /// hold a name the others removed while it was away (a SQLite journal deleted during a
    /// partition): opening that stale file would hand the caller a GFID the other copies do not
    /// have. Such a child counts as failed for this create, so it stays blamed and self-heal
    /// replaces its stale entry.
    /// </summary>
    private async ValueTask<FopResult<Iatt>> CreateOnAsync(FopContext ctx, int i, Gfid parent, string name, uint mode, FileHandle fd)
    {
        var r = await Children[i].CreateAsync(ctx, parent, name, mode, fd);
        if (!r.Ok || r.Value.Gfid == fd.Gfid) return r;
        // Only a state already known: a refresh here would read the parent's counters in the
        // middle of this very transaction. Lookup, which precedes a create, has refreshed it.
        if (!_inodes.TryGetValue(parent, out var p) || (p.Entry & (1 << i)) != 0) return r;
        Observe(i, (await Children[i].ReleaseAsync(ctx, fd)).Error);
        return Errno.EIO;
    }

    private async ValueTask ReleaseOnAsync(FopContext ctx, FileHandle fd, int mask, bool directory)
    {
        await Task.WhenAll(Bits(mask).Select(async i =>
        {
            var r = directory ? await Children[i].ReleasedirAsync(ctx, fd) : await Children[i].ReleaseAsync(ctx, fd);
            Observe(i, r.Error);
        }));
    }

    /// <summary>
    /// close(2): the file's batch ends and its lock goes, and every child that has the file open
    /// drops the caller's POSIX locks. The answer waits for the batch's end (post-op, unlock)
    /// only on a file this client took application locks on, where the unlock close implies is a
    /// coherence point (LEASES.md). Elsewhere each write in the batch was answered on a quorum
    /// already, so its end goes on behind the answer: RELEASE of the handle waits for it, and
    /// this client's next fop on the file finds the batch closing and waits too.
    /// </summary>
    public override async ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd)
    {
        var ending = ReleaseEagerAsync(fd.Gfid, fd);
        if (_appLocked.ContainsKey(fd.Gfid)) await ending;
        else
        {
            var state = StateOf(fd);
            state.Ending = EndInBackground(ending.AsTask(), state.Ending, fd);
        }
        int opened = Opened(fd) & UpMask;
        var results = new FopResult[N];
        await Task.WhenAll(Bits(opened).Select(async i =>
        {
            results[i] = await Children[i].FlushAsync(ctx, fd);
            Observe(i, results[i].Error);
        }));
        foreach (int i in Bits(opened))
        {
            if (results[i].Ok) return FopResult.Success;
        }
        return FirstError([.. results.Select(r => r.Error)], opened);
    }

    private async Task EndInBackground(Task ending, Task earlier, FileHandle fd)
    {
        try
        {
            await Task.WhenAll(ending, earlier);
        }
        catch (Exception e)
        {
            Trace.TraceError($"{Name}: ending the batch of {fd} after close failed: {e}");
        }
    }

    public override async ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        NoteWriterReleased(fd);
        if (fd.TryGetContext(this, out FdState s)) await s.Ending; // its post-op may use this handle
        await ReleaseEagerAsync(fd.Gfid, fd);
        await ReleaseOnAsync(ctx, fd, Opened(fd), directory: false);
        fd.RemoveContext(this, out _);
        return FopResult.Success;
    }

    public override async ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd)
    {
        await ReleaseOnAsync(ctx, fd, Opened(fd), directory: true);
        fd.RemoveContext(this, out _);
        return FopResult.Success;
    }

    /// <summary>Durable only when a write quorum of data children has synced (the arbiter votes with its metadata).</summary>
    public override async ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly)
    {
        // The sync goes out first: a brick syncs unsynced data before a decrement
        // (storage/posix), and a post-op that finds this sync running waits for it instead.
        var sync = SyncAsync(fd, i => Children[i].FsyncAsync(ctx, fd, dataOnly)).AsTask();
        await EndEagerBatchAsync(fd.Gfid, fd);
        return await sync;
    }

    public override ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        SyncAsync(fd, i => Children[i].FsyncdirAsync(ctx, fd, dataOnly));

    private async ValueTask<FopResult> SyncAsync(FileHandle fd, Func<int, ValueTask<FopResult>> sync)
    {
        int opened = Opened(fd) & UpMask;
        var results = new FopResult[N];
        await Task.WhenAll(Bits(opened).Select(async i =>
        {
            results[i] = await sync(i);
            Observe(i, results[i].Error);
        }));
        int ok = 0;
        foreach (int i in Bits(opened))
        {
            if (results[i].Ok) ok |= 1 << i;
        }
        if (HasQuorum(ok) && (ok & DataMask) != 0) return FopResult.Success;
        return ok == 0 ? FirstError([.. results.Select(r => r.Error)], opened) : QuorumLost(Bits(opened).Select(i => results[i].Error));
    }

    // ---- application locks -----------------------------------------------------------------------

    /// <summary>
    /// fcntl/flock locks live on the bricks' features/locks: a lock is held when a quorum of
    /// children granted it, so two clients can never both hold conflicting locks while a
    /// quorum is reachable. Set tries every child at once without waiting; on a conflict it
    /// rolls back and fails EAGAIN, or (SetWait) takes the children one at a time in child order.
    /// Get asks every up child and reports any conflict.
    /// </summary>
    public override async ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk)
    {
        int mask = await EnsureOpenAsync(ctx, fd, UpMask) & UpMask;
        if (command == LockCommand.Get) return await GetLockAsync(ctx, fd, lk, mask);
        if (lk.Type == LockType.Unlock)
        {
            // An unlock is a coherence point for other clients (LEASES.md): they must find the
            // file's counters settled and its replicate lock free, not wait out our idle delay.
            FopResult<FileLock>[] results = [];
            await ReleaseEagerAsync(fd.Gfid, fd, async () => results = await LockOnAsync(ctx, fd, lk, mask, LockCommand.Set));
            return Bits(mask).Any(i => results[i].Ok) ? lk : FirstError([.. results.Select(r => r.Error)], mask);
        }
        if (!HasQuorum(mask)) return Errno.ENOTCONN;

        var first = await LockOnAsync(ctx, fd, lk, mask, LockCommand.Set);
        int granted = 0;
        var conflict = Errno.None;
        foreach (int i in Bits(mask))
        {
            if (first[i].Ok) granted |= 1 << i;
            else if (!Absent(first[i].Error) && conflict == Errno.None) conflict = first[i].Error;
        }
        if (conflict == Errno.None && HasQuorum(granted)) return NoteAppLock(fd, lk);
        await UnlockOnAsync(ctx, fd, lk, granted);
        if (conflict == Errno.None) return QuorumLost(Bits(mask).Select(i => first[i].Error));
        if (command == LockCommand.Set || conflict != Errno.EAGAIN) return conflict;

        granted = 0;
        var waited = new List<Errno>();
        foreach (int i in Bits(mask))
        {
            if (!IsChildUp(i)) continue;
            var r = await Children[i].LkAsync(ctx, fd, LockCommand.SetWait, lk);
            Observe(i, r.Error);
            waited.Add(r.Error);
            if (r.Ok) granted |= 1 << i;
            else if (!Absent(r.Error))
            {
                await UnlockOnAsync(ctx, fd, lk, granted);
                return r.Error;
            }
        }
        if (HasQuorum(granted)) return NoteAppLock(fd, lk);
        await UnlockOnAsync(ctx, fd, lk, granted);
        return QuorumLost(waited);
    }

    /// <summary>
    /// Files on which this client took an application lock while it had them open: their close
    /// waits for the end of the batch (FlushAsync). Forgotten with the last handle open for
    /// writing (NoteWriterReleased).
    /// </summary>
    private readonly ConcurrentDictionary<Gfid, byte> _appLocked = new();

    private FileLock NoteAppLock(FileHandle fd, FileLock lk)
    {
        _appLocked.TryAdd(fd.Gfid, 0);
        return lk;
    }

    /// <summary>
    /// A child that cannot take part in a lock request (unreachable, or its handle fenced after
    /// it lost this client's lease): quorum decides without it, and it is no conflict.
    /// </summary>
    private static bool Absent(Errno e) => e is Errno.ENOTCONN or Errno.EBADFD;

    private async ValueTask<FopResult<FileLock>[]> LockOnAsync(FopContext ctx, FileHandle fd, FileLock lk, int mask, LockCommand command)
    {
        var results = new FopResult<FileLock>[N];
        await Task.WhenAll(Bits(mask).Select(async i =>
        {
            results[i] = await Children[i].LkAsync(ctx, fd, command, lk);
            Observe(i, results[i].Error);
        }));
        return results;
    }

    /// <summary>Rolls back a partial grant. An owner's earlier lock on the same bytes is released too: fcntl cannot restore it.</summary>
    private async ValueTask UnlockOnAsync(FopContext ctx, FileHandle fd, FileLock lk, int granted)
    {
        var quiet = new FopContext
        {
            Uid = ctx.Uid, Gid = ctx.Gid, Pid = ctx.Pid, Groups = ctx.Groups, LockOwner = ctx.LockOwner, ClientId = ctx.ClientId,
            RequestId = ctx.RequestId,
        };
        await LockOnAsync(quiet, fd, lk with { Type = LockType.Unlock }, granted, LockCommand.Set);
    }

    private async ValueTask<FopResult<FileLock>> GetLockAsync(FopContext ctx, FileHandle fd, FileLock lk, int mask)
    {
        var results = await LockOnAsync(ctx, fd, lk, mask, LockCommand.Get);
        int answered = 0;
        FileLock? conflict = null;
        foreach (int i in Bits(mask))
        {
            if (!results[i].Ok) continue;
            answered |= 1 << i;
            if (results[i].Value.Type != LockType.Unlock) conflict ??= results[i].Value;
        }
        if (!HasQuorum(answered)) return answered == 0 ? FirstError([.. results.Select(r => r.Error)], mask) : QuorumLost(Bits(mask).Select(i => results[i].Error));
        return conflict ?? lk with { Type = LockType.Unlock };
    }

    // ---- internal fops from a translator above ----------------------------------------------------

    /// <summary>On every up child; the answer of the first, when a quorum applied it.</summary>
    public override async ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        int up = UpMask;
        if (!HasQuorum(up)) return Errno.ENOTCONN;
        var results = new FopResult<IReadOnlyDictionary<string, long[]>>[N];
        await Task.WhenAll(Bits(up).Select(async i =>
        {
            results[i] = await Children[i].XattropAsync(ctx, gfid, FdFor(i, fd), deltas);
            Observe(i, results[i].Error);
        }));
        int ok = Bits(up).Where(i => results[i].Ok).Sum(i => 1 << i);
        if (HasQuorum(ok)) return results[Lowest(ok)];
        return ok == 0 ? FirstError([.. results.Select(r => r.Error)], up) : Errno.ENOTCONN;
    }

    /// <summary>Held when a quorum granted it, taken in child order; a failed attempt is rolled back.</summary>
    public override async ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk)
    {
        var r = await QuorumLockAsync(ctx, command, lk.Type, (i, c, t) => Plain2(Children[i].InodelkAsync(ctx, domain, gfid, c, lk with { Type = t })));
        return r.Ok ? lk : r.Error;
    }

    public override async ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type) =>
        await QuorumLockAsync(ctx, command, type, (i, c, t) => Children[i].EntrylkAsync(ctx, domain, parent, name, c, t));

    private static async ValueTask<FopResult> Plain2(ValueTask<FopResult<FileLock>> call) => (await call).AsPlain();

    private async ValueTask<FopResult> QuorumLockAsync(FopContext ctx, LockCommand command, LockType type, Func<int, LockCommand, LockType, ValueTask<FopResult>> call)
    {
        int up = UpMask;
        if (command == LockCommand.Get) return Errno.EINVAL;
        if (type == LockType.Unlock)
        {
            foreach (int i in Bits(up)) Observe(i, (await call(i, LockCommand.Set, LockType.Unlock)).Error);
            return FopResult.Success;
        }
        if (!HasQuorum(up)) return Errno.ENOTCONN;
        int granted = 0;
        var error = Errno.None;
        foreach (int i in Bits(up))
        {
            var r = await call(i, command, type);
            Observe(i, r.Error);
            if (r.Ok) granted |= 1 << i;
            else if (!Absent(r.Error))
            {
                error = r.Error;
                break;
            }
        }
        if (error == Errno.None && HasQuorum(granted)) return FopResult.Success;
        foreach (int i in Bits(granted)) await call(i, LockCommand.Set, LockType.Unlock);
        return error != Errno.None ? error : Errno.ENOTCONN;
    }
}
