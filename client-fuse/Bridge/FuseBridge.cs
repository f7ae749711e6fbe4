using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using Brickfs.ClientFuse.Fuse;
using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Bridge;

public sealed record FuseBridgeOptions
{
    /// <summary>How long the kernel may trust attributes it was given.</summary>
    public TimeSpan AttributeTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long the kernel may trust a name → node lookup.</summary>
    public TimeSpan EntryTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long the kernel may remember that a name does not exist (0 = not at all).</summary>
    public TimeSpan NegativeTimeout { get; init; } = TimeSpan.Zero;

    /// <summary>Names this mount to the graph; lock owners are scoped by it.</summary>
    public string ClientId { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";

    /// <summary>
    /// This mount is the only way into the volume (<see cref="FuseBridge.IsSoleClient"/>): every
    /// change passes through this kernel, which keeps its own caches right, so nothing it caches
    /// can go stale behind its back. Lock points then invalidate nothing and handed-out names are
    /// not tracked. False (the default) for anything another client may change.
    /// </summary>
    public bool SoleClient { get; init; }

    /// <summary>
    /// How long a sole client lets the kernel trust attributes, names and missing names when the
    /// mount options do not say: long, since only this kernel changes the volume.
    /// </summary>
    public static readonly TimeSpan SoleClientCacheTime = TimeSpan.FromHours(1);
}

/// <summary>
/// The one place where kernel requests meet the translator graph: node ids ↔ GFIDs, open
/// handles, the caller's credentials and interrupt token, and the translation of every
/// supported opcode to its fop (<see cref="FuseFopMap"/>). Expected failures go back as the
/// fop's errno; exceptions become EIO in the session.
/// </summary>
public sealed class FuseBridge : IFuseRequestHandler
{
    private const int EntryOutSize = 128;
    private const int DirentSize = 24;

    private readonly Translator _top;
    private readonly FuseBridgeOptions _options;
    private readonly NodeTable _nodes = new();
    private readonly EntryTracker _entries;
    private readonly ConcurrentDictionary<ulong, FileHandle> _handles = new();
    private readonly Dictionary<Gfid, Backing> _backings = [];
    private readonly ConcurrentDictionary<ulong, Gfid> _backedHandles = new();
    private readonly GroupCache _groups = new(TimeSpan.FromSeconds(1));
    private long _nextFh;
    private FuseSession? _session;

    public FuseBridge(Translator top, FuseBridgeOptions? options = null)
    {
        _top = top;
        _options = options ?? new FuseBridgeOptions();
        _entries = new EntryTracker(_options.EntryTimeout);
        WatchLockLoss(Graph(top));
    }

    /// <summary>
    /// Files whose locks a brick connection lost are fenced below; their cached pages must not
    /// answer reads the fenced handle would refuse (LEASES.md). Called for the graph at mount and
    /// again for each subvolume attached while mounted (a brick added live), so every
    /// protocol/client's loss reaches the kernel cache.
    /// </summary>
    public void WatchLockLoss(IEnumerable<Translator> translators)
    {
        foreach (var client in translators.OfType<Brickfs.Translators.Protocol.ProtocolClientTranslator>())
            client.LocksLost += gfid => InvalidateInode(gfid, 0, -1);
    }

    private static IEnumerable<Translator> Graph(Translator top)
    {
        var seen = new HashSet<Translator>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Translator>([top]);
        while (stack.Count > 0)
        {
            var t = stack.Pop();
            if (!seen.Add(t)) continue;
            yield return t;
            foreach (var c in t.Children) stack.Push(c);
        }
    }

    /// <summary>
    /// True when nothing in the graph below <paramref name="top"/> reaches state that another
    /// process shares (no protocol/client): a local volume, whose only client is this mount.
    /// </summary>
    public static bool IsSoleClient(Translator top) =>
        !Graph(top).Any(t => t is Brickfs.Translators.Protocol.ProtocolClientTranslator);

    /// <summary>Node ids the kernel currently holds (root included).</summary>
    public int KnownNodes => _nodes.Count;

    /// <summary>Open files and directories.</summary>
    public int OpenHandles => _handles.Count;

    /// <summary>Connects the notification methods to the mounted session.</summary>
    public void Attach(FuseSession session) => _session = session;

    /// <summary>The kernel's lookup count for <paramref name="gfid"/> (0 when it holds none).</summary>
    public ulong LookupCount(Gfid gfid) => _nodes.TryGetNodeId(gfid, out var id) ? _nodes.LookupsOf(id) : 0;

    // ---- coherence hooks ------------------------------------------------------------------

    /// <summary>
    /// Drops the kernel's cached attributes and pages [off, off+len) of <paramref name="gfid"/>
    /// (len 0 = to the end). A file the kernel does not hold needs nothing: true either way
    /// unless the notification failed.
    /// </summary>
    public bool InvalidateInode(Gfid gfid, long off = 0, long len = 0)
    {
        if (_session is null || !_nodes.TryGetNodeId(gfid, out var id)) return true;
        int e = _session.NotifyInvalInode(id, off, len);
        return e is 0 or 2 /* ENOENT: not cached */;
    }

    /// <summary>Drops the kernel's cached lookup of <paramref name="name"/> in <paramref name="parent"/>.</summary>
    public bool InvalidateEntry(Gfid parent, string name)
    {
        if (_session is null || !_nodes.TryGetNodeId(parent, out var id)) return true;
        int e = _session.NotifyInvalEntry(id, name);
        return e is 0 or 2;
    }

