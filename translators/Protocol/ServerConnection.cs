using System.Buffers;
using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Protocol.Wire;
using Google.Protobuf;

namespace Brickfs.Translators.Protocol;

/// <summary>
/// One client connection on the brick: handshake, then requests run concurrently on the brick
/// graph, replies sent as they complete. Owns the connection's open handles (handle id -> the
/// brick-side <see cref="FileHandle"/>); they are released when the connection ends.
/// </summary>
internal sealed class ServerConnection : IFrameHandler
{
    private enum State { AwaitingHandshake, Handshaking, Open, Closing }

    private readonly ProtocolServerTranslator _server;
    private readonly FrameChannel _channel;
    private readonly CancellationTokenSource _closing = new();
    private readonly ConcurrentDictionary<ulong, FileHandle> _handles = new();
    private readonly ConcurrentDictionary<ulong, CancellationTokenSource> _cancellable = new();
    private readonly SemaphoreSlim _inflight;
    private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _startedAt = Environment.TickCount64;
    private volatile State _state = State.AwaitingHandshake;
    private string? _closeReason;
    private long _nextHandle;
    private long _lastFrameAt = Environment.TickCount64;

    /// <summary>When the reader started running a request inline (0: it is reading).</summary>
    private long _inlineSince;

    public ServerConnection(ProtocolServerTranslator server, Transport transport)
    {
        _server = server;
        _channel = new FrameChannel(transport, server.FrameMax);
        _inflight = new SemaphoreSlim(server.OutstandingRpcLimit, server.OutstandingRpcLimit);
        RemoteAddress = transport.RemoteAddress;
    }

    public string RemoteAddress { get; }
    public string ClientId { get; private set; } = "";

    /// <summary>This connection's lease epoch (0 until the handshake is accepted); requests stamped with another are fenced.</summary>
    public ulong LeaseEpoch { get; private set; }

    /// <summary>Completes when the connection is closed and its handles are released.</summary>
    public Task Finished => _finished.Task;

    private string Who => ClientId.Length > 0 ? $"client {ClientId} ({RemoteAddress})" : $"connection from {RemoteAddress}";

    /// <summary>Serves the connection until it closes: on a thread of its own over a socket (its reads block).</summary>
    public Task StartAsync(CancellationToken stopping) => _channel.StartReader(() => RunAsync(stopping), "brickfs-server-rx");

    private async Task RunAsync(CancellationToken stopping)
    {
        using var link = stopping.Register(() => Abort("brick shutting down"));
        string? reason = null;
        try
        {
            await _channel.RunReaderAsync(this, _closing.Token);
            reason = "closed by the client";
        }
        catch (ProtocolException e)
        {
            reason = e.Message;
        }
        catch (InvalidProtocolBufferException e)
        {
            reason = $"malformed message: {e.Message}";
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            reason = _closeReason ?? $"transport error: {e.Message}";
        }
        catch (Exception e)
        {
            reason = $"internal error: {e}";
        }
        finally
        {
            reason = _closeReason ?? reason;
            _state = State.Closing;
            _closing.Cancel();
            _channel.Transport.Abort();
            bool quiet = reason == "closed by the client";
            _server.Log.Write(quiet ? 'I' : 'W', _server.Name, $"{Who} closed: {reason}");
            await ReleaseAllAsync();
            if (ClientId.Length > 0) _server.UnregisterClient(this);
            _finished.TrySetResult();
        }
    }

    /// <summary>Closes the connection now with a reason for the log.</summary>
    public void Abort(string reason)
    {
        Interlocked.CompareExchange(ref _closeReason, reason, null);
        _state = State.Closing;
        _channel.Transport.Abort();
        try { _closing.Cancel(); } catch (ObjectDisposedException) { }
    }

