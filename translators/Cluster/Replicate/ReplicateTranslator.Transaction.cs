using System.Collections.Concurrent;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Replicate;

public sealed partial class ReplicateTranslator
{
    /// <summary>An inodelk on <see cref="Gfid"/> (Name unused), or an entrylk on a name of directory <see cref="Gfid"/> (null name = all).</summary>
    private readonly record struct LockTarget(Gfid Gfid, string? Name, bool Entry);

    /// <summary>Pending counters a transaction raises on an inode: <see cref="Slots"/> is a bit per counter slot.</summary>
    private readonly record struct ChangeTarget(Gfid Gfid, FileHandle? Fd, int Slots);

    /// <summary>What a transaction is about.</summary>
    private sealed record TxnSpec(LockTarget[] Locks, ChangeTarget[] Changes)
    {
        /// <summary>The handle the fop goes through: children must have it open.</summary>
        public FileHandle? Fd { get; init; }

        /// <summary>A data fop: the arbiter's success alone is not enough.</summary>
        public bool Data { get; init; }
    }

    private readonly record struct TxnResult<T>(FopResult<T> Result, int Succeeded);

    private static async ValueTask<FopResult<bool>> Plain(ValueTask<FopResult> call)
    {
        var r = await call;
        return r.Ok ? FopResult<bool>.Success(true) : r.Error;
    }

    private TxnSpec InodeTxn(Gfid gfid, FileHandle? fd, int slots) =>
        new([new LockTarget(gfid, null, Entry: false)], [new ChangeTarget(gfid, fd, slots)]) { Fd = fd, Data = (slots & DataBit) != 0 };

    private static TxnSpec EntryTxn(Gfid parent, string name) =>
        new([new LockTarget(parent, name, Entry: true)], [new ChangeTarget(parent, null, EntryBit)]);

    /// <summary>
    /// Runs <paramref name="fop"/> (per child index) as a replicate transaction: lock, pre-op,
    /// fop on every participating child in parallel, post-op, unlock (see the class remarks).
    /// </summary>
    private async ValueTask<TxnResult<T>> TransactAsync<T>(FopContext ctx, TxnSpec spec, Func<int, ValueTask<FopResult<T>>> fop)
    {
        int up = UpMask;
        if (!HasQuorum(up)) return new(Errno.ENOTCONN, 0);
        if (spec.Fd is { } fd)
        {
            up &= await EnsureOpenAsync(ctx, fd, up);
            if (!HasQuorum(up)) return new(Errno.ENOTCONN, 0);
        }
        if (spec.Data && _arbiter && _inodes.TryGetValue(spec.Changes[0].Gfid, out var known) && (known.Data & up) == 0)
        {
            // Only stale data copies (or none) are reachable: writing to them would leave the
            // arbiter as the sole witness of which copy is good.
            return new(Errno.ENOTCONN, 0);
        }
        var eager = EagerKindOf(spec);
        if (eager != EagerKind.None) return await EagerTransactAsync(ctx, spec, eager, up, fop);
        // An eager lock of this client on the inode (a directory's shared lock) would make this one wait for it.
        foreach (var t in spec.Locks)
        {
            if (!t.Entry) await ReleaseEagerAsync(t.Gfid, null);
        }

        long owner = NextLockOwner();
        var (locked, lockError) = await LockAsync(ctx, owner, up, spec.Locks, LockType.Write);
        var quiet = InternalCtx(ctx, owner, CancellationToken.None); // post-op and unlock must finish even if the caller gave up
        try
        {
            if (lockError != Errno.None) return new(lockError, 0);
            if (!HasQuorum(locked)) return new(Errno.ENOTCONN, 0);

            int prepared = await ChangelogAsync(quiet, locked, spec.Changes, increment: true, consistent: 0);
            if (!HasQuorum(prepared))
            {
                await ChangelogAsync(quiet, prepared, spec.Changes, increment: false, consistent: AllMask);
                return new(Errno.ENOTCONN, 0);
            }

            var (members, results, ok, answered) = await RunOnAsync(prepared, fop);
            // A fop that failed on every child changed nothing anywhere: nobody is blamed for it.
            int consistent = ok != 0 ? ok : answered;
            await ChangelogAsync(quiet, answered, spec.Changes, increment: false, consistent: consistent);
            foreach (var c in spec.Changes) Demote(c.Gfid, c.Slots, consistent);
            return Verdict(spec, members, results, ok);
        }
        finally
        {
            await UnlockAsync(quiet, owner, locked, spec.Locks);
        }
    }

