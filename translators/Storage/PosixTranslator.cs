using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Storage;

/// <summary>
/// storage/posix: the brick's storage, a directory tree on a local filesystem (Btrfs in
/// production). Callers may assume:
/// <list type="bullet">
/// <item>Every entry carries its GFID in <c>trusted.brickfs.gfid</c>; <c>.brickfs/gfid/</c>
/// indexes them (hard links for non-directories, relative symlinks for directories), so any
/// GFID resolves without a path, across restarts. Entries created behind the brick's back get
/// a GFID on first lookup; an entry this brick is still making never does: a lookup or
/// readdirplus that meets it waits until the maker has set its GFID and answers that one.</item>
/// <item>Nothing resolves outside the export: names are plain (no "/", no ".."), user symlinks
/// are never followed, index symlinks are walked with RESOLVE_BENEATH.</item>
/// <item>Permission checks, ownership of new entries, setgid inheritance and setuid dropping are
/// the kernel's, done under the caller's fsuid/fsgid/groups (<see cref="Creds"/>).</item>
/// <item><c>.brickfs</c> is invisible and untouchable from outside the brick: never listed, and
/// only requests with <see cref="FopContext.BrickInternal"/> (translators of the brick's own
/// graph) may look it up and make or remove entries below it, except the GFID index
/// <c>.brickfs/gfid</c>, which nobody reaches through the graph. <c>.brickfs</c> has a random
/// GFID known only to the brick and to internal callers that looked it up, so no outside
/// caller can reach it by GFID either. <c>trusted.brickfs.*</c> xattrs follow
/// <see cref="BrickXattrs"/>.</item>
/// <item><see cref="XattropAsync"/> is atomic per inode, and a counter's change from zero reaches
/// the disk no later than any change made after the call returns (see there).</item>
/// <item><see cref="FopContext.XattrRequest"/> is answered in lookup, stat and readdirplus.</item>
/// <item>Locks are not handled here (ENOSYS): features/locks sits above.</item>
/// </list>
/// The process umask is set to 0 at init so modes arrive exactly as the client sent them (the
/// client kernel already applied the caller's umask). O_DIRECT is dropped on open, as GlusterFS's
/// posix does by default: its visible contract (no client page cache) is the client's business,
/// Btrfs checksums do not mix well with direct I/O on buffers that may change, and pooled network
/// buffers are not block aligned. Durability comes from fsync.
/// </summary>
public sealed partial class PosixTranslator : Translator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("directory", OptionType.Path, null, "the export directory (absolute path; on Btrfs in production)") { Required = true },
        new("dir-fd-cache", OptionType.Int, "4096", "directory descriptors kept open for resolution by GFID") { Min = 16, Max = 1 << 20 },
    ];

    public static TranslatorType Type { get; } = new("storage/posix", OptionSpecs, 0, 0,
        o => new PosixTranslator(o), "the brick's storage: an export directory with a GFID index");

    private const ulong ResolveIndexFile = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS;
    private const ulong ResolveIndexDir = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_MAGICLINKS;

    private readonly string _directory;
    private readonly DirFdCache _dirs;
    private readonly DirLinkCounter _links = new();

    /// <summary>Striped by (parent, name): held while an entry is made and given its GFID, and by lookups that would repair a GFID (see EntryGfid).</summary>
    private readonly Lock[] _making = [.. Enumerable.Range(0, MakingStripes).Select(_ => new Lock())];
    private const int MakingStripes = 64;
    private PosixFd? _root;
    private PosixFd? _index;
    private PosixFd? _syncFd;

    /// <summary>The export is on Btrfs: pending marks on copy-on-write files need no fsync (see XattropAsync).</summary>
    private bool _btrfs;
    private Gfid _hiddenGfid;

    public PosixTranslator(TranslatorOptions options)
    {
        _directory = options.GetString("directory");
        _dirs = new DirFdCache((int)options.GetInt("dir-fd-cache"));
    }

    /// <summary>The export directory.</summary>
    public string Directory => _directory;

    private int RootFd => (_root ?? throw new InvalidOperationException("storage/posix used before InitAsync")).Fd;
    private int IndexFd => _index!.Fd;

    public override ValueTask InitAsync(CancellationToken cancellation)
    {
        Sys.Umask(0);
        var e = Sys.OpenAt(Libc.AT_FDCWD, _directory, Libc.O_PATH | Libc.O_DIRECTORY, 0, out var root);
        if (e != Errno.None) throw new InvalidOperationException($"storage/posix: cannot open export directory {_directory}: {e}");
        _root = root;

        Span<byte> want = stackalloc byte[Gfid.Size];
        Gfid.Root.WriteBytes(want);
        var rootPath = Sys.ProcPath(root.Fd);
        var have = ReadGfid(rootPath, follow: true);
        if (have is null)
        {
            e = Sys.SetXattr(rootPath, GfidIndex.Xattr, want, XattrFlags.Create, follow: true);
            if (e != Errno.None)
                throw new InvalidOperationException($"storage/posix: cannot set {GfidIndex.Xattr} on {_directory} ({e}); the filesystem needs trusted xattrs and the brick must run as root");
        }
        else if (have != Gfid.Root)
        {
            throw new InvalidOperationException($"storage/posix: {_directory} carries GFID {have}, not the root GFID; it is not the root of a brick (refusing to export it)");
        }

        foreach (var dir in new[] { GfidIndex.HiddenDir, GfidIndex.HiddenDir + "/gfid" })
        {
            e = Sys.MkdirAt(root.Fd, dir, 0x1C9 /* 0711 */);
            if (e != Errno.None && e != Errno.EEXIST) throw new InvalidOperationException($"storage/posix: cannot create {_directory}/{dir}: {e}");
        }
        e = Sys.OpenAt2(root.Fd, GfidIndex.IndexFromRoot, Libc.O_PATH | Libc.O_DIRECTORY, 0, ResolveIndexFile, out var index);
        if (e != Errno.None) throw new InvalidOperationException($"storage/posix: cannot open {_directory}/{GfidIndex.IndexFromRoot}: {e}");
        _index = index;
        e = Sys.OpenAt(root.Fd, ".", Libc.O_RDONLY | Libc.O_DIRECTORY, 0, out var syncFd);
        if (e != Errno.None) throw new InvalidOperationException($"storage/posix: cannot open {_directory} for syncfs: {e}");
        _syncFd = syncFd;
        _btrfs = Sys.FStatFs(syncFd.Fd, out var fs) == Errno.None && fs.Type == Libc.BTRFS_SUPER_MAGIC;

        // .brickfs gets a random GFID (a secret: only internal lookups reveal it) and its index entry.
        var hiddenPath = EntryPath(root.Fd, GfidIndex.HiddenDir);
        if (ReadGfid(hiddenPath, follow: false) is not { } hidden)
        {
            hidden = Gfid.NewRandom();
            e = WriteGfid(hiddenPath, follow: false, hidden, XattrFlags.Create);
            if (e == Errno.EEXIST) hidden = ReadGfid(hiddenPath, follow: false) ?? throw new InvalidOperationException($"storage/posix: unreadable GFID on {_directory}/{GfidIndex.HiddenDir}");
            else if (e != Errno.None) throw new InvalidOperationException($"storage/posix: cannot set the GFID of {_directory}/{GfidIndex.HiddenDir}: {e}");
        }
        _hiddenGfid = hidden;
        if (Sys.ReadLink(IndexFd, GfidIndex.RelPath(hidden), out var link) != Errno.None || link != GfidIndex.DirTarget(Gfid.Root, GfidIndex.HiddenDir))
        {
            e = SetDirLink(hidden, Gfid.Root, GfidIndex.HiddenDir);
            if (e != Errno.None) throw new InvalidOperationException($"storage/posix: cannot index {_directory}/{GfidIndex.HiddenDir}: {e}");
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask DisposeAsync()
    {
        _dirs.Dispose();
        _index?.Dispose();
        _syncFd?.Dispose();
        _root?.Dispose();
        return base.DisposeAsync();
    }

    private static ValueTask<FopResult<T>> Done<T>(FopResult<T> r) => ValueTask.FromResult(r);
    private static ValueTask<FopResult> Done(FopResult r) => ValueTask.FromResult(r);

    private static string EntryPath(int dirfd, string name) => Sys.ProcPath(dirfd) + "/" + name;

    // ---- names -----------------------------------------------------------------------

    private static Errno CheckName(string name)
    {
        if (name.Length == 0 || name == "." || name == ".." || name.Contains('/') || name.Contains('\0')) return Errno.EINVAL;
        return Encoding.UTF8.GetByteCount(name) > 255 ? Errno.ENAMETOOLONG : Errno.None;
    }

    /// <summary>
    /// Whether <paramref name="name"/> in <paramref name="parent"/> is beyond the caller's reach:
    /// <c>.brickfs</c> for callers from outside the brick, the GFID index for everyone.
    /// </summary>
    private bool IsHidden(FopContext ctx, Gfid parent, string name) =>
        (parent == Gfid.Root && name == GfidIndex.HiddenDir && !ctx.BrickInternal)
        || (parent == _hiddenGfid && name == GfidIndex.IndexDirName);

    /// <summary>Name check for fops that look up or remove an entry: a hidden entry does not exist.</summary>
    private Errno CheckExisting(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckName(name);
        return e != Errno.None ? e : IsHidden(ctx, parent, name) ? Errno.ENOENT : Errno.None;
    }

    /// <summary>Name check for fops that remove or move an entry away: as <see cref="CheckExisting"/>, and <c>.brickfs</c> itself stays.</summary>
    private Errno CheckRemovable(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckExisting(ctx, parent, name);
        return e != Errno.None ? e : parent == Gfid.Root && name == GfidIndex.HiddenDir ? Errno.EPERM : Errno.None;
    }

    /// <summary>Name check for fops that create, replace or remove an entry: hidden names and <c>.brickfs</c> itself are refused.</summary>
    private Errno CheckNew(FopContext ctx, Gfid parent, string name)
    {
        var e = CheckName(name);
        if (e != Errno.None) return e;
        return IsHidden(ctx, parent, name) || (parent == Gfid.Root && name == GfidIndex.HiddenDir) ? Errno.EPERM : Errno.None;
    }

    // ---- GFIDs -------------------------------------------------------------------------

    private static Gfid? ReadGfid(string path, bool follow)
    {
        Span<byte> b = stackalloc byte[Gfid.Size];
        if (Sys.GetXattrInto(path, GfidIndex.Xattr, follow, b, out int n) != Errno.None || n != Gfid.Size) return null;
        return Gfid.FromBytes(b);
    }

    private static Gfid? ReadGfid(int fd)
    {
        Span<byte> b = stackalloc byte[Gfid.Size];
        if (Sys.FGetXattrInto(fd, GfidIndex.Xattr, b, out int n) != Errno.None || n != Gfid.Size) return null;
        return Gfid.FromBytes(b);
    }

    private static Errno WriteGfid(string path, bool follow, Gfid g, int flags)
    {
        Span<byte> b = stackalloc byte[Gfid.Size];
        g.WriteBytes(b);
        return Sys.SetXattr(path, GfidIndex.Xattr, b, flags, follow);
    }

    private bool IndexExists(Gfid g) => Sys.Stat(IndexFd, GfidIndex.RelPath(g), out _) == Errno.None;

    private void EnsureBuckets(Gfid g)
    {
        int top = BucketOf(g) >> 8;
        if ((Volatile.Read(ref _topBuckets[top >> 5]) & (1 << (top & 31))) == 0)
        {
            Sys.MkdirAt(IndexFd, GfidIndex.Bucket1(g), 0x1C9);
            Interlocked.Or(ref _topBuckets[top >> 5], 1 << (top & 31));
        }
        if (Sys.MkdirAt(IndexFd, GfidIndex.Bucket2(g), 0x1C9) == Errno.ENOENT)
        {
            // The first level went behind our back: make both again.
            Sys.MkdirAt(IndexFd, GfidIndex.Bucket1(g), 0x1C9);
            Sys.MkdirAt(IndexFd, GfidIndex.Bucket2(g), 0x1C9);
        }
        MarkBucket(g);
    }

    /// <summary>First-level buckets (aa) known to exist, as <see cref="_buckets"/> for aa/bb.</summary>
    private readonly int[] _topBuckets = new int[256 / 32];

    /// <summary>
    /// Second-level index buckets known to exist (one bit per aa/bb, 65,536 in all): a link
    /// into a known bucket is one linkat, not a failed linkat, two mkdirs and a retry. Buckets
    /// are never removed, so a set bit stays true.
    /// </summary>
    private readonly int[] _buckets = new int[65536 / 32];

    private static int BucketOf(Gfid g) => (int)(g.Hi >> 48);

    private bool BucketKnown(Gfid g) => (Volatile.Read(ref _buckets[BucketOf(g) >> 5]) & (1 << (BucketOf(g) & 31))) != 0;

    private void MarkBucket(Gfid g) => Interlocked.Or(ref _buckets[BucketOf(g) >> 5], 1 << (BucketOf(g) & 31));

    /// <summary>Hard-links a non-directory into the index (<paramref name="flags"/> as for linkat).</summary>
    private Errno AddIndexLink(int dirfd, string name, int flags, Gfid g)
    {
        var rel = GfidIndex.RelPath(g);
        if (!BucketKnown(g)) EnsureBuckets(g);
        var e = Sys.LinkAt(dirfd, name, IndexFd, rel, flags);
        if (e == Errno.ENOENT)
        {
            EnsureBuckets(g); // a bucket removed behind our back
            e = Sys.LinkAt(dirfd, name, IndexFd, rel, flags);
        }
        // A concurrent lookup of the new name may have repaired the index first (it sees the GFID
        // xattr before this link exists): a link to this very inode is the wanted outcome.
        if (e == Errno.EEXIST && SameInode(dirfd, name, IndexFd, rel)) return Errno.None;
        return e;
    }

    private static bool SameInode(int dirfdA, string nameA, int dirfdB, string nameB) =>
        Sys.Stat(dirfdA, nameA, out var a) == Errno.None && Sys.Stat(dirfdB, nameB, out var b) == Errno.None
        && a.Ino == b.Ino && a.DevMajor == b.DevMajor && a.DevMinor == b.DevMinor;

    /// <summary>Points a directory's index symlink at (parent, name), replacing any old one atomically.</summary>
    private Errno SetDirLink(Gfid g, Gfid parent, string name)
    {
        var rel = GfidIndex.RelPath(g);
        var target = GfidIndex.DirTarget(parent, name);
        var tmp = rel + ".tmp." + Guid.NewGuid().ToString("N");
        var e = Sys.SymlinkAt(target, IndexFd, tmp);
        if (e == Errno.ENOENT)
        {
            EnsureBuckets(g);
            e = Sys.SymlinkAt(target, IndexFd, tmp);
        }
        if (e != Errno.None) return e;
        e = Sys.RenameAt2(IndexFd, tmp, IndexFd, rel, 0);
        if (e != Errno.None) Sys.UnlinkAt(IndexFd, tmp);
        return e;
    }

    /// <summary>The lock a name is made under; recursive, so a maker may look its new entry up while holding it.</summary>
    private Lock MakingLock(Gfid parent, string name) => _making[(uint)HashCode.Combine(parent, name) % MakingStripes];

    /// <summary>Removes a non-directory's index link once no user-visible name is left (open descriptors keep the data).</summary>
    private void DropIndexIfOrphan(Gfid g)
    {
        var rel = GfidIndex.RelPath(g);
        if (Sys.Stat(IndexFd, rel, out var st) == Errno.None && st.Nlink <= 1 && !ModeBits.IsDirectory(st.Mode))
            Sys.UnlinkAt(IndexFd, rel);
    }

    private void DropDirIndex(Gfid g)
    {
        Sys.UnlinkAt(IndexFd, GfidIndex.RelPath(g));
        _dirs.Remove(g);
        _links.Invalidate(g);
    }

    /// <summary>
    /// The GFID of entry <paramref name="name"/> in directory <paramref name="dirfd"/> (GFID
    /// <paramref name="parent"/>), assigning one (and its index entry) if the entry has none, and
    /// repairing a missing or stale index entry. Runs as root.
    /// </summary>
    private Gfid EntryGfid(int dirfd, string name, Gfid parent, in Libc.Statx st) => EntryGfid(dirfd, name, parent, st, out _);

    /// <param name="changed">The GFID or index entry was (re)made: link counts may have changed.</param>
    /// <remarks>
    /// A repair runs under the name's <see cref="MakingLock"/>, which this brick's own create,
    /// mknod, mkdir and symlink hold from making the entry until its GFID and index entry are
    /// set. So a lookup or readdirplus that meets a name still being made waits for it and
    /// answers the creator's GFID; giving the entry one of its own would leave the copies of a
    /// replica set with different GFIDs for one name (EIO on every later lookup of it).
    /// </remarks>
    private Gfid EntryGfid(int dirfd, string name, Gfid parent, in Libc.Statx st, out bool changed)
    {
        var path = EntryPath(dirfd, name);
        if (ReadGfid(path, follow: false) is { } known && IsIndexed(known, st, parent, name))
        {
            changed = false;
            return known;
        }
        lock (MakingLock(parent, name))
        {
            // Read again: the entry may have been finished (or replaced) while this waited.
            var now = Sys.Stat(dirfd, name, out var fresh) == Errno.None ? fresh : st;
            return RepairGfid(dirfd, name, parent, now, path, out changed);
        }
    }

    /// <summary>The entry's GFID <paramref name="g"/> has its index entry (the common case, no repair needed).</summary>
    private bool IsIndexed(Gfid g, in Libc.Statx st, Gfid parent, string name)
    {
        var rel = GfidIndex.RelPath(g);
        if (ModeBits.IsDirectory(st.Mode))
            return Sys.ReadLink(IndexFd, rel, out var have) == Errno.None && have == GfidIndex.DirTarget(parent, name);
        // See RepairGfid for why a second link counts as indexed.
        if (st.Nlink >= 2) return true;
        return Sys.Stat(IndexFd, rel, out var ist) == Errno.None
            && ist.Ino == st.Ino && ist.DevMajor == st.DevMajor && ist.DevMinor == st.DevMinor;
    }

    /// <summary>Under the name's making lock: gives the entry a GFID if it has none, and repairs a missing or stale index entry.</summary>
    private Gfid RepairGfid(int dirfd, string name, Gfid parent, in Libc.Statx st, string path, out bool changed)
    {
        changed = true;
        bool isDir = ModeBits.IsDirectory(st.Mode);
        var g = ReadGfid(path, follow: false);
        if (g is null) return AssignGfid(dirfd, name, parent, isDir, path);

        var rel = GfidIndex.RelPath(g.Value);
        if (isDir)
        {
            var want = GfidIndex.DirTarget(parent, name);
            var e = Sys.ReadLink(IndexFd, rel, out var have);
            if (e == Errno.None && have == want)
            {
                changed = false;
                return g.Value;
            }
            if (e == Errno.None && ResolvesToOther(g.Value, st)) return AssignGfid(dirfd, name, parent, isDir, path, replace: true);
            SetDirLink(g.Value, parent, name);
            return g.Value;
        }
        // A file with a GFID and a second link is taken as indexed without looking: the index
        // link is the second link of every file the brick made (link counts already assume it,
        // reporting one less), and the index directories are cold after a cache drop, so the
        // check would cost a random read per lookup. A missing or stale entry shows as a single
        // link (a lost index link, a copy carrying another file's GFID) and is repaired below;
        // only a file that also got a second name behind the brick's back goes unrepaired here.
        if (st.Nlink >= 2)
        {
            changed = false;
            return g.Value;
        }
        var ie = Sys.Stat(IndexFd, rel, out var ist);
        if (ie == Errno.None && ist.Ino == st.Ino && ist.DevMajor == st.DevMajor && ist.DevMinor == st.DevMinor)
        {
            changed = false;
            return g.Value;
        }
        if (ie == Errno.ENOENT)
        {
            AddIndexLink(dirfd, name, 0, g.Value);
            return g.Value;
        }
        if (ie == Errno.None && ist.Nlink > 1) return AssignGfid(dirfd, name, parent, isDir, path, replace: true); // a copy carrying another file's GFID
        Sys.UnlinkAt(IndexFd, rel);
        AddIndexLink(dirfd, name, 0, g.Value);
        return g.Value;
    }

    /// <summary>True if the directory index entry of <paramref name="g"/> resolves to an existing directory other than the one stat'ed.</summary>
    private bool ResolvesToOther(Gfid g, in Libc.Statx st)
    {
        if (Sys.OpenAt2(RootFd, GfidIndex.IndexFromRoot + GfidIndex.RelPath(g), Libc.O_PATH | Libc.O_DIRECTORY, 0, ResolveIndexDir, out var fd) != Errno.None)
            return false;
        using var owned = fd.Own();
        return Sys.Stat(fd.Fd, "", out var other) == Errno.None && other.Ino != st.Ino && ReadGfid(Sys.ProcPath(fd.Fd), follow: true) == g;
    }

    private Gfid AssignGfid(int dirfd, string name, Gfid parent, bool isDir, string path, bool replace = false)
    {
        var g = Gfid.NewRandom();
        var e = WriteGfid(path, follow: false, g, replace ? XattrFlags.Replace : XattrFlags.Create);
        if (e == Errno.EEXIST && ReadGfid(path, follow: false) is { } raced) return raced;
        if (isDir) SetDirLink(g, parent, name);
        else AddIndexLink(dirfd, name, 0, g);
        return g;
    }

    // ---- resolution ----------------------------------------------------------------------

    /// <summary>
    /// An O_PATH descriptor of the object with GFID <paramref name="g"/> and its attributes.
    /// ESTALE when the GFID is unknown.
    /// </summary>
    private Errno Resolve(Gfid g, out FdLease lease, out Libc.Statx st)
    {
        st = default;
        if (g == Gfid.Root) return ResolveDir(g, out lease, out st);
        if (_dirs.TryLease(g, out lease)) return CheckDir(g, ref lease, out st);
        var rel = GfidIndex.RelPath(g);
        var e = Sys.OpenAt2(IndexFd, rel, Libc.O_PATH | Libc.O_NOFOLLOW, 0, ResolveIndexFile, out var fd);
        if (e != Errno.None)
        {
            lease = default;
            return e == Errno.ENOENT || e == Errno.ENOTDIR ? Errno.ESTALE : e;
        }
        lease = fd.Own();
        e = Sys.Stat(fd.Fd, "", out st);
        if (e != Errno.None)
        {
            lease.Dispose();
            return e;
        }
        // A symlink in the index is either a user's symlink (it carries a GFID) or a directory's entry.
        if (!ModeBits.IsSymlink(st.Mode) || ReadGfid(Sys.ProcPath(fd.Fd), follow: true) == g) return Errno.None;
        lease.Dispose();
        return ResolveDir(g, out lease, out st);
    }

    /// <summary>As <see cref="Resolve"/> for a GFID that must be a directory (ENOTDIR otherwise).</summary>
    private Errno ResolveDir(Gfid g, out FdLease lease, out Libc.Statx st)
    {
        st = default;
        Errno e;
        if (g == Gfid.Root) lease = _root!.Lease();
        else if (!_dirs.TryLease(g, out lease))
        {
            e = OpenDirByGfid(g, out lease);
            if (e != Errno.None) return e;
        }
        return CheckDir(g, ref lease, out st);
    }

    private Errno CheckDir(Gfid g, ref FdLease lease, out Libc.Statx st)
    {
        var e = Sys.Stat(lease.Fd, "", out st);
        if (e == Errno.None && st.Nlink == 0) e = Errno.ESTALE; // removed behind a cached descriptor
        if (e == Errno.None && !ModeBits.IsDirectory(st.Mode)) e = Errno.ENOTDIR;
        if (e != Errno.None)
        {
            lease.Dispose();
            if (e == Errno.ESTALE) _dirs.Remove(g);
        }
        return e;
    }

    private Errno OpenDirByGfid(Gfid g, out FdLease lease)
    {
        lease = default;
        var e = Sys.OpenAt2(RootFd, GfidIndex.IndexFromRoot + GfidIndex.RelPath(g), Libc.O_PATH | Libc.O_DIRECTORY, 0, ResolveIndexDir, out var fd);
        if (e == Errno.None && ReadGfid(Sys.ProcPath(fd.Fd), follow: true) == g)
        {
            lease = _dirs.AddAndLease(g, fd);
            return Errno.None;
        }
        fd?.Dispose();
        // The walk failed or ended elsewhere (a user's symlink in the index is followed by the
        // kernel, but never past the export, and the GFID check catches where it lands).
        return IsDirIndexEntry(g) switch
        {
            null => Errno.ESTALE,
            false => Errno.ENOTDIR,
            true => e == Errno.ELOOP ? OpenDirByChain(g, out lease) : Errno.ESTALE,
        };
    }

    /// <summary>True for a directory's index symlink, false for a non-directory's entry, null when there is none.</summary>
    private bool? IsDirIndexEntry(Gfid g)
    {
        var rel = GfidIndex.RelPath(g);
        var e = Sys.Stat(IndexFd, rel, out var st);
        if (e != Errno.None) return null;
        if (!ModeBits.IsSymlink(st.Mode)) return false;
        return ReadGfid(EntryPath(IndexFd, rel), follow: false) != g; // a user's symlink carries its GFID
    }

    /// <summary>
    /// Resolution of trees deeper than the kernel's 40 nested symlinks: read the chain of index
    /// symlinks up to a cached or root ancestor, then open the names downwards.
    /// </summary>
    private Errno OpenDirByChain(Gfid g, out FdLease lease)
    {
        var chain = new Stack<(Gfid Gfid, string Name)>();
        var cur = g;
        FdLease at = default;
        while (true)
        {
            if (cur == Gfid.Root)
            {
                at = _root!.Lease();
                break;
            }
            if (_dirs.TryLease(cur, out at)) break;
            if (chain.Count > 4096 || Sys.ReadLink(IndexFd, GfidIndex.RelPath(cur), out var target) != Errno.None
                || !GfidIndex.TryParseDirTarget(target, out var parent, out var name))
            {
                lease = default;
                return Errno.ESTALE;
            }
            chain.Push((cur, name));
            cur = parent;
        }
        while (chain.TryPop(out var step))
        {
            var e = Sys.OpenAt(at.Fd, step.Name, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW, 0, out var next);
            at.Dispose();
            if (e != Errno.None || ReadGfid(Sys.ProcPath(next.Fd), follow: true) != step.Gfid)
            {
                next?.Dispose();
                lease = default;
                return Errno.ESTALE;
            }
            at = _dirs.AddAndLease(step.Gfid, next);
        }
        lease = at;
        return Errno.None;
    }

    // ---- attributes ------------------------------------------------------------------------

    /// <summary>
    /// Iatt from statx. <paramref name="dirfd"/> is a descriptor of the object itself (only used for
    /// directories, to count subdirectories where the filesystem does not). Call as root.
    /// </summary>
    private Iatt ToIatt(Gfid g, in Libc.Statx st, int dirfd)
    {
        bool isDir = ModeBits.IsDirectory(st.Mode);
        uint nlink = isDir ? _links.Nlink(g, dirfd, st) : st.Nlink > 0 ? st.Nlink - 1 : 0; // minus the index link
        return new Iatt
        {
            Gfid = g, Mode = st.Mode, Nlink = nlink, Uid = st.Uid, Gid = st.Gid,
            Rdev = MakeDev(st.RdevMajor, st.RdevMinor), Size = (long)st.Size, Blocks = (long)st.Blocks,
            BlockSize = st.BlkSize == 0 ? 4096 : st.BlkSize,
            Atime = new Core.Timespec(st.Atime.Sec, st.Atime.Nsec),
            Mtime = new Core.Timespec(st.Mtime.Sec, st.Mtime.Nsec),
            Ctime = new Core.Timespec(st.Ctime.Sec, st.Ctime.Nsec),
        };
    }

    private static readonly IReadOnlyDictionary<string, byte[]> NoXattrs = System.Collections.Frozen.FrozenDictionary<string, byte[]>.Empty;

    /// <summary>
    /// <paramref name="attr"/> with the xattrs named in <see cref="FopContext.XattrRequest"/> that
    /// exist and that the caller may read (<see cref="BrickXattrs"/>); unchanged when none were
    /// asked for. <paramref name="path"/> reaches the object (a /proc path with
    /// <paramref name="follow"/>, or dir/name without). Ordinary names are read under the caller's
    /// credentials, as its getxattr would be.
    /// </summary>
    private static Iatt WithXattrs(FopContext ctx, Iatt attr, string path, bool follow)
    {
        if (ctx.XattrRequest is not { } names) return attr;
        Dictionary<string, byte[]>? found = null;
        foreach (var name in names)
        {
            if (!BrickXattrs.MayRead(ctx, name)) continue;
            Errno e;
            byte[] value;
            if (ctx.Uid != 0 && !ctx.BrickInternal && !BrickXattrs.IsReserved(name))
            {
                using (Creds.As(ctx)) e = Sys.GetXattr(path, name, follow, out value);
            }
            else e = Sys.GetXattr(path, name, follow, out value);
            if (e == Errno.None) (found ??= new Dictionary<string, byte[]>(StringComparer.Ordinal))[name] = value;
        }
        return attr with { Xattrs = found ?? NoXattrs };
    }

    /// <summary>glibc's makedev: the dev_t encoding mknod takes.</summary>
    private static ulong MakeDev(uint major, uint minor) =>
        ((ulong)(major & 0xfffff000) << 32) | ((ulong)(major & 0xfff) << 8) | ((ulong)(minor & 0xffffff00) << 12) | (minor & 0xff);

    /// <summary>Attributes of entry <paramref name="name"/> in <paramref name="dirfd"/> with its GFID; caches directories. Call as root.</summary>
    private Iatt EntryIatt(int dirfd, string name, Gfid parent, in Libc.Statx st)
    {
        var g = EntryGfid(dirfd, name, parent, st, out bool changed);
        if (!ModeBits.IsDirectory(st.Mode))
        {
            if (changed && Sys.Stat(dirfd, name, out var fresh) == Errno.None) return ToIatt(g, fresh, -1);
            return ToIatt(g, st, -1);
        }
        if (_dirs.TryLease(g, out var cached))
        {
            using (cached) return ToIatt(g, st, cached.Fd);
        }
        if (Sys.OpenAt(dirfd, name, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW, 0, out var fd) != Errno.None) return ToIatt(g, st, -1);
        using var lease = _dirs.AddAndLease(g, fd);
        return ToIatt(g, st, lease.Fd);
    }
}
