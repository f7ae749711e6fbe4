using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

// Namespace fops: create, mknod, symlink, mkdir, unlink, rmdir, rename, link.
public sealed partial class DistributeTranslator
{
    /// <summary>
    /// The hashed child for a new entry, after checking that the name exists on no child (a file
    /// may sit off its hashed child without a link-to while layouts change).
    /// </summary>
    private async ValueTask<FopResult<int>> HashedForNewAsync(FopContext ctx, Gfid parent, string name)
    {
        var loc = await LocateNewAsync(ctx, parent, name);
        if (loc.Ok) return Errno.EEXIST;
        if (loc.Error != Errno.ENOENT) return loc.Error;
        var lr = await GetLayoutAsync(parent);
        if (!lr.Ok) return lr.Error;
        int h = lr.Value.ChildFor(name);
        return h < 0 ? Errno.EIO : h;
    }

    /// <summary>
    /// <see cref="LocateAsync"/> for a name about to be created, which is usually new: every child
    /// is asked at once, and when none has the name that is the answer (one round trip instead of
    /// the hashed child's miss followed by everyone else's). Otherwise (or where lookup-optimize
    /// trusts the hashed child alone) the full lookup runs.
    /// </summary>
    private async ValueTask<FopResult<Located>> LocateNewAsync(FopContext ctx, Gfid parent, string name)
    {
        if (_lookupUnhashed && Children.Count > 1)
        {
            var lr = await GetLayoutAsync(parent);
            if (!lr.Ok) return lr.Error;
            if (await TrustsHashedAsync(lr.Value)) return await LocateAsync(ctx, parent, name);
            var all = await OnChildrenAsync(AllChildren, c => c.LookupAsync(ctx, parent, name));
            if (all.All(r => r.Error == Errno.ENOENT)) return Errno.ENOENT;
        }
        return await LocateAsync(ctx, parent, name);
    }

    /// <summary>Whether a create in <paramref name="parent"/> may skip the lookup (lookup-optimize trusts its hashed child).</summary>
    private async ValueTask<bool> TrustsHashedForCreateAsync(Gfid parent)
    {
        if (!_lookupOptimize) return false;
        var lr = await GetLayoutAsync(parent);
        return lr.Ok && await TrustsHashedAsync(lr.Value);
    }

    private async ValueTask<FopResult<Iatt>> CreateOnHashedAsync(FopContext ctx, Gfid parent, string name, Gfid gfid,
        Func<Translator, ValueTask<FopResult<Iatt>>> op)
    {
        var h = await HashedForNewAsync(ctx, parent, name);
        if (!h.Ok) return h.Error;
        var r = await CreateNewAsync(parent, name, gfid, h.Value, op);
        return r.Ok ? ForCaller(ctx, r.Value.Attr) : r.Error;
    }

