using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Storage;

// Namespace fops: mknod, mkdir, symlink, create, unlink, rmdir, rename, link. The entry itself is
// made under the caller's credentials; the GFID xattr and index entry are added as root after,
// under the name's making lock held from before the entry exists (see EntryGfid): no lookup
// gives a name that is being made a GFID of its own.
public sealed partial class PosixTranslator
{
    /// <summary>Validates a new name and the caller's GFID, and leases the parent directory.</summary>
    private Errno PrepareNew(FopContext ctx, Gfid parent, string name, Gfid newGfid, out FdLease dir, out Libc.Statx dirSt)
    {
        dir = default;
        dirSt = default;
        var e = CheckNew(ctx, parent, name);
        if (e != Errno.None) return e;
        if (newGfid.IsNull || newGfid == Gfid.Root) return Errno.EINVAL;
        if (IndexExists(newGfid)) return Errno.EEXIST;
        return ResolveDir(parent, out dir, out dirSt);
    }

    /// <summary>
    /// Gives a freshly made entry its GFID and index entry, then its attributes; on failure the
    /// entry is removed again, so a create either completes or leaves nothing.
    /// </summary>
    private FopResult<Iatt> FinishNew(int dirfd, string name, Gfid parent, Gfid g, DirLinkCounter.Stamp? mark = null)
    {
        var e = Sys.Stat(dirfd, name, out var st);
        if (e != Errno.None) return e;
        bool isDir = ModeBits.IsDirectory(st.Mode);
        e = WriteGfid(EntryPath(dirfd, name), follow: false, g, XattrFlags.Create);
        if (e == Errno.None) e = isDir ? SetDirLink(g, parent, name) : AddIndexLink(dirfd, name, 0, g);
        if (e != Errno.None)
        {
            Sys.UnlinkAt(dirfd, name, isDir);
            return e;
        }
        if (isDir) _links.Invalidate(parent);
        else _links.Carry(parent, dirfd, mark);
        return EntryIatt(dirfd, name, parent, st);
    }