    /// <summary>
    /// A lock point (contract 3): once a lock is granted, nothing this mount cached about the file
    /// may be served. Drops the inode's pages and attributes and every dentry handed out in its
    /// parent directory that the kernel may still trust (SQLite's <c>-journal</c> probes), before
    /// the grant is answered. Runs on the thread pool, never on a thread that takes requests in (a
    /// /dev/fuse reader or an io_uring queue thread): a notification can wait for page or
    /// directory locks that requests still being read must release. The kernel holds no inode
    /// lock while it waits for the lock reply, so that wait is not one.
    /// A sole client has nothing to drop: what its kernel caches came from its own requests.
    /// </summary>
    private async ValueTask InvalidateAtLockAsync(Gfid gfid)
    {
        if (_session is null || _options.SoleClient) return;
        await Task.Run(() =>
        {
            InvalidateInode(gfid, 0, -1);
            if (!_nodes.TryGetParent(gfid, out var parent)) return;
            foreach (var name in _entries.LockPoint(parent)) InvalidateEntry(parent, name);
        });
        Interlocked.Increment(ref _lockPoints);
    }

    private long _lockPoints;

    /// <summary>How many granted locks invalidated the kernel's caches (diagnostics, tests).</summary>
    public long LockPoints => Interlocked.Read(ref _lockPoints);

    /// <summary>Names handed out in <paramref name="parent"/> that a lock point would invalidate now.</summary>
    internal List<string> TrackedNames(Gfid parent) => _entries.NamesIn(parent);

    // ---- dispatch ------------------------------------------------------------------------

    public ValueTask HandleAsync(FuseRequest r)
    {
        switch (r.Opcode)
        {
            case FuseOpcode.Forget:
                _nodes.Forget(r.NodeId, r.Arg<FuseForgetIn>().NLookup);
                return ValueTask.CompletedTask;
            case FuseOpcode.BatchForget:
                BatchForget(r);
                return ValueTask.CompletedTask;
            case FuseOpcode.NotifyReply:
                return ValueTask.CompletedTask;
        }
        if (!FuseFopMap.Table.TryGetValue(r.Opcode, out var map) || !map.Supported)
        {
            r.Session.ReplyError(r, (int)Errno.ENOSYS);
            return ValueTask.CompletedTask;
        }
        return r.Opcode switch
        {
            FuseOpcode.Lookup => LookupAsync(r),
            FuseOpcode.Getattr => GetattrAsync(r),
            FuseOpcode.Setattr => SetattrAsync(r),
            FuseOpcode.Readlink => ReadlinkAsync(r),
            FuseOpcode.Symlink => SymlinkAsync(r),
            FuseOpcode.Mknod => MknodAsync(r),
            FuseOpcode.Mkdir => MkdirAsync(r),
            FuseOpcode.Unlink => UnlinkAsync(r, dir: false),
            FuseOpcode.Rmdir => UnlinkAsync(r, dir: true),
            FuseOpcode.Rename => RenameAsync(r, v2: false),
            FuseOpcode.Rename2 => RenameAsync(r, v2: true),
            FuseOpcode.Link => LinkAsync(r),
            FuseOpcode.Open => OpenAsync(r, dir: false),
            FuseOpcode.Opendir => OpenAsync(r, dir: true),
            FuseOpcode.Create => CreateAsync(r),
            FuseOpcode.Read => ReadAsync(r),
            FuseOpcode.Write => WriteAsync(r),
            FuseOpcode.Statfs => StatfsAsync(r),
            FuseOpcode.Release => ReleaseAsync(r, dir: false),
            FuseOpcode.Releasedir => ReleaseAsync(r, dir: true),
            FuseOpcode.Fsync => FsyncAsync(r, dir: false),
            FuseOpcode.Fsyncdir => FsyncAsync(r, dir: true),
            FuseOpcode.Flush => FlushAsync(r),
            FuseOpcode.Setxattr => SetxattrAsync(r),
            FuseOpcode.Getxattr => GetxattrAsync(r),
            FuseOpcode.Listxattr => ListxattrAsync(r),
            FuseOpcode.Removexattr => RemovexattrAsync(r),
            FuseOpcode.Readdir => ReaddirAsync(r, plus: false),
            FuseOpcode.Readdirplus => ReaddirAsync(r, plus: true),
            FuseOpcode.Getlk or FuseOpcode.Setlk or FuseOpcode.Setlkw => LkAsync(r),
            FuseOpcode.Access => AccessAsync(r),
            FuseOpcode.Fallocate => FallocateAsync(r),
            FuseOpcode.Lseek => LseekAsync(r),
            _ => Unhandled(r),
        };
    }

    private static ValueTask Unhandled(FuseRequest r)
    {
        r.Session.ReplyError(r, (int)Errno.ENOSYS);
        return ValueTask.CompletedTask;
    }

    private void BatchForget(FuseRequest r)
    {
        var p = r.Payload;
        uint count = MemoryMarshal.Read<FuseBatchForgetIn>(p).Count;
        var items = MemoryMarshal.Cast<byte, FuseForgetOne>(p[8..]);
        for (int i = 0; i < count && i < items.Length; i++) _nodes.Forget(items[i].NodeId, items[i].NLookup);
    }

    // ---- helpers -------------------------------------------------------------------------

    /// <summary>
    /// The caller's context for a fop made for <paramref name="r"/>. A fop that
    /// <paramref name="outlivesRequest"/> (started for the request but awaited after its reply)
    /// does not take the request's interrupt, whose source goes with the request.
    /// </summary>
    private FopContext Context(FuseRequest r, ulong lockOwner = 0, bool outlivesRequest = false) => new()
    {
        Uid = r.Header.Uid,
        Gid = r.Header.Gid,
        Pid = r.Header.Pid,
        Groups = _groups.Get(r.Header.Pid),
        LockOwner = lockOwner,
        ClientId = _options.ClientId,
        RequestId = r.Unique,
        Cancellation = outlivesRequest ? CancellationToken.None : r.Cancellation,
    };

    /// <summary>When what the bridge learns now stops counting: the attribute timeout from now (Environment.TickCount64).</summary>
    private long AttributeDeadline() =>
        Environment.TickCount64 + (long)Math.Min(_options.AttributeTimeout.TotalMilliseconds, int.MaxValue);

    private static void Fail(FuseRequest r, Errno e) => r.Session.ReplyError(r, ToKernel(e));

