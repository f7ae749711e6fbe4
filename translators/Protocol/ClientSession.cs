using System.Buffers;
using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Protocol.Wire;
using Google.Protobuf;

namespace Brickfs.Translators.Protocol;

/// <summary>The answer to one request: the reply message and READ bulk, or the errno of a failed connection.</summary>
internal readonly record struct WireReply(IWireReply? Message, DataBuffer? Bulk, Errno TransportError);

/// <summary>
/// One connection of protocol/client to its brick. Requests get increasing ids and wait in a
/// table for their reply (any order). When the connection fails (socket error, protocol error,
/// no traffic within ping-timeout) every waiting request and every later one ends with ENOTCONN;
/// the translator then builds a new session.
/// </summary>
internal sealed class ClientSession : IFrameHandler
{
    /// <summary>
    /// A request waiting for its reply. Its continuation (the caller's code after
    /// <see cref="CallAsync"/>) runs inline on the thread that decoded the reply, the
    /// connection's reader, as GlusterFS runs a fop's callback on its epoll thread: handing it to
    /// the pool would cost another thread wake-up per request.
    /// </summary>
    private sealed class Pending(Fop fop) : TaskCompletionSource<WireReply>(TaskCreationOptions.None)
    {
        public readonly Fop Fop = fop;
    }

    private readonly FrameChannel _channel;
    private readonly ConcurrentDictionary<ulong, Pending> _pending = new();
    private readonly TaskCompletionSource<HandshakeReply> _handshake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<string> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private long _nextId;
    private long _lastPingAt = Environment.TickCount64;
    private volatile bool _dead;

    public ClientSession(Transport transport, long frameMax, long generation)
    {
        _channel = new FrameChannel(transport, frameMax);
        Generation = generation;
    }

    /// <summary>Distinguishes sessions: remote handle ids are only valid in the session that opened them.</summary>
    public long Generation { get; }

    public bool IsDead => _dead;

    /// <summary>The lease epoch the brick gave this connection (0 before the handshake, or from a brick without leases).</summary>
    public ulong LeaseEpoch { get; set; }

    /// <summary>The brick's lease-timeout (zero: the brick expires no leases).</summary>
    public TimeSpan LeaseTimeout { get; set; }

    /// <summary>Milliseconds since anything last arrived from the brick.</summary>
    public long SilentMs => Environment.TickCount64 - _channel.LastReceivedAt;

    /// <summary>Completes with the reason once the session is dead.</summary>
    public Task<string> Closed => _closed.Task;

    /// <summary>
    /// Runs once when the session dies, before <see cref="CloseReason"/> is set and before any
    /// waiting request learns of it (protocol/client fences its locked files here, so no request
    /// can see the death without the fence).
    /// </summary>
    public Action<string>? Failing { get; set; }

    /// <summary>Why the session died; set before any waiting request learns of it.</summary>
    public string? CloseReason { get; private set; }

    public long FrameMax => _channel.FrameMax;

    /// <summary>Where round-trip times go (protocol/client's latency-stats), or null.</summary>
    public FopStats? Stats { get; init; }

    public void Start()
    {
        _ = _channel.StartReader(RunReaderAsync, "brickfs-client-rx");
    }

    private async Task RunReaderAsync()
    {
        string reason;
        try
        {
            await _channel.RunReaderAsync(this, _stop.Token);
            reason = "the brick closed the connection";
        }
        catch (ProtocolException e)
        {
            reason = $"protocol error from the brick: {e.Message}";
        }
        catch (Exception e)
        {
            reason = e is OperationCanceledException ? "connection closed" : $"connection lost: {e.Message}";
        }
        Fail(reason);
    }

