using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Protocol.Wire;
using Google.Protobuf;
using CoreDirEntry = Brickfs.Translators.Core.DirEntry;
using CoreFileLock = Brickfs.Translators.Core.FileLock;
using CoreGfid = Brickfs.Translators.Core.Gfid;
using CoreSetattr = Brickfs.Translators.Core.SetattrRequest;
using Iatt = Brickfs.Translators.Core.Iatt;

namespace Brickfs.Translators.Protocol;

/// <summary>
/// protocol/client: a leaf that sends every fop to one brick (<c>remote-subvolume</c> on
/// <c>remote-host:remote-port</c>). Contract for callers above:
/// <list type="bullet">
/// <item>Init never fails because the brick is down: the client starts disconnected and keeps
/// reconnecting (0.1 s doubling to 5 s); meanwhile fops fail with ENOTCONN.</item>
/// <item>No fop waits past ping-timeout once the brick stops answering: pings go out every
/// ping-timeout/3, and when nothing arrives for ping-timeout the connection is dropped and every
/// waiting fop ends with ENOTCONN.</item>
/// <item>Open files survive a reconnect: after each reconnect every open FileHandle is re-opened
/// by GFID with its original flags minus O_CREAT/O_EXCL/O_TRUNC and the caller's credentials
/// from the first open. A file that can no longer be opened (deleted meanwhile) gives EBADF.</item>
/// <item>Leases and fencing (translators/Features/Locks/LEASES.md): every frame renews this
/// client's lease on the brick; pings go out at least every lease/3. Locks are held under the
/// lease of one connection (its epoch): they are not re-acquired after a reconnect. A file
/// handle whose file had locks granted when the connection was lost (or when nothing arrived
/// for lease - margin while locks were held, which ends the connection first) is fenced: every
/// fop on it fails with EIO until it is released, even once the brick is back. Requests on
/// files with locks carry the lock epoch, so the brick refuses them (ESTALE, answered here as
/// EIO) if they ever arrive under another lease.</item>
/// <item>A fop's continuation (the caller's code after awaiting it) may run on the thread that
/// read its reply from the socket, as GlusterFS runs callbacks on its epoll threads: callers
/// await, and never block a thread waiting for another fop of the same brick.</item>
/// <item>A flush is a round trip only while this client may hold locks on the file (all a flush
/// does on the brick is drop the caller's POSIX locks; writes are acknowledged when they land,
/// so close has no error left to collect).</item>
/// </list>
/// </summary>
public sealed class ProtocolClientTranslator : Translator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("remote-host", OptionType.String, "127.0.0.1", "host of the brick's protocol/server"),
        new("remote-port", OptionType.Int, "24100", "port of the brick's protocol/server") { Min = 1, Max = 65535 },
        new("remote-subvolume", OptionType.String, null, "the brick: the volume directly below protocol/server in the brick volfile") { Required = true },
        new("transport-type", OptionType.Choice, "tcp", "tcp, or memory: an in-process protocol/server with transport-type memory") { Choices = ["tcp", "memory"] },
        new("ping-timeout", OptionType.Seconds, "10", "seconds without any answer from the brick before its fops fail with ENOTCONN (network.ping-timeout)") { Min = 0, Max = 3600 },
        new("auth.secret", OptionType.String, "", "the secret the brick's protocol/server requires (its auth.secret)"),
        new("volume-name", OptionType.String, "", "the volume name sent in the handshake"),
        new("client-id", OptionType.String, "", "identity of this mount on the brick (scopes lock owners); empty = generated, unique per client translator"),
        new("frame-max", OptionType.Size, "4160KB", "largest frame accepted or sent (header + message + bulk)") { Min = 64 * 1024, Max = 1L << 30 },
        new("latency-stats", OptionType.Seconds, "0", "every this many seconds, log each fop's round trips to the brick since the last time (count, mean, max, histogram); 0 = off") { Min = 0, Max = 3600 },
    ];

    public static TranslatorType Type { get; } = new("protocol/client", OptionSpecs, 0, 0,
        o => new ProtocolClientTranslator(o), "sends every fop to one brick over the wire protocol");

    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    /// <summary>Client state of an open file: the brick's handle id, valid in one session.</summary>
    private sealed class RemoteFd(Caller opener)
    {
        public readonly Caller Opener = opener;
        public ulong Handle;
        public long Generation;
        public bool Lost;

        /// <summary>Locks this file relied on were lost with a lease: EIO for everything until release.</summary>
        public volatile bool Fenced;
        public readonly SemaphoreSlim Reopening = new(1, 1);
    }

    /// <summary>
    /// A file on which this client may hold locks on the brick right now, and the lease epoch they
    /// were granted under. Owners leave on a whole-file unlock, on flush (POSIX) and release
    /// (flock/OFD); an entry is dropped when its last owner leaves, so an idle open database is
    /// not fenced when a connection is lost between transactions.
    /// </summary>
    private sealed class LockedInode(ulong epoch)
    {
        public readonly ulong Epoch = epoch;
        public readonly HashSet<(ulong Owner, LockKind Kind)> Owners = [];
    }

    private readonly string _host;
    private readonly int _port;
    private readonly bool _inMemory;
    private readonly string _remoteSubvolume;
    private readonly string _secret;
    private readonly string _volumeName;
    private readonly long _frameMax;
    private readonly ConcurrentDictionary<FileHandle, RemoteFd> _open = new(ReferenceEqualityComparer.Instance);
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile ClientSession? _session;
    private Task? _connectLoop;
    private Timer? _ticker;
    private long _generation;
    private long _tickMs;
    private readonly Dictionary<CoreGfid, LockedInode> _locked = [];
    private readonly Lock _lockedSync = new();
    private readonly FopStats? _stats;
    private readonly long _statsEveryMs;
    private long _statsLoggedAt = Environment.TickCount64;

    public ProtocolClientTranslator(TranslatorOptions options)
    {
        _host = options.GetString("remote-host");
        _port = (int)options.GetInt("remote-port");
        _inMemory = options.GetString("transport-type") == "memory";
        _remoteSubvolume = options.GetString("remote-subvolume");
        _secret = options.GetString("auth.secret");
        _volumeName = options.GetString("volume-name");
        _frameMax = options.GetSize("frame-max");
        var statsEvery = options.GetSeconds("latency-stats");
        if (statsEvery > TimeSpan.Zero)
        {
            _stats = new FopStats();
            _statsEveryMs = (long)statsEvery.TotalMilliseconds;
        }
        PingTimeout = options.GetSeconds("ping-timeout");
        string id = options.GetString("client-id");
        ClientId = id.Length > 0 ? id : $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";
        Connector = DefaultConnectAsync;
    }

    private long _pingTimeoutTicks;

    /// <summary>Changes live (<see cref="Reconfigure"/>): the next ping tick uses the new value.</summary>
    public TimeSpan PingTimeout
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _pingTimeoutTicks));
        private set => Interlocked.Exchange(ref _pingTimeoutTicks, value.Ticks);
    }

    /// <summary>ping-timeout changes live; everything else names the connection and needs a new graph.</summary>
    public override string? CanReconfigure(IReadOnlyCollection<string> changed) =>
        changed.All(o => o == "ping-timeout") ? null : base.CanReconfigure(changed.Where(o => o != "ping-timeout").ToList());

    public override void Reconfigure(TranslatorOptions options)
    {
        PingTimeout = options.GetSeconds("ping-timeout");
        // Tick often enough for the new timeout; ticking faster than an old, longer one needed is harmless.
        TickAtLeastEvery((long)Math.Clamp(PingTimeout.TotalMilliseconds / 8, 25, 1000));
    }

    public string ClientId { get; }

    /// <summary>Where log lines go; set before InitAsync.</summary>
    public ProtocolLog Log { get; set; } = ProtocolLog.Stderr;

    /// <summary>How a connection is made; tests replace it (e.g. with a server's ConnectInMemory) before InitAsync.</summary>
    public Func<CancellationToken, ValueTask<Transport>> Connector { get; set; }

    /// <summary>Whether a handshaken connection is up right now.</summary>
    public bool IsConnected => _session is { IsDead: false };

    /// <summary>How many times a connection was established (1 after the first connect).</summary>
    public long Connects => Interlocked.Read(ref _generation);

    /// <summary>Why the last connection attempt failed or the last connection ended.</summary>
    public string? LastError
    {
        get => _session is { CloseReason: { } reason } ? reason : _lastError;
        private set => _lastError = value;
    }

    private string? _lastError;

    private async ValueTask<Transport> DefaultConnectAsync(CancellationToken cancellation) => _inMemory
        ? InMemoryNetwork.Connect($"{_host}:{_port}")
        : await SocketTransport.ConnectAsync(_host, _port, cancellation);

    /// <summary>Starts connecting; waits for the first attempt (bounded by ping-timeout) but succeeds even if the brick is down.</summary>
    public override async ValueTask InitAsync(CancellationToken cancellation)
    {
        _tickMs = (long)Math.Clamp(PingTimeout.TotalMilliseconds / 8, 25, 1000);
        _ticker = new Timer(_ => OnTick(), null, _tickMs, _tickMs);
        _connectLoop = ConnectLoopAsync();
        try
        {
            await _firstAttempt.Task.WaitAsync(PingTimeout > TimeSpan.Zero ? PingTimeout : TimeSpan.FromSeconds(10), cancellation);
        }
        catch (TimeoutException)
        {
            // Still trying in the background; fops fail with ENOTCONN until it connects.
        }
    }

    private async Task ConnectLoopAsync()
    {
        var backoff = MinBackoff;
        var stop = _stopping.Token;
        while (!stop.IsCancellationRequested)
        {
            ClientSession? session = null;
            try
            {
                session = await ConnectOnceAsync(stop);
            }
            catch (Exception e)
            {
                if (stop.IsCancellationRequested) return;
                if (LastError != e.Message) Log.Write('W', Name, $"cannot connect to brick '{_remoteSubvolume}' at {_host}:{_port}: {e.Message}");
                LastError = e.Message;
            }
            _firstAttempt.TrySetResult();
            if (session is not null)
            {
                backoff = MinBackoff;
                RaiseConnectionUp(); // its files are open again: writes can go there at once
                string reason = await session.Closed;
                LastError = reason;
                if (ReferenceEquals(_session, session)) _session = null;
                FenceLocked(reason); // before the next session can re-open anything
                RaiseConnectionLost(); // before the next session can answer anything
                if (stop.IsCancellationRequested) return;
                Log.Write('W', Name, $"disconnected from brick '{_remoteSubvolume}' at {_host}:{_port}: {reason}");
                continue; // reconnect at once after a working connection; back off on repeated failure
            }
            try
            {
                await Task.Delay(backoff, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    private async Task<ClientSession> ConnectOnceAsync(CancellationToken stop)
    {
        var timeout = PingTimeout > TimeSpan.Zero ? PingTimeout : TimeSpan.FromSeconds(10);
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
        connectTimeout.CancelAfter(timeout);
        Transport transport;
        try
        {
            transport = await Connector(connectTimeout.Token);
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            throw new TimeoutException($"connect timed out after {timeout.TotalSeconds:0.##} s");
        }
        long generation = Interlocked.Read(ref _generation) + 1;
        var session = new ClientSession(transport, _frameMax, generation) { Failing = FenceLocked, Stats = _stats };
        session.Start();
        try
        {
            var reply = await session.HandshakeAsync(new Handshake
            {
                Version = ProtocolServerTranslator.ProtocolVersion, Volume = _volumeName, Brick = _remoteSubvolume, ClientId = ClientId, Secret = _secret,
            }, timeout);
            if (reply.Errno != 0) throw new IOException($"brick refused the handshake: {reply.Reason}");
            session.LeaseEpoch = reply.LeaseEpoch;
            session.LeaseTimeout = TimeSpan.FromMilliseconds(reply.LeaseTimeoutMs);
            AdjustTicker(session.LeaseTimeout);
        }
        catch (TimeoutException)
        {
            session.Fail("handshake timed out");
            throw new TimeoutException($"no handshake reply within {timeout.TotalSeconds:0.##} s");
        }
        catch
        {
            session.Fail("handshake failed");
            throw;
        }
        Interlocked.Exchange(ref _generation, generation);
        await ReopenAllAsync(session);
        _session = session;
        LastError = null;
        Log.Write('I', Name, $"connected to brick '{_remoteSubvolume}' at {_host}:{_port} as {ClientId}" + (generation > 1 ? $" (reconnect {generation - 1}, {_open.Count} files re-opened)" : ""));
        return session;
    }

    private async Task ReopenAllAsync(ClientSession session)
    {
        foreach (var (fd, rfd) in _open) await ReopenAsync(session, fd, rfd);
    }

    /// <summary>Makes <paramref name="rfd"/> valid in <paramref name="session"/>; ENOTCONN or EBADF when it cannot be.</summary>
    private async ValueTask<Errno> ReopenAsync(ClientSession session, FileHandle fd, RemoteFd rfd)
    {
        await rfd.Reopening.WaitAsync();
        try
        {
            if (rfd.Fenced) return FencedErrno;
            if (rfd.Lost) return Errno.EBADF;
            if (rfd.Generation == session.Generation) return Errno.None;
            int flags = fd.Flags & ~(OpenFlags.Create | OpenFlags.Exclusive | OpenFlags.Truncate);
            WireReply w = fd.IsDirectory
                ? await session.CallAsync(Fop.Opendir, new OpendirRequest { Caller = rfd.Opener, Gfid = fd.Gfid.ToWire(), Flags = flags, FdLockOwner = fd.LockOwner }, default)
                : await session.CallAsync(Fop.Open, new OpenRequest { Caller = rfd.Opener, Gfid = fd.Gfid.ToWire(), Flags = flags, FdLockOwner = fd.LockOwner }, default);
            if (w.TransportError != Errno.None) return w.TransportError;
            if (w.Message!.Errno != 0)
            {
                rfd.Lost = true;
                Log.Write('W', Name, $"could not re-open {fd} on brick '{_remoteSubvolume}' after reconnect: {(Errno)w.Message.Errno}");
                return Errno.EBADF;
            }
            rfd.Handle = w.Message is OpenReply o ? o.Handle : ((OpendirReply)w.Message).Handle;
            rfd.Generation = session.Generation;
            return Errno.None;
        }
        finally
        {
            rfd.Reopening.Release();
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested) return;
        _stopping.Cancel();
        _ticker?.Dispose();
        if (_stats is not null) LogStats();
        _session?.Fail("client shutting down");
        if (_connectLoop is not null) await _connectLoop;
        await base.DisposeAsync();
    }

    // ---- calling ----------------------------------------------------------------------------

    private ClientSession? Session => _session is { IsDead: false } s ? s : null;

    /// <summary>Sends a path/GFID fop; the reply or the errno (ENOTCONN when disconnected).</summary>
    private async ValueTask<FopResult<T>> CallAsync<T>(Fop fop, IWireRequest request, FopContext ctx) where T : class, IWireReply
    {
        var session = Session;
        if (session is null) return Errno.ENOTCONN;
        request.Caller = ctx.ToCaller();
        var w = await session.CallAsync(fop, request, default);
        return Unwrap<T>(w);
    }

    private static FopResult<T> Unwrap<T>(in WireReply w) where T : class, IWireReply
    {
        w.Bulk?.Dispose();
        if (w.TransportError != Errno.None) return w.TransportError;
        if (w.Message!.Errno != 0) return (Errno)w.Message.Errno;
        return (T)w.Message;
    }

    /// <summary>The session and the fd's handle in it (re-opening first if the fd predates the session).</summary>
    private async ValueTask<(ClientSession? Session, ulong Handle, Errno Error)> HandleOfAsync(FileHandle fd)
    {
        if (!fd.TryGetContext(this, out RemoteFd rfd)) return (null, 0, Errno.EBADF);
        if (rfd.Fenced) return (null, 0, FencedErrno);
        var session = Session;
        if (session is null) return (null, 0, Errno.ENOTCONN);
        if (rfd.Generation != session.Generation || rfd.Lost)
        {
            var e = await ReopenAsync(session, fd, rfd);
            if (e != Errno.None) return (null, 0, e);
        }
        return (session, rfd.Handle, Errno.None);
    }

    /// <summary>Sends an fd fop: <paramref name="build"/> makes the request for the fd's remote handle.</summary>
    private async ValueTask<FopResult<T>> CallFdAsync<T>(Fop fop, FileHandle fd, FopContext ctx, Func<ulong, IWireRequest> build) where T : class, IWireReply
    {
        var (session, handle, error) = await HandleOfAsync(fd);
        if (session is null) return error;
        var request = build(handle);
        request.Caller = ctx.ToCaller();
        ulong epoch = request.Caller.LockEpoch = LockEpochOf(fd.Gfid);
        var w = await session.CallAsync(fop, request, default);
        var r = Unwrap<T>(w);
        return r.Ok ? r : FencedError(fd, epoch, r.Error);
    }

    private void Track(FileHandle fd, FopContext ctx, ulong handle, long generation)
    {
        var rfd = new RemoteFd(ctx.ToCaller()) { Handle = handle, Generation = generation };
        fd.SetContext(this, rfd);
        _open[fd] = rfd;
    }

    // ---- inode operations ---------------------------------------------------------------------

    public override async ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, CoreGfid parent, string name)
    {
        var r = await CallAsync<LookupReply>(Fop.Lookup, new LookupRequest { Parent = parent.ToWire(), Name = name }, ctx);
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, CoreGfid gfid, FileHandle? fd)
    {
        var r = fd is null
            ? await CallAsync<StatReply>(Fop.Stat, new StatRequest { Gfid = gfid.ToWire() }, ctx)
            : await CallFdAsync<StatReply>(Fop.Stat, fd, ctx, h => new StatRequest { Gfid = gfid.ToWire(), Handle = h });
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, CoreGfid gfid, FileHandle? fd, CoreSetattr request)
    {
        var r = fd is null
            ? await CallAsync<SetattrReply>(Fop.Setattr, new Wire.SetattrRequest { Gfid = gfid.ToWire(), Args = request.ToWire() }, ctx)
            : await CallFdAsync<SetattrReply>(Fop.Setattr, fd, ctx, h => new Wire.SetattrRequest { Gfid = gfid.ToWire(), Handle = h, Args = request.ToWire() });
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, CoreGfid gfid)
    {
        var r = await CallAsync<ReadlinkReply>(Fop.Readlink, new ReadlinkRequest { Gfid = gfid.ToWire() }, ctx);
        return r.Ok ? r.Value.Target : r.Error;
    }

    public override async ValueTask<FopResult> AccessAsync(FopContext ctx, CoreGfid gfid, int mask) =>
        (await CallAsync<AccessReply>(Fop.Access, new AccessRequest { Gfid = gfid.ToWire(), Mask = mask }, ctx)).AsPlain();

    public override async ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, CoreGfid gfid)
    {
        var r = await CallAsync<StatfsReply>(Fop.Statfs, new StatfsRequest { Gfid = gfid.ToWire() }, ctx);
        return r.Ok ? r.Value.Info.FromWire() : r.Error;
    }

    // ---- namespace operations -----------------------------------------------------------------

    public override async ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, CoreGfid parent, string name, uint mode, ulong rdev, CoreGfid newGfid)
    {
        var r = await CallAsync<MknodReply>(Fop.Mknod, new MknodRequest { Parent = parent.ToWire(), Name = name, Mode = mode, Rdev = rdev, NewGfid = newGfid.ToWire() }, ctx);
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, CoreGfid parent, string name, uint mode, CoreGfid newGfid)
    {
        var r = await CallAsync<MkdirReply>(Fop.Mkdir, new MkdirRequest { Parent = parent.ToWire(), Name = name, Mode = mode, NewGfid = newGfid.ToWire() }, ctx);
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult> UnlinkAsync(FopContext ctx, CoreGfid parent, string name) =>
        (await CallAsync<UnlinkReply>(Fop.Unlink, new UnlinkRequest { Parent = parent.ToWire(), Name = name }, ctx)).AsPlain();

    public override async ValueTask<FopResult> RmdirAsync(FopContext ctx, CoreGfid parent, string name) =>
        (await CallAsync<RmdirReply>(Fop.Rmdir, new RmdirRequest { Parent = parent.ToWire(), Name = name }, ctx)).AsPlain();

    public override async ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, CoreGfid parent, string name, string target, CoreGfid newGfid)
    {
        var r = await CallAsync<SymlinkReply>(Fop.Symlink, new SymlinkRequest { Parent = parent.ToWire(), Name = name, Target = target, NewGfid = newGfid.ToWire() }, ctx);
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult> RenameAsync(FopContext ctx, CoreGfid oldParent, string oldName, CoreGfid newParent, string newName, RenameFlags flags) =>
        (await CallAsync<RenameReply>(Fop.Rename, new RenameRequest
        {
            OldParent = oldParent.ToWire(), OldName = oldName, NewParent = newParent.ToWire(), NewName = newName, Flags = (uint)flags,
        }, ctx)).AsPlain();

    public override async ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, CoreGfid gfid, CoreGfid newParent, string newName)
    {
        var r = await CallAsync<LinkReply>(Fop.Link, new LinkRequest { Gfid = gfid.ToWire(), NewParent = newParent.ToWire(), NewName = newName }, ctx);
        return r.Ok ? r.Value.Attr.FromWire() : r.Error;
    }

    // ---- open files ---------------------------------------------------------------------------

    public override async ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        var session = Session;
        if (session is null) return Errno.ENOTCONN;
        var w = await session.CallAsync(Fop.Open, new OpenRequest { Caller = ctx.ToCaller(), Gfid = fd.Gfid.ToWire(), Flags = fd.Flags, FdLockOwner = fd.LockOwner }, default);
        var r = Unwrap<OpenReply>(w);
        if (!r.Ok) return r.Error;
        Track(fd, ctx, r.Value.Handle, session.Generation);
        return FopResult.Success;
    }

    public override async ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, CoreGfid parent, string name, uint mode, FileHandle fd)
    {
        var session = Session;
        if (session is null) return Errno.ENOTCONN;
        var w = await session.CallAsync(Fop.Create, new CreateRequest
        {
            Caller = ctx.ToCaller(), Parent = parent.ToWire(), Name = name, Mode = mode, Gfid = fd.Gfid.ToWire(), Flags = fd.Flags, FdLockOwner = fd.LockOwner,
        }, default);
        var r = Unwrap<CreateReply>(w);
        if (!r.Ok) return r.Error;
        Track(fd, ctx, r.Value.Handle, session.Generation);
        return r.Value.Attr.FromWire();
    }

    public override async ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        if (size < 0) return Errno.EINVAL;
        var (session, handle, error) = await HandleOfAsync(fd);
        if (session is null) return error;
        if (size > session.FrameMax - FrameHeader.Size - 64) return Errno.EINVAL;
        var caller = ctx.ToCaller();
        ulong epoch = caller.LockEpoch = LockEpochOf(fd.Gfid);
        var w = await session.CallAsync(Fop.Read, new ReadRequest { Caller = caller, Handle = handle, Offset = offset, Size = (uint)size }, default);
        if (w.TransportError != Errno.None) return FencedError(fd, epoch, w.TransportError);
        if (w.Message!.Errno != 0)
        {
            w.Bulk?.Dispose();
            return FencedError(fd, epoch, (Errno)w.Message.Errno);
        }
        return w.Bulk ?? DataBuffer.Rent(0);
    }

    public override async ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
    {
        var (session, handle, error) = await HandleOfAsync(fd);
        if (session is null) return error;
        var caller = ctx.ToCaller();
        ulong epoch = caller.LockEpoch = LockEpochOf(fd.Gfid);
        var w = await session.CallAsync(Fop.Write, new WriteRequest { Caller = caller, Handle = handle, Offset = offset }, data);
        var r = Unwrap<WriteReply>(w);
        return r.Ok ? (int)r.Value.Count : FencedError(fd, epoch, r.Error);
    }

    /// <summary>
    /// close(2): the brick drops the caller's POSIX locks on the file, so they stop counting here.
    /// That is all a flush does on a brick (writes are acknowledged when they land, so there is
    /// no error left to report at close; flock and OFD locks go with the release): when this
    /// client holds no POSIX lock on the file and asks for no lock right now, the flush is
    /// answered here without a round trip. A bad or fenced handle still fails as it would on the
    /// brick.
    /// </summary>
    public override async ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd)
    {
        if (!fd.TryGetContext(this, out RemoteFd rfd)) return Errno.EBADF;
        if (rfd.Fenced) return FencedErrno;
        if (!MayHoldPosixLocks(fd.Gfid)) return Session is null ? Errno.ENOTCONN : rfd.Lost ? Errno.EBADF : FopResult.Success;
        var r = (await CallFdAsync<FlushReply>(Fop.Flush, fd, ctx, h => new FlushRequest { Handle = h })).AsPlain();
        if (r.Ok) NoteReleased(fd.Gfid, o => o == (ctx.LockOwner, LockKind.Posix));
        return r;
    }

    public override ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd) => ReleaseCommonAsync(ctx, fd, directory: false);

    public override ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd) => ReleaseCommonAsync(ctx, fd, directory: true);

    /// <summary>Forgets the fd here first: a release never fails for the caller, the brick drops handles of lost connections itself.</summary>
    private async ValueTask<FopResult> ReleaseCommonAsync(FopContext ctx, FileHandle fd, bool directory)
    {
        if (!fd.RemoveContext(this, out var state) || state is not RemoteFd rfd) return FopResult.Success;
        _open.TryRemove(fd, out _);
        if (fd.LockOwner != 0) NoteReleased(fd.Gfid, o => o.Owner == fd.LockOwner && o.Kind != LockKind.Posix);
        var session = Session;
        if (session is null || rfd.Generation != session.Generation || rfd.Lost) return FopResult.Success;
        IWireRequest request = directory
            ? new ReleasedirRequest { Caller = ctx.ToCaller(), Handle = rfd.Handle }
            : new ReleaseRequest { Caller = ctx.ToCaller(), Handle = rfd.Handle };
        var w = await session.CallAsync(directory ? Fop.Releasedir : Fop.Release, request, default);
        w.Bulk?.Dispose();
        return FopResult.Success;
    }

    public override async ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        (await CallFdAsync<FsyncReply>(Fop.Fsync, fd, ctx, h => new FsyncRequest { Handle = h, DataOnly = dataOnly })).AsPlain();

    public override async ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length) =>
        (await CallFdAsync<FallocateReply>(Fop.Fallocate, fd, ctx, h => new FallocateRequest { Handle = h, Mode = mode, Offset = offset, Length = length })).AsPlain();

    public override async ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence)
    {
        var r = await CallFdAsync<LseekReply>(Fop.Lseek, fd, ctx, h => new LseekRequest { Handle = h, Offset = offset, Whence = whence });
        return r.Ok ? r.Value.Offset : r.Error;
    }

    public override async ValueTask<FopResult<CoreFileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, CoreFileLock lk)
    {
        // A fenced file holds nothing on the brick any more: unlocking it is already done.
        if (lk.Type == LockType.Unlock && command != LockCommand.Get && fd.TryGetContext(this, out RemoteFd fenced) && fenced.Fenced) return lk;
        var (session, handle, error) = await HandleOfAsync(fd);
        if (session is null) return error;
        var request = new LkRequest { Caller = ctx.ToCaller(), Handle = handle, Command = (uint)command, Lock = lk.ToWire(), FdLockOwner = fd.LockOwner };
        ulong epoch = request.Caller.LockEpoch = LockEpochOf(fd.Gfid);
        bool acquiring = command != LockCommand.Get && lk.Type != LockType.Unlock;
        if (acquiring) Interlocked.Increment(ref _lockCallsInFlight);
        try
        {
            var w = await session.CallAsync(Fop.Lk, request, default, command == LockCommand.SetWait ? ctx.Cancellation : default);
            var r = Unwrap<LkReply>(w);
            if (!r.Ok) return FencedError(fd, epoch, r.Error);
            if (command == LockCommand.Get) return r.Value.Lock.FromWire();
            if (acquiring)
            {
                if (!NoteGranted(session, fd, lk)) return FencedErrno;
            }
            else if (lk.Kind == LockKind.Flock || (lk.Start == 0 && lk.End == long.MaxValue))
            {
                NoteReleased(fd.Gfid, o => o == (lk.Owner, lk.Kind));
            }
            return r.Value.Lock.FromWire();
        }
        finally
        {
            if (acquiring) Interlocked.Decrement(ref _lockCallsInFlight);
        }
    }

    // ---- leases and fencing -------------------------------------------------------------------

    /// <summary>How long before the brick's lease would run out this client gives its locks up itself.</summary>
    public static TimeSpan LeaseMargin(TimeSpan lease) => TimeSpan.FromMilliseconds(Math.Max(lease.TotalMilliseconds / 5, 100));

    /// <summary>
    /// Raised (on a pool thread, never inline in a fop) for each file whose locks were lost with a
    /// lease, so a cache above (the FUSE bridge's kernel page cache) can stop serving it: a fenced
    /// handle fails its reads too, and cached pages must not answer them instead.
    /// </summary>
    public event Action<CoreGfid>? LocksLost;

    private void RaiseLocksLost(IEnumerable<CoreGfid> gfids)
    {
        var handler = LocksLost;
        if (handler is null) return;
        var list = gfids.ToList();
        _ = Task.Run(() =>
        {
            foreach (var g in list)
            {
                try
                {
                    handler(g);
                }
                catch (Exception e)
                {
                    Log.Write('E', Name, $"LocksLost handler failed for {g}: {e}");
                }
            }
        });
    }

    /// <summary>Files on which this client may hold locks on the brick right now.</summary>
    public int LockedFiles
    {
        get { lock (_lockedSync) return _locked.Count; }
    }

    /// <summary>Lock requests (Lk) sent and not yet answered and recorded.</summary>
    private int _lockCallsInFlight;

    /// <summary>Whether this client may hold a lock on the file on the brick: one recorded, or a lock request still on its way.</summary>
    private bool MayHoldPosixLocks(CoreGfid gfid)
    {
        if (Volatile.Read(ref _lockCallsInFlight) > 0) return true;
        lock (_lockedSync) return _locked.TryGetValue(gfid, out var l) && l.Owners.Any(o => o.Kind == LockKind.Posix);
    }

    private ulong LockEpochOf(CoreGfid gfid)
    {
        lock (_lockedSync) return _locked.TryGetValue(gfid, out var l) ? l.Epoch : 0;
    }

    /// <summary>
    /// Records a granted lock under the session's epoch. A session that died meanwhile may have
    /// lost the lock already (the brick released it with the connection): then the file is fenced
    /// and false returned, so the caller never believes it holds the lock.
    /// </summary>
    private bool NoteGranted(ClientSession session, FileHandle fd, CoreFileLock lk)
    {
        lock (_lockedSync)
        {
            if (!session.IsDead)
            {
                if (!_locked.TryGetValue(fd.Gfid, out var l)) _locked[fd.Gfid] = l = new LockedInode(session.LeaseEpoch);
                l.Owners.Add((lk.Owner, lk.Kind));
                return true;
            }
        }
        if (fd.TryGetContext(this, out RemoteFd rfd)) rfd.Fenced = true;
        RaiseLocksLost([fd.Gfid]);
        Log.Write('W', Name, $"lock on {fd.Gfid} granted by brick '{_remoteSubvolume}' as its connection was lost; the file is fenced (EIO until closed)");
        return false;
    }

    private void NoteReleased(CoreGfid gfid, Func<(ulong Owner, LockKind Kind), bool> match)
    {
        lock (_lockedSync)
        {
            if (!_locked.TryGetValue(gfid, out var l)) return;
            l.Owners.RemoveWhere(o => match(o));
            if (l.Owners.Count == 0) _locked.Remove(gfid);
        }
    }

    /// <summary>
    /// The session that held this client's locks is gone (the brick released them with it):
    /// every open file that had locks is fenced, so nothing written through it can land outside
    /// the lock it relied on.
    /// </summary>
    private void FenceLocked(string reason)
    {
        HashSet<CoreGfid> lost;
        lock (_lockedSync)
        {
            if (_locked.Count == 0) return;
            lost = [.. _locked.Keys];
            _locked.Clear();
        }
        int fenced = 0;
        foreach (var (fd, rfd) in _open)
        {
            if (!lost.Contains(fd.Gfid) || rfd.Fenced) continue;
            rfd.Fenced = true;
            fenced++;
        }
        RaiseLocksLost(lost);
        Log.Write('W', Name, $"lost the lease on brick '{_remoteSubvolume}' ({reason}): locks on {lost.Count} files are gone; {fenced} open handles fenced (EIO until closed)");
    }

    /// <summary>
    /// The errno for a failed fd request. One that relied on locks (non-zero epoch) and ended
    /// because the connection died or the brick fenced its epoch has lost those locks: its file
    /// handle is fenced and the caller sees EIO, never a retryable ENOTCONN.
    /// </summary>
    private Errno FencedError(FileHandle fd, ulong epoch, Errno error)
    {
        if (epoch == 0 || error is not (Errno.ENOTCONN or Errno.ESTALE)) return error;
        if (fd.TryGetContext(this, out RemoteFd rfd) && !rfd.Fenced)
        {
            rfd.Fenced = true;
            RaiseLocksLost([fd.Gfid]);
        }
        return FencedErrno;
    }

    /// <summary>
    /// What every request on a fenced handle answers: EBADFD, the handle is in a bad state for
    /// this brick. The mount shows it to applications as EIO; cluster/replicate treats it as
    /// this copy being unavailable for the handle and carries on with the copies whose locks
    /// still hold.
    /// </summary>
    public const Errno FencedErrno = Errno.EBADFD;

    private void OnTick()
    {
        if (_stats is not null && Environment.TickCount64 - _statsLoggedAt >= _statsEveryMs) LogStats();
        var s = _session;
        if (s is null || s.IsDead) return;
        var lease = s.LeaseTimeout;
        var interval = PingTimeout / 3;
        if (lease > TimeSpan.Zero && lease / 3 < interval) interval = lease / 3;
        s.Tick(PingTimeout, interval);
        if (s.IsDead || lease <= TimeSpan.Zero) return;
        long limit = (long)(lease - LeaseMargin(lease)).TotalMilliseconds;
        long silent = s.SilentMs;
        if (silent > limit && LockedFiles > 0)
            s.Fail($"nothing from the brick for {silent / 1000.0:0.0#} s while holding locks: giving the lease up before it expires ({lease.TotalSeconds:0.##} s)");
    }

    /// <summary>Ticks often enough to ping within lease/3 and to give a lease up within its margin.</summary>
    private void LogStats()
    {
        _statsLoggedAt = Environment.TickCount64;
        if (_stats!.TakeSummary() is { } summary)
        {
            foreach (var line in summary.Split('\n')) Log.Write('I', Name, $"latency {line}");
        }
    }

    private void AdjustTicker(TimeSpan lease)
    {
        if (lease <= TimeSpan.Zero) return;
        TickAtLeastEvery((long)Math.Clamp(lease.TotalMilliseconds / 10, 25, 1000));
    }

    private void TickAtLeastEvery(long want)
    {
        if (want >= Interlocked.Read(ref _tickMs)) return;
        Interlocked.Exchange(ref _tickMs, want);
        try
        {
            _ticker?.Change(want, want);
        }
        catch (ObjectDisposedException)
        {
            // shutting down
        }
    }

    // ---- internal fops ------------------------------------------------------------------------

    public override async ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, CoreGfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        var r = fd is null
            ? await CallAsync<XattropReply>(Fop.Xattrop, new XattropRequest { Gfid = gfid.ToWire(), Deltas = { deltas.ToWire() } }, ctx)
            : await CallFdAsync<XattropReply>(Fop.Xattrop, fd, ctx, h => new XattropRequest { Gfid = gfid.ToWire(), Handle = h, Deltas = { deltas.ToWire() } });
        return r.Ok ? FopResult<IReadOnlyDictionary<string, long[]>>.Success(r.Value.Values.FromWire()) : r.Error;
    }

    public override async ValueTask<FopResult<CoreFileLock>> InodelkAsync(FopContext ctx, string domain, CoreGfid gfid, LockCommand command, CoreFileLock lk)
    {
        if (Session is not { } session) return Errno.ENOTCONN;
        var request = new InodelkRequest { Caller = ctx.ToCaller(), Domain = domain, Gfid = gfid.ToWire(), Command = (uint)command, Lock = lk.ToWire() };
        var w = await session.CallAsync(Fop.Inodelk, request, default, command == LockCommand.SetWait ? ctx.Cancellation : default);
        var r = Unwrap<InodelkReply>(w);
        return r.Ok ? r.Value.Lock.FromWire() : r.Error;
    }

    public override async ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, CoreGfid parent, string? name, LockCommand command, LockType type)
    {
        if (Session is not { } session) return Errno.ENOTCONN;
        var request = new EntrylkRequest
        {
            Caller = ctx.ToCaller(), Domain = domain, Parent = parent.ToWire(), Name = name ?? "", HasName = name is not null,
            Command = (uint)command, Type = (uint)type,
        };
        var w = await session.CallAsync(Fop.Entrylk, request, default, command == LockCommand.SetWait ? ctx.Cancellation : default);
        return Unwrap<EntrylkReply>(w).AsPlain();
    }

    // ---- xattrs -------------------------------------------------------------------------------

    public override async ValueTask<FopResult> SetxattrAsync(FopContext ctx, CoreGfid gfid, string name, ReadOnlyMemory<byte> value, int flags) =>
        (await CallAsync<SetxattrReply>(Fop.Setxattr, new Wire.SetxattrRequest
        {
            Gfid = gfid.ToWire(), Name = name, Value = ByteString.CopyFrom(value.Span), Flags = flags,
        }, ctx)).AsPlain();

    public override async ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, CoreGfid gfid, string name)
    {
        var r = await CallAsync<GetxattrReply>(Fop.Getxattr, new GetxattrRequest { Gfid = gfid.ToWire(), Name = name }, ctx);
        return r.Ok ? r.Value.Value.ToByteArray() : r.Error;
    }

    public override async ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, CoreGfid gfid)
    {
        var r = await CallAsync<ListxattrReply>(Fop.Listxattr, new ListxattrRequest { Gfid = gfid.ToWire() }, ctx);
        return r.Ok ? FopResult<IReadOnlyList<string>>.Success([.. r.Value.Names]) : r.Error;
    }

    public override async ValueTask<FopResult> RemovexattrAsync(FopContext ctx, CoreGfid gfid, string name) =>
        (await CallAsync<RemovexattrReply>(Fop.Removexattr, new RemovexattrRequest { Gfid = gfid.ToWire(), Name = name }, ctx)).AsPlain();

    // ---- directories --------------------------------------------------------------------------

    public override async ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd)
    {
        var session = Session;
        if (session is null) return Errno.ENOTCONN;
        var w = await session.CallAsync(Fop.Opendir, new OpendirRequest { Caller = ctx.ToCaller(), Gfid = fd.Gfid.ToWire(), Flags = fd.Flags, FdLockOwner = fd.LockOwner }, default);
        var r = Unwrap<OpendirReply>(w);
        if (!r.Ok) return r.Error;
        Track(fd, ctx, r.Value.Handle, session.Generation);
        return FopResult.Success;
    }

    public override async ValueTask<FopResult<IReadOnlyList<CoreDirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint)
    {
        var r = await CallFdAsync<ReaddirReply>(Fop.Readdir, fd, ctx, h => new ReaddirRequest { Handle = h, Offset = offset, SizeHint = sizeHint });
        return r.Ok ? FopResult<IReadOnlyList<CoreDirEntry>>.Success(r.Value.Entries.Select(e => e.FromWire()).ToArray()) : r.Error;
    }

    public override async ValueTask<FopResult<IReadOnlyList<CoreDirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint)
    {
        var r = await CallFdAsync<ReaddirplusReply>(Fop.Readdirplus, fd, ctx, h => new ReaddirplusRequest { Handle = h, Offset = offset, SizeHint = sizeHint });
        return r.Ok ? FopResult<IReadOnlyList<CoreDirEntry>>.Success(r.Value.Entries.Select(e => e.FromWire()).ToArray()) : r.Error;
    }

    public override async ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        (await CallFdAsync<FsyncdirReply>(Fop.Fsyncdir, fd, ctx, h => new FsyncdirRequest { Handle = h, DataOnly = dataOnly })).AsPlain();
}