    /// <summary>
    /// The errno an application sees. A handle fenced after its locks were lost travels through
    /// the graph as EBADFD, so cluster translators can tell it from a failing copy and use the
    /// other copies; to the application it is an I/O error, as a lost lock must be.
    /// </summary>
    private static int ToKernel(Errno e) => e == Errno.EBADFD ? (int)Errno.EIO : (int)e;

    private bool Node(FuseRequest r, out Gfid gfid)
    {
        if (_nodes.TryGetGfid(r.NodeId, out gfid)) return true;
        Fail(r, Errno.ESTALE);
        return false;
    }

    private bool Handle(FuseRequest r, ulong fh, out FileHandle fd)
    {
        if (_handles.TryGetValue(fh, out fd!)) return true;
        Fail(r, Errno.EBADF);
        return false;
    }

    private static (ulong Sec, uint Nsec) Split(TimeSpan t)
    {
        if (t <= TimeSpan.Zero) return (0, 0);
        long ticks = t.Ticks;
        return ((ulong)(ticks / TimeSpan.TicksPerSecond), (uint)(ticks % TimeSpan.TicksPerSecond * 100));
    }

    internal static FuseAttr ToAttr(Iatt a) => new()
    {
        Ino = a.Ino,
        Size = (ulong)a.Size,
        Blocks = (ulong)a.Blocks,
        Atime = (ulong)a.Atime.Sec,
        Mtime = (ulong)a.Mtime.Sec,
        Ctime = (ulong)a.Ctime.Sec,
        AtimeNsec = a.Atime.Nsec,
        MtimeNsec = a.Mtime.Nsec,
        CtimeNsec = a.Ctime.Nsec,
        Mode = a.Mode,
        Nlink = a.Nlink,
        Uid = a.Uid,
        Gid = a.Gid,
        // glibc's makedev and the kernel's new_encode_dev agree for every 32-bit device number.
        Rdev = (uint)a.Rdev,
        BlkSize = a.BlockSize,
    };

    /// <summary>An entry reply; <paramref name="cacheName"/> false: the kernel must not cache the name (a lock directory, see <see cref="EntryTracker"/>).</summary>
    private FuseEntryOut Entry(ulong nodeId, Iatt a, bool cacheName = true)
    {
        _nodes.NoteMode(nodeId, a.Mode);
        var (es, en) = cacheName ? Split(_options.EntryTimeout) : (0UL, 0U);
        var (s, n) = Split(_options.AttributeTimeout);
        return new FuseEntryOut
        {
            NodeId = nodeId, Generation = 1, EntryValid = es, EntryValidNsec = en, AttrValid = s, AttrValidNsec = n, Attr = ToAttr(a),
        };
    }

    /// <summary>Answers a new or found entry; the kernel's lookup count of its node grows by one.</summary>
    private void ReplyEntry(FuseRequest r, Iatt a, Gfid parent, string name)
    {
        var e = Entry(Remember(a.Gfid, parent, name, out bool cacheName), a, cacheName);
        r.Session.Reply(r, e);
    }

    /// <summary>
    /// Counts a kernel reference handed out as <paramref name="name"/> in <paramref name="parent"/>
    /// (tracked for lock-point invalidation); <paramref name="cacheName"/> says whether the kernel
    /// may cache the name.
    /// </summary>
    private ulong Remember(Gfid gfid, Gfid parent, string name, out bool cacheName)
    {
        cacheName = _options.SoleClient || _entries.Handed(parent, name);
        return _nodes.Remember(gfid, parent);
    }

    private void ReplyAttr(FuseRequest r, Iatt a)
    {
        _nodes.NoteMode(r.NodeId, a.Mode);
        var (s, n) = Split(_options.AttributeTimeout);
        r.Session.Reply(r, new FuseAttrOut { AttrValid = s, AttrValidNsec = n, Attr = ToAttr(a) });
    }

    private static void ReplyPlain(FuseRequest r, FopResult res)
    {
        if (res.Ok) r.Session.ReplyOk(r);
        else r.Session.ReplyError(r, ToKernel(res.Error));
    }

    private void ReplyEntryResult(FuseRequest r, FopResult<Iatt> res, Gfid parent, string name)
    {
        if (res.Ok) ReplyEntry(r, res.Value, parent, name);
        else Fail(r, res.Error);
    }

    /// <summary>Answers an entry fop in the directory the request names (its node), which the fop changed.</summary>
    private void ReplyNewEntry(FuseRequest r, FopResult<Iatt> res, Gfid parent, string name)
    {
        _nodes.DirChanged(r.NodeId);
        ReplyEntryResult(r, res, parent, name);
        if (res.Ok) PrefetchDirStat(r, parent);
    }

    // ---- the directory GETATTR after an entry change ------------------------------------------

    /// <summary>
    /// After a create, unlink, mkdir ... in a directory the kernel drops the directory's
    /// attributes, and its next permission check there (the path walk of the next create in the
    /// same directory) sends a GETATTR of it: one more round trip to the bricks on the critical
    /// path of every file created. A stat of the directory sent right after the change answers
    /// that GETATTR instead: it was asked after the change, so it shows it, and it is answered
    /// while the application is still writing and closing the file. It answers one GETATTR, only
    /// if no other change of the directory through this mount came after it began (the caller
    /// counted the change before replying), and only within the attribute timeout, the
    /// staleness the kernel accepts for attributes anyway. With attribute-timeout=0 nothing is
    /// kept. Runs after the reply; a stat that fails just leaves the GETATTR to the graph.
    /// </summary>
    private void PrefetchDirStat(FuseRequest r, Gfid dir)
    {
        if (_options.AttributeTimeout <= TimeSpan.Zero) return;
        long changes = _nodes.ChangesOf(r.NodeId);
        if (changes == 0) return;
        Task<FopResult<Iatt>> stat;
        try
        {
            stat = _top.StatAsync(Context(r, outlivesRequest: true), dir, null).AsTask();
        }
        catch (Exception)
        {
            return; // a translator bug shows up again, and is answered, on the GETATTR itself
        }
        _nodes.KeepDirStat(r.NodeId, new NodeTable.DirStat(changes, AttributeDeadline(), stat));
    }

