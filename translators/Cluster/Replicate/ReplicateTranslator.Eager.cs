using System.Collections.Concurrent;
using System.Diagnostics;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Replicate;

// Eager locking and delayed post-op (GlusterFS AFR's eager-lock and post-op-delay-secs), see
// DESIGN.md "Eager lock and delayed post-op". A batch is the time between one pre-op and its
// post-op on one inode: the pre-op adds 1 to every child's counter on every locked child (a
// uniform "dirty" mark), the fops of the batch run without further xattrops while they succeed
// everywhere, a child that misses one is blamed at once (its counter +1 on the children that
// applied the fop, before the fop is acknowledged), and the post-op removes the uniform mark
// (-1 on every counter) when the batch ends: after post-op-delay-secs without a fop, at fsync,
// flush, release or an application unlock, or before anything else of this client needs the
// inode's lock. Counters therefore always say who missed what: the uniform part never accuses
// anyone (see Assess), the blame part is exact.
public sealed partial class ReplicateTranslator
{
    private enum EagerKind
    {
        None,
        /// <summary>A regular file's data and metadata: a write inodelk, fops one at a time.</summary>
        Data,
        /// <summary>A directory's names: a read inodelk (keeps heal out, lets other clients' entry fops in), fops concurrent under their own name locks.</summary>
        Entry,
    }

    /// <summary>The held lock and open batch of one inode. Fields change under <see cref="Gate"/> (InFlight and Blamed also under the object's monitor).</summary>
    private sealed class EagerState(Gfid gfid, EagerKind kind, int n)
    {
        public readonly Gfid Gfid = gfid;
        public readonly EagerKind Kind = kind;
        public readonly SemaphoreSlim Gate = new(1, 1);
        public FopContext? LockCtx;
        public long Owner;
        /// <summary>Children holding our inodelk.</summary>
        public int Locked;
        /// <summary>Children carrying the batch's uniform +1 (the post-op goes to them); 0 = no batch open.</summary>
        public int Prepared;
        /// <summary>
        /// Locked children still taking part (the prepared ones while a batch is open): one that
        /// answered ENOTCONN may have lost our lock with its connection. Kept across batches, so
        /// the fop after an fsync reuses the lock unless a child left.
        /// </summary>
        public int Live;
        public int Slots;
        /// <summary>Per child, the slots it is already blamed for in this batch.</summary>
        public readonly int[] Blamed = new int[n];
        public Task PendingBlame = Task.CompletedTask;
        public int InFlight;
        public bool Closing;
        public readonly TaskCompletionSource Finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource? Drained;
        public long Acquired, LastUse;
        public Timer? Timer;
    }

    private readonly ConcurrentDictionary<Gfid, EagerState> _eager = new();

    /// <summary>States whose end (post-op, unlock) is under way, after they left <see cref="_eager"/>: unmount waits for them.</summary>
    private readonly ConcurrentDictionary<EagerState, byte> _closing = new();

    /// <summary>Whether this transaction can use (or must join) an eager lock, and which kind.</summary>
    private EagerKind EagerKindOf(TxnSpec spec)
    {
        if (_postOpDelay <= TimeSpan.Zero || spec.Locks.Length != 1 || spec.Changes.Length != 1) return EagerKind.None;
        var lockTarget = spec.Locks[0];
        var change = spec.Changes[0];
        if (lockTarget.Gfid != change.Gfid) return EagerKind.None;
        if (lockTarget.Entry) return lockTarget.Name is not null && change.Slots == EntryBit ? EagerKind.Entry : EagerKind.None;
        if (spec.Fd is { IsDirectory: false }) return EagerKind.Data;
        if (_eager.TryGetValue(change.Gfid, out var held) && held.Kind == EagerKind.Data) return EagerKind.Data;
        // A by-GFID fop (fchown, fchmod, utimens: the kernel sends them without the handle) on a
        // file this client has open for writing starts the batch its writes will use; its
        // flush or release ends it like any other.
        return _writers.ContainsKey(change.Gfid) ? EagerKind.Data : EagerKind.None;
    }

