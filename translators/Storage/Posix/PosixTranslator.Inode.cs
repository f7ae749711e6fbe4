using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Storage;

// Inode fops: lookup, stat, setattr, readlink, access, statfs, xattrs.
public sealed partial class PosixTranslator
{
    public override ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckExisting(parent, name);
        if (e != Errno.None) return Done<Iatt>(e);
        e = ResolveDir(parent, out var dir, out _);
        if (e != Errno.None) return Done<Iatt>(e);
        using (dir)
        {
            Libc.Statx st;
            using (Creds.As(ctx)) e = Sys.Stat(dir.Fd, name, out st);
            if (e != Errno.None) return Done<Iatt>(e);
            return Done(FopResult<Iatt>.Success(EntryIatt(dir.Fd, name, parent, st)));
        }
    }

    public override ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        if (fd is not null && fd.TryGetContext<OpenFile>(this, out var open))
        {
            var fe = Sys.Stat(open.Fd.Fd, "", out var fst);
            return Done(fe != Errno.None ? fe : FopResult<Iatt>.Success(ToIatt(fd.Gfid, fst, open.Fd.Fd)));
        }
        var e = Resolve(gfid, out var lease, out var st);
        if (e != Errno.None) return Done<Iatt>(e);
        using (lease) return Done(FopResult<Iatt>.Success(ToIatt(gfid, st, lease.Fd)));
    }

    public override ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest r)
    {
        // Through the open descriptor where there is one (works after unlink), else by GFID.
        FdLease lease;
        OpenFile? open = null;
        if (fd is not null && fd.TryGetContext<OpenFile>(this, out var held))
        {
            open = held;
            lease = held.Fd.Lease();
        }
        else
        {
            var re = Resolve(gfid, out lease, out _);
            if (re != Errno.None) return Done<Iatt>(re);
        }
        using (lease)
        {
            int f = lease.Fd;
            string path = Sys.ProcPath(f);
            var e = Errno.None;
            using (Creds.As(ctx))
            {
                if (r.Has(SetattrValid.Mode))
                    e = open is not null ? Sys.FChmod(f, r.Mode & ModeBits.PermMask) : Sys.Chmod(path, r.Mode & ModeBits.PermMask);
                if (e == Errno.None && (r.Has(SetattrValid.Uid) || r.Has(SetattrValid.Gid)))
                    e = Sys.FChown(f, r.Has(SetattrValid.Uid) ? r.Uid : uint.MaxValue, r.Has(SetattrValid.Gid) ? r.Gid : uint.MaxValue);
                if (e == Errno.None && r.Has(SetattrValid.Size))
                    e = open is not null && fd!.CanWrite ? Sys.FTruncate(f, r.Size) : Sys.Truncate(path, r.Size);
                if (e == Errno.None && (r.Has(SetattrValid.Atime) || r.Has(SetattrValid.Mtime)))
                {
                    (long, long)? at = !r.Has(SetattrValid.Atime) ? null : r.Has(SetattrValid.AtimeNow) ? (0, Libc.UTIME_NOW) : (r.Atime.Sec, r.Atime.Nsec);
                    (long, long)? mt = !r.Has(SetattrValid.Mtime) ? null : r.Has(SetattrValid.MtimeNow) ? (0, Libc.UTIME_NOW) : (r.Mtime.Sec, r.Mtime.Nsec);
                    e = Sys.Utimens(f, open is not null ? null : path, at, mt);
                }
            }
            if (e != Errno.None) return Done<Iatt>(e);
            e = Sys.Stat(f, "", out var st);
            if (e != Errno.None) return Done<Iatt>(e);
            if (r.Has(SetattrValid.KillSuidGid) && !ModeBits.IsDirectory(st.Mode))
            {
                uint kill = ModeBits.SetUid | ((st.Mode & 0x8) != 0 ? ModeBits.SetGid : 0);
                if ((st.Mode & kill) != 0)
                {
                    Sys.Chmod(path, st.Mode & ModeBits.PermMask & ~kill);
                    Sys.Stat(f, "", out st);
                }
            }
            if (open is not null && (st.Mode & (ModeBits.SetUid | ModeBits.SetGid)) != 0) open.MayHaveSetId = true;
            return Done(FopResult<Iatt>.Success(ToIatt(fd?.Gfid ?? gfid, st, f)));
        }
    }

    public override ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, Gfid gfid)
    {
        var e = Resolve(gfid, out var lease, out var st);
        if (e != Errno.None) return Done<string>(e);
        using (lease)
        {
            if (!ModeBits.IsSymlink(st.Mode)) return Done<string>(Errno.EINVAL);
            e = Sys.ReadLink(lease.Fd, "", out var target);
            return Done(e != Errno.None ? e : FopResult<string>.Success(target));
        }
    }

    public override ValueTask<FopResult> AccessAsync(FopContext ctx, Gfid gfid, int mask)
    {
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done(e);
        using (lease)
        using (Creds.As(ctx))
            return Done(Sys.Access(Sys.ProcPath(lease.Fd), mask));
    }

    public override ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, Gfid gfid)
    {
        var e = Sys.FStatFs(RootFd, out var s);
        if (e != Errno.None) return Done<StatfsInfo>(e);
        return Done(FopResult<StatfsInfo>.Success(new StatfsInfo
        {
            Blocks = s.Blocks, BlocksFree = s.Bfree, BlocksAvailable = s.Bavail, Files = s.Files, FilesFree = s.Ffree,
            BlockSize = (uint)s.Bsize, FragmentSize = (uint)(s.Frsize == 0 ? s.Bsize : s.Frsize), NameMax = (uint)s.Namelen,
        }));
    }

    // ---- xattrs ---------------------------------------------------------------------------
    // The brick keeps CAP_SYS_ADMIN and CAP_SETFCAP whatever the fsuid, so what the kernel would
    // refuse an unprivileged caller for those capabilities is refused here: trusted.* and
    // security.capability. trusted.brickfs.* belongs to Brickfs alone.

    private static bool Privileged(FopContext ctx, string name) =>
        name.StartsWith("trusted.", StringComparison.Ordinal) || name == "security.capability" ? ctx.Uid == 0 : true;

    public override ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
    {
        if (GfidIndex.IsReservedXattr(name) || !Privileged(ctx, name)) return Done(Errno.EPERM);
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done(e);
        using (lease)
        using (Creds.As(ctx))
            return Done(Sys.SetXattr(Sys.ProcPath(lease.Fd), name, value.Span, flags, follow: true));
    }

    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (GfidIndex.IsReservedXattr(name) || !Privileged(ctx, name)) return Done<byte[]>(Errno.ENODATA);
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done<byte[]>(e);
        using (lease)
        {
            byte[] value;
            using (Creds.As(ctx)) e = Sys.GetXattr(Sys.ProcPath(lease.Fd), name, follow: true, out value);
            return Done(e != Errno.None ? e : FopResult<byte[]>.Success(value));
        }
    }

    public override ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid)
    {
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done<IReadOnlyList<string>>(e);
        using (lease)
        {
            List<string> names;
            using (Creds.As(ctx)) e = Sys.ListXattr(Sys.ProcPath(lease.Fd), out names);
            if (e != Errno.None) return Done<IReadOnlyList<string>>(e);
            names.RemoveAll(n => GfidIndex.IsReservedXattr(n) || (ctx.Uid != 0 && n.StartsWith("trusted.", StringComparison.Ordinal)));
            return Done(FopResult<IReadOnlyList<string>>.Success(names));
        }
    }

    public override ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (GfidIndex.IsReservedXattr(name) || !Privileged(ctx, name)) return Done(Errno.EPERM);
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done(e);
        using (lease)
        using (Creds.As(ctx))
            return Done(Sys.RemoveXattr(Sys.ProcPath(lease.Fd), name));
    }
}