    public void CheckTimeouts(TimeSpan writeTimeout, TimeSpan leaseTimeout)
    {
        var age = _channel.CurrentWriteAge;
        // A connection whose reading we paused (outstanding-rpc-limit) may have renewing frames
        // waiting in the socket: its silence is ours, not the client's, so its lease holds.
        if (LeaseExpired(leaseTimeout, out long silentMs) && _inflight.CurrentCount > 0 && Volatile.Read(ref _inlineSince) == 0)
            ExpireLease(leaseTimeout, silentMs);
        else if (writeTimeout > TimeSpan.Zero && age > writeTimeout)
            Abort($"the client stopped reading: a reply waited {age.TotalSeconds:0.#} s to be sent (write-timeout {writeTimeout.TotalSeconds:0.#} s)");
        else if (_state == State.AwaitingHandshake && Environment.TickCount64 - _startedAt > Math.Max(writeTimeout.TotalMilliseconds, 1000))
            Abort("no handshake in time");
    }

    private bool LeaseExpired(TimeSpan leaseTimeout, out long silentMs)
    {
        silentMs = Environment.TickCount64 - Volatile.Read(ref _lastFrameAt);
        return _state == State.Open && leaseTimeout > TimeSpan.Zero && silentMs > leaseTimeout.TotalMilliseconds;
    }

    /// <summary>
    /// The client's lease ran out: the connection goes, and with it (as for any closed
    /// connection) the client's handles, its locks (waiters behind them are granted) and this
    /// lease epoch; nothing it sent afterwards on this connection is run.
    /// </summary>
    private void ExpireLease(TimeSpan leaseTimeout, long silentMs) =>
        Abort($"lease expired: no frame for {silentMs / 1000.0:0.0#} s (lease-timeout {leaseTimeout.TotalSeconds:0.##} s); its locks are released and epoch {LeaseEpoch} fenced");

    private async ValueTask ReleaseAllAsync()
    {
        foreach (var id in _handles.Keys.ToList())
        {
            if (!_handles.TryRemove(id, out var fd)) continue;
            var ctx = new FopContext { Uid = 0, Gid = 0, ClientId = ClientId, LockOwner = fd.LockOwner };
            try
            {
                _ = fd.IsDirectory ? await _server.Brick.ReleasedirAsync(ctx, fd) : await _server.Brick.ReleaseAsync(ctx, fd);
            }
            catch (Exception e)
            {
                _server.Log.Write('E', _server.Name, $"{Who}: release of {fd} failed: {e}");
            }
        }
    }

    // ---- frames in --------------------------------------------------------------------------

    public object? Parse(in FrameHeader header, in ReadOnlySequence<byte> message)
    {
        switch (header.Kind)
        {
            case FrameKind.Handshake when _state == State.AwaitingHandshake:
                return Decode(Handshake.Parser, message, "handshake");
            case FrameKind.Request when _state == State.Open:
                if (!WireTable.IsKnown(header.Fop)) throw new ProtocolException($"unknown fop {header.Fop}");
                return Decode(WireTable.RequestParser((Fop)header.Fop), message, ((Fop)header.Fop).ToString());
            case FrameKind.Ping or FrameKind.Cancel when _state == State.Open:
                return null;
            case FrameKind.Request or FrameKind.Ping or FrameKind.Cancel when _state == State.Handshaking:
                throw new ProtocolException($"{header.Kind} frame before the handshake was answered");
            case var _ when _state == State.Closing:
                return null;
            default:
                throw new ProtocolException(_state == State.AwaitingHandshake
                    ? $"first frame must be a handshake, got {header.Kind}"
                    : $"unexpected {header.Kind} frame from a client");
        }
    }

    private static IMessage Decode(MessageParser parser, in ReadOnlySequence<byte> bytes, string what)
    {
        try
        {
            return parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ProtocolException($"malformed {what} message: {e.Message}");
        }
    }

