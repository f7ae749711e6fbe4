using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Brickfs.ClientFuse.Host;
using Brickfs.ClientFuse.Interop;

namespace Brickfs.ClientFuse.Fuse;

/// <summary>Answers kernel requests. The session calls it from its reader threads; it runs inline until its first await.</summary>
public interface IFuseRequestHandler
{
    /// <summary>Handles one request and replies through the session (except FORGET/BATCH_FORGET, which take no reply).</summary>
    ValueTask HandleAsync(FuseRequest request);
}

public sealed record FuseSessionOptions
{
    public string DevicePath { get; init; } = "/dev/fuse";
    public string Source { get; init; } = "brickfs";
    public string FsType { get; init; } = "fuse.brickfs";
    public bool ReadOnly { get; init; }
    public int ReaderThreads { get; init; } = 4;
    public int MaxWrite { get; init; } = 1 << 20;
    public ushort MaxBackground { get; init; } = 64;
    public ushort CongestionThreshold { get; init; } = 48;
    public TimeSpan InitTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>io_uring when the kernel offers it (about twice the small-request rate of /dev/fuse here), else /dev/fuse.</summary>
    public FuseTransport Transport { get; init; } = FuseTransport.Auto;
    /// <summary>
    /// The mount's read-ahead window in KiB, set through the mount's backing-device entry in
    /// sysfs once INIT is answered (the kernel caps what INIT may ask at its 128 KiB default).
    /// 4 MiB is what Btrfs gives itself; each window costs a brick round trip, so small windows
    /// leave a sequential reader waiting on the network. Null leaves the kernel's default.
    /// </summary>
    public int? ReadaheadKiB { get; init; } = DefaultReadaheadKiB;
    public const int DefaultReadaheadKiB = 4096;
    /// <summary>
    /// The graph's storage runs in this process (no protocol/client): its reads block their
    /// thread on the disk instead of awaiting a brick, so big reads leave the io_uring queue
    /// threads (<see cref="FuseUringQueue"/>).
    /// </summary>
    public bool StorageInProcess { get; init; }
    /// <summary>
    /// Ask the kernel for passthrough (FUSE_PASSTHROUGH): opens may then hand it a backing file
    /// (<see cref="FuseSession.OpenBacking"/>) whose reads and writes it does itself.
    /// </summary>
    public bool Passthrough { get; init; }
}

/// <summary>What the kernel and Brickfs agreed on at INIT.</summary>
public sealed record FuseNegotiated(uint Major, uint Minor, ulong KernelFlags, ulong Flags, uint MaxWrite, ushort MaxPages, uint MaxReadahead)
{
    public bool Has(ulong flag) => (Flags & flag) != 0;
}

public sealed class FuseMountException(string message) : Exception(message);

/// <summary>
/// One FUSE connection: /dev/fuse opened, mounted with mount(2), INIT negotiated, and several
/// reader threads each blocking in read(2). Requests are dispatched concurrently and answered
/// in any order; the session knows nothing about what the requests mean beyond INIT,
/// INTERRUPT and DESTROY.
/// </summary>
public sealed class FuseSession : IAsyncDisposable
{
    /// <summary>Requests at most this big are copied into a small array so the reader keeps its big buffer.</summary>
    private const int SmallRequest = 8192;

    /// <summary>
    /// Flags Brickfs asks for. Writeback cache stays off: close-to-open and lock coherence need
    /// every write to reach the graph. HANDLE_KILLPRIV_V2 lets the bridge drop setuid/setgid
    /// where the kernel flags it, instead of the kernel probing security.capability with a
    /// GETXATTR round trip before every write (the probe still runs once after each attribute
    /// refresh; with v2 the kernel remembers the answer until then).
    /// </summary>
    public const ulong WantedFlags =
        FuseConst.AsyncRead | FuseConst.ParallelDirops | FuseConst.DoReaddirplus | FuseConst.ReaddirplusAuto |
        FuseConst.PosixLocks | FuseConst.FlockLocks | FuseConst.AtomicOTrunc | FuseConst.ExportSupport |
        FuseConst.BigWrites | FuseConst.AutoInvalData | FuseConst.AsyncDio | FuseConst.MaxPages | FuseConst.HandleKillprivV2;