    /// <summary>
    /// Regular files this client has open for writing, with their count of such handles. Their
    /// by-GFID fops join the eager lock (EagerKindOf), and a batch on them covers data and
    /// metadata when such a fop starts it (PrepareEagerAsync).
    /// </summary>
    private readonly ConcurrentDictionary<Gfid, int> _writers = new();

    private void NoteWriterOpened(FileHandle fd)
    {
        if (fd.CanWrite && !fd.IsDirectory) _writers.AddOrUpdate(fd.Gfid, 1, (_, n) => n + 1);
    }

    private void NoteWriterReleased(FileHandle fd)
    {
        if (!fd.CanWrite || fd.IsDirectory) return;
        while (_writers.TryGetValue(fd.Gfid, out int n))
        {
            if (n <= 1 && _writers.TryRemove(new KeyValuePair<Gfid, int>(fd.Gfid, n)))
            {
                _appLocked.TryRemove(fd.Gfid, out _);
                return;
            }
            if (n > 1 && _writers.TryUpdate(fd.Gfid, n - 1, n)) return;
        }
    }

    /// <summary>
    /// A transaction inside the inode's eager lock: the lock and the batch's pre-op are taken
    /// when missing, the fop runs on the children taking part, children that missed it are
    /// blamed before the answer goes back. An entry fop also takes its name's entrylk (other
    /// clients' fops on the same name), which is all it waits for in the steady state.
    /// </summary>
    private async ValueTask<TxnResult<T>> EagerTransactAsync<T>(FopContext ctx, TxnSpec spec, EagerKind kind, int up, Func<int, ValueTask<FopResult<T>>> fop)
    {
        var change = spec.Changes[0];
        var (el, error) = await EnterEagerAsync(ctx, change.Gfid, kind, up, change.Slots, spec.Fd);
        if (el is null) return new(error, 0);
        long nameOwner = 0;
        int nameLocked = 0;
        try
        {
            int members = Volatile.Read(ref el.Live) & up;
            if (kind == EagerKind.Entry)
            {
                nameOwner = NextLockOwner();
                var (l, e) = await LockAsync(ctx, nameOwner, members, spec.Locks, LockType.Write);
                nameLocked = l;
                if (e != Errno.None) return new(e, 0);
                Interlocked.And(ref el.Live, ~(members & ~l & ~UpMask)); // unreachable: out of the batch
                members &= l;
            }
            if (!HasQuorum(members)) return new(Errno.ENOTCONN, 0);

            var (list, results, ok, answered) = await RunOnAsync(members, fop);
            int consistent = ok != 0 ? ok : answered; // failed everywhere: changed nothing, blames nobody it reached
            Interlocked.And(ref el.Live, ~(members & ~answered));
            await BlameAsync(el, change, consistent, AllMask & ~consistent);
            Demote(change.Gfid, change.Slots, consistent);
            return Verdict(spec, list, results, ok);
        }
        finally
        {
            // The name's unlock is sent before the answer but not waited for: it is on each
            // brick's connection ahead of anything this client sends later (the bricks serve lock
            // requests of one connection in order), and another client that meets the lock still
            // held waits for it like for any holder. One round trip less per entry fop.
            if (nameLocked != 0) _ = UnlockQuietlyAsync(InternalCtx(ctx, nameOwner, CancellationToken.None), nameOwner, nameLocked, spec.Locks);
            await ExitEagerAsync(el);
        }
    }

    private async Task UnlockQuietlyAsync(FopContext quiet, long owner, int locked, LockTarget[] targets)
    {
        try
        {
            await UnlockAsync(quiet, owner, locked, targets);
        }
        catch (Exception e)
        {
            Trace.TraceError($"{Name}: unlocking {string.Join(", ", targets)} failed: {e}");
        }
    }

