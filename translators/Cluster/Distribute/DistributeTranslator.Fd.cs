using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

// Fops on GFIDs and open files: attributes, xattrs, data, locks, directory reading.
public sealed partial class DistributeTranslator
{
    /// <summary>
    /// This translator's state on an open file: the child that opened it, the file's real GFID,
    /// and for writers the migration guard held on that child (<see cref="GuardOwner"/> 0: none).
    /// </summary>
    private sealed record FileState(int Child, Gfid Gfid, bool Writer, ulong GuardOwner, string GuardClient);

    /// <summary>State on an open directory: which children opened it and the cookie map for oversized child cookies.</summary>
    private sealed class DirState
    {
        public required bool[] Opened;
        public int First => Array.IndexOf(Opened, true);
        public readonly Lock Lock = new();
        public readonly Dictionary<long, (int Child, long Cookie)> Mapped = new();
        public readonly Dictionary<(int Child, long Cookie), long> MappedKeys = new();
    }

    private void TrackOpen(FopContext ctx, FileHandle fd, int child, Gfid gfid, ulong guardOwner)
    {
        bool writer = fd.CanWrite;
        if (writer) _writers.AddOrUpdate(gfid, 1, (_, n) => n + 1);
        fd.SetContext(this, new FileState(child, gfid, writer, guardOwner, ctx.ClientId));
    }

    private Translator? ChildOf(FileHandle fd) => fd.TryGetContext(this, out FileState s) ? Children[s.Child] : null;

    private ValueTask<FopResult<T>> OnFd<T>(FileHandle fd, Func<Translator, ValueTask<FopResult<T>>> op) =>
        ChildOf(fd) is { } c ? op(c) : ValueTask.FromResult(FopResult<T>.Fail(Errno.EBADF));

    private ValueTask<FopResult> OnFd(FileHandle fd, Func<Translator, ValueTask<FopResult>> op) =>
        ChildOf(fd) is { } c ? op(c) : ValueTask.FromResult(FopResult.Fail(Errno.EBADF));

    private static async ValueTask<FopResult<bool>> Plain(ValueTask<FopResult> call)
    {
        var r = await call;
        return r.Ok ? true : r.Error;
    }

    // ---- attributes --------------------------------------------------------------------------