    public override ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid) =>
        CreateOnHashedAsync(ctx, parent, name, newGfid, c => c.MknodAsync(ctx, parent, name, mode, rdev, newGfid));

    public override ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid) =>
        CreateOnHashedAsync(ctx, parent, name, newGfid, c => c.SymlinkAsync(ctx, parent, name, target, newGfid));

    /// <summary>
    /// Opens an existing file where its data is, or creates a new one (<see cref="CreateNewAsync"/>).
    /// A writer takes the migration guard on the child before the create reaches it, so the new
    /// handle is guarded from the start (see DistributeTranslator.Guard.cs).
    /// </summary>
    public override async ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd)
    {
        for (int attempt = 0; ; attempt++)
        {
            // Where the hashed child is trusted alone, the create itself asks it: an existing
            // file there is opened, a link-to there sends this loop round through the lookup.
            var loc = attempt == 0 && await TrustsHashedForCreateAsync(parent) ? Errno.ENOENT : await LocateNewAsync(ctx, parent, name);
            int child;
            ulong owner = 0;
            FopResult<Iatt> r;

            async ValueTask<FopResult<Iatt>> GuardedCreateAsync(Translator c, Gfid expected)
            {
                int i = ChildIndex(c);
                ulong o = fd.CanWrite ? NewLockOwner() : 0;
                FopResult<Iatt> made;
                if (o != 0 && expected == fd.Gfid)
                {
                    // A new GFID: nothing can migrate a file before it exists, so the guard and
                    // the create travel together (one round trip); a failed guard undoes the create.
                    var guard = GuardAsync(ctx, i, expected, o, exclusive: false).AsTask();
                    made = await c.CreateAsync(ctx, parent, name, mode, fd);
                    var g = await guard;
                    if (!g.Ok)
                    {
                        if (made.Ok)
                        {
                            await c.ReleaseAsync(ctx, fd);
                            if (made.Value.Gfid == expected) await c.UnlinkAsync(Internal, parent, name);
                            DirChanged(parent, i);
                        }
                        return g.Error;
                    }
                    if (!g.Value) o = 0;
                }
                else
                {
                    if (o != 0)
                    {
                        var g = await GuardAsync(ctx, i, expected, o, exclusive: false);
                        if (!g.Ok) return g.Error;
                        if (!g.Value) o = 0;
                    }
                    made = await c.CreateAsync(ctx, parent, name, mode, fd);
                }
                if (o != 0 && (!made.Ok || made.Value.Gfid != expected))
                {
                    await ReleaseGuardAsync(ctx, i, expected, o);
                    // Another file under the name after all (replaced since the lookup): guard that one.
                    if (made.Ok && !(await GuardAsync(ctx, i, made.Value.Gfid, o, exclusive: false)).Ok) o = 0;
                    else if (!made.Ok) o = 0;
                }
                owner = o;
                return made;
            }

            if (loc.Ok)
            {
                if ((fd.Flags & OpenFlags.Exclusive) != 0) return Errno.EEXIST;
                if (loc.Value.IsDir) return Errno.EISDIR;
                child = loc.Value.DataChild; // open the existing file where its data is
                r = await GuardedCreateAsync(Children[child], loc.Value.Attr.Gfid);
                if (r.Ok && r.Value.Gfid == fd.Gfid && child != loc.Value.Hashed && attempt < 2)
                {
                    // The file moved off that child since the lookup (migration): this made a
                    // second, empty one there. Undo it and open the file where it is now.
                    await Children[child].ReleaseAsync(ctx, fd);
                    if (owner != 0) await ReleaseGuardAsync(ctx, child, fd.Gfid, owner);
                    await Children[child].UnlinkAsync(Internal, parent, name);
                    DirChanged(parent, child);
                    continue;
                }
            }
            else if (loc.Error == Errno.ENOENT)
            {
                var lr = await GetLayoutAsync(parent);
                if (!lr.Ok) return lr.Error;
                int hashed = lr.Value.ChildFor(name);
                if (hashed < 0) return Errno.EIO;
                var made = await CreateNewAsync(parent, name, fd.Gfid, hashed, c => GuardedCreateAsync(c, fd.Gfid));
                if (made.Error == Errno.EEXIST && attempt == 0 && (fd.Flags & OpenFlags.Exclusive) == 0) continue; // raced a creator: open theirs
                if (!made.Ok) return made.Error;
                (r, child) = (made.Value.Attr, made.Value.Child);
            }
            else return loc.Error;

            if (!r.Ok) return r.Error;
            if (HasLinktoMode(r.Value) && r.Value.Gfid != fd.Gfid && attempt == 0)
            {
                // A link-to appeared under the name since the lookup (a rename raced us): retry through it.
                await Children[child].ReleaseAsync(ctx, fd);
                if (owner != 0) await ReleaseGuardAsync(ctx, child, r.Value.Gfid, owner);
                continue;
            }
            _dataChild[r.Value.Gfid] = child;
            TrackOpen(ctx, fd, child, r.Value.Gfid, owner);
            return ForCaller(ctx, r.Value);
        }
    }

    public override async ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid)
    {
        var h = await HashedForNewAsync(ctx, parent, name);
        if (!h.Ok) return h.Error;
        int hashed = h.Value;
        // The hashed child first: it decides permission and EEXIST races; then the others.
        var first = await Children[hashed].MkdirAsync(ctx, parent, name, mode, newGfid);
        if (!first.Ok) return first.Error;
        var others = AllChildren.Where(i => i != hashed).ToList();
        var rest = await OnChildrenAsync(others, c => c.MkdirAsync(ctx, parent, name, mode, newGfid));
        var holders = new List<int> { hashed };
        var copies = new List<Iatt> { first.Value };
        for (int k = 0; k < others.Count; k++)
        {
            if (rest[k].Ok)
            {
                holders.Add(others[k]);
                copies.Add(rest[k].Value);
            }
        }
        holders.Sort();
        // A new directory is complete by construction: it carries the volume commit at once.
        var root = await GetLayoutAsync(Gfid.Root);
        var layout = await NewLayoutAsync(holders, root.Ok ? _volumeCommit : InitialCommit);
        await WriteLayoutAsync(newGfid, layout, holders);
        DirChanged(parent);
        CacheLayout(newGfid, layout);
        _dirs[newGfid] = 0;
        return ForCaller(ctx, MergeDirAttrs(copies));
    }

    public override async ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name)
    {
        var loc = await LocateAsync(ctx, parent, name);
        if (!loc.Ok) return loc.Error;
        var l = loc.Value;
        if (l.IsDir) return Errno.EISDIR;
        // Data first, then the pointer: a lookup in between finds a stale link-to and removes it.
        var r = await Children[l.DataChild].UnlinkAsync(ctx, parent, name);
        DirChanged(parent, l.DataChild);
        if (!r.Ok) return r;
        if (l.Hashed != l.DataChild) await RemoveLinktoAsync(l.Hashed, parent, name, l.Attr.Gfid);
        return FopResult.Success;
    }

    public override async ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name)
    {
        var loc = await LocateAsync(ctx, parent, name);
        if (!loc.Ok) return loc.Error;
        if (!loc.Value.IsDir) return Errno.ENOTDIR;
        var gfid = loc.Value.Attr.Gfid;
        var empty = await EmptyForRemovalAsync(gfid);
        if (!empty.Ok) return empty;
        // The hashed child answers permission (sticky bits, write access) for all; then the rest.
        var first = await Children[loc.Value.Hashed].RmdirAsync(ctx, parent, name);
        if (!first.Ok && !IsAbsent(first.Error)) return first;
        await AllAsync(AllChildren.Where(i => i != loc.Value.Hashed).Select(i => Children[i].RmdirAsync(Internal, parent, name)));
        DirChanged(parent);
        DirGone(gfid);
        _layouts.TryRemove(gfid, out _);
        _dirs.TryRemove(gfid, out _);
        return FopResult.Success;
    }

    /// <summary>
    /// ENOTEMPTY when any child holds a real entry in the directory; otherwise removes the
    /// link-to files left there (they point at nothing once every child is empty of data).
    /// </summary>
    private async ValueTask<FopResult> EmptyForRemovalAsync(Gfid dir)
    {
        var scans = await AllAsync(AllChildren.Select(i => ScanChildDirAsync(i, dir)));
        if (scans.Any(s => s.HasReal)) return Errno.ENOTEMPTY;
        for (int i = 0; i < scans.Length; i++)
        {
            foreach (var name in scans[i].Linktos) await Children[i].UnlinkAsync(Internal, dir, name);
        }
        DirChanged(dir);
        return FopResult.Success;
    }

    private async ValueTask<(bool HasReal, List<string> Linktos)> ScanChildDirAsync(int child, Gfid dir)
    {
        var c = Children[child];
        var linktos = new List<string>();
        var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
        if (!(await c.OpendirAsync(Internal, fd)).Ok) return (false, linktos);
        try
        {
            long cookie = 0;
            while (true)
            {
                var r = await c.ReaddirplusAsync(InternalWithXattrs, fd, cookie, 1 << 16);
                if (!r.Ok || r.Value.Count == 0) return (false, linktos);
                foreach (var e in r.Value)
                {
                    cookie = e.NextOffset;
                    if (e.Name is "." or "..") continue;
                    if (e.Attr is { } a && await LinktoTargetAsync(child, a) is not null) linktos.Add(e.Name);
                    else return (true, linktos);
                }
            }
        }
        finally
        {
            await c.ReleasedirAsync(Internal, fd);
        }
    }

    public override async ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags)
    {
        var src = await LocateAsync(ctx, oldParent, oldName);
        if (!src.Ok) return src.Error;
        var dst = await LocateAsync(ctx, newParent, newName);
        if (!dst.Ok && dst.Error != Errno.ENOENT) return dst.Error;
        var s = src.Value;
        Located? d = dst.Ok ? dst.Value : null;
        int newHashed;
        if (d is { } known) newHashed = known.Hashed;
        else
        {
            var lr = await GetLayoutAsync(newParent);
            if (!lr.Ok) return lr.Error;
            newHashed = lr.Value.ChildFor(newName);
        }

        if ((flags & RenameFlags.Exchange) != 0)
        {
            if (d is null) return Errno.ENOENT;
            return await ExchangeAsync(ctx, s, d.Value, oldParent, oldName, newParent, newName);
        }
        if (d is { } t)
        {
            if ((flags & RenameFlags.NoReplace) != 0) return Errno.EEXIST;
            if (t.Attr.Gfid == s.Attr.Gfid) return FopResult.Success; // the same file: POSIX does nothing
            if (s.IsDir && !t.IsDir) return Errno.ENOTDIR;
            if (!s.IsDir && t.IsDir) return Errno.EISDIR;
        }
        if (s.IsDir)
        {
            var moved = await RenameDirAsync(ctx, d, oldParent, oldName, newParent, newName, newHashed, flags);
            DirChanged(oldParent);
            DirChanged(newParent);
            DirChanged(s.Attr.Gfid); // its ".." and ctime
            return moved;
        }

        // A file: rename where the data is, point the new hashed child at it, then drop leftovers.
        int data = s.DataChild;
        var r = await Children[data].RenameAsync(ctx, oldParent, oldName, newParent, newName, flags & RenameFlags.NoReplace);
        DirChanged(oldParent, data);
        DirChanged(newParent, data);
        if (!r.Ok) return r;
        if (newHashed != data)
        {
            var put = await PutLinktoAsync(newHashed, newParent, newName, s.Attr.Gfid, data, replace: true);
            if (!put.Ok) return put; // the file is renamed; a lookup of the new name finds it everywhere
        }
        if (d is { } replaced && replaced.DataChild != data && replaced.DataChild != newHashed)
        {
            var victim = await Children[replaced.DataChild].LookupAsync(Internal, newParent, newName);
            if (victim.Ok && victim.Value.Gfid == replaced.Attr.Gfid)
                await Children[replaced.DataChild].UnlinkAsync(Internal, newParent, newName);
            DirChanged(newParent, replaced.DataChild);
        }
        if (s.Hashed != data && !(s.Hashed == newHashed && oldParent == newParent && oldName == newName))
            await RemoveLinktoAsync(s.Hashed, oldParent, oldName, s.Attr.Gfid);
        _dataChild[s.Attr.Gfid] = data;
        return FopResult.Success;
    }

    private async ValueTask<FopResult> RenameDirAsync(FopContext ctx, Located? target, Gfid oldParent, string oldName, Gfid newParent, string newName, int newHashed, RenameFlags flags)
    {
        if (target is { } t)
        {
            var empty = await EmptyForRemovalAsync(t.Attr.Gfid);
            if (!empty.Ok) return empty;
        }
        // The new name's hashed child first: it answers EINVAL (into itself), permission and
        // emptiness for all; the others follow. A child missing the directory is healed by lookup.
        var first = await Children[newHashed].RenameAsync(ctx, oldParent, oldName, newParent, newName, flags);
        if (!first.Ok && !IsAbsent(first.Error)) return first;
        var rest = await AllAsync(AllChildren.Where(i => i != newHashed).Select(i => Children[i].RenameAsync(ctx, oldParent, oldName, newParent, newName, flags)));
        if (!first.Ok && rest.All(r => !r.Ok)) return first;
        if (target is { } gone)
        {
            DirGone(gone.Attr.Gfid);
            _layouts.TryRemove(gone.Attr.Gfid, out _);
            _dirs.TryRemove(gone.Attr.Gfid, out _);
        }
        return FopResult.Success;
    }

    /// <summary>
    /// RENAME_EXCHANGE of any two entries: on each child, the two names are exchanged where
    /// both exist and renamed where one does; then each file gets its link-to on the hashed
    /// child of its new name and loses the one on the hashed child of its old name.
    /// </summary>
    private async ValueTask<FopResult> ExchangeAsync(FopContext ctx, Located a, Located b, Gfid oldParent, string oldName, Gfid newParent, string newName)
    {
        if (a.Attr.Gfid == b.Attr.Gfid) return FopResult.Success;
        Errno firstError = Errno.None;
        // The data child of a (or the first child for directories) first, so permission errors stop everything.
        var order = AllChildren.OrderBy(i => i == (a.IsDir ? 0 : a.DataChild) ? 0 : 1).ToList();
        bool any = false;
        foreach (int i in order)
        {
            var c = Children[i];
            bool hasA = (await c.LookupAsync(Internal, oldParent, oldName)).Ok;
            bool hasB = (await c.LookupAsync(Internal, newParent, newName)).Ok;
            FopResult r;
            if (hasA && hasB) r = await c.RenameAsync(ctx, oldParent, oldName, newParent, newName, RenameFlags.Exchange);
            else if (hasA) r = await c.RenameAsync(ctx, oldParent, oldName, newParent, newName, RenameFlags.NoReplace);
            else if (hasB) r = await c.RenameAsync(ctx, newParent, newName, oldParent, oldName, RenameFlags.NoReplace);
            else continue;
            if (!r.Ok)
            {
                if (!any) return r;
                if (firstError == Errno.None) firstError = r.Error;
            }
            any = true;
        }
        DirChanged(oldParent);
        DirChanged(newParent);
        if (a.IsDir) DirChanged(a.Attr.Gfid);
        if (b.IsDir) DirChanged(b.Attr.Gfid);
        // a now answers to newName (hashed b.Hashed); b to oldName (hashed a.Hashed).
        await RepointAsync(a, newParent, newName, newHashed: b.Hashed, oldHashed: a.Hashed);
        await RepointAsync(b, oldParent, oldName, newHashed: a.Hashed, oldHashed: b.Hashed);
        return firstError == Errno.None ? FopResult.Success : FopResult.Fail(firstError);
    }

    /// <summary>After an exchange: file <paramref name="f"/>, now called <paramref name="name"/>, gets its link-to where that name hashes.</summary>
    private async ValueTask RepointAsync(Located f, Gfid parent, string name, int newHashed, int oldHashed)
    {
        if (f.IsDir) return;
        if (oldHashed != f.DataChild && oldHashed != newHashed) await RemoveLinktoAsync(oldHashed, parent, name, f.Attr.Gfid);
        if (newHashed != f.DataChild) await PutLinktoAsync(newHashed, parent, name, f.Attr.Gfid, f.DataChild, replace: true);
    }

    public override async ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName)
    {
        var p = await ResolveAsync(gfid);
        if (!p.Ok) return p.Error;
        if (p.Value.IsDir) return Errno.EPERM;
        var h = await HashedForNewAsync(ctx, newParent, newName);
        if (!h.Ok) return h.Error;
        int data = p.Value.Child;
        var r = await Children[data].LinkAsync(ctx, gfid, newParent, newName);
        if (IsAbsent(r.Error) && p.Value.FromCache)
        {
            p = await ResolveAsync(gfid, useCache: false);
            if (!p.Ok) return p.Error;
            data = p.Value.Child;
            r = await Children[data].LinkAsync(ctx, gfid, newParent, newName);
        }
        DirChanged(newParent, data);
        if (!r.Ok) return r.Error;
        if (h.Value != data) await PutLinktoAsync(h.Value, newParent, newName, gfid, data, replace: false);
        return ForCaller(ctx, r.Value);
    }
}