    public ValueTask DeliverAsync(FrameHeader header, object? message, DataBuffer? bulk)
    {
        // A frame that arrives after the lease ran out (a stopped client resumed before the
        // watchdog noticed) renews nothing and is not run: the lease is checked before it counts.
        if (LeaseExpired(_server.LeaseTimeout, out long silentMs)) ExpireLease(_server.LeaseTimeout, silentMs);
        if (_state == State.Closing)
        {
            bulk?.Dispose();
            return ValueTask.CompletedTask;
        }
        Volatile.Write(ref _lastFrameAt, Environment.TickCount64);
        switch (header.Kind)
        {
            case FrameKind.Handshake:
                _state = State.Handshaking;
                _ = HandshakeAsync((Handshake)message!);
                return ValueTask.CompletedTask;
            case FrameKind.Ping:
                _ = SendQuietlyAsync(FrameKind.Pong, 0, header.RequestId, null);
                return ValueTask.CompletedTask;
            case FrameKind.Cancel:
                if (_cancellable.TryGetValue(header.RequestId, out var cts)) cts.Cancel();
                return ValueTask.CompletedTask;
            default:
                if (!IsRequestValid(header, bulk, out var why))
                {
                    bulk?.Dispose();
                    throw new ProtocolException(why);
                }
                var work = new RequestWork(this, header, (IWireRequest)message!, bulk);
                if (_inflight.Wait(0))
                {
                    if (_channel.Transport.ReadsBlock && RunsInline(work)) ServeInline(work);
                    else ThreadPool.UnsafeQueueUserWorkItem(work, preferLocal: false);
                    return ValueTask.CompletedTask;
                }
                return QueueWhenSlotFreeAsync(work, block: _channel.Transport.ReadsBlock);
        }
    }

    /// <summary>
    /// Fops the reader thread runs itself, up to their reply, instead of handing them to the
    /// pool: one thread wake-up less per request. They are the ones that finish in microseconds
    /// on the brick or wait asynchronously (lock waits), and reads and writes up to 64 KiB. What
    /// can hold a thread for long (fsync, fallocate, rename, readdir, xattrop, big transfers)
    /// goes to the pool, so frames behind it keep being read. Requests of one connection may
    /// then run one after another; they never depended on running in parallel.
    /// </summary>
    private static bool RunsInline(RequestWork work) => (Fop)work.Header.Fop switch
    {
        Fop.Read => ((ReadRequest)work.Message).Size <= 64 * 1024,
        Fop.Write => work.Header.BulkLength <= 64 * 1024,
        Fop.Lookup or Fop.Stat or Fop.Access or Fop.Readlink or Fop.Getxattr or Fop.Open or Fop.Opendir or Fop.Create
            or Fop.Flush or Fop.Release or Fop.Releasedir or Fop.Setattr or Fop.Unlink or Fop.Lk or Fop.Inodelk or Fop.Entrylk => true,
        _ => false,
    };

    /// <summary>
    /// Runs <paramref name="work"/> on the reader thread. While it runs, frames wait in the
    /// socket: that silence is ours, so the lease neither expires meanwhile nor counts it.
    /// </summary>
    private void ServeInline(RequestWork work)
    {
        Volatile.Write(ref _inlineSince, Environment.TickCount64);
        try
        {
            _ = ServeAsync(work);
        }
        finally
        {
            Volatile.Write(ref _lastFrameAt, Environment.TickCount64);
            Volatile.Write(ref _inlineSince, 0);
        }
    }

    private static bool IsRequestValid(in FrameHeader header, DataBuffer? bulk, out string why)
    {
        bool bulkAllowed = header.Fop == (int)Fop.Write;
        why = bulk is not null && !bulkAllowed ? $"{(Fop)header.Fop} request carries {bulk.Length} bulk bytes" : "";
        return why.Length == 0;
    }

    /// <summary>
    /// Waits for a request slot, then queues <paramref name="work"/>. A reader that owns its
    /// thread (<paramref name="block"/>) waits there, so its blocking reads never move to a pool thread.
    /// </summary>
    private async ValueTask QueueWhenSlotFreeAsync(RequestWork work, bool block)
    {
        try
        {
            if (block) _inflight.Wait(_closing.Token);
            else await _inflight.WaitAsync(_closing.Token);
        }
        catch (OperationCanceledException)
        {
            work.Bulk?.Dispose();
            throw;
        }
        // Reading was paused by us, not silenced by the client: its lease restarts from now.
        Volatile.Write(ref _lastFrameAt, Environment.TickCount64);
        ThreadPool.UnsafeQueueUserWorkItem(work, preferLocal: false);
    }