    /// <summary>The fop on every child of <paramref name="mask"/> in parallel: who succeeded, who answered (not ENOTCONN).</summary>
    private async ValueTask<(int[] Members, FopResult<T>[] Results, int Ok, int Answered)> RunOnAsync<T>(int mask, Func<int, ValueTask<FopResult<T>>> fop)
    {
        var members = Bits(mask).ToArray();
        var pending = new Task<FopResult<T>>[members.Length];
        for (int j = 0; j < members.Length; j++) pending[j] = fop(members[j]).AsTask();
        var results = await Task.WhenAll(pending);
        int ok = 0, answered = 0;
        for (int j = 0; j < members.Length; j++)
        {
            Observe(members[j], results[j].Error);
            if (results[j].Error != Errno.ENOTCONN) answered |= 1 << members[j];
            if (results[j].Ok) ok |= 1 << members[j];
        }
        return (members, results, ok, answered);
    }

    /// <summary>
    /// The answer of a transaction: a data child's result when a quorum succeeded (and a data
    /// child among them for data fops); the children's common errno when none succeeded; else ENOTCONN.
    /// </summary>
    private TxnResult<T> Verdict<T>(TxnSpec spec, int[] members, FopResult<T>[] results, int ok)
    {
        if (HasQuorum(ok) && (!spec.Data || (ok & DataMask) != 0))
        {
            int pick = Lowest(ok & DataMask) is var d && d >= 0 ? d : Lowest(ok);
            return new(results[Array.IndexOf(members, pick)], ok);
        }
        if (ok == 0)
        {
            for (int j = 0; j < members.Length; j++)
            {
                if (results[j].Error != Errno.ENOTCONN) return new(results[j].Error, 0);
            }
        }
        return new(QuorumLost(results.Select(r => r.Error)), ok);
    }

    /// <summary>
    /// The answer when too few copies took a fop. A copy whose handle is fenced (EBADFD: this
    /// client's locks there were lost with its lease) never takes fops through that handle
    /// again, so when fenced copies are among the missing the handle is finished: EBADFD, which
    /// the mount shows as EIO (LEASES.md). Only copies that are merely unreachable give
    /// ENOTCONN, which a later retry may get past.
    /// </summary>
    private static Errno QuorumLost(IEnumerable<Errno> answers) =>
        answers.Contains(Fenced) ? Fenced : Errno.ENOTCONN;

    /// <summary>What protocol/client answers on a fenced handle (ProtocolClientTranslator.FencedErrno).</summary>
    private const Errno Fenced = Errno.EBADFD;

    /// <summary>
    /// Takes the locks on the children of <paramref name="mask"/>: first without waiting on all
    /// of them at once (the uncontended case costs one round trip), and on contention again
    /// one child at a time in child order, waiting, so that two clients cannot deadlock.
    /// Returns the children that granted; an error only when the caller was interrupted.
    /// </summary>
    private async ValueTask<(int Locked, Errno Error)> LockAsync(FopContext ctx, long owner, int mask, LockTarget[] targets, LockType type)
    {
        var lctx = InternalCtx(ctx, owner, ctx.Cancellation);
        var members = Bits(mask).ToArray();
        var tries = new Task<Errno>[members.Length];
        for (int j = 0; j < members.Length; j++) tries[j] = LockChildAsync(lctx, members[j], owner, targets, type, wait: false);
        var first = await Task.WhenAll(tries);
        int locked = 0;
        bool contended = false;
        for (int j = 0; j < members.Length; j++)
        {
            if (first[j] == Errno.None) locked |= 1 << members[j];
            else if (first[j] == Errno.EAGAIN) contended = true;
        }
        if (!contended) return (locked, Errno.None);

        await UnlockAsync(InternalCtx(ctx, owner, CancellationToken.None), owner, locked, targets);
        locked = 0;
        foreach (int i in members)
        {
            if (!IsChildUp(i)) continue;
            var e = await LockChildAsync(lctx, i, owner, targets, type, wait: true);
            if (e == Errno.None) locked |= 1 << i;
            else if (e == Errno.EINTR)
            {
                await UnlockAsync(InternalCtx(ctx, owner, CancellationToken.None), owner, locked, targets);
                return (0, Errno.EINTR);
            }
        }
        return (locked, Errno.None);
    }

    /// <summary>All targets on one child, in order; on failure what it got is released.</summary>
    private async Task<Errno> LockChildAsync(FopContext lctx, int i, long owner, LockTarget[] targets, LockType type, bool wait)
    {
        var command = wait ? LockCommand.SetWait : LockCommand.Set;
        for (int t = 0; t < targets.Length; t++)
        {
            var e = await LockOneAsync(lctx, i, owner, targets[t], command, type);
            Observe(i, e);
            if (e == Errno.None) continue;
            var quiet = InternalCtx(lctx, owner, CancellationToken.None);
            for (int u = 0; u < t; u++) await LockOneAsync(quiet, i, owner, targets[u], LockCommand.Set, LockType.Unlock);
            return e;
        }
        return Errno.None;
    }