    /// <summary>Kills the session: the transport closes and every waiting request ends with ENOTCONN.</summary>
    public void Fail(string reason)
    {
        if (_dead) return;
        _dead = true;
        try
        {
            Failing?.Invoke(reason);
        }
        finally
        {
            CloseReason = reason;
        }
        _closed.TrySetResult(reason);
        _handshake.TrySetException(new IOException(reason));
        _channel.Transport.Abort();
        try { _stop.Cancel(); } catch (ObjectDisposedException) { }
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var p)) p.TrySetResult(new WireReply(null, null, Errno.ENOTCONN));
        }
    }

    public async Task<HandshakeReply> HandshakeAsync(Handshake hs, TimeSpan timeout)
    {
        await _channel.SendAsync(FrameKind.Handshake, 0, 0, hs, default);
        return await _handshake.Task.WaitAsync(timeout);
    }

    /// <summary>
    /// Called on the translator's timer: sends a ping every <paramref name="pingInterval"/> (the
    /// pings renew the client's lease on the brick) and kills the session when nothing (reply or
    /// pong) arrived for <paramref name="pingTimeout"/>.
    /// </summary>
    public void Tick(TimeSpan pingTimeout, TimeSpan pingInterval)
    {
        if (_dead) return;
        long now = Environment.TickCount64;
        long silent = now - _channel.LastReceivedAt;
        if (silent > pingTimeout.TotalMilliseconds)
        {
            Fail($"no reply from the brick within ping-timeout ({pingTimeout.TotalSeconds:0.##} s)");
            return;
        }
        if (now - _lastPingAt >= pingInterval.TotalMilliseconds)
        {
            _lastPingAt = now;
            _ = SendPingAsync();
        }
    }

    private async Task SendPingAsync()
    {
        try
        {
            await _channel.SendAsync(FrameKind.Ping, 0, 0, null, default);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Fail($"ping could not be sent: {e.Message}");
        }
    }

    /// <summary>
    /// Sends a request and waits for its reply. Never throws for transport trouble: a dead
    /// session answers ENOTCONN. The caller's continuation may run on the connection's reader
    /// thread: it must not block that thread waiting for another reply (await instead). <paramref name="cancellation"/> (an interrupted F_SETLKW) asks
    /// the brick to cancel; the brick's reply (EINTR) still ends the call.
    /// </summary>
    public async ValueTask<WireReply> CallAsync(Fop fop, IWireRequest request, ReadOnlyMemory<byte> bulk, CancellationToken cancellation = default)
    {
        if (_dead) return new WireReply(null, null, Errno.ENOTCONN);
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        long started = Stats is null ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();
        var pending = new Pending(fop);
        _pending[id] = pending;
        if (_dead && _pending.TryRemove(id, out _)) return new WireReply(null, null, Errno.ENOTCONN);
        try
        {
            await _channel.SendAsync(FrameKind.Request, (int)fop, id, request, bulk);
        }
        catch (ArgumentException)
        {
            _pending.TryRemove(id, out _);
            return new WireReply(null, null, Errno.EINVAL);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Fail($"send failed: {e.Message}");
            return new WireReply(null, null, Errno.ENOTCONN);
        }
        WireReply reply;
        if (!cancellation.CanBeCanceled) reply = await pending.Task;
        else
        {
            await using var reg = cancellation.Register(() => _ = SendCancelAsync(id));
            reply = await pending.Task;
        }
        Stats?.Record(fop, started);
        return reply;
    }

    private async Task SendCancelAsync(ulong id)
    {
        try
        {
            await _channel.SendAsync(FrameKind.Cancel, 0, id, null, default);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Fail($"send failed: {e.Message}");
        }
    }

    // ---- frames in ----------------------------------------------------------------------------

    public object? Parse(in FrameHeader header, in ReadOnlySequence<byte> message)
    {
        switch (header.Kind)
        {
            case FrameKind.Reply:
                if (!_pending.TryGetValue(header.RequestId, out var p)) return null; // its caller gave up; drop it
                if (p.Fop != (Fop)header.Fop) throw new ProtocolException($"reply {header.RequestId} is for {header.Fop}, the request was {p.Fop}");
                try
                {
                    return WireTable.ReplyParser(p.Fop).ParseFrom(message);
                }
                catch (InvalidProtocolBufferException e)
                {
                    throw new ProtocolException($"malformed {p.Fop} reply: {e.Message}");
                }
            case FrameKind.HandshakeReply:
                return HandshakeReply.Parser.ParseFrom(message);
            case FrameKind.Pong:
                return null;
            default:
                throw new ProtocolException($"unexpected {header.Kind} frame from the brick");
        }
    }

    public ValueTask DeliverAsync(FrameHeader header, object? message, DataBuffer? bulk)
    {
        switch (header.Kind)
        {
            case FrameKind.Reply when message is IWireReply reply && _pending.TryRemove(header.RequestId, out var p):
                if (!p.TrySetResult(new WireReply(reply, bulk, Errno.None))) bulk?.Dispose();
                break;
            case FrameKind.HandshakeReply:
                _handshake.TrySetResult((HandshakeReply)message!);
                break;
            default:
                bulk?.Dispose();
                break;
        }
        return ValueTask.CompletedTask;
    }
}
