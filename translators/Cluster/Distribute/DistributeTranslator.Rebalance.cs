using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

/// <summary>The outcome of migrating one file.</summary>
public enum MigrationOutcome
{
    /// <summary>The file now lives on its hashed child.</summary>
    Moved,
    /// <summary>It already did; nothing changed.</summary>
    AlreadyHashed,
}

/// <summary>One file migration: what happened and how many bytes were copied.</summary>
public readonly record struct MigrationResult(MigrationOutcome Outcome, long Bytes);

// Rebalance primitives, driven by `brickctl volume rebalance` (crawler outside this class).
public sealed partial class DistributeTranslator
{
    private const int CopyChunk = 1 << 20;

    /// <summary>
    /// Rewrites the layout of directory <paramref name="dir"/> over all current children (weighted
    /// by size unless weighted-rebalance is off; decommissioned children get none), with a
    /// higher commit (after add-brick or remove-brick start). The directory must exist on every child:
    /// look it up first (which recreates it on new children); otherwise ESTALE. Files whose names
    /// now hash elsewhere stay put and are found by lookup-unhashed until migrated. Holds the
    /// layout lock (<see cref="LayoutDomain"/>) from the read to the last write, so no client
    /// repairs the layout it finds half written meanwhile.
    /// </summary>
    public ValueTask<FopResult<DirLayout>> FixLayoutAsync(Gfid dir, CancellationToken cancellation = default) =>
        UnderLayoutLockAsync<DirLayout>(dir, () => FixLayoutLockedAsync(dir, cancellation));

    private async ValueTask<FopResult<DirLayout>> FixLayoutLockedAsync(Gfid dir, CancellationToken cancellation)
    {
        var stats = await OnChildrenAsync(AllChildren, c => c.StatAsync(InternalWithXattrs, dir, null));
        uint commit = 0;
        var ranges = new DirLayout.Range?[Children.Count];
        for (int i = 0; i < stats.Length; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            if (!stats[i].Ok) return stats[i].Error;
            if (!stats[i].Value.IsDirectory) return Errno.ENOTDIR;
            if (await LayoutXattrOfAsync(i, stats[i].Value) is { } raw && DirLayout.TryDecodeEntry(raw, out uint c, out var range))
            {
                commit = Math.Max(commit, c);
                ranges[i] = range;
            }
        }
        var layout = await NewLayoutAsync([.. AllChildren], commit + 1, new DirLayout(commit, ranges));
        var written = await AllAsync(AllChildren.Select(i => Children[i].SetxattrAsync(Internal, dir, LayoutXattr, layout.Encode(i), 0)));
        DirChanged(dir);
        _dirs[dir] = 0;
        CacheLayout(dir, layout);
        return written.FirstOrDefault(w => !w.Ok, FopResult.Success) is { Ok: false } bad ? bad.Error : layout;
    }

    /// <summary>How long clients may go on using a layout or volume commit they read (layout-refresh).</summary>
    public TimeSpan LayoutRefresh => TimeSpan.FromMilliseconds(_layoutRefreshMs);

    /// <summary>
    /// Whether <paramref name="name"/> in <paramref name="parent"/> can be found on its hashed
    /// child alone: a directory, a file there, or a file elsewhere behind a link-to there (the
    /// lookup puts a missing link-to). True also for a name gone meanwhile.
    /// </summary>
    internal async ValueTask<FopResult<bool>> EnsureOnHashedAsync(Gfid parent, string name)
    {
        var loc = await LocateAsync(Internal, parent, name);
        if (IsAbsent(loc.Error)) return true;
        if (!loc.Ok) return loc.Error;
        var l = loc.Value;
        return l.IsDir || l.DataChild == l.Hashed || l.LinktoOnHashed;
    }