    private sealed class RequestWork(ServerConnection conn, FrameHeader header, IWireRequest message, DataBuffer? bulk) : IThreadPoolWorkItem
    {
        public readonly FrameHeader Header = header;
        public readonly IWireRequest Message = message;
        public readonly DataBuffer? Bulk = bulk;

        public void Execute() => _ = conn.ServeAsync(this);
    }

    // ---- handshake ----------------------------------------------------------------------------

    private async Task HandshakeAsync(Handshake hs)
    {
        string? refusal =
            hs.Version != ProtocolServerTranslator.ProtocolVersion ? $"protocol version {hs.Version} is not {ProtocolServerTranslator.ProtocolVersion}"
            : !_server.AddressAllowed(RemoteAddress) ? $"address {RemoteAddress} is not in auth.allow"
            : hs.Brick != _server.BrickName ? $"brick '{hs.Brick}' is not served here (this is '{_server.BrickName}')"
            : !_server.SecretMatches(hs.Secret) ? "wrong auth.secret"
            : hs.ClientId.Length == 0 ? "empty client id"
            : _server.VolumeMismatch(hs.Volume);
        if (refusal is not null)
        {
            _server.Log.Write('W', _server.Name, $"refused client '{hs.ClientId}' from {RemoteAddress} (volume '{hs.Volume}', brick '{hs.Brick}'): {refusal}");
            _state = State.Closing;
            await SendQuietlyAsync(FrameKind.HandshakeReply, 0, 0, new HandshakeReply
            {
                Errno = (int)Errno.EACCES, Reason = refusal, Version = ProtocolServerTranslator.ProtocolVersion,
            });
            Abort($"handshake refused: {refusal}");
            return;
        }
        ClientId = hs.ClientId;
        await _server.RegisterClientAsync(this);
        LeaseEpoch = _server.NextLeaseEpoch();
        Volatile.Write(ref _lastFrameAt, Environment.TickCount64);
        _state = State.Open;
        _server.Log.Write('I', _server.Name, $"accepted client {ClientId} from {RemoteAddress} for brick '{hs.Brick}'");
        await SendQuietlyAsync(FrameKind.HandshakeReply, 0, 0, new HandshakeReply
        {
            Version = ProtocolServerTranslator.ProtocolVersion, LeaseEpoch = LeaseEpoch, LeaseTimeoutMs = (ulong)_server.LeaseTimeout.TotalMilliseconds,
        });
    }

    /// <summary>Sends; a broken transport is the reader loop's to report, so errors here only close.</summary>
    private async Task SendQuietlyAsync(FrameKind kind, int fop, ulong id, IMessage? message, ReadOnlyMemory<byte> bulk = default)
    {
        try
        {
            await _channel.SendAsync(kind, fop, id, message, bulk);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Abort($"send failed: {e.Message}");
        }
    }

    // ---- requests -----------------------------------------------------------------------------