    private readonly FuseSessionOptions _options;
    private readonly IFuseRequestHandler _handler;
    private readonly Log _log;
    private readonly BufferPool _pool;
    private readonly ConcurrentDictionary<ulong, FuseRequest> _inflight = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Thread> _readers = [];
    /// <summary>INTERRUPTs that named a request not seen yet (a ring request between its completion and its dispatch), by unique.</summary>
    private readonly ConcurrentDictionary<ulong, long> _earlyInterrupts = new();
    private FuseUringTransport? _uring;
    private int _fd = -1;
    private int _runningReaders;
    private int _unmounted;
    /// <summary>The mount's device, "major:minor" (null if mountinfo did not show the mount).</summary>
    private string? _device;

    /// <summary>
    /// The fusectl connection number: the device number as the kernel encodes it internally
    /// ((major &lt;&lt; 20) | minor; FUSE mounts have major 0, so it is the minor).
    /// </summary>
    private uint? ConnectionId => _device?.Split(':') is [var major, var minor]
        && uint.TryParse(major, CultureInfo.InvariantCulture, out uint ma) && uint.TryParse(minor, CultureInfo.InvariantCulture, out uint mi)
        ? (ma << 20) | mi : null;

    private FuseSession(string mountPoint, FuseSessionOptions options, IFuseRequestHandler handler, Log log)
    {
        MountPoint = mountPoint;
        _options = options;
        _handler = handler;
        _log = log;
        _pool = new BufferPool(options.MaxWrite + 64 * 1024, keep: Math.Max(16, options.ReaderThreads * 4));
    }

    public string MountPoint { get; }

    /// <summary>What this session was started with.</summary>
    internal FuseSessionOptions Options => _options;

    public FuseNegotiated? Negotiated { get; private set; }

    /// <summary>Completes once INIT is answered: from then on the mount serves requests.</summary>
    public Task Ready => _ready.Task;

    /// <summary>Completes when every reader has stopped (the kernel ended the connection: unmount or abort).</summary>
    public Task Completion => _completion.Task;

    /// <summary>The transport requests use after INIT: <see cref="FuseTransport.Uring"/> or <see cref="FuseTransport.Dev"/>.</summary>
    public FuseTransport TransportInUse { get; private set; } = FuseTransport.Dev;

    /// <summary>Requests that arrived through each io_uring queue so far, by qid = CPU (empty on /dev/fuse).</summary>
    public long[] RingRequestsByQueue => _uring?.DeliveredByQueue ?? [];

    /// <summary>Number of requests between read and reply right now.</summary>
    public int InFlight => _inflight.Count;

    /// <summary>
    /// Opens the device, mounts <paramref name="mountPoint"/> and starts the readers; returns once
    /// INIT is answered. Failures throw <see cref="FuseMountException"/> with a one-line reason.
    /// </summary>
    public static async Task<FuseSession> MountAsync(string mountPoint, FuseSessionOptions options, IFuseRequestHandler handler, Log log)
    {
        var session = new FuseSession(Path.GetFullPath(mountPoint).TrimEnd('/') is { Length: > 0 } p ? p : "/", options, handler, log);
        session.Start();
        try
        {
            var done = await Task.WhenAny(session.Ready, session.Completion, Task.Delay(options.InitTimeout));
            if (done != session.Ready)
                throw new FuseMountException(done == session.Completion
                    ? "the kernel closed the FUSE connection before INIT"
                    : $"no INIT from the kernel within {options.InitTimeout.TotalSeconds:0} s");
            await session.Ready;
            return session;
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }
    }