    public override ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid)
    {
        if (ModeBits.IsDirectory(mode) || ModeBits.IsSymlink(mode)) return Done<Iatt>(Errno.EINVAL);
        var e = PrepareNew(ctx, parent, name, newGfid, out var dir, out var dirSt);
        if (e != Errno.None) return Done<Iatt>(e);
        using (dir)
        {
            var mark = _links.Mark(parent, dirSt);
            lock (MakingLock(parent, name))
            {
                using (Creds.As(ctx)) e = Sys.MknodAt(dir.Fd, name, (mode & ModeBits.TypeMask) == 0 ? mode | ModeBits.Regular : mode, rdev);
                return Done(e != Errno.None ? e : FinishNew(dir.Fd, name, parent, newGfid, mark));
            }
        }
    }

    public override ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid)
    {
        var e = PrepareNew(ctx, parent, name, newGfid, out var dir, out _);
        if (e != Errno.None) return Done<Iatt>(e);
        using (dir)
        {
            lock (MakingLock(parent, name))
            {
                using (Creds.As(ctx)) e = Sys.MkdirAt(dir.Fd, name, mode & ModeBits.PermMask);
                return Done(e != Errno.None ? e : FinishNew(dir.Fd, name, parent, newGfid));
            }
        }
    }

    public override ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid)
    {
        if (target.Length == 0 || target.Contains('\0')) return Done<Iatt>(target.Length == 0 ? Errno.ENOENT : Errno.EINVAL);
        var e = PrepareNew(ctx, parent, name, newGfid, out var dir, out var dirSt);
        if (e != Errno.None) return Done<Iatt>(e);
        using (dir)
        {
            // Stored verbatim; the brick never follows it (absolute or escaping targets included).
            var mark = _links.Mark(parent, dirSt);
            lock (MakingLock(parent, name))
            {
                using (Creds.As(ctx)) e = Sys.SymlinkAt(target, dir.Fd, name);
                return Done(e != Errno.None ? e : FinishNew(dir.Fd, name, parent, newGfid, mark));
            }
        }
    }

    /// <summary>open(2) flags for the OS descriptor: never follow, never O_DIRECT (see the class remarks), no controlling tty.</summary>
    private static int OsOpenFlags(int flags) =>
        (flags & ~(Libc.O_CREAT | Libc.O_EXCL | Libc.O_DIRECT | Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC)) | Libc.O_NOFOLLOW | Libc.O_NOCTTY;

    public override ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd)
    {
        var e = CheckNew(ctx, parent, name);
        if (e != Errno.None) return Done<Iatt>(e);
        if (fd.Gfid.IsNull || fd.Gfid == Gfid.Root) return Done<Iatt>(Errno.EINVAL);
        e = ResolveDir(parent, out var dir, out var dirSt);
        if (e != Errno.None) return Done<Iatt>(e);
        using (dir)
        {
            int flags = OsOpenFlags(fd.Flags);
            bool exclusive = (fd.Flags & OpenFlags.Exclusive) != 0;
            PosixFd? file = null;
            var mark = _links.Mark(parent, dirSt);
            PosixFd osFd;
            Libc.Statx st;
            Gfid g = fd.Gfid;
            lock (MakingLock(parent, name))
            {
                using (Creds.As(ctx)) e = Sys.OpenAt(dir.Fd, name, flags | Libc.O_CREAT | Libc.O_EXCL, mode & ModeBits.PermMask, out file);
                bool created = e == Errno.None;
                if (e != Errno.None && (e != Errno.EEXIST || exclusive)) return Done<Iatt>(e);
                if (created)
                {
                    // O_EXCL made a regular file. Its GFID goes on before the index link, which
                    // also refuses a GFID that another inode already has (EEXIST, as if the name
                    // had been there: this brick's own lookups wait for the making lock).
                    osFd = file!;
                    Span<byte> b = stackalloc byte[Gfid.Size];
                    g.WriteBytes(b);
                    e = Sys.FSetXattr(osFd.Fd, GfidIndex.Xattr, b, XattrFlags.Create);
                    if (e == Errno.EEXIST && ReadGfid(Sys.ProcPath(osFd.Fd), follow: true) is { } raced)
                    {
                        // Set behind the brick's back between our create and now: keep it, the
                        // answer's Iatt tells the caller.
                        g = raced;
                        e = Errno.None;
                    }
                    if (e == Errno.None) e = AddIndexLink(osFd.Fd, "", Libc.AT_EMPTY_PATH, g);
                    st = default;
                    if (e == Errno.None) e = Sys.Stat(osFd.Fd, "", out st);
                    if (e != Errno.None) Sys.UnlinkAt(dir.Fd, name);
                    else _links.Carry(parent, dir.Fd, mark);
                }
                else
                {
                    // Plain O_CREAT on an existing name opens it, like open(2).
                    using (Creds.As(ctx)) e = Sys.OpenAt(dir.Fd, name, flags | Libc.O_NONBLOCK, 0, out file);
                    if (e != Errno.None) return Done<Iatt>(e == Errno.ELOOP ? Errno.EEXIST : e);
                    osFd = file!;
                    e = Sys.Stat(osFd.Fd, "", out st);
                    if (e == Errno.None && !ModeBits.IsRegular(st.Mode)) e = ModeBits.IsDirectory(st.Mode) ? Errno.EISDIR : Errno.ENXIO;
                    if (e == Errno.None) g = EntryGfid(dir.Fd, name, parent, st);
                    if (e == Errno.None) Sys.SetFlags(osFd.Fd, flags & ~Libc.O_NOFOLLOW);
                }
            }
            if (e != Errno.None)
            {
                osFd.Dispose();
                return Done<Iatt>(e);
            }
            fd.SetContext(this, new OpenFile(osFd, false, (st.Mode & (ModeBits.SetUid | ModeBits.SetGid)) != 0));
            return Done(FopResult<Iatt>.Success(ToIatt(g, st, -1)));
        }
    }

    public override ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckRemovable(ctx, parent, name);
        if (e != Errno.None) return Done(e);
        e = ResolveDir(parent, out var dir, out var dirSt);
        if (e != Errno.None) return Done(e);
        using (dir)
        {
            var g = ReadGfid(EntryPath(dir.Fd, name), follow: false);
            var mark = _links.Mark(parent, dirSt);
            using (Creds.As(ctx)) e = Sys.UnlinkAt(dir.Fd, name);
            if (e != Errno.None) return Done(e);
            _links.Carry(parent, dir.Fd, mark);
            if (g is { } victim) DropIndexIfOrphan(victim);
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckRemovable(ctx, parent, name);
        if (e != Errno.None) return Done(e);
        e = ResolveDir(parent, out var dir, out _);
        if (e != Errno.None) return Done(e);
        using (dir)
        {
            var g = ReadGfid(EntryPath(dir.Fd, name), follow: false);
            using (Creds.As(ctx)) e = Sys.UnlinkAt(dir.Fd, name, dir: true);
            if (e != Errno.None) return Done(e);
            if (g is { } victim) DropDirIndex(victim);
            _links.Invalidate(parent);
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags)
    {
        var e = CheckRemovable(ctx, oldParent, oldName);
        if (e == Errno.None) e = CheckNew(ctx, newParent, newName);
        if (e != Errno.None) return Done(e);
        e = ResolveDir(oldParent, out var from, out _);
        if (e != Errno.None) return Done(e);
        using (from)
        {
            e = ResolveDir(newParent, out var to, out _);
            if (e != Errno.None) return Done(e);
            using (to)
            {
                // Who moves and who is replaced, read before the rename so the index can follow.
                var srcPath = EntryPath(from.Fd, oldName);
                var dstPath = EntryPath(to.Fd, newName);
                var srcGfid = ReadGfid(srcPath, follow: false);
                bool srcDir = Sys.Stat(from.Fd, oldName, out var sst) == Errno.None && ModeBits.IsDirectory(sst.Mode);
                bool dstExists = Sys.Stat(to.Fd, newName, out var dst) == Errno.None;
                var dstGfid = dstExists ? ReadGfid(dstPath, follow: false) : null;
                bool dstDir = dstExists && ModeBits.IsDirectory(dst.Mode);

                using (Creds.As(ctx)) e = Sys.RenameAt2(from.Fd, oldName, to.Fd, newName, (uint)flags);
                if (e != Errno.None) return Done(e);

                _links.Invalidate(oldParent);
                _links.Invalidate(newParent);
                if (srcDir && srcGfid is { } s) SetDirLink(s, newParent, newName);
                if ((flags & RenameFlags.Exchange) != 0)
                {
                    if (dstDir && dstGfid is { } d) SetDirLink(d, oldParent, oldName);
                }
                else if (dstExists && dstGfid is { } victim && victim != srcGfid)
                {
                    if (dstDir) DropDirIndex(victim);
                    else DropIndexIfOrphan(victim);
                }
                return Done(FopResult.Success);
            }
        }
    }

    public override ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName)
    {
        var e = CheckNew(ctx, newParent, newName);
        if (e != Errno.None) return Done<Iatt>(e);
        e = Resolve(gfid, out var src, out var sst);
        if (e != Errno.None) return Done<Iatt>(e);
        using (src)
        {
            if (ModeBits.IsDirectory(sst.Mode)) return Done<Iatt>(Errno.EPERM);
            e = ResolveDir(newParent, out var dir, out _);
            if (e != Errno.None) return Done<Iatt>(e);
            using (dir)
            {
                // Linked from the index name (no symlink is followed; the caller's permissions and
                // protected_hardlinks apply to the file itself).
                using (Creds.As(ctx)) e = Sys.LinkAt(IndexFd, GfidIndex.RelPath(gfid), dir.Fd, newName);
                if (e != Errno.None) return Done<Iatt>(e == Errno.ENOENT ? Errno.ESTALE : e);
                e = Sys.Stat(dir.Fd, newName, out var st);
                return Done(e != Errno.None ? e : FopResult<Iatt>.Success(ToIatt(gfid, st, -1)));
            }
        }
    }
}
