using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace Brickfs.Translators.Protocol;

/// <summary>
/// A byte stream between client and brick, seen as a pipe pair. The codec (FrameChannel) only
/// uses this class, so tests run the real codec in memory. An abstract class rather than an
/// interface so members can be added later.
/// </summary>
public abstract class Transport : IAsyncDisposable
{
    public abstract PipeReader Input { get; }
    public abstract PipeWriter Output { get; }

    /// <summary>The peer's address as auth.allow matches it (an IP literal, or "memory").</summary>
    public abstract string RemoteAddress { get; }

    /// <summary>
    /// Reads exactly <paramref name="destination"/>.Length bytes that follow everything
    /// <see cref="Input"/> has handed out. Precondition: the caller consumed all of Input's buffer.
    /// Sockets read straight into the destination (no pipe copy); others go through Input.
    /// </summary>
    public virtual async ValueTask ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellation)
    {
        while (destination.Length > 0)
        {
            var r = await Input.ReadAsync(cancellation);
            var buf = r.Buffer;
            int n = (int)Math.Min(buf.Length, destination.Length);
            buf.Slice(0, n).CopyTo(destination.Span);
            destination = destination[n..];
            Input.AdvanceTo(buf.GetPosition(n));
            if (destination.Length > 0 && r.IsCompleted) throw new ProtocolException("connection closed mid-frame");
        }
    }

    /// <summary>
    /// Sends <paramref name="data"/> after everything written to <see cref="Output"/> so far.
    /// Sockets flush the pipe and send from the caller's memory (no pipe copy).
    /// </summary>
    public virtual async ValueTask WriteDirectAsync(ReadOnlyMemory<byte> data, CancellationToken cancellation)
    {
        await Output.WriteAsync(data, cancellation);
    }

    /// <summary>
    /// True when <see cref="Input"/> and <see cref="ReadExactlyAsync"/> block the calling thread
    /// until bytes arrive (they then complete synchronously). The codec's reader loop must then
    /// run on a thread of its own (see <see cref="FrameChannel.StartReader"/>); <see cref="Abort"/>
    /// unblocks it.
    /// </summary>
    public virtual bool ReadsBlock => false;

    /// <summary>Closes at once; pending reads and writes on both sides end with an error or end of stream.</summary>
    public abstract void Abort();

    public virtual ValueTask DisposeAsync()
    {
        Abort();
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// TCP with TCP_NODELAY: small frames go out at once, bulk skips the pipe. Receiving blocks
/// (<see cref="Transport.ReadsBlock"/>): the connection's reader loop owns a thread that sleeps
/// in recv(2), so a frame is decoded and handed on by the thread the kernel wakes for it,
/// instead of hopping from the socket engine's epoll thread to a pool thread first (each hop is
/// a thread wake-up, and on a busy machine every wake-up waits its turn for a core). Sends stay
/// asynchronous: a peer that stops reading must not pin a thread.
/// </summary>
public sealed class SocketTransport : Transport
{
    private readonly Socket _socket;
    private readonly SafeSocketHandle _handle;
    private readonly NetworkStream _stream;
    private int _aborted;

    public SocketTransport(Socket socket)
    {
        _socket = socket;
        _socket.NoDelay = true;
        _handle = socket.SafeHandle;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(new ReceiveStream(_handle), new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 8 * 1024, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(minimumBufferSize: 16 * 1024, leaveOpen: true));
        RemoteAddress = socket.RemoteEndPoint is IPEndPoint ep
            ? (ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address).ToString()
            : "unknown";
    }

    public override PipeReader Input { get; }
    public override PipeWriter Output { get; }
    public override string RemoteAddress { get; }

    /// <summary>
    /// Connects to <paramref name="host"/>:<paramref name="port"/> (each address in turn).
    /// Not with <see cref="Socket.ConnectAsync(string, int, CancellationToken)"/>: an
    /// asynchronous connect registers the socket with the runtime's epoll thread for good, and
    /// from then on every arriving segment wakes that thread and a pool worker that find nothing
    /// to do, since this transport's reads block on a thread of their own (about a fifth of a
    /// mount's CPU in a small-file loop). Instead a non-blocking connect(2) whose completion is
    /// polled in short slices on a pool thread, so cancellation (the connect timeout) is seen
    /// within a slice.
    /// </summary>
    public static async ValueTask<SocketTransport> ConnectAsync(string host, int port, CancellationToken cancellation)
    {
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellation);
        SocketException? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await Task.Run(() => ConnectPolling(socket, new IPEndPoint(address, port), cancellation), cancellation);
                return new SocketTransport(socket);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        throw last ?? new SocketException((int)SocketError.HostNotFound);
    }

    private static void ConnectPolling(Socket socket, IPEndPoint endPoint, CancellationToken cancellation)
    {
        const int SliceMicroseconds = 50_000;
        socket.Blocking = false;
        try
        {
            socket.Connect(endPoint);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress)
        {
            while (!socket.Poll(SliceMicroseconds, SelectMode.SelectWrite)) cancellation.ThrowIfCancellationRequested();
            if (socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error) is int error and not 0)
                throw new SocketException(error);
        }
        socket.Blocking = true;
    }

    public override bool ReadsBlock => true;

    public override ValueTask ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellation)
    {
        while (destination.Length > 0)
        {
            int n = ReceiveStream.Receive(_handle, destination.Span, cancellation);
            if (n == 0) return ValueTask.FromException(new EndOfStreamException());
            destination = destination[n..];
        }
        return ValueTask.CompletedTask;
    }

    public override async ValueTask WriteDirectAsync(ReadOnlyMemory<byte> data, CancellationToken cancellation)
    {
        await Output.FlushAsync(cancellation);
        await _stream.WriteAsync(data, cancellation);
    }

    public override void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0) return;
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _stream.Dispose();
    }
}

