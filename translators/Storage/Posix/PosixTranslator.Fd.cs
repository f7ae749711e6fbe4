using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Storage;

// Fops on open files and directories. Read and write are one pread/pwrite on the held
// descriptor; no lock is taken.
public sealed partial class PosixTranslator
{
    public override ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        var e = Resolve(fd.Gfid, out var lease, out var st);
        if (e != Errno.None) return Done(e);
        using (lease)
        {
            bool isDir = ModeBits.IsDirectory(st.Mode);
            if (isDir && fd.CanWrite) return Done(Errno.EISDIR);
            // FIFOs, sockets and devices are the client kernel's business; the brick never opens them.
            if (!isDir && !ModeBits.IsRegular(st.Mode)) return Done(ModeBits.IsSymlink(st.Mode) ? Errno.ELOOP : Errno.ENXIO);
            int flags = isDir ? Libc.O_RDONLY | Libc.O_DIRECTORY : OsOpenFlags(fd.Flags) & ~Libc.O_NOFOLLOW;
            // Reopening the exact inode through /proc checks the caller's permission on the file itself.
            PosixFd file;
            using (Creds.As(ctx)) e = Sys.OpenAt(Libc.AT_FDCWD, Sys.ProcPath(lease.Fd), flags, 0, out file);
            if (e != Errno.None) return Done(e);
            fd.SetContext(this, new OpenFile(file, isDir, (st.Mode & (ModeBits.SetUid | ModeBits.SetGid)) != 0));
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd)
    {
        var e = ResolveDir(fd.Gfid, out var lease, out _);
        if (e != Errno.None) return Done(e);
        using (lease)
        {
            PosixFd dir;
            using (Creds.As(ctx)) e = Sys.OpenAt(Libc.AT_FDCWD, Sys.ProcPath(lease.Fd), Libc.O_RDONLY | Libc.O_DIRECTORY, 0, out dir);
            if (e != Errno.None) return Done(e);
            fd.SetContext(this, new OpenFile(dir, true, false));
            return Done(FopResult.Success);
        }
    }

    private Errno Handle(FileHandle fd, out OpenFile open) =>
        fd.TryGetContext(this, out open) ? Errno.None : Errno.EBADF;

    /// <summary>
    /// A regular file's open descriptor: reads and writes are plain pread/pwrite on it. (The
    /// write tracking for pending-mark decrements matters only under replicate, which keeps
    /// reads and writes in the graph.)
    /// </summary>
    public override bool TryGetPassthroughFd(FileHandle fd, out int osFd)
    {
        osFd = fd.TryGetContext<OpenFile>(this, out var open) && !open.IsDirectory ? open.Fd.Fd : -1;
        return osFd >= 0;
    }