    /// <summary>
    /// Records on the children of <paramref name="sources"/> (they applied the fop) that the
    /// children of <paramref name="missed"/> did not: +1 on each missed child's counter for the
    /// slots it is not yet blamed for in this batch. Awaited before the fop is answered, so an
    /// acknowledged change is never lost to a heal that would take a missed copy as source.
    /// Concurrent fops of one batch wait for each other's blame.
    /// </summary>
    private async ValueTask BlameAsync(EagerState el, ChangeTarget change, int sources, int missed)
    {
        Task wait;
        lock (el)
        {
            var fresh = new int[N];
            bool any = false;
            foreach (int k in Bits(missed))
            {
                fresh[k] = change.Slots & ~el.Blamed[k];
                if (fresh[k] == 0) continue;
                el.Blamed[k] |= fresh[k];
                any = true;
            }
            if (any && sources != 0)
            {
                var send = SendBlameAsync(el.LockCtx!, change.Gfid, sources, fresh);
                el.PendingBlame = Task.WhenAll(el.PendingBlame, send);
            }
            wait = el.PendingBlame;
        }
        await wait;
    }

    private async Task SendBlameAsync(FopContext quiet, Gfid gfid, int sources, int[] slotsByChild)
    {
        await Task.WhenAll(Bits(sources).Select(async i =>
        {
            var deltas = new Dictionary<string, long[]>(N, StringComparer.Ordinal);
            for (int k = 0; k < N; k++) deltas[Keys[k]] = SlotVector(slotsByChild[k], 1);
            Observe(i, (await Children[i].XattropAsync(quiet, gfid, null, deltas)).Error);
        }));
    }

    /// <summary>
    /// Joins (or starts) the inode's eager state: takes the lock and opens a batch for
    /// <paramref name="slots"/> if needed. Data: returns with the gate held (fops of one file
    /// run one at a time, as under a per-fop lock); entry: returns with the fop counted in flight.
    /// </summary>
    private async ValueTask<(EagerState? State, Errno Error)> EnterEagerAsync(FopContext ctx, Gfid gfid, EagerKind kind, int up, int slots, FileHandle? fd)
    {
        while (true)
        {
            var el = _eager.GetOrAdd(gfid, g => new EagerState(g, kind, N));
            if (el.Kind != kind)
            {
                await ReleaseEagerAsync(gfid, null);
                continue;
            }
            try
            {
                await el.Gate.WaitAsync(ctx.Cancellation);
            }
            catch (OperationCanceledException)
            {
                return (null, Errno.EINTR);
            }
            if (el.Closing)
            {
                el.Gate.Release();
                await el.Finished.Task;
                continue;
            }
            if (el.Locked != 0 && el.InFlight == 0 && (up & ~el.Live) != 0)
            {
                // A child that is up but outside the batch (it came back, or missed the pre-op):
                // a fresh lock and pre-op take it in again, as a per-fop transaction would.
                try
                {
                    await CloseEagerAsync(el, fd);
                }
                finally
                {
                    el.Gate.Release();
                }
                continue;
            }
            bool holdGate = false;
            try
            {
                var e = await PrepareEagerAsync(ctx, el, up, slots, fd);
                if (e != Errno.None)
                {
                    if (el.InFlight == 0) await CloseEagerAsync(el, fd);
                    return (null, e);
                }
                if (kind == EagerKind.Entry)
                {
                    lock (el) el.InFlight++;
                    return (el, Errno.None);
                }
                holdGate = true;
                return (el, Errno.None);
            }
            finally
            {
                if (!holdGate) el.Gate.Release();
            }
        }
    }

