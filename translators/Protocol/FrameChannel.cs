using System.Buffers;
using Brickfs.Translators.Core;
using Google.Protobuf;

namespace Brickfs.Translators.Protocol;

/// <summary>What a <see cref="FrameChannel"/> reader hands each frame to.</summary>
internal interface IFrameHandler
{
    /// <summary>
    /// Decodes the frame's message; the bytes are valid only during the call. Throws
    /// <see cref="ProtocolException"/> for frames the peer must not send.
    /// </summary>
    object? Parse(in FrameHeader header, in ReadOnlySequence<byte> message);

    /// <summary>Takes the parsed frame; owns <paramref name="bulk"/> (disposes it when done). May apply backpressure by not completing.</summary>
    ValueTask DeliverAsync(FrameHeader header, object? message, DataBuffer? bulk);
}

/// <summary>
/// Frames over a <see cref="Transport"/>, for both ends. One reader loop decodes frames in
/// arrival order; senders take a per-connection write lock, so frames never interleave. Bulk of
/// 64 KiB or more bypasses the pipes on sockets: received bulk lands in a pooled
/// <see cref="DataBuffer"/> straight from the socket, sent bulk leaves from the caller's memory.
/// </summary>
internal sealed class FrameChannel
{
    /// <summary>Bulk at least this long skips the pipe copy; smaller bulk rides with its header in one send.</summary>
    public const int DirectThreshold = 64 * 1024;

    private readonly Transport _transport;
    private readonly long _frameMax;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private long _writeStartedAt;
    private long _lastReceivedAt = Environment.TickCount64;

    public FrameChannel(Transport transport, long frameMax)
    {
        _transport = transport;
        _frameMax = frameMax;
    }

    public Transport Transport => _transport;

    public long FrameMax => _frameMax;

    /// <summary>Environment.TickCount64 when bytes last arrived.</summary>
    public long LastReceivedAt => Volatile.Read(ref _lastReceivedAt);

    /// <summary>How long the current send has waited on the transport (a peer that stopped reading), or zero.</summary>
    public TimeSpan CurrentWriteAge
    {
        get
        {
            long started = Volatile.Read(ref _writeStartedAt);
            return started == 0 ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Environment.TickCount64 - started);
        }
    }

    /// <summary>
    /// Starts <paramref name="run"/> (a loop around <see cref="RunReaderAsync"/>): on a thread of
    /// its own when the transport's reads block, else on the thread pool. The task completes
    /// when the loop does.
    /// </summary>
    public Task StartReader(Func<Task> run, string threadName)
    {
        if (!_transport.ReadsBlock) return run();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                run().GetAwaiter().GetResult();
                done.TrySetResult();
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        }) { IsBackground = true, Name = threadName };
        thread.Start();
        return done.Task;
    }

    /// <summary>
    /// Reads frames until the peer closes cleanly (returns) or breaks the protocol
    /// (<see cref="ProtocolException"/>); transport failures surface as their own exceptions.
    /// </summary>
    public async Task RunReaderAsync(IFrameHandler handler, CancellationToken cancellation)
    {
        var input = _transport.Input;
        while (true)
        {
            var result = await input.ReadAsync(cancellation);
            if (result.IsCanceled) throw new OperationCanceledException("read cancelled");
            var buffer = result.Buffer;
            Volatile.Write(ref _lastReceivedAt, Environment.TickCount64);

            // A frame whose large bulk is not all here yet: its bulk is finished by a direct read.
            DataBuffer? partialBulk = null;
            FrameHeader partialHeader = default;
            object? partialMessage = null;
            int partialHave = 0;

            while (buffer.Length >= FrameHeader.Size)
            {
                var header = ReadHeader(buffer);
                long headAndMessage = FrameHeader.Size + header.MessageLength;
                if (buffer.Length < headAndMessage) break;
                if (buffer.Length < header.TotalLength && header.BulkLength < DirectThreshold) break;

                var message = handler.Parse(header, buffer.Slice(FrameHeader.Size, header.MessageLength));
                if (header.BulkLength == 0)
                {
                    buffer = buffer.Slice(headAndMessage);
                    await handler.DeliverAsync(header, message, null);
                    continue;
                }
                var bulk = DataBuffer.Rent(header.BulkLength);
                int have = (int)Math.Min(buffer.Length - headAndMessage, header.BulkLength);
                buffer.Slice(headAndMessage, have).CopyTo(bulk.Span);
                if (have < header.BulkLength)
                {
                    partialBulk = bulk;
                    partialHeader = header;
                    partialMessage = message;
                    partialHave = have;
                    buffer = buffer.Slice(buffer.End);
                    break;
                }
                buffer = buffer.Slice(header.TotalLength);
                await handler.DeliverAsync(header, message, bulk);
            }

            if (partialBulk is not null)
            {
                input.AdvanceTo(buffer.End);
                try
                {
                    await _transport.ReadExactlyAsync(partialBulk.Memory[partialHave..], cancellation);
                }
                catch (EndOfStreamException)
                {
                    partialBulk.Dispose();
                    throw new ProtocolException($"connection closed mid-frame ({partialHave} of {partialHeader.BulkLength} bulk bytes)");
                }
                catch
                {
                    partialBulk.Dispose();
                    throw;
                }
                Volatile.Write(ref _lastReceivedAt, Environment.TickCount64);
                await handler.DeliverAsync(partialHeader, partialMessage, partialBulk);
                continue;
            }

            if (result.IsCompleted)
            {
                long left = buffer.Length;
                input.AdvanceTo(buffer.End);
                if (left > 0) throw new ProtocolException($"connection closed mid-frame ({left} bytes of an incomplete frame)");
                return;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private FrameHeader ReadHeader(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> tmp = stackalloc byte[FrameHeader.Size];
        var first = buffer.FirstSpan;
        if (first.Length >= FrameHeader.Size) return FrameHeader.Read(first, _frameMax);
        buffer.Slice(0, FrameHeader.Size).CopyTo(tmp);
        return FrameHeader.Read(tmp, _frameMax);
    }

    /// <summary>
    /// Sends one frame. Throws when the transport is broken (the caller treats the connection as
    /// gone) and <see cref="ArgumentException"/> when the frame would exceed frame-max.
    /// </summary>
    public async ValueTask SendAsync(FrameKind kind, int fop, ulong id, IMessage? message, ReadOnlyMemory<byte> bulk)
    {
        int messageLength = message?.CalculateSize() ?? 0;
        var header = new FrameHeader(kind, fop, id, messageLength, bulk.Length);
        if (header.TotalLength > _frameMax) throw new ArgumentException($"frame of {header.TotalLength} bytes is over frame-max {_frameMax}");

        await _writeLock.WaitAsync();
        try
        {
            Volatile.Write(ref _writeStartedAt, Environment.TickCount64);
            var output = _transport.Output;
            int head = FrameHeader.Size + messageLength;
            var span = output.GetSpan(head);
            header.Write(span);
            message?.WriteTo(span.Slice(FrameHeader.Size, messageLength));
            output.Advance(head);
            if (bulk.Length >= DirectThreshold)
            {
                await _transport.WriteDirectAsync(bulk, CancellationToken.None);
                return;
            }
            if (bulk.Length > 0) output.Write(bulk.Span);
            var flush = await output.FlushAsync();
            if (flush.IsCompleted || flush.IsCanceled) throw new IOException("the peer closed the connection");
        }
        finally
        {
            Volatile.Write(ref _writeStartedAt, 0);
            _writeLock.Release();
        }
    }
}