    /// <summary>
    /// Rewrites the complete layout of <paramref name="dir"/> (read afresh from every child, under
    /// the layout lock) with <paramref name="commit"/>: rebalance's mark that every name in it is
    /// on its hashed child or behind a link-to there. EAGAIN when the layout is not complete; a
    /// child without the directory fails the write, leaving the directory unmarked.
    /// </summary>
    internal async ValueTask<FopResult> SetLayoutCommitAsync(Gfid dir, uint commit) =>
        (await UnderLayoutLockAsync<DirLayout>(dir, async () =>
        {
            var holders = await ReadHoldersAsync(dir);
            if (!holders.Ok) return holders.Error;
            var read = AssembleLayout(holders.Value).Layout;
            if (!read.IsComplete) return Errno.EAGAIN;
            var layout = read.WithCommit(commit);
            var written = await AllAsync(AllChildren.Select(i => Children[i].SetxattrAsync(Internal, dir, LayoutXattr, layout.Encode(i), 0)));
            DirChanged(dir);
            var bad = written.FirstOrDefault(w => !w.Ok, FopResult.Success);
            if (bad.Ok) CacheLayout(dir, layout);
            else _layouts.TryRemove(dir, out _);
            return bad.Ok ? layout : bad.Error;
        })).AsPlain();

    /// <summary>
    /// Moves file <paramref name="name"/> of <paramref name="parent"/> to the child its name
    /// hashes to. The data is copied into the link-to on the hashed child, which stays a link-to
    /// (readers keep using the old copy) until the copy is complete; then it becomes the real file
    /// (owner, xattrs, mode, times) and the old copy is unlinked. The GFID never changes.
    /// The whole move holds the migration guard exclusively on the old child (see
    /// DistributeTranslator.Guard.cs), so no client writes or changes the file meanwhile.
    /// Refused, leaving the file where it is for a later pass: EBUSY while any client has it open
    /// for writing (or this translator does) or when it changed anyway (the copy is discarded);
    /// ENOSPC when the hashed child is below min-free-disk or too small for it; EMLINK for
    /// hard-linked files.
    /// </summary>
    public async ValueTask<FopResult<MigrationResult>> MigrateFileAsync(Gfid parent, string name, CancellationToken cancellation = default)
    {
        var loc = await LocateAsync(Internal, parent, name);
        if (!loc.Ok) return loc.Error;
        var l = loc.Value;
        if (l.IsDir) return Errno.EISDIR;
        if (l.DataChild == l.Hashed) return new MigrationResult(MigrationOutcome.AlreadyHashed, 0);
        var gfid = l.Attr.Gfid;
        if (_writers.TryGetValue(gfid, out int writers) && writers > 0) return Errno.EBUSY;
        if (l.Attr.Nlink > 1) return Errno.EMLINK;
        var space = await ChildSpaceAsync(refresh: false);
        if (space[l.Hashed] is { } free && (BelowMinFree(free) || AvailableBytes(free) < (ulong)Math.Max(0, l.Attr.Size))) return Errno.ENOSPC;

        ulong owner = NewLockOwner();
        var guard = await GuardAsync(Internal, l.DataChild, gfid, owner, exclusive: true);
        if (guard.Error == Errno.EAGAIN) return Errno.EBUSY;
        if (!guard.Ok) return guard.Error;
        try
        {
            return await MoveGuardedAsync(parent, name, l, cancellation);
        }
        finally
        {
            if (guard.Value) await ReleaseGuardAsync(Internal, l.DataChild, gfid, owner);
        }
    }

    private async ValueTask<FopResult<MigrationResult>> MoveGuardedAsync(Gfid parent, string name, Located l, CancellationToken cancellation)
    {
        var gfid = l.Attr.Gfid;
        Translator src = Children[l.DataChild], dst = Children[l.Hashed];
        // Where the lookup ran before the guard was granted, the file may have moved or changed since.
        var before = await src.StatAsync(Internal, gfid, null);
        if (!before.Ok) return IsAbsent(before.Error) ? Errno.EBUSY : before.Error;
        if (HasLinktoMode(before.Value) || before.Value.Nlink > 1) return Errno.EBUSY;

        if (!l.LinktoOnHashed)
        {
            var put = await PutLinktoAsync(l.Hashed, parent, name, gfid, l.DataChild, replace: false);
            if (put.Error == Errno.EEXIST)
            {
                // A lookup from a client (its repair of a miss) may have put the same link-to there
                // since our lookup: that one serves. Anything else at the name: try again later.
                var there = await dst.LookupAsync(Internal, parent, name);
                if (!there.Ok || there.Value.Gfid != gfid || !HasLinktoMode(there.Value)) return Errno.EBUSY;
            }
            else if (!put.Ok) return put.Error;
        }

        var copied = await CopyDataAsync(src, dst, gfid, before.Value.Size, cancellation);
        if (!copied.Ok) return copied.Error;
        var after = await src.StatAsync(Internal, gfid, null);
        if (!after.Ok || !SameContent(before.Value, after.Value))
        {
            await dst.SetattrAsync(Internal, gfid, null, new SetattrRequest { Valid = SetattrValid.Size, Size = 0 });
            return after.Ok ? Errno.EBUSY : after.Error;
        }

        var xattrs = await CopyXattrsAsync(src, dst, gfid);
        if (!xattrs.Ok) return xattrs.Error;
        var a = after.Value;
        var own = await dst.SetattrAsync(Internal, gfid, null, new SetattrRequest { Valid = SetattrValid.Uid | SetattrValid.Gid, Uid = a.Uid, Gid = a.Gid });
        if (!own.Ok) return own.Error;
        // The switch: from here the hashed child's copy is the file.
        var sw = await dst.SetattrAsync(Internal, gfid, null, new SetattrRequest
        {
            Valid = SetattrValid.Mode | SetattrValid.Atime | SetattrValid.Mtime, Mode = a.Mode & ModeBits.PermMask, Atime = a.Atime, Mtime = a.Mtime,
        });
        if (!sw.Ok) return sw.Error;
        await dst.RemovexattrAsync(Internal, gfid, LinktoXattr);
        _dataChild[gfid] = l.Hashed;
        await src.UnlinkAsync(Internal, parent, name);
        DirChanged(parent, l.DataChild);
        return new MigrationResult(MigrationOutcome.Moved, a.Size);
    }