/// <summary>
/// The receive side of a socket as a stream whose reads block in poll(2)/recv(2) and complete
/// synchronously, for a reader loop that owns its thread. Socket errors surface as
/// <see cref="IOException"/>, as from <see cref="NetworkStream"/>.
/// </summary>
internal sealed class ReceiveStream(SafeSocketHandle socket) : Stream
{
    public static int Receive(SafeSocketHandle socket, Span<byte> buffer, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        return Interop.SocketReceive.Receive(socket, buffer);
    }

    public override int Read(byte[] buffer, int offset, int count) => Receive(socket, buffer.AsSpan(offset, count), default);

    public override int Read(Span<byte> buffer) => Receive(socket, buffer, default);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            return ValueTask.FromResult(Receive(socket, buffer.Span, cancellationToken));
        }
        catch (Exception e)
        {
            return ValueTask.FromException<int>(e);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>Two pipes back to back: the real codec without sockets, for tests and in-process graphs.</summary>
public sealed class InMemoryTransport : Transport
{
    private readonly Pipe _in, _out;

    private InMemoryTransport(Pipe input, Pipe output, string remote)
    {
        _in = input;
        _out = output;
        RemoteAddress = remote;
    }

    public static (InMemoryTransport Client, InMemoryTransport Server) CreatePair(string clientAddress = "memory")
    {
        var options = new PipeOptions(pauseWriterThreshold: 4 * 1024 * 1024, resumeWriterThreshold: 2 * 1024 * 1024, useSynchronizationContext: false);
        var toServer = new Pipe(options);
        var toClient = new Pipe(options);
        return (new InMemoryTransport(toClient, toServer, "memory"), new InMemoryTransport(toServer, toClient, clientAddress));
    }

    public override PipeReader Input => _in.Reader;
    public override PipeWriter Output => _out.Writer;
    public override string RemoteAddress { get; }

    public override void Abort()
    {
        // Only writer ends are completed (thread-safe against a pending read): our input ends with
        // the error, and so does the peer's; later writes on either side fail.
        var closed = new ProtocolException("connection aborted");
        _in.Writer.Complete(closed);
        _out.Writer.Complete(closed);
    }
}

/// <summary>
/// Process-wide directory of in-memory brick servers, keyed "host:port" like TCP addresses, so a
/// volfile with <c>transport-type memory</c> on both sides builds a network volume in one process.
/// </summary>
public static class InMemoryNetwork
{
    private static readonly ConcurrentDictionary<string, Func<string, Transport>> Listeners = new(StringComparer.Ordinal);

    internal static void Listen(string address, Func<string, Transport> accept)
    {
        if (!Listeners.TryAdd(address, accept)) throw new InvalidOperationException($"in-memory address {address} is in use");
    }

    internal static void Unlisten(string address) => Listeners.TryRemove(address, out _);

    /// <summary>Connects to the in-memory server at <paramref name="address"/>; ECONNREFUSED as a SocketException when none listens.</summary>
    public static Transport Connect(string address) =>
        Listeners.TryGetValue(address, out var accept) ? accept("memory") : throw new SocketException((int)SocketError.ConnectionRefused);
}