    /// <summary>Under the gate: the lock on the up children if not held, then a batch covering <paramref name="slots"/>.</summary>
    private async ValueTask<Errno> PrepareEagerAsync(FopContext ctx, EagerState el, int up, int slots, FileHandle? fd)
    {
        var target = new[] { new LockTarget(el.Gfid, null, Entry: false) };
        if (el.Locked == 0)
        {
            long owner = NextLockOwner();
            var (locked, e) = await LockAsync(ctx, owner, up, target, el.Kind == EagerKind.Entry ? LockType.Read : LockType.Write);
            el.Owner = owner;
            el.LockCtx = InternalCtx(ctx, owner, CancellationToken.None);
            el.Locked = locked;
            el.Acquired = Stopwatch.GetTimestamp();
            if (e != Errno.None) return e;
            if (!HasQuorum(locked)) return Errno.ENOTCONN;
        }
        if (el.Prepared != 0 && (slots & ~el.Slots) != 0 && el.InFlight == 0) await EndBatchAsync(el, fd);
        if (el.Prepared == 0)
        {
            // A metadata change of a file open for writing is mostly followed by writes (SQLite
            // chowns its new journal, then writes it): one pre-op for both saves a post-op and a
            // pre-op in between. The price: a client that dies mid-batch leaves a data mark on a
            // file it may not have written, and heal copies it once.
            if (el.Kind == EagerKind.Data && slots == MetadataBit && _writers.ContainsKey(el.Gfid)) slots |= DataBit;
            int prepared = await ChangelogAsync(el.LockCtx!, el.Locked & up, [new ChangeTarget(el.Gfid, fd, slots)], increment: true, consistent: 0);
            el.Prepared = prepared;
            el.Live = prepared;
            el.Slots = slots;
            Array.Clear(el.Blamed);
            if (!HasQuorum(prepared)) return Errno.ENOTCONN;
        }
        return Errno.None;
    }

    /// <summary>Under the gate: the post-op of the open batch (-1 on every counter where the pre-op put +1); the lock stays.</summary>
    private async ValueTask EndBatchAsync(EagerState el, FileHandle? fd)
    {
        if (el.Prepared == 0) return;
        await el.PendingBlame;
        int done = await ChangelogAsync(el.LockCtx!, el.Prepared, [new ChangeTarget(el.Gfid, fd, el.Slots)], increment: false, consistent: AllMask);
        el.Live &= done; // a child that missed its post-op takes part again only through a new lock and pre-op
        el.Prepared = 0;
        el.Slots = 0;
    }

    /// <summary>
    /// Under the gate, nothing in flight: ends the batch, unlocks, and forgets the state.
    /// <paramref name="alongside"/> (an application unlock) is sent right after the unlock, once
    /// the post-op is done, and both answers are awaited together: the bricks serve one
    /// connection's lock requests in order, so nobody finds the application lock free while our
    /// replicate lock is still held, and the unlock costs no round trip of its own.
    /// </summary>
    private async ValueTask CloseEagerAsync(EagerState el, FileHandle? fd, Func<Task>? alongside = null)
    {
        el.Closing = true;
        _closing.TryAdd(el, 0);
        _eager.TryRemove(new KeyValuePair<Gfid, EagerState>(el.Gfid, el));
        el.Timer?.Dispose();
        try
        {
            if (el.LockCtx is { } quiet)
            {
                await EndBatchAsync(el, fd);
                var unlock = UnlockAsync(quiet, el.Owner, el.Locked, [new LockTarget(el.Gfid, null, Entry: false)]).AsTask();
                if (alongside is not null)
                {
                    var other = alongside();
                    alongside = null;
                    await Task.WhenAll(unlock, other);
                }
                else
                {
                    await unlock;
                }
            }
            el.Locked = 0;
        }
        finally
        {
            el.Finished.TrySetResult();
            _closing.TryRemove(el, out _);
            if (alongside is not null) await alongside();
        }
    }

    private async ValueTask ExitEagerAsync(EagerState el)
    {
        long now = Stopwatch.GetTimestamp();
        if (el.Kind == EagerKind.Entry)
        {
            lock (el)
            {
                el.LastUse = now;
                if (--el.InFlight == 0) el.Drained?.TrySetResult();
            }
            Arm(el, _postOpDelay);
            return;
        }
        try
        {
            el.LastUse = now;
            // Continuous writers give the lock up now and then, so another client waiting for it
            // gets its turn (no contention notice reaches us from the bricks).
            if (Stopwatch.GetElapsedTime(el.Acquired, now) >= MaxEagerHold) await CloseEagerAsync(el, null);
            else Arm(el, _postOpDelay);
        }
        finally
        {
            el.Gate.Release();
        }
    }