    // ---- inode operations -----------------------------------------------------------------

    private async ValueTask LookupAsync(FuseRequest r)
    {
        if (!Node(r, out var parent)) return;
        string name = r.Name(0);
        var res = name == "."
            ? await _top.StatAsync(Context(r), parent, null)
            : await _top.LookupAsync(Context(r), parent, name);
        if (res.Ok)
        {
            if (name == ".") r.Session.Reply(r, Entry(_nodes.Remember(res.Value.Gfid), res.Value));
            else ReplyEntry(r, res.Value, parent, name);
        }
        else if (res.Error == Errno.ENOENT && _options.NegativeTimeout > TimeSpan.Zero)
        {
            // Node id 0 with a timeout: the kernel caches "no such name" for that long.
            var (s, n) = Split(_options.NegativeTimeout);
            r.Session.Reply(r, new FuseEntryOut { EntryValid = s, EntryValidNsec = n });
        }
        else
        {
            Fail(r, res.Error);
        }
    }

    private async ValueTask GetattrAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        if (_nodes.TakeDirStat(r.NodeId) is { } kept)
        {
            FopResult<Iatt> k;
            try
            {
                k = await kept;
            }
            catch (Exception)
            {
                k = FopResult<Iatt>.Fail(Errno.EIO);
            }
            if (k.Ok)
            {
                ReplyAttr(r, k.Value);
                return;
            }
        }
        var arg = r.Arg<FuseGetattrIn>();
        FileHandle? fd = null;
        if ((arg.GetattrFlags & FuseConst.GetattrFh) != 0) _handles.TryGetValue(arg.Fh, out fd);
        var ctx = Context(r);
        var res = await _top.StatAsync(ctx, gfid, fd);
        if (fd is null && IsGone(res.Error) && OpenFileOf(gfid) is { } held) res = await _top.StatAsync(ctx, gfid, held);
        if (res.Ok) ReplyAttr(r, res.Value);
        else Fail(r, res.Error);
    }

    private static bool IsGone(Errno e) => e is Errno.ESTALE or Errno.ENOENT;

    /// <summary>
    /// An open handle of the file <paramref name="gfid"/>, if this mount has one. The kernel sends
    /// GETATTR and SETATTR of fstat/fchmod/fchown by node, without the handle, so a file that was
    /// unlinked or renamed over while open is not found by its GFID any more; a local filesystem
    /// still answers through the descriptor, and so does the graph when given the handle. Only
    /// asked after such a miss, so the scan over open handles is off the common path.
    /// </summary>
    private FileHandle? OpenFileOf(Gfid gfid)
    {
        foreach (var fd in _handles.Values)
        {
            if (!fd.IsDirectory && fd.Gfid == gfid) return fd;
        }
        return null;
    }

    private const uint SetattrKnownBits = 0xDBF; // FATTR_* bits that SetattrValid mirrors (not FH, not LOCKOWNER)