    private void Start()
    {
        int fd = Native.Open(_options.DevicePath, Native.O_RDWR | Native.O_CLOEXEC);
        if (fd < 0) throw new FuseMountException($"cannot open {_options.DevicePath}: {Native.Describe(-fd)}");
        _fd = fd;
        string data = $"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions";
        ulong flags = Native.MS_NOSUID | Native.MS_NODEV | (_options.ReadOnly ? Native.MS_RDONLY : 0);
        int e = Native.Mount(_options.Source, MountPoint, _options.FsType, flags, data);
        if (e != 0)
        {
            Native.Close(fd);
            _fd = -1;
            throw new FuseMountException($"mount {MountPoint}: {Native.Describe(e)}");
        }
        _device = FindDevice(MountPoint);
        _log.Info("fuse.mounted", $"dir={MountPoint} dev={_device} conn={ConnectionId} readers={_options.ReaderThreads}");
        _runningReaders = _options.ReaderThreads;
        for (int i = 0; i < _options.ReaderThreads; i++)
        {
            var t = new Thread(ReaderLoop) { IsBackground = true, Name = $"fuse-reader-{i}" };
            _readers.Add(t);
            t.Start();
        }
    }

    /// <summary>
    /// The mount's device as mountinfo shows it ("major:minor", the name of its backing device
    /// under /sys/class/bdi), from /proc/self/mountinfo.
    /// </summary>
    private static string? FindDevice(string mountPoint)
    {
        try
        {
            string? found = null;
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                var f = line.Split(' ');
                if (f.Length > 4 && Unescape(f[4]) == mountPoint && line.Contains(" - fuse", StringComparison.Ordinal))
                    found = f[2];
            }
            return found;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static string Unescape(string s) => s.Contains('\\')
        ? System.Text.RegularExpressions.Regex.Replace(s, @"\\([0-7]{3})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString())
        : s;

    private void ReaderLoop()
    {
        byte[] buffer = _pool.Rent();
        try
        {
            while (true)
            {
                int n = Native.Read(_fd, buffer);
                if (n < 0)
                {
                    int err = -n;
                    if (err is Native.EINTR or Native.EAGAIN or Native.ENOENT) continue; // ENOENT: the request was interrupted before we read it
                    if (err != Native.ENODEV) _log.Error("fuse.read-failed", $"dir={MountPoint} errno={err}");
                    break;
                }
                if (n < FuseRequest.HeaderSize)
                {
                    _log.Error("fuse.short-request", $"bytes={n}");
                    continue;
                }
                FuseRequest request;
                if (n <= SmallRequest)
                {
                    var small = ArrayPool<byte>.Shared.Rent(n);
                    buffer.AsSpan(0, n).CopyTo(small);
                    request = new FuseRequest(small, n, pool: null);
                }
                else
                {
                    request = new FuseRequest(buffer, n, _pool);
                    buffer = _pool.Rent();
                }
                DispatchRequest(request);
            }
        }
        catch (Exception e)
        {
            _log.Error("fuse.reader-crashed", $"dir={MountPoint} error=\"{e}\"");
        }
        finally
        {
            _pool.Return(buffer);
            if (Interlocked.Decrement(ref _runningReaders) == 0)
            {
                _log.Info("fuse.connection-ended", $"dir={MountPoint}");
                _ready.TrySetException(new FuseMountException("the FUSE connection ended"));
                _completion.TrySetResult();
            }
        }
    }

    /// <summary>Runs one request (from a reader or a ring queue thread) inline until the handler's first await.</summary>
    internal void DispatchRequest(FuseRequest request)
    {
        request.Session = this;
        switch (request.Opcode)
        {
            case FuseOpcode.Init:
                HandleInit(request);
                request.Dispose();
                return;
            case FuseOpcode.Interrupt:
                HandleInterrupt(request);
                request.Dispose();
                return;
            case FuseOpcode.Destroy:
                Reply(request, 0, default);
                request.Dispose();
                return;
            case FuseOpcode.Forget or FuseOpcode.BatchForget or FuseOpcode.NotifyReply:
                break;
            default:
                var cts = new CancellationTokenSource();
                request.Interrupt = cts;
                request.Cancellation = cts.Token;
                _inflight[request.Unique] = request;
                if (!_earlyInterrupts.IsEmpty && _earlyInterrupts.TryRemove(request.Unique, out _)) _ = cts.CancelAsync();
                break;
        }

        ValueTask task;
        try
        {
            task = _handler.HandleAsync(request);
        }
        catch (Exception e)
        {
            Failed(request, e);
            Finish(request);
            return;
        }
        if (task.IsCompleted)
        {
            try
            {
                task.GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                Failed(request, e);
            }
            Finish(request);
        }
        else
        {
            _ = FinishLaterAsync(task, request);
        }
    }

    private async Task FinishLaterAsync(ValueTask task, FuseRequest request)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Failed(request, e);
        }
        Finish(request);
    }