    public override async ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        if (fd is not null && ChildOf(fd) is { } held)
        {
            var h = await held.StatAsync(ctx, gfid, fd);
            return h.Ok ? ForCaller(ctx, h.Value) : h.Error;
        }
        var r = await OnGfidAsync(gfid, c => c.StatAsync(ctx, gfid, null), () => StatDirAsync(ctx, gfid));
        return r.Ok ? ForCaller(ctx, r.Value) : r.Error;
    }

    public override async ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest request)
    {
        FopResult<Iatt> r;
        if (fd is not null && !fd.IsDirectory && ChildOf(fd) is { } held && fd.CanWrite) r = await held.SetattrAsync(ctx, gfid, fd, request);
        else
        {
            r = await OnFileGuardedAsync(ctx, gfid, c => c.SetattrAsync(ctx, gfid, fd is not null && ChildOf(fd) == c ? fd : null, request),
                () => OnDirChangedAsync(gfid, c => c.SetattrAsync(ctx, gfid, fd, request)));
            // A file open here for reading that is gone from every child (unlinked, renamed over):
            // its descriptor still reaches it, and nothing can migrate a file without a name.
            if (IsAbsent(r.Error) && fd is not null && !fd.IsDirectory && ChildOf(fd) is { } reader) r = await reader.SetattrAsync(ctx, gfid, fd, request);
        }
        return r.Ok ? ForCaller(ctx, r.Value) : r.Error;
    }

    public override ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, Gfid gfid) =>
        OnGfidAsync(gfid, c => c.ReadlinkAsync(ctx, gfid), () => ValueTask.FromResult(FopResult<string>.Fail(Errno.EINVAL)));

    public override async ValueTask<FopResult> AccessAsync(FopContext ctx, Gfid gfid, int mask) =>
        (await OnGfidAsync(gfid, c => Plain(c.AccessAsync(ctx, gfid, mask)), () => OnDirFirstAsync(c => Plain(c.AccessAsync(ctx, gfid, mask))))).AsPlain();

    /// <summary>The sum of the children, in the first child's block size; names as long as the shortest limit.</summary>
    public override async ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, Gfid gfid)
    {
        var all = await OnChildrenAsync(AllChildren, c => c.StatfsAsync(ctx, gfid));
        var ok = all.Where(r => r.Ok).Select(r => r.Value).ToList();
        if (ok.Count == 0) return all[0].Error;
        uint frag = ok[0].FragmentSize;
        ulong Scale(ulong blocks, StatfsInfo s) => blocks * s.FragmentSize / frag;
        return new StatfsInfo
        {
            Blocks = (ulong)ok.Sum(s => (decimal)Scale(s.Blocks, s)),
            BlocksFree = (ulong)ok.Sum(s => (decimal)Scale(s.BlocksFree, s)),
            BlocksAvailable = (ulong)ok.Sum(s => (decimal)Scale(s.BlocksAvailable, s)),
            Files = (ulong)ok.Sum(s => (decimal)s.Files),
            FilesFree = (ulong)ok.Sum(s => (decimal)s.FilesFree),
            BlockSize = ok[0].BlockSize,
            FragmentSize = frag,
            NameMax = ok.Min(s => s.NameMax),
        };
    }

    // ---- xattrs: a directory's live on every copy ------------------------------------------------

    public override async ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags) =>
        name == CommitXattr ? Errno.EPERM : (await OnFileGuardedAsync(ctx, gfid, c => Plain(c.SetxattrAsync(ctx, gfid, name, value, flags)),
            () => OnDirChangedAsync(gfid, c => Plain(c.SetxattrAsync(ctx, gfid, name, value, flags))))).AsPlain();

    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name) =>
        name == CommitXattr ? ValueTask.FromResult(FopResult<byte[]>.Fail(Errno.ENODATA)) : OnGfidAsync(gfid, c => c.GetxattrAsync(ctx, gfid, name), () => OnDirFirstAsync(c => c.GetxattrAsync(ctx, gfid, name)));

    /// <summary>Lists xattrs without distribute's own (layout and link-to are placement, not file data).</summary>
    public override async ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid)
    {
        var r = await OnGfidAsync(gfid, c => c.ListxattrAsync(ctx, gfid), () => OnDirFirstAsync(c => c.ListxattrAsync(ctx, gfid)));
        if (!r.Ok) return r;
        return r.Value.Where(n => n != LayoutXattr && n != LinktoXattr && n != CommitXattr).ToList();
    }

    public override async ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name) =>
        name == CommitXattr ? Errno.EPERM : (await OnFileGuardedAsync(ctx, gfid, c => Plain(c.RemovexattrAsync(ctx, gfid, name)),
            () => OnDirChangedAsync(gfid, c => Plain(c.RemovexattrAsync(ctx, gfid, name))))).AsPlain();

    // ---- internal fops: a file's data child; directories on the first child -------------------

    public override ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        if (fd is not null && !fd.IsDirectory && ChildOf(fd) is { } held) return held.XattropAsync(ctx, gfid, fd, deltas);
        return OnGfidAsync(gfid, c => c.XattropAsync(ctx, gfid, fd, deltas), async () =>
        {
            var r = await OnDirFirstAsync(c => c.XattropAsync(ctx, gfid, fd, deltas));
            DirChanged(gfid);
            return r;
        });
    }

    public override ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk) =>
        OnGfidAsync(gfid, c => c.InodelkAsync(ctx, domain, gfid, command, lk), () => Children[0].InodelkAsync(ctx, domain, gfid, command, lk));

    /// <summary>A name's entry lock lives on the name's hashed child; a whole-directory lock on the first child.</summary>
    public override async ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type)
    {
        int child = 0;
        if (name is not null)
        {
            var lr = await GetLayoutAsync(parent);
            if (!lr.Ok) return lr.Error;
            child = Math.Max(0, lr.Value.ChildFor(name));
        }
        return await Children[child].EntrylkAsync(ctx, domain, parent, name, command, type);
    }

    // ---- open files -----------------------------------------------------------------------------

    /// <summary>
    /// Opens on the child holding the data; a writer first takes the migration guard there, so
    /// the file cannot move while it is open for writing. A file that moved before the guard was
    /// granted is gone from that child (the open answers ENOENT) and is looked for again.
    /// </summary>
    public override async ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        for (int attempt = 0; attempt < 3; attempt++)
        {
            var p = await ResolveAsync(fd.Gfid, useCache: attempt == 0);
            if (!p.Ok) return p.Error;
            int child = p.Value.IsDir ? 0 : p.Value.Child;
            ulong owner = 0;
            if (!p.Value.IsDir && fd.CanWrite)
            {
                owner = NewLockOwner();
                var g = await GuardAsync(ctx, child, fd.Gfid, owner, exclusive: false);
                if (!g.Ok) return g.Error;
                if (!g.Value) owner = 0;
            }
            var r = await Children[child].OpenAsync(ctx, fd);
            for (int next = 1; p.Value.IsDir && IsAbsent(r.Error) && next < Children.Count; next++)
            {
                child = next;
                r = await Children[child].OpenAsync(ctx, fd);
            }
            if (r.Ok)
            {
                TrackOpen(ctx, fd, child, fd.Gfid, owner);
                return r;
            }
            if (owner != 0) await ReleaseGuardAsync(ctx, child, fd.Gfid, owner);
            if (!IsAbsent(r.Error)) return r;
        }
        return Errno.ESTALE;
    }

    public override ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size) =>
        OnFd(fd, c => c.ReadAsync(ctx, fd, offset, size));

    public override ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data) =>
        OnFd(fd, c => c.WriteAsync(ctx, fd, offset, data));

    public override ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd) => OnFd(fd, c => c.FlushAsync(ctx, fd));

    public override ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly)
    {
        if (fd.TryGetContext(this, out DirState _)) return FsyncdirAsync(ctx, fd, dataOnly);
        return OnFd(fd, c => c.FsyncAsync(ctx, fd, dataOnly));
    }

    public override ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length) =>
        OnFd(fd, c => c.FallocateAsync(ctx, fd, mode, offset, length));

    public override ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence) =>
        OnFd(fd, c => c.LseekAsync(ctx, fd, offset, whence));

    public override ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk) =>
        OnFd(fd, c => c.LkAsync(ctx, fd, command, lk));

    public override async ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        if (!fd.RemoveContext(this, out var state) || state is not FileState s) return Errno.EBADF;
        if (s.Writer) _writers.AddOrUpdate(s.Gfid, 0, (_, n) => n - 1);
        if (s.Writer && _writers.TryGetValue(s.Gfid, out int left) && left <= 0) _writers.TryRemove(new KeyValuePair<Gfid, int>(s.Gfid, left));
        // The guard goes with the release, not after it: the release is the handle's last fop, so
        // every write through it was answered before; a migration granted from here copies the
        // final content, and the old copy's descriptor is closed by the release either way.
        var release = Children[s.Child].ReleaseAsync(ctx, fd);
        if (s.GuardOwner != 0) await ReleaseGuardAsync(new FopContext { ClientId = s.GuardClient }, s.Child, s.Gfid, s.GuardOwner);
        return await release;
    }

    // ---- directories ----------------------------------------------------------------------------

    public override async ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd)
    {
        var p = await ResolveAsync(fd.Gfid);
        if (!p.Ok) return p.Error;
        if (!p.Value.IsDir) return Errno.ENOTDIR;
        var results = await AllAsync(Children.Select(c => c.OpendirAsync(ctx, fd)));
        var opened = results.Select(r => r.Ok).ToArray();
        var denied = results.FirstOrDefault(r => !r.Ok && !IsAbsent(r.Error));
        if (!opened.Any(o => o) || !denied.Ok)
        {
            for (int i = 0; i < opened.Length; i++)
            {
                if (opened[i]) await Children[i].ReleasedirAsync(ctx, fd);
            }
            return !denied.Ok ? denied : results[0];
        }
        fd.SetContext(this, new DirState { Opened = opened });
        return FopResult.Success;
    }

    public override async ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd)
    {
        if (!fd.RemoveContext(this, out var state) || state is not DirState d) return Errno.EBADF;
        for (int i = 0; i < d.Opened.Length; i++)
        {
            if (d.Opened[i]) await Children[i].ReleasedirAsync(ctx, fd);
        }
        return FopResult.Success;
    }

    public override async ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly)
    {
        if (!fd.TryGetContext(this, out DirState d)) return Errno.EBADF;
        var results = await AllAsync(AllChildren.Where(i => i < d.Opened.Length && d.Opened[i]).Select(i => Children[i].FsyncdirAsync(ctx, fd, dataOnly)));
        return results.FirstOrDefault(r => !r.Ok, FopResult.Success);
    }

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        ListAsync(ctx, fd, offset, sizeHint, plus: false);

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        ListAsync(ctx, fd, offset, sizeHint, plus: true);

    /// <summary>
    /// One child's batch at a time, in child order, resuming at the child named by the cookie.
    /// Link-to files never appear; directories, "." and ".." come from the first child only, so
    /// every name is listed once. Children are read with readdirplus (mode and link-to xattr tell
    /// a link-to apart); plain readdir drops the attributes.
    /// </summary>
    private async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ListAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint, bool plus)
    {
        if (!fd.TryGetContext(this, out DirState d)) return Errno.EBADF;
        int first = d.First;
        int child;
        long cookie;
        var (c0, cc0, mapped) = DirCookie.Unpack(offset);
        if (offset == 0) (child, cookie) = (first, 0);
        else if (mapped)
        {
            lock (d.Lock)
            {
                if (!d.Mapped.TryGetValue(cc0, out var at)) return Errno.EINVAL;
                (child, cookie) = at;
            }
        }
        else (child, cookie) = (c0, cc0);
        var lctx = WithDhtXattrs(ctx, LinktoOnly);
        var result = new List<DirEntry>();
        // The same rough cost per entry as the bricks use, so a batch spans children up to the hint.
        int budget = Math.Max(sizeHint, 512);
        while (child < Children.Count && budget > 0)
        {
            // A child added after the opendir is not part of this listing.
            if (child < 0 || child >= d.Opened.Length || !d.Opened[child])
            {
                (child, cookie) = (child + 1, 0);
                continue;
            }
            var r = await Children[child].ReaddirplusAsync(lctx, fd, cookie, budget);
            DirChanged(fd.Gfid, child); // its atime
            if (!r.Ok)
            {
                if (result.Count > 0) return result;
                return r.Error;
            }
            if (r.Value.Count == 0)
            {
                (child, cookie) = (child + 1, 0);
                continue;
            }
            foreach (var e in r.Value)
            {
                cookie = e.NextOffset;
                if (e.Name is "." or ".." || (e.Attr?.IsDirectory ?? e.Type == 4))
                {
                    if (child != first) continue;
                }
                else if (e.Attr is { } a && await LinktoTargetAsync(child, a) is not null) continue;
                if (e.Attr is { } fa && !fa.IsDirectory) _dataChild[fa.Gfid] = child;
                result.Add(e with
                {
                    NextOffset = Pack(d, child, e.NextOffset),
                    Attr = plus && e.Attr is { } attr ? ForCaller(ctx, attr) : null,
                });
                budget -= 32 + e.Name.Length + (plus ? 128 : 0);
            }
        }
        return result;
    }

    private static long Pack(DirState d, int child, long childCookie)
    {
        if (DirCookie.TryPack(child, childCookie, out long packed)) return packed;
        lock (d.Lock)
        {
            if (!d.MappedKeys.TryGetValue((child, childCookie), out long key))
            {
                key = d.Mapped.Count + 1;
                d.Mapped[key] = (child, childCookie);
                d.MappedKeys[(child, childCookie)] = key;
            }
            return DirCookie.PackMapped(key);
        }
    }
}