    private static bool SameContent(Iatt a, Iatt b) => a.Size == b.Size && a.Mtime == b.Mtime && a.Ctime == b.Ctime;

    /// <summary>Copies <paramref name="size"/> bytes; all-zero chunks are skipped so holes stay holes.</summary>
    private static async ValueTask<FopResult> CopyDataAsync(Translator src, Translator dst, Gfid gfid, long size, CancellationToken cancellation)
    {
        var rfd = new FileHandle(gfid, OpenFlags.ReadOnly);
        var wfd = new FileHandle(gfid, OpenFlags.WriteOnly);
        var ro = await src.OpenAsync(Internal, rfd);
        if (!ro.Ok) return ro;
        var wo = await dst.OpenAsync(Internal, wfd);
        if (!wo.Ok)
        {
            await src.ReleaseAsync(Internal, rfd);
            return wo;
        }
        try
        {
            var t = await dst.SetattrAsync(Internal, gfid, wfd, new SetattrRequest { Valid = SetattrValid.Size, Size = 0 });
            if (!t.Ok) return t.Error;
            for (long off = 0; off < size;)
            {
                cancellation.ThrowIfCancellationRequested();
                var r = await src.ReadAsync(Internal, rfd, off, (int)Math.Min(CopyChunk, size - off));
                if (!r.Ok) return r.Error;
                using var buf = r.Value;
                if (buf.Length == 0) break;
                if (buf.Span.ContainsAnyExcept((byte)0))
                {
                    var w = await dst.WriteAsync(Internal, wfd, off, buf.Memory);
                    if (!w.Ok) return w.Error;
                    if (w.Value != buf.Length) return Errno.EIO;
                }
                off += buf.Length;
            }
            var s = await dst.SetattrAsync(Internal, gfid, wfd, new SetattrRequest { Valid = SetattrValid.Size, Size = size });
            if (!s.Ok) return s.Error;
            var f = await dst.FsyncAsync(Internal, wfd, dataOnly: false);
            return f.Ok ? FopResult.Success : f;
        }
        finally
        {
            await src.ReleaseAsync(Internal, rfd);
            await dst.ReleaseAsync(Internal, wfd);
        }
    }

    /// <summary>Copies the file's own xattrs (user., security., ...); Brickfs's internal ones stay with their brick.</summary>
    private static async ValueTask<FopResult> CopyXattrsAsync(Translator src, Translator dst, Gfid gfid)
    {
        var names = await src.ListxattrAsync(Internal, gfid);
        if (!names.Ok) return names.Error;
        foreach (var n in names.Value)
        {
            if (n.StartsWith(InternalXattrPrefix, StringComparison.Ordinal)) continue;
            var v = await src.GetxattrAsync(Internal, gfid, n);
            if (v.Error == Errno.ENODATA) continue;
            if (!v.Ok) return v.Error;
            var s = await dst.SetxattrAsync(Internal, gfid, n, v.Value, 0);
            if (!s.Ok) return s;
        }
        return FopResult.Success;
    }
}