    public override ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        if (Handle(fd, out var open) is var e && e != Errno.None) return Done<DataBuffer>(e);
        if (offset < 0 || size < 0) return Done<DataBuffer>(Errno.EINVAL);
        var buf = DataBuffer.Rent(size);
        e = Sys.PRead(open.Fd.Fd, buf.Span, offset, out int n);
        if (e != Errno.None)
        {
            buf.Dispose();
            return Done<DataBuffer>(e);
        }
        buf.Truncate(n);
        return Done(FopResult<DataBuffer>.Success(buf));
    }

    public override ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
    {
        if (Handle(fd, out var open) is var e && e != Errno.None) return Done<int>(e);
        if (offset < 0) return Done<int>(Errno.EINVAL);
        int n;
        if (open.MayHaveSetId && ctx.Uid != 0)
        {
            // Under the writer's credentials the kernel drops setuid/setgid as it would locally.
            using (Creds.As(ctx)) e = Sys.PWrite(open.Fd.Fd, data.Span, offset, out n);
        }
        else e = Sys.PWrite(open.Fd.Fd, data.Span, offset, out n);
        if (e != Errno.None) return Done<int>(e);
        NoteWrite(open, fd.Gfid);
        return Done(FopResult<int>.Success(n));
    }

    public override ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd) =>
        Done(Handle(fd, out _) is var e && e != Errno.None ? e : FopResult.Success);

    public override ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        if (fd.RemoveContext(this, out var state) && state is OpenFile open)
        {
            ForgetWrites(open, fd.Gfid);
            open.Fd.Dispose();
        }
        return Done(FopResult.Success);
    }

    public override ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd) => ReleaseAsync(ctx, fd);

    public override ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        Done(Handle(fd, out var open) is var e && e != Errno.None ? e : SyncNoting(open, dataOnly));

    public override ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        Done(Handle(fd, out var open) is var e && e != Errno.None ? e : Sys.FSync(open.Fd.Fd, dataOnly));

    /// <summary>Every mode the filesystem supports; what it does not support comes back as its errno (EOPNOTSUPP).</summary>
    public override ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length) =>
        Done(Handle(fd, out var open) is var e && e != Errno.None ? e : Sys.FAllocate(open.Fd.Fd, mode, offset, length));

    public override ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence)
    {
        if (Handle(fd, out var open) is var e && e != Errno.None) return Done<long>(e);
        if (whence != SeekWhence.Data && whence != SeekWhence.Hole) return Done<long>(Errno.EINVAL);
        e = Sys.LSeek(open.Fd.Fd, offset, whence, out long pos);
        return Done(e != Errno.None ? e : FopResult<long>.Success(pos));
    }

    public override ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk) =>
        ValueTask.FromResult(FopResult<FileLock>.Fail(Errno.ENOSYS)); // features/locks serves inode locks

    public override ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type) =>
        ValueTask.FromResult(FopResult.Fail(Errno.ENOSYS));

    public override ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk) =>
        Done<FileLock>(Errno.ENOSYS); // features/locks above the storage owns locks

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Done(List(ctx, fd, offset, sizeHint, plus: false));

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Done(List(ctx, fd, offset, sizeHint, plus: true));

    /// <summary>
    /// "." and ".." come first with cookies 1 and 2 (ext4 returns them in hash order, so they are
    /// emitted here and skipped in the filesystem's stream); every other cookie is the
    /// filesystem's d_off, so a listing resumes where it stopped even if entries were added or
    /// removed meanwhile. Btrfs and tmpfs give the dots d_off 1 and 2 themselves, and no real
    /// entry of theirs (or of ext4) has those cookies.
    /// </summary>
    private const long DotCookie = 1, DotDotCookie = 2;

    private FopResult<IReadOnlyList<DirEntry>> List(FopContext ctx, FileHandle fd, long offset, int sizeHint, bool plus)
    {
        if (Handle(fd, out var open) is var e && e != Errno.None) return e;
        if (!open.IsDirectory) return Errno.ENOTDIR;
        if (offset < 0) return Errno.EINVAL;
        var result = new List<DirEntry>();
        int budget = Math.Max(sizeHint, 512);
        bool isRoot = fd.Gfid == Gfid.Root;
        bool isHidden = fd.Gfid == _hiddenGfid; // .brickfs itself is never listed; its gfid index neither
        var buf = new byte[Math.Clamp(sizeHint, 4096, 65536)];
        if (offset == 0)
        {
            result.Add(new DirEntry { Name = ".", NextOffset = DotCookie, Type = Dirents.DtDir });
            budget -= 33;
        }
        if (offset <= DotCookie)
        {
            result.Add(new DirEntry { Name = "..", NextOffset = DotDotCookie, Type = Dirents.DtDir });
            budget -= 34;
        }
        lock (open.DirLock)
        {
            int dirfd = open.Fd.Fd;
            e = Sys.LSeek(dirfd, offset <= DotDotCookie ? 0 : offset, SeekWhence.Set, out _);
            if (e != Errno.None) return e;
            while (budget > 0)
            {
                e = Sys.GetDents(dirfd, buf, out int len);
                if (e != Errno.None) return result.Count > 0 ? result : e;
                if (len == 0) break;
                int pos = 0;
                while (budget > 0 && Dirents.Next(buf.AsSpan(0, len), ref pos, out long next, out byte type, out var raw))
                {
                    if (Dirents.IsDot(raw) || (isRoot && raw.SequenceEqual(".brickfs"u8)) || (isHidden && raw.SequenceEqual("gfid"u8))) continue;
                    var name = Encoding.UTF8.GetString(raw);
                    DirEntry entry;
                    if (!plus && type != Dirents.DtUnknown)
                    {
                        entry = new DirEntry { Name = name, NextOffset = next, Type = type };
                    }
                    else
                    {
                        Libc.Statx st;
                        using (Creds.As(ctx)) e = Sys.Stat(dirfd, name, out st);
                        if (e == Errno.ENOENT) continue; // removed since getdents
                        if (e != Errno.None) entry = new DirEntry { Name = name, NextOffset = next, Type = type };
                        else if (!plus) entry = new DirEntry { Name = name, NextOffset = next, Type = ModeBits.ToDirentType(st.Mode) };
                        else
                        {
                            var attr = WithXattrs(ctx, EntryIatt(dirfd, name, fd.Gfid, st), EntryPath(dirfd, name), follow: false);
                            entry = new DirEntry { Name = name, NextOffset = next, Type = ModeBits.ToDirentType(st.Mode), Gfid = attr.Gfid, Attr = attr };
                        }
                    }
                    result.Add(entry);
                    budget -= 32 + name.Length + (plus ? 128 : 0);
                }
            }
        }
        return result;
    }
}