    private async Task ServeAsync(RequestWork work)
    {
        var fop = (Fop)work.Header.Fop;
        ulong id = work.Header.RequestId;
        IMessage reply;
        DataBuffer? replyBulk = null;
        CancellationTokenSource? cts = null;
        try
        {
            var token = _closing.Token;
            if (fop == Fop.Lk)
            {
                cts = CancellationTokenSource.CreateLinkedTokenSource(token);
                _cancellable[id] = cts;
                token = cts.Token;
            }
            ulong stamped = work.Message.Caller?.LockEpoch ?? 0;
            if (stamped != 0 && stamped != LeaseEpoch)
            {
                // Fencing: the request relies on locks of an earlier lease (this client's earlier
                // connection, or an earlier run of this brick); those locks are gone.
                _server.Log.Write('W', _server.Name, $"{Who}: {fop} request {id} refused with ESTALE: it carries lock epoch {stamped}, the client's lease is epoch {LeaseEpoch}");
                reply = Fail(Errno.ESTALE);
            }
            else
            {
                var ctx = work.Message.Caller.ToContext(ClientId, id, token);
                (reply, replyBulk) = await DispatchAsync(fop, work.Message, work.Bulk, ctx);
            }
        }
        catch (Exception e)
        {
            _server.Log.Write('E', _server.Name, $"{Who}: {fop} request {id} threw; answering EIO: {e}");
            reply = new ErrorReply { Errno = (int)Errno.EIO };
        }
        finally
        {
            work.Bulk?.Dispose();
            if (cts is not null)
            {
                _cancellable.TryRemove(id, out _);
                cts.Dispose();
            }
        }
        ReadOnlyMemory<byte> payload = default;
        try
        {
            if (replyBulk is not null) payload = replyBulk.Memory;
        }
        catch (ObjectDisposedException)
        {
            // A translator answered with a buffer already given back: its bytes are gone, but the
            // client must still get an answer rather than wait on this request forever.
            _server.Log.Write('E', _server.Name, $"{Who}: {fop} request {id} answered with a released data buffer; answering EIO");
            reply = Fail(Errno.EIO);
        }
        try
        {
            await SendQuietlyAsync(FrameKind.Reply, (int)fop, id, reply, payload);
        }
        finally
        {
            replyBulk?.Dispose();
            _inflight.Release();
        }
    }

    private static IMessage Fail(Errno e) => new ErrorReply { Errno = (int)e };

    private bool TryHandle(ulong handle, out FileHandle fd) => _handles.TryGetValue(handle, out fd!);