    private void Failed(FuseRequest request, Exception e)
    {
        _log.Error("fuse.handler-failed", $"dir={MountPoint} op={request.Opcode} unique={request.Unique} node={request.NodeId} errno=EIO error=\"{e.GetType().Name}: {e.Message}\"");
        if (TakesReply(request.Opcode)) ReplyError(request, Native.EIO);
    }

    private void Finish(FuseRequest request)
    {
        if (TakesReply(request.Opcode) && !request.Replied)
        {
            _log.Error("fuse.no-reply", $"op={request.Opcode} unique={request.Unique}");
            ReplyError(request, 5);
        }
        request.Dispose();
    }

    private static bool TakesReply(FuseOpcode op) => op is not (FuseOpcode.Forget or FuseOpcode.BatchForget or FuseOpcode.NotifyReply);

    private void HandleInit(FuseRequest request)
    {
        var init = request.Arg<FuseInitIn>();
        if (init.Major < FuseConst.KernelVersion)
        {
            _log.Error("fuse.init-unsupported", $"kernel={init.Major}.{init.Minor}");
            ReplyError(request, 71 /* EPROTO */);
            return;
        }
        if (init.Major > FuseConst.KernelVersion)
        {
            // The kernel offers a newer major: answer ours only; it retries INIT with it.
            var mine = new FuseInitOut { Major = FuseConst.KernelVersion, Minor = FuseConst.KernelMinorVersion };
            Reply(request, 0, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseInitOut>(in mine)));
            return;
        }
        ulong kernelFlags = init.Flags;
        if ((kernelFlags & FuseConst.InitExt) != 0) kernelFlags |= (ulong)init.Flags2 << 32;
        ulong flags = kernelFlags & WantedFlags;
        string why = "";
        if (_options.Transport != FuseTransport.Dev)
        {
            if ((kernelFlags & FuseConst.OverIoUring) == 0)
                why = "the kernel does not offer FUSE over io_uring (kernel older than 6.14, or /sys/module/fuse/parameters/enable_uring is N)";
            else
            {
                int maxPayload = Math.Max(Math.Max(FuseConst.MinReadBuffer, _options.MaxWrite), Math.Min(256, _options.MaxWrite / 4096) * 4096);
                _uring = FuseUringTransport.TryPrepare(this, _fd, maxPayload, _log, out why);
                if (_uring is not null) flags |= FuseConst.OverIoUring;
            }
        }
        // Backing files are Btrfs (not stacked themselves): depth 1 is all passthrough needs.
        uint maxStackDepth = 0;
        if (_options.Passthrough && (kernelFlags & FuseConst.Passthrough) != 0)
        {
            flags |= FuseConst.Passthrough;
            maxStackDepth = 1;
            // A passthrough write never reaches us, so we could not drop setuid/setgid on it as
            // HANDLE_KILLPRIV_V2 promises; without it the kernel drops them itself (a SETATTR).
            flags &= ~FuseConst.HandleKillprivV2;
        }
        uint minor = Math.Min(init.Minor, FuseConst.KernelMinorVersion);
        ushort maxPages = (ushort)Math.Min(256, _options.MaxWrite / 4096);
        var reply = new FuseInitOut
        {
            Major = FuseConst.KernelVersion,
            Minor = minor,
            MaxReadahead = init.MaxReadahead,
            Flags = (uint)flags | (uint)(kernelFlags & FuseConst.InitExt),
            Flags2 = (uint)(flags >> 32),
            MaxBackground = _options.MaxBackground,
            CongestionThreshold = _options.CongestionThreshold,
            MaxWrite = (uint)_options.MaxWrite,
            TimeGran = 1,
            MaxPages = maxPages,
            MaxStackDepth = maxStackDepth,
        };
        Negotiated = new FuseNegotiated(FuseConst.KernelVersion, minor, kernelFlags, flags, reply.MaxWrite, maxPages, reply.MaxReadahead);
        Reply(request, 0, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseInitOut>(in reply)));
        SetReadahead();
        _log.Info("fuse.init", $"dir={MountPoint} kernel={init.Major}.{init.Minor} proto=7.{minor} flags=0x{flags:x} max_write={reply.MaxWrite} max_pages={maxPages} passthrough={(maxStackDepth > 0 ? "on" : "off")}");
        if (_uring is not null)
        {
            int e = _uring.Register(TimeSpan.FromSeconds(10));
            if (e == 0) TransportInUse = FuseTransport.Uring;
            else why = $"registering the io_uring queues failed: {Native.Describe(e)} (errno {e})";
        }
        if (TransportInUse == FuseTransport.Uring)
            _log.Info("fuse.transport", $"dir={MountPoint} transport=uring queues={_uring!.QueueCount}");
        else
            _log.Info("fuse.transport", $"dir={MountPoint} transport=dev{(why.Length > 0 ? $" reason=\"{why}\"" : "")}");
        if (_options.Transport == FuseTransport.Uring && TransportInUse != FuseTransport.Uring)
        {
            _ready.TrySetException(new FuseMountException($"fuse-transport=uring: {why}"));
            return;
        }
        _ready.TrySetResult();
    }

    /// <summary>The kernel agreed to passthrough opens (<see cref="FuseSessionOptions.Passthrough"/>).</summary>
    public bool PassthroughEnabled => Negotiated?.Has(FuseConst.Passthrough) == true;

    /// <summary>
    /// Registers an open file of this process as a backing file for passthrough opens: the
    /// backing id to put in an OPEN or CREATE reply, or -errno (EPERM when passthrough was not
    /// agreed). The id must stay registered until the kernel has taken the reply (until RELEASE of
    /// that open is simplest); then <see cref="CloseBacking"/>. The first failure is logged.
    /// </summary>
    public int OpenBacking(int fileFd)
    {
        if (!PassthroughEnabled) return -1; // -EPERM
        int id = Native.OpenBacking(_fd, fileFd);
        if (id < 0 && Interlocked.Exchange(ref _backingFailureLogged, 1) == 0)
            _log.Warn("fuse.backing-open", $"dir={MountPoint} errno={-id}; files the kernel cannot take are read and written through the graph");
        return id;
    }

    private int _backingFailureLogged;

    /// <summary>Drops a backing id from <see cref="OpenBacking"/>; opens made with it keep working.</summary>
    public void CloseBacking(int backingId)
    {
        int e = Native.CloseBacking(_fd, backingId);
        if (e != 0) _log.Warn("fuse.backing-close", $"dir={MountPoint} id={backingId} errno={e}");
    }

    /// <summary>
    /// Writes the read-ahead window into the mount's backing device (bdi major:minor). The kernel
    /// applied our INIT reply while the reply was written, so this comes after it and stays.
    /// A failure costs speed only: logged, the mount goes on.
    /// </summary>
    private void SetReadahead()
    {
        if (_options.ReadaheadKiB is not { } kib || _device is null) return;
        string path = $"/sys/class/bdi/{_device}/read_ahead_kb";
        try
        {
            File.WriteAllText(path, kib.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warn("fuse.readahead", $"dir={MountPoint} path={path} error=\"{e.Message}\"; the kernel's default stays");
        }
    }

    private void HandleInterrupt(FuseRequest request)
    {
        ulong target = request.Arg<FuseInterruptIn>().Unique;
        if (_inflight.TryGetValue(target, out var victim) && victim.Interrupt is { } cts)
        {
            // Cancel off the reader thread: cancellation callbacks may run translator code.
            _ = cts.CancelAsync();
            return; // INTERRUPT itself takes no reply; the victim answers (EINTR or its result).
        }
        if (_uring is not null)
        {
            // A ring request is not pending in the /dev/fuse queue, so the EAGAIN below cannot make
            // the kernel resend this INTERRUPT: remember it for the dispatch that is about to come.
            RememberEarlyInterrupt(target);
            if (_inflight.TryGetValue(target, out victim) && _earlyInterrupts.TryRemove(target, out _) && victim.Interrupt is { } late)
            {
                _ = late.CancelAsync();
                return;
            }
        }
        // Not (yet) known: EAGAIN makes the kernel queue the INTERRUPT again if the request is still pending.
        ReplyError(request, Native.EAGAIN);
    }

    private void RememberEarlyInterrupt(ulong unique)
    {
        long now = Environment.TickCount64;
        if (_earlyInterrupts.Count > 1024)
            foreach (var (u, at) in _earlyInterrupts)
                if (now - at > 10_000) _earlyInterrupts.TryRemove(u, out _);
        _earlyInterrupts[unique] = now;
    }

    // ---- replies --------------------------------------------------------------------------

    public void ReplyError(FuseRequest request, int errno)
    {
        if (errno == Native.EIO) NoteIoError(request);
        Reply(request, errno, default);
    }

    private long _ioErrorSecond;
    private int _ioErrorsLogged;

    /// <summary>
    /// An I/O error handed to a program is worth a line for whoever runs the mount (which request,
    /// on which node); at most 10 lines a second, so a program that keeps using a fenced handle
    /// does not flood the log.
    /// </summary>
    private void NoteIoError(FuseRequest request)
    {
        long second = Environment.TickCount64 / 1000;
        if (Interlocked.Exchange(ref _ioErrorSecond, second) != second) Interlocked.Exchange(ref _ioErrorsLogged, 0);
        if (Interlocked.Increment(ref _ioErrorsLogged) <= 10) _log.Warn("fuse.eio", $"dir={MountPoint} request={request} pid={request.Header.Pid}");
    }

    public void ReplyOk(FuseRequest request) => Reply(request, 0, default);

    public void Reply<T>(FuseRequest request, in T arg) where T : unmanaged =>
        Reply(request, 0, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in arg)));

    public void Reply<T1, T2>(FuseRequest request, in T1 a, in T2 b) where T1 : unmanaged where T2 : unmanaged =>
        Reply(request, 0, MemoryMarshal.AsBytes(new ReadOnlySpan<T1>(in a)), MemoryMarshal.AsBytes(new ReadOnlySpan<T2>(in b)));

    /// <summary>Sends one reply: the header and up to two payload segments in one writev, no copy of the payload.</summary>
    public void Reply(FuseRequest request, int errno, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> more = default)
    {
        if (!request.TryMarkReplied()) return;
        if (request.Interrupt is not null) _inflight.TryRemove(request.Unique, out _);
        if (errno != 0) payload = more = default;
        if (request.Entry is { } entry)
        {
            request.Detach();
            entry.Queue.Commit(entry, request.Unique, errno, payload, more);
            return;
        }
        var header = new FuseOutHeader { Len = (uint)(16 + payload.Length + more.Length), Error = -errno, Unique = request.Unique };
        int r = Native.Writev(_fd, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseOutHeader>(in header)), payload, more);
        // ENOENT: the request was interrupted and is gone; the kernel no longer wants the answer.
        if (r < 0 && -r != Native.ENOENT && -r != Native.ENODEV)
            _log.Error("fuse.reply-failed", $"op={request.Opcode} unique={request.Unique} errno={-r}");
    }

    // ---- notifications ---------------------------------------------------------------------

    /// <summary>
    /// Drops the kernel's cached attributes of <paramref name="nodeId"/> and its cached pages in
    /// [off, off+len) (len 0 = to the end; off -1 = attributes only). Returns 0 or the errno
    /// (ENOENT: the kernel holds nothing for it). Must not be called from a handler of a request
    /// on the same inode: the kernel may hold its lock while waiting for that reply.
    /// </summary>
    public int NotifyInvalInode(ulong nodeId, long off, long len)
    {
        var arg = new FuseNotifyInvalInodeOut { Ino = nodeId, Off = off, Len = len };
        return Notify(FuseConst.NotifyInvalInode, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseNotifyInvalInodeOut>(in arg)), default);
    }

    /// <summary>Drops the kernel's cached lookup of <paramref name="name"/> in <paramref name="parentNodeId"/>.</summary>
    public int NotifyInvalEntry(ulong parentNodeId, string name)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name + "\0");
        var arg = new FuseNotifyInvalEntryOut { Parent = parentNodeId, NameLen = (uint)(nameBytes.Length - 1) };
        return Notify(FuseConst.NotifyInvalEntry, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseNotifyInvalEntryOut>(in arg)), nameBytes);
    }

    private int Notify(int code, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (_fd < 0) return Native.ENODEV;
        var header = new FuseOutHeader { Len = (uint)(16 + a.Length + b.Length), Error = code, Unique = 0 };
        int r = Native.Writev(_fd, MemoryMarshal.AsBytes(new ReadOnlySpan<FuseOutHeader>(in header)), a, b);
        return r < 0 ? -r : 0;
    }

    // ---- shutdown ---------------------------------------------------------------------------

    /// <summary>
    /// Unmounts (falling back to a lazy unmount when busy) and waits for the readers to stop; if
    /// open files keep a lazily unmounted connection alive, aborts it through fusectl.
    /// </summary>
    public async Task UnmountAsync(TimeSpan wait)
    {
        if (Interlocked.Exchange(ref _unmounted, 1) == 0 && !Completion.IsCompleted)
        {
            string? shown = _device is null ? null : FindDevice(MountPoint);
            if (shown != _device)
            {
                // umount(2) takes a path: it would end whatever mount is on top there now (one
                // stacked over ours, or a newer one after ours was lazily detached). End ours instead.
                _log.Warn("fuse.umount-skipped", $"dir={MountPoint} dev={_device} shown={shown ?? "none"}; ending our connection only");
                Abort();
            }
            else
            {
                int e = Native.Umount2(MountPoint, 0);
                if (e != 0)
                {
                    _log.Warn("fuse.umount-busy", $"dir={MountPoint} errno={e}; detaching");
                    e = Native.Umount2(MountPoint, Native.MNT_DETACH);
                    if (e != 0) _log.Warn("fuse.umount-failed", $"dir={MountPoint} errno={e}");
                }
            }
        }
        if (await Task.WhenAny(Completion, Task.Delay(wait)) != Completion) Abort();
        await Task.WhenAny(Completion, Task.Delay(wait));
    }

    /// <summary>Ends the connection at once: every pending and future request fails with ENOTCONN.</summary>
    public void Abort()
    {
        if (ConnectionId is not { } connection || Completion.IsCompleted) return;
        const string fusectl = "/sys/fs/fuse/connections";
        string path = $"{fusectl}/{connection}/abort";
        if (!File.Exists(path)) Native.Mount("fusectl", fusectl, "fusectl", 0, null);
        try
        {
            File.WriteAllText(path, "1");
            _log.Warn("fuse.aborted", $"dir={MountPoint} conn={connection}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error("fuse.abort-failed", $"dir={MountPoint} error=\"{e.Message}\"");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_fd < 0) return;
        if (_runningReaders > 0) await UnmountAsync(TimeSpan.FromSeconds(5));
        _uring?.Dispose();
        if (Completion.IsCompleted)
        {
            Native.Close(_fd);
            _fd = -1;
        }
        // Otherwise a reader is still inside read(2); the descriptor closes with the process.
    }
}