    private async ValueTask SetattrAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        var a = r.Arg<FuseSetattrIn>();
        FileHandle? fd = null;
        if ((a.Valid & FuseConst.FattrFh) != 0) _handles.TryGetValue(a.Fh, out fd);
        var req = new SetattrRequest
        {
            Valid = (SetattrValid)(a.Valid & SetattrKnownBits),
            Mode = a.Mode,
            Uid = a.Uid,
            Gid = a.Gid,
            Size = (long)a.Size,
            Atime = new Timespec((long)a.Atime, a.AtimeNsec),
            Mtime = new Timespec((long)a.Mtime, a.MtimeNsec),
            Ctime = new Timespec((long)a.Ctime, a.CtimeNsec),
        };
        ulong owner = (a.Valid & FuseConst.FattrLockOwner) != 0 ? a.LockOwner : 0;
        var ctx = Context(r, owner);
        if ((req.Valid & SetattrValid.Mode) != 0 && ctx.Uid != 0 && r.Session.PassthroughEnabled) req = await KernelKillAsync(ctx, gfid, fd, req);
        var res = await _top.SetattrAsync(ctx, gfid, fd, req);
        if (fd is null && IsGone(res.Error) && OpenFileOf(gfid) is { } held) res = await _top.SetattrAsync(ctx, gfid, held, req);
        _nodes.DirChanged(r.NodeId);
        if (res.Ok) ReplyAttr(r, res.Value);
        else Fail(r, res.Error);
    }

    /// <summary>
    /// With passthrough, writes never reach us, so the kernel drops setuid/setgid after another
    /// user's write or truncate itself: a SETATTR of the mode (with the size, for a truncate) from
    /// that (non-owner) writer. The kernel (default_permissions) lets no non-owner change a mode
    /// otherwise, so a mode change from a non-owner that only clears those bits is that drop, and
    /// goes down as the drop that a writer may make (<see cref="SetattrValid.KillSuidGid"/>)
    /// rather than a chmod the storage would refuse him.
    /// </summary>
    private async ValueTask<SetattrRequest> KernelKillAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest chmod)
    {
        const uint SetId = ModeBits.SetUid | ModeBits.SetGid;
        var st = await _top.StatAsync(ctx, gfid, fd);
        if (!st.Ok || st.Value.Uid == ctx.Uid) return chmod;
        uint now = st.Value.Mode & 0xFFF, wanted = chmod.Mode & 0xFFF;
        bool onlyClears = (now & ~SetId) == (wanted & ~SetId) && (wanted & SetId & ~now) == 0 && wanted != now;
        return onlyClears ? chmod with { Valid = (chmod.Valid & ~SetattrValid.Mode) | SetattrValid.KillSuidGid } : chmod;
    }

    private async ValueTask ReadlinkAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        var res = await _top.ReadlinkAsync(Context(r), gfid);
        if (res.Ok) r.Session.Reply(r, 0, Encoding.UTF8.GetBytes(res.Value));
        else Fail(r, res.Error);
    }

    private async ValueTask AccessAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        ReplyPlain(r, await _top.AccessAsync(Context(r), gfid, (int)r.Arg<FuseAccessIn>().Mask));
    }

    private async ValueTask StatfsAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        var res = await _top.StatfsAsync(Context(r), gfid);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        var s = res.Value;
        r.Session.Reply(r, new FuseStatfsOut
        {
            Blocks = s.Blocks, Bfree = s.BlocksFree, Bavail = s.BlocksAvailable, Files = s.Files, Ffree = s.FilesFree,
            Bsize = s.BlockSize, Frsize = s.FragmentSize, NameLen = s.NameMax,
        });
    }

    // ---- namespace ------------------------------------------------------------------------

    private async ValueTask MknodAsync(FuseRequest r)
    {
        if (!Node(r, out var parent)) return;
        var a = r.Arg<FuseMknodIn>();
        string name = r.Name(Marshal.SizeOf<FuseMknodIn>());
        ReplyNewEntry(r, await _top.MknodAsync(Context(r), parent, name, a.Mode, a.Rdev, Gfid.NewRandom()), parent, name);
    }

    private async ValueTask MkdirAsync(FuseRequest r)
    {
        if (!Node(r, out var parent)) return;
        var a = r.Arg<FuseMkdirIn>();
        string name = r.Name(Marshal.SizeOf<FuseMkdirIn>());
        ReplyNewEntry(r, await _top.MkdirAsync(Context(r), parent, name, a.Mode, Gfid.NewRandom()), parent, name);
    }

    private async ValueTask SymlinkAsync(FuseRequest r)
    {
        if (!Node(r, out var parent)) return;
        string name = r.Name(0, out int next);
        string target = r.Name(next);
        ReplyNewEntry(r, await _top.SymlinkAsync(Context(r), parent, name, target, Gfid.NewRandom()), parent, name);
    }

    private async ValueTask UnlinkAsync(FuseRequest r, bool dir)
    {
        if (!Node(r, out var parent)) return;
        string name = r.Name(0);
        var res = dir ? await _top.RmdirAsync(Context(r), parent, name) : await _top.UnlinkAsync(Context(r), parent, name);
        _nodes.DirChanged(r.NodeId);
        ReplyPlain(r, res);
        if (res.Ok) PrefetchDirStat(r, parent);
    }

    private async ValueTask RenameAsync(FuseRequest r, bool v2)
    {
        if (!Node(r, out var oldParent)) return;
        ulong newDir;
        RenameFlags flags = RenameFlags.None;
        int offset;
        if (v2)
        {
            var a = r.Arg<FuseRename2In>();
            newDir = a.NewDir;
            flags = (RenameFlags)a.Flags;
            offset = Marshal.SizeOf<FuseRename2In>();
        }
        else
        {
            newDir = r.Arg<FuseRenameIn>().NewDir;
            offset = Marshal.SizeOf<FuseRenameIn>();
        }
        if (!_nodes.TryGetGfid(newDir, out var newParent))
        {
            Fail(r, Errno.ESTALE);
            return;
        }
        string oldName = r.Name(offset, out int next);
        string newName = r.Name(next);
        var res = await _top.RenameAsync(Context(r), oldParent, oldName, newParent, newName, flags);
        _nodes.DirChanged(r.NodeId);
        _nodes.DirChanged(newDir);
        ReplyPlain(r, res);
    }

    private async ValueTask LinkAsync(FuseRequest r)
    {
        if (!Node(r, out var newParent)) return;
        var a = r.Arg<FuseLinkIn>();
        if (!_nodes.TryGetGfid(a.OldNodeId, out var target))
        {
            Fail(r, Errno.ESTALE);
            return;
        }
        string name = r.Name(Marshal.SizeOf<FuseLinkIn>());
        ReplyNewEntry(r, await _top.LinkAsync(Context(r), target, newParent, name), newParent, name);
    }

    // ---- open files -------------------------------------------------------------------------

    private ulong NewFh() => (ulong)Interlocked.Increment(ref _nextFh);

    private async ValueTask OpenAsync(FuseRequest r, bool dir)
    {
        if (!Node(r, out var gfid)) return;
        var a = r.Arg<FuseOpenIn>();
        ulong fh = NewFh();
        var fd = new FileHandle(gfid, (int)a.Flags, isDirectory: dir) { Id = fh };
        var res = dir ? await _top.OpendirAsync(Context(r), fd) : await _top.OpenAsync(Context(r), fd);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        if (!dir && TruncatesAndKills(a.Flags, a.OpenFlags))
        {
            var killed = await KillSuidGidAsync(r, gfid, fd, 0);
            if (killed != Errno.None)
            {
                await _top.ReleaseAsync(Context(r), fd);
                Fail(r, killed);
                return;
            }
        }
        _handles[fh] = fd;
        // No FOPEN_KEEP_CACHE: the kernel drops this file's pages at open (close-to-open consistency).
        r.Session.Reply(r, OpenOut(r, fh, fd, dir));
    }

    private async ValueTask CreateAsync(FuseRequest r)
    {
        if (!Node(r, out var parent)) return;
        var a = r.Arg<FuseCreateIn>();
        string name = r.Name(Marshal.SizeOf<FuseCreateIn>());
        ulong fh = NewFh();
        var fd = new FileHandle(Gfid.NewRandom(), (int)a.Flags) { Id = fh };
        var ctx = Context(r);
        var res = await _top.CreateAsync(ctx, parent, name, a.Mode, fd);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        var attr = res.Value;
        bool existed = attr.Gfid != fd.Gfid;
        if (existed)
        {
            // The name already existed (no O_EXCL): the handle must carry the file's real GFID.
            await _top.ReleaseAsync(ctx, fd);
            fd = new FileHandle(attr.Gfid, (int)a.Flags & ~(OpenFlags.Create | OpenFlags.Exclusive | OpenFlags.Truncate)) { Id = fh };
            var reopened = await _top.OpenAsync(ctx, fd);
            if (!reopened.Ok)
            {
                Fail(r, reopened.Error);
                return;
            }
        }
        if (existed && TruncatesAndKills(a.Flags, a.OpenFlags))
        {
            // An existing file truncated by the open. A new one keeps the bits it was created
            // with, as open(2) truncates only files it did not create. The node id is only known
            // below, so the decision rests on the attributes the create returned.
            if (NeedsKill(attr.Mode))
            {
                var killed = await _top.SetattrAsync(ctx, attr.Gfid, fd, new SetattrRequest { Valid = SetattrValid.KillSuidGid });
                if (!killed.Ok)
                {
                    await _top.ReleaseAsync(ctx, fd);
                    Fail(r, killed.Error);
                    return;
                }
                attr = killed.Value;
            }
        }
        _handles[fh] = fd;
        ulong node = Remember(attr.Gfid, parent, name, out bool cacheName);
        // A file this create made has no file capability: the kernel's probe for one before the
        // first write (see GetxattrAsync) needs no round trip.
        if (!existed) _nodes.NoteNoCapability(node, AttributeDeadline());
        _nodes.DirChanged(r.NodeId);
        r.Session.Reply(r, Entry(node, attr, cacheName), OpenOut(r, fh, fd, dir: false));
        PrefetchDirStat(r, parent);
    }

    /// <summary>
    /// The reply to an OPEN or CREATE. When the kernel agreed to passthrough and the graph says
    /// reads and writes of this file are plain reads and writes of one local file
    /// (<see cref="Translator.TryGetPassthroughFd"/>), the reply names that file as the backing
    /// file and the kernel reads and writes it itself: no request, no copy through this process.
    /// The kernel refuses two different backing files for one inode (EBUSY), so every open of a
    /// file shares one backing id, registered at its first open and dropped at the RELEASE of
    /// its last. A file the kernel cannot take is served through the graph as usual.
    /// </summary>
    private FuseOpenOut OpenOut(FuseRequest r, ulong fh, FileHandle fd, bool dir)
    {
        if (dir || !r.Session.PassthroughEnabled || !_top.TryGetPassthroughFd(fd, out int osFd)) return new FuseOpenOut { Fh = fh };
        int id;
        lock (_backings)
        {
            if (_backings.TryGetValue(fd.Gfid, out var shared))
            {
                shared.Opens++;
                id = shared.Id;
            }
            else
            {
                id = r.Session.OpenBacking(osFd);
                if (id < 0) return new FuseOpenOut { Fh = fh };
                _backings[fd.Gfid] = new Backing { Id = id, Opens = 1 };
            }
        }
        _backedHandles[fh] = fd.Gfid;
        return new FuseOpenOut { Fh = fh, OpenFlags = FuseConst.FopenPassthrough, BackingId = id };
    }

    /// <summary>At RELEASE: the file's backing id goes with its last passthrough open.</summary>
    private void ReleaseBacking(FuseRequest r, ulong fh)
    {
        if (!_backedHandles.TryRemove(fh, out var gfid)) return;
        lock (_backings)
        {
            if (!_backings.TryGetValue(gfid, out var shared) || --shared.Opens > 0) return;
            _backings.Remove(gfid);
            r.Session.CloseBacking(shared.Id);
        }
    }

    /// <summary>A backing id the kernel knows and how many open handles use it.</summary>
    private sealed class Backing
    {
        public int Id;
        public int Opens;
    }

    /// <summary>Files with a registered backing id (tests: none once every passthrough open is released).</summary>
    public int PassthroughFiles
    {
        get
        {
            lock (_backings) return _backings.Count;
        }
    }

    private async ValueTask ReadAsync(FuseRequest r)
    {
        var a = r.Arg<FuseReadIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        ulong owner = (a.ReadFlags & FuseConst.ReadLockOwner) != 0 ? a.LockOwner : 0;
        var res = await _top.ReadAsync(Context(r, owner), fd, (long)a.Offset, (int)a.Size);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        using var data = res.Value;
        r.Session.Reply(r, 0, data.Span);
    }

    private async ValueTask WriteAsync(FuseRequest r)
    {
        var a = r.Arg<FuseWriteIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        ulong owner = (a.WriteFlags & FuseConst.WriteLockOwner) != 0 ? a.LockOwner : 0;
        if ((a.WriteFlags & FuseConst.WriteKillSuidGid) != 0)
        {
            var killed = await KillSuidGidAsync(r, fd.Gfid, fd, owner);
            if (killed != Errno.None)
            {
                Fail(r, killed);
                return;
            }
        }
        // The data stays in the request buffer, which the request owns until its reply.
        var data = r.PayloadMemory(Marshal.SizeOf<FuseWriteIn>(), (int)a.Size);
        var res = await _top.WriteAsync(Context(r, owner), fd, (long)a.Offset, data);
        if (res.Ok) r.Session.Reply(r, new FuseWriteOut { Size = (uint)res.Value });
        else Fail(r, res.Error);
    }

    // ---- setuid/setgid dropping (FUSE_HANDLE_KILLPRIV_V2) ------------------------------------

    /// <summary>
    /// Whether a caller without CAP_FSETID changing a file of <paramref name="mode"/> must drop
    /// bits: setuid always, setgid only with group execute (without it setgid marks mandatory
    /// locking and stays), as the kernel's own rule for local filesystems.
    /// </summary>
    private static bool NeedsKill(uint mode) =>
        !ModeBits.IsDirectory(mode) && ((mode & ModeBits.SetUid) != 0 || (mode & (ModeBits.SetGid | 0x8)) == (ModeBits.SetGid | 0x8));

    private static bool TruncatesAndKills(uint flags, uint openFlags) =>
        (openFlags & FuseConst.OpenKillSuidGid) != 0 && (flags & (uint)OpenFlags.Truncate) != 0;

    /// <summary>
    /// With FUSE_HANDLE_KILLPRIV_V2 the kernel stops dropping setuid/setgid itself (it used to
    /// probe security.capability with a GETXATTR before every write and send a SETATTR of the
    /// mode); a write, truncate or O_TRUNC open by a caller without CAP_FSETID comes flagged
    /// instead, and the bits must go before the change lands. Whether there are bits is judged
    /// on the mode the kernel was last given for the node, as the kernel judged on its cached
    /// mode; only then does a SETATTR with <see cref="SetattrValid.KillSuidGid"/> go down (the
    /// storage drops the bits as root, so a writer who does not own the file can have them
    /// dropped). An unknown mode asks the storage, which looks at the file itself.
    /// </summary>
    private async ValueTask<Errno> KillSuidGidAsync(FuseRequest r, Gfid gfid, FileHandle? fd, ulong owner)
    {
        uint mode = _nodes.ModeOf(r.NodeId);
        if (mode != 0 && !NeedsKill(mode)) return Errno.None;
        var res = await _top.SetattrAsync(Context(r, owner), gfid, fd, new SetattrRequest { Valid = SetattrValid.KillSuidGid });
        if (!res.Ok) return res.Error;
        _nodes.NoteMode(r.NodeId, res.Value.Mode);
        // A WRITE reply refreshes no mode: the kernel would keep showing the dropped bits for
        // as long as it trusts its attributes. Dropping its attributes (not its pages) takes no
        // inode lock, so it is safe while the kernel waits for this very request.
        if (mode != res.Value.Mode) _session?.NotifyInvalInode(r.NodeId, -1, 0);
        return Errno.None;
    }

    private async ValueTask FlushAsync(FuseRequest r)
    {
        var a = r.Arg<FuseFlushIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        ReplyPlain(r, await _top.FlushAsync(Context(r, a.LockOwner), fd));
    }

    private async ValueTask ReleaseAsync(FuseRequest r, bool dir)
    {
        var a = r.Arg<FuseReleaseIn>();
        if (!_handles.TryRemove(a.Fh, out var fd))
        {
            Fail(r, Errno.EBADF);
            return;
        }
        var ctx = Context(r, a.LockOwner);
        if (dir)
        {
            ReplyPlain(r, await _top.ReleasedirAsync(ctx, fd));
            return;
        }
        // FUSE_RELEASE_FLOCK_UNLOCK needs no unlock of its own: the release drops the flock (and
        // OFD) locks of this open file where they are kept (Translator.ReleaseAsync), one request
        // instead of two for every file a .NET program opens.
        var released = await _top.ReleaseAsync(ctx, fd);
        ReleaseBacking(r, a.Fh);
        ReplyPlain(r, released);
    }

    private async ValueTask FsyncAsync(FuseRequest r, bool dir)
    {
        var a = r.Arg<FuseFsyncIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        bool dataOnly = (a.FsyncFlags & FuseConst.FsyncFdatasync) != 0;
        ReplyPlain(r, dir ? await _top.FsyncdirAsync(Context(r), fd, dataOnly) : await _top.FsyncAsync(Context(r), fd, dataOnly));
    }

    private async ValueTask FallocateAsync(FuseRequest r)
    {
        var a = r.Arg<FuseFallocateIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        ReplyPlain(r, await _top.FallocateAsync(Context(r), fd, (int)a.Mode, (long)a.Offset, (long)a.Length));
    }

    private async ValueTask LseekAsync(FuseRequest r)
    {
        var a = r.Arg<FuseLseekIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        var res = await _top.LseekAsync(Context(r), fd, (long)a.Offset, (int)a.Whence);
        if (res.Ok) r.Session.Reply(r, new FuseLseekOut { Offset = (ulong)res.Value });
        else Fail(r, res.Error);
    }

    private async ValueTask LkAsync(FuseRequest r)
    {
        var a = r.Arg<FuseLkIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        bool flock = (a.LkFlags & FuseConst.LkFlock) != 0;
        if (flock) fd.LockOwner = a.Owner;
        var lk = new FileLock
        {
            Type = (LockType)a.Lk.Type,
            Start = (long)a.Lk.Start,
            End = a.Lk.End >= long.MaxValue ? long.MaxValue : (long)a.Lk.End,
            Pid = a.Lk.Pid,
            Owner = a.Owner,
            ClientId = _options.ClientId,
            Kind = flock ? LockKind.Flock : LockKind.Posix,
        };
        var command = r.Opcode switch
        {
            FuseOpcode.Getlk => LockCommand.Get,
            FuseOpcode.Setlk => LockCommand.Set,
            _ => LockCommand.SetWait, // the request's interrupt token ends the wait with EINTR
        };
        var res = await _top.LkAsync(Context(r, a.Owner), fd, command, lk);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        if (command != LockCommand.Get)
        {
            if (lk.Type != LockType.Unlock) await InvalidateAtLockAsync(fd.Gfid);
            r.Session.ReplyOk(r);
            return;
        }
        var c = res.Value;
        r.Session.Reply(r, new FuseLkOut { Lk = new FuseFileLock { Start = (ulong)c.Start, End = (ulong)c.End, Type = (uint)c.Type, Pid = c.Pid } });
    }

    // ---- xattrs -------------------------------------------------------------------------------

    /// <summary>
    /// Brickfs's own xattrs (GFIDs, pending-change counters, layouts, link-to pointers, bitrot
    /// marks). Bricks trust every authenticated client with them, so the mount is where
    /// applications are kept away: setting or removing one is EPERM, reading one ENODATA, and
    /// listxattr never names them.
    /// </summary>
    internal const string ReservedXattrPrefix = "trusted.brickfs.";

    private static bool IsReserved(string name) => name.StartsWith(ReservedXattrPrefix, StringComparison.Ordinal);

    /// <summary>
    /// The kernel asks for this xattr before the first write after each attribute refresh (to
    /// drop a file capability on write). A file created through this mount is known to have
    /// none, for the attribute timeout: long enough for that probe, and no staler than the
    /// attributes (another client's setcap shows within it; a write through a brick drops a
    /// capability there anyway). A set or remove of it through this mount forgets the note.
    /// </summary>
    private const string CapabilityXattr = "security.capability";

    private async ValueTask SetxattrAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        var a = r.Arg<FuseSetxattrInCompat>();
        string name = r.Name(Marshal.SizeOf<FuseSetxattrInCompat>(), out int next);
        if (IsReserved(name))
        {
            Fail(r, Errno.EPERM);
            return;
        }
        var value = r.PayloadMemory(next, (int)a.Size);
        if (name == CapabilityXattr) _nodes.ForgetNoCapability(r.NodeId);
        var res = await _top.SetxattrAsync(Context(r), gfid, name, value, (int)a.Flags);
        _nodes.DirChanged(r.NodeId);
        ReplyPlain(r, res);
    }

    private async ValueTask GetxattrAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        var a = r.Arg<FuseGetxattrIn>();
        string name = r.Name(Marshal.SizeOf<FuseGetxattrIn>());
        if (IsReserved(name) || (name == CapabilityXattr && _nodes.KnownWithoutCapability(r.NodeId)))
        {
            Fail(r, Errno.ENODATA);
            return;
        }
        var res = await _top.GetxattrAsync(Context(r), gfid, name);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        ReplySized(r, a.Size, res.Value);
    }

    private async ValueTask ListxattrAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        var a = r.Arg<FuseGetxattrIn>();
        var res = await _top.ListxattrAsync(Context(r), gfid);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        var sb = new StringBuilder();
        foreach (var n in res.Value.Where(n => !IsReserved(n))) sb.Append(n).Append('\0');
        ReplySized(r, a.Size, Encoding.UTF8.GetBytes(sb.ToString()));
    }

    /// <summary>getxattr/listxattr: size 0 asks for the length; a buffer too small is ERANGE.</summary>
    private static void ReplySized(FuseRequest r, uint size, byte[] value)
    {
        if (size == 0) r.Session.Reply(r, new FuseGetxattrOut { Size = (uint)value.Length });
        else if (value.Length > size) r.Session.ReplyError(r, (int)Errno.ERANGE);
        else r.Session.Reply(r, 0, value);
    }

    private async ValueTask RemovexattrAsync(FuseRequest r)
    {
        if (!Node(r, out var gfid)) return;
        string name = r.Name(0);
        if (IsReserved(name))
        {
            Fail(r, Errno.EPERM);
            return;
        }
        if (name == CapabilityXattr) _nodes.ForgetNoCapability(r.NodeId);
        var res = await _top.RemovexattrAsync(Context(r), gfid, name);
        _nodes.DirChanged(r.NodeId);
        ReplyPlain(r, res);
    }

    // ---- directories ----------------------------------------------------------------------------

    private async ValueTask ReaddirAsync(FuseRequest r, bool plus)
    {
        var a = r.Arg<FuseReadIn>();
        if (!Handle(r, a.Fh, out var fd)) return;
        int size = (int)Math.Min(a.Size, 1u << 20);
        var res = plus
            ? await _top.ReaddirplusAsync(Context(r), fd, (long)a.Offset, size)
            : await _top.ReaddirAsync(Context(r), fd, (long)a.Offset, size);
        if (!res.Ok)
        {
            Fail(r, res.Error);
            return;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            int used = plus ? FillPlus(buffer.AsSpan(0, size), fd, res.Value) : Fill(buffer.AsSpan(0, size), fd, res.Value);
            r.Session.Reply(r, 0, buffer.AsSpan(0, used));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static ulong DirentIno(FileHandle dir, DirEntry e) =>
        e.Attr?.Ino ?? e.Gfid?.InodeNumber ?? (e.Name == ".." && dir.Gfid != Gfid.Root ? 1UL : dir.Gfid.InodeNumber);

    private static int Fill(Span<byte> buf, FileHandle dir, IReadOnlyList<DirEntry> entries)
    {
        int pos = 0;
        foreach (var e in entries)
        {
            int nameLen = Encoding.UTF8.GetByteCount(e.Name);
            int rec = (DirentSize + nameLen + 7) & ~7;
            if (pos + rec > buf.Length) break;
            var d = new FuseDirent { Ino = DirentIno(dir, e), Off = (ulong)e.NextOffset, NameLen = (uint)nameLen, Type = e.Type };
            MemoryMarshal.Write(buf[pos..], in d);
            Encoding.UTF8.GetBytes(e.Name, buf[(pos + DirentSize)..]);
            buf[(pos + DirentSize + nameLen)..(pos + rec)].Clear();
            pos += rec;
        }
        return pos;
    }

    /// <summary>
    /// READDIRPLUS: every entry but the dots carries a node (its lookup count grows by one, as for
    /// a LOOKUP); the dots carry node id 0, which the kernel skips. Only entries that fit count.
    /// </summary>
    private int FillPlus(Span<byte> buf, FileHandle dir, IReadOnlyList<DirEntry> entries)
    {
        int pos = 0;
        foreach (var e in entries)
        {
            int nameLen = Encoding.UTF8.GetByteCount(e.Name);
            int rec = (EntryOutSize + DirentSize + nameLen + 7) & ~7;
            if (pos + rec > buf.Length) break;
            var entry = e.Attr is { } attr && e.Gfid is not null ? Entry(Remember(attr.Gfid, dir.Gfid, e.Name, out bool cacheName), attr, cacheName) : default;
            MemoryMarshal.Write(buf[pos..], in entry);
            var d = new FuseDirent { Ino = DirentIno(dir, e), Off = (ulong)e.NextOffset, NameLen = (uint)nameLen, Type = e.Type };
            MemoryMarshal.Write(buf[(pos + EntryOutSize)..], in d);
            Encoding.UTF8.GetBytes(e.Name, buf[(pos + EntryOutSize + DirentSize)..]);
            buf[(pos + EntryOutSize + DirentSize + nameLen)..(pos + rec)].Clear();
            pos += rec;
        }
        return pos;
    }
}
