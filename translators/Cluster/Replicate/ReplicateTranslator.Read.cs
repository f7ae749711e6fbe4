using System.Numerics;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Replicate;

public sealed partial class ReplicateTranslator
{
    // ---- refreshing readability ------------------------------------------------------------

    /// <summary>Stat by GFID (through the handle where a child opened it) with pending counters, on the children of <paramref name="mask"/>.</summary>
    private async ValueTask<(Iatt?[] Attrs, Errno[] Errors)> StatAllAsync(FopContext ctx, Gfid gfid, FileHandle? fd, int mask)
    {
        var pctx = WithPendingKeys(ctx);
        var attrs = new Iatt?[N];
        var errors = new Errno[N];
        await Task.WhenAll(Bits(mask).Select(async i =>
        {
            var r = await Children[i].StatAsync(pctx, gfid, FdFor(i, fd));
            Observe(i, r.Error);
            errors[i] = r.Error;
            if (r.Ok) attrs[i] = r.Value;
        }));
        return (attrs, errors);
    }

    /// <summary>
    /// Re-reads the pending counters of <paramref name="gfid"/> from every child and caches the
    /// verdict. A view with a self-accusing child may be a transaction in flight, so it is read
    /// again under a read inodelk before it counts.
    /// </summary>
    private async ValueTask<(FopResult<InodeState> State, Iatt?[] Attrs)> RefreshAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        long generation = ReturnGeneration;
        var (attrs, errors) = await StatAllAsync(ctx, gfid, fd, AllMask);
        var a = Assess(attrs);
        if (a.Answered == 0) return (FirstError(errors, AllMask), attrs);
        if (a.SelfAccusing != 0 && !HoldsEagerWriteLock(gfid))
        {
            long owner = NextLockOwner();
            var (locked, e) = await LockAsync(ctx, owner, a.Answered, [new LockTarget(gfid, null, Entry: false)], LockType.Read);
            try
            {
                if (e != Errno.None) return (e, attrs);
                (attrs, errors) = await StatAllAsync(ctx, gfid, fd, locked);
                a = Assess(attrs);
                if (a.Answered == 0) return (FirstError(errors, locked), attrs);
            }
            finally
            {
                await UnlockAsync(InternalCtx(ctx, owner, CancellationToken.None), owner, locked, [new LockTarget(gfid, null, Entry: false)]);
            }
        }
        var state = Remember(gfid, a.State, generation);
        if (state.Split != 0) RecordSplitBrain(gfid, state.Split, "every copy is blamed by another");
        else _splitBrain.TryRemove(gfid, out _);
        return (state, attrs);
    }

    private static Errno FirstError(Errno[] errors, int mask)
    {
        foreach (int i in Bits(mask))
        {
            if (errors[i] != Errno.None && errors[i] != Errno.ENOTCONN) return errors[i];
        }
        return Errno.ENOTCONN;
    }

    private async ValueTask<FopResult<InodeState>> StateAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        if (TryCurrent(gfid, out var st)) return st;
        return (await RefreshAsync(ctx, gfid, fd)).State;
    }

    /// <summary>Children that may serve a stat: data and metadata readable for files, metadata for the rest.</summary>
    private static int StatMask(InodeState st) =>
        st.IsRegular ? ((st.Data & st.Metadata) != 0 ? st.Data & st.Metadata : st.Data) : st.Metadata;

    /// <summary>The child to ask among <paramref name="mask"/>: spread over files by GFID, the same child for one file.</summary>
    private int Pick(Gfid gfid, int mask)
    {
        mask &= UpMask & DataMask;
        if (_readChild >= 0 && (mask & (1 << _readChild)) != 0) return _readChild;
        int n = BitOperations.PopCount((uint)mask);
        if (n == 0) return -1;
        int k = (int)((gfid.Hi ^ gfid.Lo) % (ulong)n);
        foreach (int i in Bits(mask))
        {
            if (k-- == 0) return i;
        }
        return -1;
    }

    /// <summary>
    /// A read fop on one readable child; on ENOTCONN the next readable one. When no cached
    /// candidate is left the counters are read again once (a heal elsewhere may have made more
    /// children good). A slot in split-brain fails with EIO.
    /// </summary>
    private async ValueTask<FopResult<T>> ReadFopAsync<T>(FopContext ctx, Gfid gfid, FileHandle? fd, Func<InodeState, int> readable,
        int splitSlots, bool needFd, Func<int, ValueTask<FopResult<T>>> call)
    {
        var s = await StateAsync(ctx, gfid, fd);
        if (!s.Ok) return s.Error;
        int tried = 0;
        bool refreshed = false;
        while (true)
        {
            var st = s.Value;
            if ((st.Split & splitSlots) != 0) return Errno.EIO;
            int candidates = readable(st) & ~tried;
            if (needFd && fd is not null) candidates &= Opened(fd);
            int i = Pick(gfid, candidates);
            // A child that returned after the verdict was made (between its check and this pick)
            // may have missed other clients' changes while it was away: read the counters first.
            if (i < 0 || (!refreshed && st.Generation != ReturnGeneration))
            {
                if (refreshed) return Errno.ENOTCONN;
                refreshed = true;
                s = (await RefreshAsync(ctx, gfid, fd)).State;
                if (!s.Ok) return s.Error;
                // After the refresh: it asked every child, so children that came back count as up.
                if (needFd && fd is not null) await EnsureOpenAsync(ctx, fd, UpMask);
                tried = 0;
                continue;
            }
            tried |= 1 << i;
            var r = await call(i);
            Observe(i, r.Error);
            if (r.Error != Errno.ENOTCONN && r.Error != Errno.EBADFD) return r; // EBADFD: this copy's handle was fenced
        }
    }

    // ---- inode reads -------------------------------------------------------------------------

    /// <summary>The parent directory's readability, read from the children when this client has not seen it yet.</summary>
    private async ValueTask<InodeState?> ParentStateAsync(FopContext ctx, Gfid parent)
    {
        if (TryCurrent(parent, out var p)) return p;
        var (s, _) = await RefreshAsync(ctx, parent, null);
        return s.Ok ? s.Value : null;
    }

    /// <summary>
    /// Asks every child (a returning child shows up here). The name's GFID must agree on all
    /// children that have it, unless the parent's entry counters say which copies are stale
    /// (see <see cref="TrustedNameAsync"/>); else EIO, listed as split-brain. A name missing on
    /// some children is a pending entry heal of the parent, and the answer comes from the
    /// children the parent's counters trust; when that answer is that the name exists, the
    /// parent's entries are healed first (entry-self-heal, see <see cref="HealForLookupAsync"/>).
    /// </summary>
    public override async ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name)
    {
        var (r, lacking) = await LookupOnceAsync(ctx, parent, name);
        if (lacking == 0 || !_entrySelfHeal || !await HealForLookupAsync(parent, ctx.Cancellation)) return r;
        return (await LookupOnceAsync(ctx, parent, name)).Result;
    }

    /// <summary>
    /// One lookup round. Lacking: the up children the parent's entry counters blame that miss the
    /// name or hold a stale one, while the answer (from the children they trust) is that it exists.
    /// </summary>
    private async ValueTask<(FopResult<Iatt> Result, int Lacking)> LookupOnceAsync(FopContext ctx, Gfid parent, string name)
    {
        long generation = ReturnGeneration;
        var pctx = WithPendingKeys(ctx);
        var results = new FopResult<Iatt>[N];
        await Task.WhenAll(Enumerable.Range(0, N).Select(async i =>
        {
            results[i] = await Children[i].LookupAsync(pctx, parent, name);
            Observe(i, results[i].Error);
        }));

        int found = 0, missing = 0, lacking = 0;
        for (int i = 0; i < N; i++)
        {
            if (results[i].Ok) found |= 1 << i;
            else if (results[i].Error == Errno.ENOENT) missing |= 1 << i;
        }
        if (found == 0)
        {
            if (missing != 0) return (Errno.ENOENT, 0);
            return (FirstError([.. results.Select(r => r.Error)], AllMask), 0);
        }
        if (missing != 0)
        {
            _entryHealHints.TryAdd(parent, 0);
            // The parent's counters say which side is right: a create or an unlink that some children missed.
            var p = await ParentStateAsync(ctx, parent);
            if (p is not null && (p.Entry & missing) != 0 && (p.Entry & found) == 0) return (Errno.ENOENT, 0);
            // Only children the counters blame lack the name for good: with nobody blamed, it may be
            // another client's create or unlink still on its way to the rest.
            lacking = p is null ? 0 : missing & ~p.Entry;
        }

        var gfid = results[Lowest(found)].Value.Gfid;
        int other = Bits(found).FirstOrDefault(i => results[i].Value.Gfid != gfid, -1);
        if (other >= 0)
        {
            var trusted = await TrustedNameAsync(ctx, parent, results, found);
            if (trusted is not { } t)
            {
                _entrySplitBrain[(parent, name)] = new SplitBrainRecord(gfid, SplitBrainKind.GfidMismatch, parent, name,
                    $"'{name}' has GFID {gfid} on {Children[Lowest(found)].Name} but {results[other].Value.Gfid} on {Children[other].Name}");
                return (Errno.EIO, 0);
            }
            _entryHealHints.TryAdd(parent, 0);
            if (t.Found == 0) return (Errno.ENOENT, 0);
            lacking |= found & ~t.Found; // untrusted names that point at another file
            (gfid, found) = t;
        }
        _entrySplitBrain.TryRemove((parent, name), out _);

        var attrs = new Iatt?[N];
        foreach (int i in Bits(found)) attrs[i] = results[i].Value;
        var a = Assess(attrs);
        InodeState st = a.State;
        if (a.SelfAccusing != 0 || st.Split != 0)
        {
            var (s, fresh) = await RefreshAsync(ctx, gfid, null);
            if (s.Ok)
            {
                st = s.Value;
                attrs = fresh;
            }
        }
        else
        {
            st = Remember(gfid, st, generation);
            _splitBrain.TryRemove(gfid, out _);
        }
        int from = Pick(gfid, StatMask(st) & found);
        if (from < 0) from = Lowest(found & DataMask) is var d && d >= 0 ? d : Lowest(found);
        return (Present(attrs[from] ?? results[from].Value, ctx), lacking);
    }

    /// <summary>
    /// A name whose copies have different GFIDs: a child that missed an unlink and a re-create
    /// while it was away (a SQLite journal across a partition) still holds the old file. The
    /// parent's entry counters, read fresh (a cached verdict may predate the blame), say which
    /// children hold the directory's true entries: when those that have the name agree on one
    /// GFID it is the answer, and the others' names are stale entries that entry heal (or the
    /// next unlink of the name) removes. Found = 0: the trusted children do not have the name.
    /// Null when the counters do not decide (trusted children disagree, or none is trusted):
    /// that is a real split-brain, never resolved by picking a side here.
    /// </summary>
    private async ValueTask<(Gfid Gfid, int Found)?> TrustedNameAsync(FopContext ctx, Gfid parent, FopResult<Iatt>[] results, int found)
    {
        var (s, _) = await RefreshAsync(ctx, parent, null);
        if (!s.Ok || (s.Value.Split & EntryBit) != 0 || s.Value.Entry == 0) return null;
        int trusted = s.Value.Entry & found;
        if (trusted == 0) return (default, 0);
        var gfid = results[Lowest(trusted)].Value.Gfid;
        if (Bits(trusted).Any(i => results[i].Value.Gfid != gfid)) return null;
        return (gfid, Bits(found).Where(i => results[i].Value.Gfid == gfid).Sum(i => 1 << i));
    }

    public override async ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        if (!TryCurrent(gfid, out _))
        {
            // Nothing cached: one round to every child gives both the counters and the answer.
            var (s, attrs) = await RefreshAsync(ctx, gfid, fd);
            if (!s.Ok) return s.Error;
            if ((s.Value.Split & DataBit) != 0 && s.Value.IsRegular) return Errno.EIO;
            int i = Pick(gfid, StatMask(s.Value) & attrs.Select((a, j) => a is null ? 0 : 1 << j).Sum());
            if (i >= 0 && attrs[i] is { } found) return Present(found, ctx);
        }
        return await ReadFopAsync(ctx, gfid, fd, StatMask, DataBit, needFd: false, async i =>
        {
            var r = await Children[i].StatAsync(ctx, gfid, FdFor(i, fd));
            return r.Ok ? Present(r.Value, ctx) : r;
        });
    }

    public override ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, Gfid gfid) =>
        ReadFopAsync(ctx, gfid, null, st => st.Metadata, MetadataBit, needFd: false, i => Children[i].ReadlinkAsync(ctx, gfid));

    public override async ValueTask<FopResult> AccessAsync(FopContext ctx, Gfid gfid, int mask) =>
        (await ReadFopAsync(ctx, gfid, null, st => st.Metadata, MetadataBit, needFd: false, i => Plain(Children[i].AccessAsync(ctx, gfid, mask)))).AsPlain();

    /// <summary>The smallest free space of the reachable children: what can still be written everywhere.</summary>
    public override async ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, Gfid gfid)
    {
        var results = new FopResult<StatfsInfo>[N];
        await Task.WhenAll(Bits(UpMask & DataMask).Select(async i =>
        {
            results[i] = await Children[i].StatfsAsync(ctx, gfid);
            Observe(i, results[i].Error);
        }));
        StatfsInfo? best = null;
        Errno error = Errno.ENOTCONN;
        foreach (var r in results)
        {
            if (r.Ok && (best is null || r.Value.BlocksAvailable < best.BlocksAvailable)) best = r.Value;
            else if (!r.Ok && r.Error != Errno.None && r.Error != Errno.ENOTCONN) error = r.Error;
        }
        return best is not null ? best : error;
    }

    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name) =>
        ReadFopAsync(ctx, gfid, null, st => st.Metadata, MetadataBit, needFd: false, i => Children[i].GetxattrAsync(ctx, gfid, name));

    /// <summary>Lists the xattrs of a good copy, without our pending counters.</summary>
    public override async ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid)
    {
        var r = await ReadFopAsync(ctx, gfid, null, st => st.Metadata, MetadataBit, needFd: false, i => Children[i].ListxattrAsync(ctx, gfid));
        if (!r.Ok) return r;
        return FopResult<IReadOnlyList<string>>.Success([.. r.Value.Where(n => !n.StartsWith(PendingPrefix, StringComparison.Ordinal))]);
    }

    // ---- open files ------------------------------------------------------------------------------

    /// <summary>
    /// Reads from a readable copy; a copy its brick found corrupt (EIO with the bitrot bad mark)
    /// is blamed and the read goes on from another copy (see <see cref="ReadAroundBadCopiesAsync"/>).
    /// </summary>
    public override ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size) =>
        ReadAroundBadCopiesAsync(ctx, fd, offset, size);

    public override ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence) =>
        ReadFopAsync(ctx, fd.Gfid, fd, st => st.Data, DataBit, needFd: true, i => Children[i].LseekAsync(ctx, fd, offset, whence));

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        ListAsync(ctx, fd, offset, sizeHint, plus: false);

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        ListAsync(ctx, fd, offset, sizeHint, plus: true);

    /// <summary>
    /// One child serves a whole listing (cookies are that child's): chosen at offset 0 among the
    /// children the directory's entry counters trust. Readdirplus drops the attributes of
    /// entries whose data that child is known to hold stale, so the caller looks them up.
    /// </summary>
    private async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ListAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint, bool plus)
    {
        var fs = StateOf(fd);
        int child = Volatile.Read(ref fs.ReaddirChild);
        FopResult<IReadOnlyList<DirEntry>> r;
        if (offset == 0 || child < 0)
        {
            r = await ReadFopAsync(ctx, fd.Gfid, fd, st => st.Entry, EntryBit, needFd: true, async i =>
            {
                Volatile.Write(ref fs.ReaddirChild, i);
                return plus ? await Children[i].ReaddirplusAsync(ctx, fd, offset, sizeHint) : await Children[i].ReaddirAsync(ctx, fd, offset, sizeHint);
            });
            child = Volatile.Read(ref fs.ReaddirChild);
        }
        else
        {
            r = plus ? await Children[child].ReaddirplusAsync(ctx, fd, offset, sizeHint) : await Children[child].ReaddirAsync(ctx, fd, offset, sizeHint);
            Observe(child, r.Error);
        }
        if (!r.Ok || !plus) return r;
        var list = new List<DirEntry>(r.Value.Count);
        foreach (var e in r.Value)
        {
            if (e.Attr is { } a)
            {
                bool stale = _inodes.TryGetValue(a.Gfid, out var st) && (st.Generation != ReturnGeneration || ((st.IsRegular ? st.Data : st.Metadata) & (1 << child)) == 0);
                list.Add(stale ? e with { Attr = null } : e with { Attr = Present(a, ctx) });
            }
            else list.Add(e);
        }
        return list;
    }
}