    private TimeSpan MaxEagerHold => _postOpDelay * 4;

    private void Arm(EagerState el, TimeSpan due)
    {
        lock (el)
        {
            if (el.Closing) return;
            if (el.Timer is null) el.Timer = new Timer(_ => _ = EagerTimerAsync(el), null, due, Timeout.InfiniteTimeSpan);
            else el.Timer.Change(due, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The idle timer: ends batch and lock after post-op-delay-secs without a fop (or after the longest hold).</summary>
    private async Task EagerTimerAsync(EagerState el)
    {
        try
        {
            if (!await el.Gate.WaitAsync(0)) return; // a fop is running: its exit re-arms the timer
            try
            {
                if (el.Closing || el.InFlight > 0) return;
                long now = Stopwatch.GetTimestamp();
                var idle = Stopwatch.GetElapsedTime(el.LastUse, now);
                if (idle >= _postOpDelay || Stopwatch.GetElapsedTime(el.Acquired, now) >= MaxEagerHold) await CloseEagerAsync(el, null);
                else Arm(el, _postOpDelay - idle);
            }
            finally
            {
                el.Gate.Release();
            }
        }
        catch (Exception e)
        {
            Trace.TraceError($"{Name}: releasing the eager lock of {el.Gfid} failed: {e}");
        }
    }

    /// <summary>
    /// Ends the inode's batch and gives its lock up (waiting for entry fops in flight): before
    /// close, an application unlock, a heal, or a transaction of this client that needs the lock.
    /// </summary>
    private async ValueTask ReleaseEagerAsync(Gfid gfid, FileHandle? fd, Func<Task>? alongside = null)
    {
        if (!_eager.TryGetValue(gfid, out var el))
        {
            if (alongside is not null) await alongside();
            return;
        }
        await el.Gate.WaitAsync();
        try
        {
            if (el.Closing)
            {
                if (alongside is not null) await alongside();
                return;
            }
            while (true)
            {
                TaskCompletionSource drained;
                lock (el)
                {
                    if (el.InFlight == 0) break;
                    drained = el.Drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }
                el.Closing = true; // new fops wait for Finished and start a new state
                el.Gate.Release();
                try
                {
                    await drained.Task;
                }
                finally
                {
                    await el.Gate.WaitAsync();
                }
            }
            await CloseEagerAsync(el, fd, alongside);
        }
        finally
        {
            el.Gate.Release();
        }
    }

    /// <summary>fsync: the batch of the file ends (its post-op runs beside the sync); the lock stays for the next writes.</summary>
    private async ValueTask EndEagerBatchAsync(Gfid gfid, FileHandle fd)
    {
        if (!_eager.TryGetValue(gfid, out var el) || el.Kind != EagerKind.Data) return;
        await el.Gate.WaitAsync();
        try
        {
            if (!el.Closing) await EndBatchAsync(el, fd);
        }
        finally
        {
            el.Gate.Release();
        }
    }

    /// <summary>True when this client holds the write inodelk of <paramref name="gfid"/> eagerly (its own locked re-read would wait for itself).</summary>
    private bool HoldsEagerWriteLock(Gfid gfid) => _eager.TryGetValue(gfid, out var el) && el.Kind == EagerKind.Data && el.Locked != 0 && !el.Closing;

    /// <summary>
    /// Ends every batch and gives every eager lock up (unmount, graph switch). Tests call it to
    /// see the counters a finished batch leaves.
    /// </summary>
    public async Task FlushEagerAsync()
    {
        foreach (var gfid in _eager.Keys.ToArray()) await ReleaseEagerAsync(gfid, null);
        await Task.WhenAll(_closing.Keys.Select(el => el.Finished.Task));
    }

    public override async ValueTask DisposeAsync()
    {
        await FlushEagerAsync();
        await base.DisposeAsync();
    }
}
