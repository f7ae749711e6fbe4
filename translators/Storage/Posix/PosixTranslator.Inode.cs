using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Storage;

// Inode fops: lookup, stat, setattr, readlink, access, statfs, xattrs.
public sealed partial class PosixTranslator
{
    public override ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckExisting(ctx, parent, name);
        if (e != Errno.None) return Done<Iatt>(e);
        e = ResolveDir(parent, out var dir, out _);
        if (e != Errno.None) return Done<Iatt>(e);
        using (dir)
        {
            Libc.Statx st;
            using (Creds.As(ctx)) e = Sys.Stat(dir.Fd, name, out st);
            if (e != Errno.None) return Done<Iatt>(e);
            return Done(FopResult<Iatt>.Success(WithXattrs(ctx, EntryIatt(dir.Fd, name, parent, st), EntryPath(dir.Fd, name), follow: false)));
        }
    }

    public override ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        if (fd is not null && fd.TryGetContext<OpenFile>(this, out var open))
        {
            var fe = Sys.Stat(open.Fd.Fd, "", out var fst);
            return Done(fe != Errno.None ? fe : FopResult<Iatt>.Success(WithXattrs(ctx, ToIatt(fd.Gfid, fst, open.Fd.Fd), Sys.ProcPath(open.Fd.Fd), follow: true)));
        }
        var e = Resolve(gfid, out var lease, out var st);
        if (e != Errno.None) return Done<Iatt>(e);
        using (lease) return Done(FopResult<Iatt>.Success(WithXattrs(ctx, ToIatt(gfid, st, lease.Fd), Sys.ProcPath(lease.Fd), follow: true)));
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
    // security.capability. trusted.brickfs.* follows BrickXattrs; those names are read and
    // written as root (the kernel would only ask for CAP_SYS_ADMIN, which the brick has).

    public override ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
    {
        if (!BrickXattrs.MayWrite(ctx, name)) return Done(Errno.EPERM);
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done(e);
        using (lease)
        {
            if (BrickXattrs.IsReserved(name)) return Done(Sys.SetXattr(Sys.ProcPath(lease.Fd), name, value.Span, flags, follow: true));
            using (Creds.As(ctx))
                return Done(Sys.SetXattr(Sys.ProcPath(lease.Fd), name, value.Span, flags, follow: true));
        }
    }

    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (!BrickXattrs.MayRead(ctx, name)) return Done<byte[]>(Errno.ENODATA);
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done<byte[]>(e);
        using (lease)
        {
            byte[] value;
            if (BrickXattrs.IsReserved(name)) e = Sys.GetXattr(Sys.ProcPath(lease.Fd), name, follow: true, out value);
            else
            {
                using (Creds.As(ctx)) e = Sys.GetXattr(Sys.ProcPath(lease.Fd), name, follow: true, out value);
            }
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
            names.RemoveAll(n => !BrickXattrs.MayList(ctx, n));
            return Done(FopResult<IReadOnlyList<string>>.Success(names));
        }
    }

    public override ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (!BrickXattrs.MayWrite(ctx, name)) return Done(Errno.EPERM);
        var e = Resolve(gfid, out var lease, out _);
        if (e != Errno.None) return Done(e);
        using (lease)
        {
            if (BrickXattrs.IsReserved(name)) return Done(Sys.RemoveXattr(Sys.ProcPath(lease.Fd), name));
            using (Creds.As(ctx))
                return Done(Sys.RemoveXattr(Sys.ProcPath(lease.Fd), name));
        }
    }

    // ---- xattrop -------------------------------------------------------------------------------

    private const int XattropStripes = 256;
    private readonly Lock[] _xattropLocks = [.. Enumerable.Range(0, XattropStripes).Select(_ => new Lock())];

    /// <summary>
    /// Adds the deltas to the counters of one inode (through <paramref name="fd"/> when this brick
    /// opened it, so it works after unlink; else by GFID) and returns the new values. Atomic per
    /// inode: a lock striped by GFID is held across reading and writing every key of the call, and
    /// a failure part-way restores the keys already written. Names follow
    /// <see cref="BrickXattrs.MayChangeCounter"/> (EPERM otherwise).
    /// <para>Durability: when an increment turns a counter slot from zero to non-zero, that change
    /// reaches the disk no later than any change made to the inode after the call returns, so the
    /// data fop that the increment guards never reaches the disk ahead of its pending marker.
    /// Where the filesystem's ordering does not give that by itself, the inode is fsynced before
    /// the call returns (under the lock, so a concurrent xattrop that sees the non-zero value cannot
    /// return before it is stable). It does on Btrfs for copy-on-write regular files: new data
    /// becomes visible only through the file extent items inserted when its writeback completes, in
    /// a Btrfs transaction no older than the one that took the earlier xattr change, and
    /// transactions commit whole and in order; an fsync of the file writes its xattrs to the log
    /// tree with its extents; truncate and fallocate are metadata of later transactions as well.
    /// So no fsync there. Directories (a new name can reach the log tree with a new file's fsync,
    /// without its parent's xattrs), nodatacow files (written in place), other filesystems, special
    /// files and symlinks keep the fsync (a syncfs for the last two, which cannot be opened).
    /// Other changes (increments of an already non-zero slot, decrements, zero deltas) are not
    /// synced: the filesystem's journal (Btrfs, ext4, xfs) writes an inode's metadata changes in
    /// order, so whatever prefix survives a crash shows a slot non-zero from its durable
    /// zero-to-non-zero change until its decrement to zero; a lost decrement only leaves a spurious
    /// pending mark, which heal clears. Cost: one fsync per batch of replicate's eager lock
    /// where the rule above needs it, none for data files on Btrfs.</para>
    /// <para>A decrement itself must not reach the disk ahead of the data it stops guarding: when
    /// writes through this brick's handles of a regular file are not yet synced, they are made to
    /// go first (PosixTranslator.Durability.cs).</para>
    /// </summary>
    public override ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        foreach (var key in deltas.Keys)
        {
            if (!BrickXattrs.MayChangeCounter(ctx, key)) return Done<IReadOnlyDictionary<string, long[]>>(Errno.EPERM);
        }
        FdLease lease;
        OpenFile? open = null;
        uint mode;
        if (fd is not null && fd.TryGetContext<OpenFile>(this, out var held))
        {
            open = held;
            lease = held.Fd.Lease();
            mode = held.IsDirectory ? ModeBits.Directory : ModeBits.Regular;
            gfid = fd.Gfid;
        }
        else
        {
            var re = Resolve(gfid, out lease, out var st);
            if (re != Errno.None) return Done<IReadOnlyDictionary<string, long[]>>(re);
            mode = st.Mode;
        }
        using (lease)
        {
            var path = Sys.ProcPath(lease.Fd);
            var synced = SyncBeforeClear(gfid, open, path, deltas, mode);
            if (synced != Errno.None) return Done<IReadOnlyDictionary<string, long[]>>(synced);
            var result = new Dictionary<string, long[]>(deltas.Count, StringComparer.Ordinal);
            var undo = new List<(string Key, byte[]? Old)>(deltas.Count);
            lock (_xattropLocks[(uint)gfid.GetHashCode() % XattropStripes])
            {
                bool mustSync = false;
                var e = Errno.None;
                foreach (var (key, delta) in deltas)
                {
                    e = Sys.GetXattr(path, key, follow: true, out var raw);
                    if (e != Errno.None && e != Errno.ENODATA) break;
                    bool existed = e == Errno.None;
                    e = Errno.None;
                    var current = existed ? XattrCounters.Decode(raw) : [];
                    var sum = XattrCounters.Add(current, delta);
                    result[key] = sum;
                    if (!delta.Any(d => d != 0)) continue;
                    for (int i = 0; i < delta.Length && !mustSync; i++)
                        mustSync = delta[i] > 0 && (i >= current.Length || current[i] == 0);
                    e = Sys.SetXattr(path, key, XattrCounters.Encode(sum), 0, follow: true);
                    if (e != Errno.None) break;
                    undo.Add((key, existed ? raw : null));
                }
                if (e == Errno.None && mustSync && MarkNeedsSync(open, path, mode))
                {
                    Interlocked.Increment(ref _markSyncs);
                    e = SyncInode(open, path, mode);
                }
                if (e != Errno.None)
                {
                    foreach (var (key, old) in undo)
                    {
                        if (old is null) Sys.RemoveXattr(path, key);
                        else Sys.SetXattr(path, key, old, 0, follow: true);
                    }
                    return Done<IReadOnlyDictionary<string, long[]>>(e);
                }
            }
            return Done(FopResult<IReadOnlyDictionary<string, long[]>>.Success(result));
        }
    }

    private long _markSyncs;

    /// <summary>How many xattrops synced their inode (a counter left zero where the filesystem's ordering did not suffice).</summary>
    internal long MarkSyncs => Interlocked.Read(ref _markSyncs);

    /// <summary>Whether a counter's change from zero must be fsynced to precede later changes of the inode on disk (see <see cref="XattropAsync"/>).</summary>
    private bool MarkNeedsSync(OpenFile? open, string path, uint mode)
    {
        if (!_btrfs || !ModeBits.IsRegular(mode)) return true;
        if (open is not null)
        {
            if (open.NoCow == 0) open.NoCow = IsNoCow(open.Fd.Fd) ? 2 : 1;
            return open.NoCow != 1;
        }
        var e = OpenForSync(path, mode, out var file);
        if (e != Errno.None) return true;
        using (file) return IsNoCow(file.Fd);
    }

    /// <summary>True for a nodatacow file, or when its flags cannot be read.</summary>
    private static bool IsNoCow(int fd) => Sys.GetInodeFlags(fd, out int flags) != Errno.None || (flags & Libc.FS_NOCOW_FL) != 0;

    /// <summary>Makes the inode's metadata (its xattrs) stable: fsync of the inode, or syncfs where it cannot be opened.</summary>
    private Errno SyncInode(OpenFile? open, string path, uint mode)
    {
        if (open is not null) return Sys.FSync(open.Fd.Fd, dataOnly: false);
        if (!ModeBits.IsRegular(mode) && !ModeBits.IsDirectory(mode)) return Sys.SyncFs(_syncFd!.Fd);
        var e = OpenForSync(path, mode, out var file);
        if (e != Errno.None) return e;
        using (file) return Sys.FSync(file.Fd, dataOnly: false);
    }

    /// <summary>Opens a regular file or directory by its resolved (/proc) path, read-only, to sync it or ask its flags.</summary>
    private static Errno OpenForSync(string path, uint mode, out PosixFd file) =>
        Sys.OpenAt(Libc.AT_FDCWD, path, Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | (ModeBits.IsDirectory(mode) ? Libc.O_DIRECTORY : 0), 0, out file);
}
