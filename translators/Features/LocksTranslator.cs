using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Locks;

namespace Brickfs.Translators.Features;

/// <summary>
/// features/locks: the lock manager of a brick, so that every client of a volume sees the same
/// fcntl byte-range locks (process-associated and OFD) and flock locks. Lock state lives in
/// memory per GFID and is not passed down; every other fop passes through, flush and release
/// after dropping the locks that close(2) drops.
/// </summary>
/// <remarks>
/// Owners are (client id, owner number) pairs taken from the <see cref="FileLock"/>; the server
/// above must stamp <see cref="FileLock.ClientId"/> with the authenticated client, since owner
/// numbers alone collide between mounts. Inodes are spread over striped locks, so files never
/// wait for each other's lock traffic beyond a short critical section. A blocked F_SETLKW holds
/// no thread: it awaits a completion that the release which makes it grantable fires, with the
/// lock already entered in the table. The queueing rule is documented on <see cref="LockTable"/>.
/// </remarks>
public sealed class LocksTranslator : Translator, IClientAware
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs = [];

    public static TranslatorType Type { get; } = new("features/locks", OptionSpecs, 1, 1,
        o => new LocksTranslator(o), "fcntl, OFD and flock locks shared by every client of the brick");

    private const int StripeCount = 64;

    private sealed class Stripe
    {
        public readonly Lock Sync = new();
        public readonly Dictionary<Gfid, InodeLocks> Inodes = [];
    }

    private readonly Stripe[] _stripes;
    private readonly ConcurrentDictionary<string, LockClient> _clients = new(StringComparer.Ordinal);

    public LocksTranslator(TranslatorOptions options)
    {
        _ = options;
        _stripes = new Stripe[StripeCount];
        for (int i = 0; i < _stripes.Length; i++) _stripes[i] = new Stripe();
    }

    public LocksTranslator() : this(TranslatorOptions.From(OptionSpecs)) { }

    private Stripe StripeOf(Gfid gfid) => _stripes[(uint)gfid.GetHashCode() % StripeCount];

    /// <summary>Locks never look at reads or writes (fencing of late writes is protocol/server's): the child's answer.</summary>
    public override bool TryGetPassthroughFd(FileHandle fd, out int osFd) => Child.TryGetPassthroughFd(fd, out osFd);

    // ---- fops -----------------------------------------------------------------------------

    public override ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk)
    {
        if (Validate(command, lk) is var invalid && invalid != Errno.None) return ValueTask.FromResult<FopResult<FileLock>>(invalid);
        Func<InodeLocks, LockTable> table = inode => inode.TableFor(lk.Kind);
        return command == LockCommand.Get
            ? ValueTask.FromResult(Test(fd.Gfid, lk, table))
            : SetAsync(ctx, fd.Gfid, command, lk, table);
    }

    /// <summary>
    /// Inode locks of cluster translators: byte ranges in a named domain, owned by
    /// (ctx.ClientId, lk.Owner) and released with the client like fcntl locks, but never seen by
    /// (nor conflicting with) the application's locks or another domain.
    /// </summary>
    public override ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk)
    {
        lk = lk with { ClientId = ctx.ClientId, Kind = LockKind.Posix };
        if (Validate(command, lk) is var invalid && invalid != Errno.None) return ValueTask.FromResult<FopResult<FileLock>>(invalid);
        var key = new DomainKey(domain, Entry: false);
        Func<InodeLocks, LockTable> table = inode => inode.Domain(key);
        return command == LockCommand.Get
            ? ValueTask.FromResult(Test(gfid, lk, table))
            : SetAsync(ctx, gfid, command, lk, table);
    }

    /// <summary>
    /// Entry locks: a name in a directory (or, with a null name, every name of it) in a named
    /// domain. The owner is (ctx.ClientId, ctx.LockOwner). A name is a point in a byte-range
    /// table keyed by a 63-bit hash of the name, and the whole directory is the whole range, so
    /// a directory lock conflicts with every name lock and names conflict only with themselves
    /// (hash collisions cost a needless wait, never a missed conflict).
    /// </summary>
    public override async ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type)
    {
        if (command == LockCommand.Get || !Enum.IsDefined(type)) return Errno.EINVAL;
        long point = name is null ? 0 : NameHash(name);
        var lk = new FileLock
        {
            Type = type, Start = point, End = name is null ? long.MaxValue : point, Owner = ctx.LockOwner,
            ClientId = ctx.ClientId, Pid = ctx.Pid, Kind = LockKind.Posix,
        };
        var key = new DomainKey(domain, Entry: true);
        return (await SetAsync(ctx, parent, command, lk, inode => inode.Domain(key))).AsPlain();
    }

    /// <summary>FNV-1a over the UTF-8 name, folded to 0..long.MaxValue - 1.</summary>
    private static long NameHash(string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in System.Text.Encoding.UTF8.GetBytes(name))
        {
            h ^= b;
            h *= 1099511628211UL;
        }
        return (long)(h >> 1) % long.MaxValue;
    }

    /// <summary>close(2) of a descriptor drops every fcntl lock its process holds on the file (not OFD locks).</summary>
    public override ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd)
    {
        var owner = new LockOwnerKey(ctx.ClientId, ctx.LockOwner, OpenFileDescription: false);
        DropHeld(fd.Gfid, ctx.ClientId, posix: k => k == owner, flock: null);
        return Child.FlushAsync(ctx, fd);
    }

    /// <summary>The open file description is gone: its flock and OFD locks go with it.</summary>
    public override ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        if (fd.LockOwner != 0)
        {
            var flockOwner = new LockOwnerKey(ctx.ClientId, fd.LockOwner, OpenFileDescription: false);
            var ofdOwner = new LockOwnerKey(ctx.ClientId, fd.LockOwner, OpenFileDescription: true);
            DropHeld(fd.Gfid, ctx.ClientId, posix: k => k == ofdOwner, flock: k => k == flockOwner);
        }
        return Child.ReleaseAsync(ctx, fd);
    }

    // ---- management -----------------------------------------------------------------------

    /// <summary>
    /// Drops every lock and waiter of a client that went away, and grants what that frees.
    /// Its waiters end with ENOTCONN. The caller stops dispatching the client's requests first:
    /// a request that arrives afterwards under the same id counts as a new client.
    /// </summary>
    public void ReleaseClient(string clientId)
    {
        if (!_clients.TryGetValue(clientId, out var client)) return;
        Gfid[] inodes;
        lock (client.Sync)
        {
            client.Retired = true;
            _clients.TryRemove(new KeyValuePair<string, LockClient>(clientId, client));
            inodes = [.. client.Inodes];
            client.Inodes.Clear();
        }

        bool OfClient(LockOwnerKey k) => k.ClientId == clientId;
        foreach (var gfid in inodes)
        {
            var removed = new List<LockWaiter>();
            var granted = new List<LockWaiter>();
            var stripe = StripeOf(gfid);
            lock (stripe.Sync)
            {
                if (!stripe.Inodes.TryGetValue(gfid, out var inode)) continue;
                foreach (var table in inode.AllTables())
                {
                    table.RemoveWaiters(OfClient, removed);
                    if (table.RemoveHeld(OfClient)) table.Wake(granted);
                }
                if (inode.IsEmpty) stripe.Inodes.Remove(gfid);
            }
            foreach (var w in removed) w.Completion.TrySetResult(Errno.ENOTCONN);
            Grant(granted);
        }
    }

    /// <summary>The locks held and waited for on one inode right now.</summary>
    public LockSnapshot Snapshot(Gfid gfid)
    {
        var stripe = StripeOf(gfid);
        lock (stripe.Sync)
        {
            if (!stripe.Inodes.TryGetValue(gfid, out var inode)) return LockSnapshot.Empty;
            return new LockSnapshot(inode.Posix.Held(), inode.Flock.Held(), inode.Posix.WaiterCount, inode.Flock.WaiterCount);
        }
    }

    /// <summary>Waiters still queued when the brick stops end with ENOTCONN rather than hang.</summary>
    public override ValueTask DisposeAsync()
    {
        var removed = new List<LockWaiter>();
        foreach (var stripe in _stripes)
        {
            lock (stripe.Sync)
            {
                foreach (var inode in stripe.Inodes.Values)
                {
                    foreach (var table in inode.AllTables()) table.RemoveWaiters(static _ => true, removed);
                }
            }
        }
        foreach (var w in removed) w.Completion.TrySetResult(Errno.ENOTCONN);
        return base.DisposeAsync();
    }

    // ---- the lock paths -------------------------------------------------------------------

    private static Errno Validate(LockCommand command, FileLock lk)
    {
        if (!Enum.IsDefined(command) || !Enum.IsDefined(lk.Type) || !Enum.IsDefined(lk.Kind)) return Errno.EINVAL;
        if (command == LockCommand.Get && lk.Type == LockType.Unlock) return Errno.EINVAL;
        if (lk.Kind != LockKind.Flock && (lk.Start < 0 || lk.End < lk.Start)) return Errno.EINVAL;
        return Errno.None;
    }

    /// <summary>F_GETLK: the first conflicting held lock, or the request typed Unlock when none conflicts.</summary>
    private FopResult<FileLock> Test(Gfid gfid, FileLock lk, Func<InodeLocks, LockTable> select)
    {
        var stripe = StripeOf(gfid);
        lock (stripe.Sync)
        {
            if (stripe.Inodes.TryGetValue(gfid, out var inode)
                && select(inode).FindConflict(LockOwnerKey.Of(lk), lk) is { } conflict)
            {
                return conflict;
            }
        }
        return lk with { Type = LockType.Unlock };
    }

    private async ValueTask<FopResult<FileLock>> SetAsync(FopContext ctx, Gfid gfid, LockCommand command, FileLock lk, Func<InodeLocks, LockTable> select)
    {
        var owner = LockOwnerKey.Of(lk);
        var stripe = StripeOf(gfid);
        var granted = new List<LockWaiter>();
        LockWaiter? waiter = null;
        InodeLocks inode;
        LockTable table;
        var error = Errno.None;
        lock (stripe.Sync)
        {
            if (!stripe.Inodes.TryGetValue(gfid, out inode!)) stripe.Inodes[gfid] = inode = new InodeLocks(gfid);
            table = select(inode);
            if (lk.Type == LockType.Unlock)
            {
                table.Apply(owner, lk);
                table.Wake(granted);
            }
            else
            {
                if (table.PrepareConversion(owner, lk)) table.Wake(granted);
                if (table.FindConflict(owner, lk) is null)
                {
                    table.Apply(owner, lk);
                    table.Wake(granted); // a downgrade or a partial replace may free bytes
                    Track(lk.ClientId, gfid);
                }
                else if (command == LockCommand.Set) error = Errno.EAGAIN;
                else if (table is PosixLockTable posix && posix.WouldDeadlock(owner, lk)) error = Errno.EDEADLK;
                else if (ctx.Cancellation.IsCancellationRequested) error = Errno.EINTR;
                else
                {
                    waiter = new LockWaiter(owner, lk);
                    table.Enqueue(waiter);
                    Track(lk.ClientId, gfid);
                }
            }
            Tidy(stripe, inode, lk.ClientId);
        }
        Grant(granted);
        if (error != Errno.None) return error;
        if (waiter is null) return lk;

        // Registered outside the stripe lock: a token cancelled meanwhile runs Cancel inline.
        await using var registration = ctx.Cancellation.Register(() => Cancel(stripe, inode, table, waiter));
        return await waiter.Completion.Task.ConfigureAwait(false);
    }

    /// <summary>An interrupted F_SETLKW leaves the queue at once, unless it was granted first.</summary>
    private void Cancel(Stripe stripe, InodeLocks inode, LockTable table, LockWaiter waiter)
    {
        lock (stripe.Sync)
        {
            // While the waiter is queued its inode is not empty, so it is still the stripe's entry.
            if (!table.TryRemove(waiter)) return;
            Tidy(stripe, inode, waiter.Owner.ClientId);
        }
        waiter.Completion.TrySetResult(Errno.EINTR);
    }

    private void DropHeld(Gfid gfid, string clientId, Func<LockOwnerKey, bool>? posix, Func<LockOwnerKey, bool>? flock)
    {
        var granted = new List<LockWaiter>();
        var stripe = StripeOf(gfid);
        lock (stripe.Sync)
        {
            if (!stripe.Inodes.TryGetValue(gfid, out var inode)) return;
            if (posix is not null && inode.Posix.RemoveHeld(posix)) inode.Posix.Wake(granted);
            if (flock is not null && inode.Flock.RemoveHeld(flock)) inode.Flock.Wake(granted);
            Tidy(stripe, inode, clientId);
        }
        Grant(granted);
    }

    private static void Grant(List<LockWaiter> granted)
    {
        foreach (var w in granted) w.Completion.TrySetResult(w.Request);
    }

    // ---- per-client records (called under the inode's stripe lock) --------------------------

    private void Track(string clientId, Gfid gfid)
    {
        while (true)
        {
            var client = _clients.GetOrAdd(clientId, static id => new LockClient(id));
            lock (client.Sync)
            {
                // A retired record has already left the dictionary, so the next round finds a fresh one.
                if (!client.Retired)
                {
                    client.Inodes.Add(gfid);
                    return;
                }
            }
        }
    }

    /// <summary>Forgets the client on an inode where it holds and waits for nothing, and drops an empty inode.</summary>
    private void Tidy(Stripe stripe, InodeLocks inode, string clientId)
    {
        if (!inode.Involves(clientId) && _clients.TryGetValue(clientId, out var client))
        {
            lock (client.Sync) client.Inodes.Remove(inode.Gfid);
        }
        inode.TidyDomains();
        if (inode.IsEmpty) stripe.Inodes.Remove(inode.Gfid);
    }
}