    private async ValueTask<Errno> LockOneAsync(FopContext lctx, int i, long owner, LockTarget t, LockCommand command, LockType type)
    {
        if (t.Entry) return (await Children[i].EntrylkAsync(lctx, LockDomain, t.Gfid, t.Name, command, type)).Error;
        var lk = new FileLock { Type = type, Start = 0, End = long.MaxValue, Owner = (ulong)owner, Pid = lctx.Pid, Kind = LockKind.Posix };
        return (await Children[i].InodelkAsync(lctx, LockDomain, t.Gfid, command, lk)).Error;
    }

    private async ValueTask UnlockAsync(FopContext quiet, long owner, int locked, LockTarget[] targets)
    {
        if (locked == 0) return;
        await Task.WhenAll(Bits(locked).Select(async i =>
        {
            for (int t = targets.Length - 1; t >= 0; t--)
            {
                var e = await LockOneAsync(quiet, i, owner, targets[t], LockCommand.Set, LockType.Unlock);
                if (e == Errno.ENOTCONN) _owedUnlocks.Enqueue(new OwedUnlock(i, quiet, owner, targets[t]));
                Observe(i, e);
            }
        }));
    }

    /// <summary>An unlock a child could not be reached for: sent again when the child answers again.</summary>
    private sealed record OwedUnlock(int Child, FopContext Ctx, long Owner, LockTarget Target);

    /// <summary>
    /// Unlocks owed to children that were unreachable. A brick drops a client's locks when its
    /// connection ends, but an outage that kept the connection (a stalled brick, a fault between
    /// replicate and the brick) keeps them, and a lock held across fops (eager locking) would
    /// then block every later lock of that inode on that brick; sending the unlock again costs
    /// nothing where the brick dropped it already.
    /// </summary>
    private readonly ConcurrentQueue<OwedUnlock> _owedUnlocks = new();

    private async Task PayOwedUnlocksAsync()
    {
        int count = _owedUnlocks.Count;
        for (int n = 0; n < count && _owedUnlocks.TryDequeue(out var owed); n++)
        {
            if (!IsChildUp(owed.Child))
            {
                _owedUnlocks.Enqueue(owed);
                continue;
            }
            var e = await LockOneAsync(owed.Ctx, owed.Child, owed.Owner, owed.Target, LockCommand.Set, LockType.Unlock);
            if (e == Errno.ENOTCONN) _owedUnlocks.Enqueue(owed);
        }
    }

    /// <summary>
    /// Pre-op (<paramref name="increment"/>: +1 for every child's counter) or post-op (-1 for the
    /// children in <paramref name="consistent"/>) on the children of <paramref name="mask"/>.
    /// Every xattrop names every child's key, so features/index sees all counters of the inode.
    /// Returns the children where every xattrop succeeded.
    /// </summary>
    private async ValueTask<int> ChangelogAsync(FopContext quiet, int mask, ChangeTarget[] changes, bool increment, int consistent)
    {
        if (mask == 0) return 0;
        var members = Bits(mask).ToArray();
        var done = await Task.WhenAll(members.Select(async i =>
        {
            foreach (var c in changes)
            {
                var deltas = new Dictionary<string, long[]>(N, StringComparer.Ordinal);
                for (int k = 0; k < N; k++)
                {
                    long d = increment ? 1 : (consistent & (1 << k)) != 0 ? -1 : 0;
                    deltas[Keys[k]] = SlotVector(c.Slots, d);
                }
                var r = await Children[i].XattropAsync(quiet, c.Gfid, FdFor(i, c.Fd), deltas);
                Observe(i, r.Error);
                if (!r.Ok) return false;
            }
            return true;
        }));
        int ok = 0;
        for (int j = 0; j < members.Length; j++)
        {
            if (done[j]) ok |= 1 << members[j];
        }
        return ok;
    }

    private static long[] SlotVector(int slots, long value) =>
        [(slots & DataBit) != 0 ? value : 0, (slots & MetadataBit) != 0 ? value : 0, (slots & EntryBit) != 0 ? value : 0];

    /// <summary>
    /// Opens <paramref name="fd"/> on children of <paramref name="mask"/> that were down when it
    /// was opened; returns the children that have it open. A handle opened with O_TRUNC is not
    /// reopened: that would truncate a copy nobody blames.
    /// </summary>
    private async ValueTask<int> EnsureOpenAsync(FopContext ctx, FileHandle fd, int mask)
    {
        var st = StateOf(fd);
        int missing = mask & ~Volatile.Read(ref st.Opened);
        if (missing == 0 || (fd.Flags & OpenFlags.Truncate) != 0) return Volatile.Read(ref st.Opened);
        await Task.WhenAll(Bits(missing).Select(async i =>
        {
            var r = fd.IsDirectory ? await Children[i].OpendirAsync(ctx, fd) : await Children[i].OpenAsync(ctx, fd);
            Observe(i, r.Error);
            if (r.Ok) Interlocked.Or(ref st.Opened, 1 << i);
        }));
        return Volatile.Read(ref st.Opened);
    }
}