    private ulong AddHandle(FileHandle fd)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextHandle);
        fd.Id = id;
        _handles[id] = fd;
        return id;
    }

    private async ValueTask<(IMessage Reply, DataBuffer? Bulk)> DispatchAsync(Fop fop, IWireRequest message, DataBuffer? bulk, FopContext ctx)
    {
        var brick = _server.Brick;
        switch (fop)
        {
            case Fop.Lookup:
            {
                var q = (LookupRequest)message;
                var r = await brick.LookupAsync(ctx, q.Parent.FromWire(), q.Name);
                return (r.Ok ? new LookupReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Stat:
            {
                var q = (StatRequest)message;
                FileHandle? fd = null;
                if (q.Handle != 0 && !TryHandle(q.Handle, out fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.StatAsync(ctx, q.Gfid.FromWire(), fd);
                return (r.Ok ? new StatReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Setattr:
            {
                var q = (Wire.SetattrRequest)message;
                FileHandle? fd = null;
                if (q.Handle != 0 && !TryHandle(q.Handle, out fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.SetattrAsync(ctx, q.Gfid.FromWire(), fd, q.Args.FromWire());
                return (r.Ok ? new SetattrReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Readlink:
            {
                var q = (ReadlinkRequest)message;
                var r = await brick.ReadlinkAsync(ctx, q.Gfid.FromWire());
                return (r.Ok ? new ReadlinkReply { Target = r.Value } : Fail(r.Error), null);
            }
            case Fop.Mknod:
            {
                var q = (MknodRequest)message;
                var r = await brick.MknodAsync(ctx, q.Parent.FromWire(), q.Name, q.Mode, q.Rdev, q.NewGfid.FromWire());
                return (r.Ok ? new MknodReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Mkdir:
            {
                var q = (MkdirRequest)message;
                var r = await brick.MkdirAsync(ctx, q.Parent.FromWire(), q.Name, q.Mode, q.NewGfid.FromWire());
                return (r.Ok ? new MkdirReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Unlink:
            {
                var q = (UnlinkRequest)message;
                return (Fail((await brick.UnlinkAsync(ctx, q.Parent.FromWire(), q.Name)).Error), null);
            }
            case Fop.Rmdir:
            {
                var q = (RmdirRequest)message;
                return (Fail((await brick.RmdirAsync(ctx, q.Parent.FromWire(), q.Name)).Error), null);
            }
            case Fop.Symlink:
            {
                var q = (SymlinkRequest)message;
                var r = await brick.SymlinkAsync(ctx, q.Parent.FromWire(), q.Name, q.Target, q.NewGfid.FromWire());
                return (r.Ok ? new SymlinkReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Rename:
            {
                var q = (RenameRequest)message;
                var r = await brick.RenameAsync(ctx, q.OldParent.FromWire(), q.OldName, q.NewParent.FromWire(), q.NewName, (RenameFlags)q.Flags);
                return (Fail(r.Error), null);
            }
            case Fop.Link:
            {
                var q = (LinkRequest)message;
                var r = await brick.LinkAsync(ctx, q.Gfid.FromWire(), q.NewParent.FromWire(), q.NewName);
                return (r.Ok ? new LinkReply { Attr = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Open:
            {
                var q = (OpenRequest)message;
                var fd = new FileHandle(q.Gfid.FromWire(), q.Flags) { LockOwner = q.FdLockOwner };
                var r = await brick.OpenAsync(ctx, fd);
                return (r.Ok ? new OpenReply { Handle = AddHandle(fd) } : Fail(r.Error), null);
            }
            case Fop.Create:
            {
                var q = (CreateRequest)message;
                var fd = new FileHandle(q.Gfid.FromWire(), q.Flags) { LockOwner = q.FdLockOwner };
                var r = await brick.CreateAsync(ctx, q.Parent.FromWire(), q.Name, q.Mode, fd);
                return (r.Ok ? new CreateReply { Attr = r.Value.ToWire(), Handle = AddHandle(fd) } : Fail(r.Error), null);
            }
            case Fop.Read:
            {
                var q = (ReadRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                long room = _channel.FrameMax - FrameHeader.Size - 64;
                if (q.Size > room) return (Fail(Errno.EINVAL), null);
                var r = await brick.ReadAsync(ctx, fd, q.Offset, (int)q.Size);
                if (!r.Ok) return (Fail(r.Error), null);
                return (new ReadReply(), r.Value);
            }
            case Fop.Write:
            {
                var q = (WriteRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.WriteAsync(ctx, fd, q.Offset, bulk is null ? ReadOnlyMemory<byte>.Empty : bulk.Memory);
                return (r.Ok ? new WriteReply { Count = (uint)r.Value } : Fail(r.Error), null);
            }
            case Fop.Statfs:
            {
                var q = (StatfsRequest)message;
                var r = await brick.StatfsAsync(ctx, q.Gfid.FromWire());
                return (r.Ok ? new StatfsReply { Info = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Flush:
            {
                var q = (FlushRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                return (Fail((await brick.FlushAsync(ctx, fd)).Error), null);
            }
            case Fop.Release:
            {
                var q = (ReleaseRequest)message;
                if (!_handles.TryRemove(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                return (Fail((await brick.ReleaseAsync(ctx, fd)).Error), null);
            }
            case Fop.Fsync:
            {
                var q = (FsyncRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                return (Fail((await brick.FsyncAsync(ctx, fd, q.DataOnly)).Error), null);
            }
            case Fop.Setxattr:
            {
                var q = (Wire.SetxattrRequest)message;
                var r = await brick.SetxattrAsync(ctx, q.Gfid.FromWire(), q.Name, q.Value.Memory, q.Flags);
                return (Fail(r.Error), null);
            }
            case Fop.Getxattr:
            {
                var q = (GetxattrRequest)message;
                var r = await brick.GetxattrAsync(ctx, q.Gfid.FromWire(), q.Name);
                return (r.Ok ? new GetxattrReply { Value = UnsafeByteOperations.UnsafeWrap(r.Value) } : Fail(r.Error), null);
            }
            case Fop.Listxattr:
            {
                var q = (ListxattrRequest)message;
                var r = await brick.ListxattrAsync(ctx, q.Gfid.FromWire());
                if (!r.Ok) return (Fail(r.Error), null);
                var reply = new ListxattrReply();
                reply.Names.Add(r.Value);
                return (reply, null);
            }
            case Fop.Removexattr:
            {
                var q = (RemovexattrRequest)message;
                return (Fail((await brick.RemovexattrAsync(ctx, q.Gfid.FromWire(), q.Name)).Error), null);
            }
            case Fop.Opendir:
            {
                var q = (OpendirRequest)message;
                var fd = new FileHandle(q.Gfid.FromWire(), q.Flags, isDirectory: true) { LockOwner = q.FdLockOwner };
                var r = await brick.OpendirAsync(ctx, fd);
                return (r.Ok ? new OpendirReply { Handle = AddHandle(fd) } : Fail(r.Error), null);
            }
            case Fop.Readdir:
            {
                var q = (ReaddirRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.ReaddirAsync(ctx, fd, q.Offset, q.SizeHint);
                if (!r.Ok) return (Fail(r.Error), null);
                var reply = new ReaddirReply();
                foreach (var e in r.Value) reply.Entries.Add(e.ToWire());
                return (reply, null);
            }
            case Fop.Readdirplus:
            {
                var q = (ReaddirplusRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.ReaddirplusAsync(ctx, fd, q.Offset, q.SizeHint);
                if (!r.Ok) return (Fail(r.Error), null);
                var reply = new ReaddirplusReply();
                foreach (var e in r.Value) reply.Entries.Add(e.ToWire());
                return (reply, null);
            }
            case Fop.Releasedir:
            {
                var q = (ReleasedirRequest)message;
                if (!_handles.TryRemove(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                return (Fail((await brick.ReleasedirAsync(ctx, fd)).Error), null);
            }
            case Fop.Fsyncdir:
            {
                var q = (FsyncdirRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                return (Fail((await brick.FsyncdirAsync(ctx, fd, q.DataOnly)).Error), null);
            }
            case Fop.Lk:
            {
                var q = (LkRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                if (q.FdLockOwner != 0) fd.LockOwner = q.FdLockOwner;
                var lk = q.Lock.FromWire() with { ClientId = ClientId };
                var r = await brick.LkAsync(ctx, fd, (LockCommand)q.Command, lk);
                return (r.Ok ? new LkReply { Lock = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Access:
            {
                var q = (AccessRequest)message;
                return (Fail((await brick.AccessAsync(ctx, q.Gfid.FromWire(), q.Mask)).Error), null);
            }
            case Fop.Fallocate:
            {
                var q = (FallocateRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                return (Fail((await brick.FallocateAsync(ctx, fd, q.Mode, q.Offset, q.Length)).Error), null);
            }
            case Fop.Xattrop:
            {
                var q = (XattropRequest)message;
                FileHandle? fd = null;
                if (q.Handle != 0 && !TryHandle(q.Handle, out fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.XattropAsync(ctx, q.Gfid.FromWire(), fd, q.Deltas.FromWire());
                return (r.Ok ? new XattropReply { Values = { r.Value.ToWire() } } : Fail(r.Error), null);
            }
            case Fop.Inodelk:
            {
                var q = (InodelkRequest)message;
                var lk = q.Lock.FromWire() with { ClientId = ClientId };
                var r = await brick.InodelkAsync(ctx, q.Domain, q.Gfid.FromWire(), (LockCommand)q.Command, lk);
                return (r.Ok ? new InodelkReply { Lock = r.Value.ToWire() } : Fail(r.Error), null);
            }
            case Fop.Entrylk:
            {
                var q = (EntrylkRequest)message;
                var r = await brick.EntrylkAsync(ctx, q.Domain, q.Parent.FromWire(), q.HasName ? q.Name : null, (LockCommand)q.Command, (LockType)q.Type);
                return (Fail(r.Error), null);
            }
            case Fop.Lseek:
            {
                var q = (LseekRequest)message;
                if (!TryHandle(q.Handle, out var fd)) return (Fail(Errno.EBADF), null);
                var r = await brick.LseekAsync(ctx, fd, q.Offset, q.Whence);
                return (r.Ok ? new LseekReply { Offset = r.Value } : Fail(r.Error), null);
            }
            default:
                throw new InvalidOperationException($"fop {fop} has a wire message but no server dispatch");
        }
    }
}
