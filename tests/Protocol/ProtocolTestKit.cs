using System.Net;
using System.Net.Sockets;
using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;
using Brickfs.Translators.Storage;
using Google.Protobuf;

namespace Brickfs.Tests.Protocol;

/// <summary>A TextWriter tests read back while servers write to it from other threads.</summary>
internal sealed class CaptureWriter : TextWriter
{
    private readonly StringBuilder _text = new();
    public override Encoding Encoding => Encoding.UTF8;
    public override void Write(char value) { lock (_text) _text.Append(value); }
    public override void Write(string? value) { lock (_text) _text.Append(value); }
    public override string ToString() { lock (_text) return _text.ToString(); }
}

internal static class Kit
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    public static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>Waits until <paramref name="condition"/> holds; fails the test with <paramref name="what"/> at the deadline.</summary>
    public static async Task Eventually(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? Deadline);
        while (!condition())
        {
            if (DateTime.UtcNow > until) Assert.Fail($"timed out waiting for: {what}");
            await Task.Delay(10);
        }
    }

    public static FopContext Ctx(uint uid = 0) => new() { Uid = uid, Gid = uid, Pid = 42, ClientId = "test" };

    public static TranslatorOptions ServerOptions(params (string, string)[] values) =>
        TranslatorOptions.From(ProtocolServerTranslator.OptionSpecs, values);

    public static TranslatorOptions ClientOptions(params (string, string)[] values) =>
        TranslatorOptions.From(ProtocolClientTranslator.OptionSpecs, values);

    /// <summary>A protocol/server built in code over <paramref name="brick"/> (whose Name is the brick name).</summary>
    public static ProtocolServerTranslator Server(Translator brick, ProtocolLog log, params (string, string)[] values)
    {
        var server = new ProtocolServerTranslator(ServerOptions(values)) { Name = "srv", TypeName = "protocol/server", Log = log };
        server.Attach(brick);
        return server;
    }

    public static MemoryStorageTranslator Memory(string name = "b1") => new() { Name = name, TypeName = "storage/memory" };

    public static ProtocolClientTranslator Client(ProtocolLog log, params (string, string)[] values)
    {
        var c = new ProtocolClientTranslator(ClientOptions(values)) { Name = "cli", TypeName = "protocol/client", Log = log };
        return c;
    }

    public static async Task<ProtocolClientTranslator> TcpClientAsync(ProtocolLog log, int port, params (string, string)[] extra)
    {
        var c = Client(log, [("remote-host", "127.0.0.1"), ("remote-port", port.ToString()), ("remote-subvolume", "b1"), .. extra]);
        await c.InitAsync(CancellationToken.None);
        return c;
    }

    public static async Task<FileHandle> CreateAsync(Translator t, string name, byte[]? content = null)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await t.CreateAsync(Ctx(), Gfid.Root, name, 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"create {name}");
        if (content is not null) Assert.That((await t.WriteAsync(Ctx(), fd, 0, content)).Value, Is.EqualTo(content.Length));
        return fd;
    }
}

/// <summary>
/// A raw wire peer over TCP for feeding a server bytes a real client never sends, and reading
/// what comes back.
/// </summary>
public sealed class RawPeer : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawPeer(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static async Task<RawPeer> ConnectAsync(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(Kit.Deadline);
        await s.ConnectAsync(IPAddress.Loopback, port, cts.Token);
        return new RawPeer(s);
    }

    public Socket Socket => _socket;

    public static byte[] Frame(FrameKind kind, int fop, ulong id, IMessage? message, byte[]? bulk = null)
    {
        byte[] msg = message?.ToByteArray() ?? [];
        bulk ??= [];
        var frame = new byte[FrameHeader.Size + msg.Length + bulk.Length];
        new FrameHeader(kind, fop, id, msg.Length, bulk.Length).Write(frame);
        msg.CopyTo(frame, FrameHeader.Size);
        bulk.CopyTo(frame, FrameHeader.Size + msg.Length);
        return frame;
    }

    public async Task SendAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(Kit.Deadline);
        await _stream.WriteAsync(bytes, cts.Token);
    }

    public Task HandshakeAsync(string brick = "b1", string secret = "", string clientId = "raw") =>
        SendAsync(Frame(FrameKind.Handshake, 0, 0, new Brickfs.Translators.Protocol.Wire.Handshake
        {
            Version = ProtocolServerTranslator.ProtocolVersion, Brick = brick, ClientId = clientId, Secret = secret,
        }));

    /// <summary>The next frame's header and message bytes (bulk skipped), or null when the server closed.</summary>
    public async Task<(FrameHeader Header, byte[] Message)?> ReadFrameAsync()
    {
        using var cts = new CancellationTokenSource(Kit.Deadline);
        var head = new byte[FrameHeader.Size];
        try
        {
            await _stream.ReadExactlyAsync(head, cts.Token);
            var h = FrameHeader.Read(head, long.MaxValue);
            var body = new byte[h.MessageLength + h.BulkLength];
            await _stream.ReadExactlyAsync(body, cts.Token);
            return (h, body[..h.MessageLength]);
        }
        catch (Exception e) when (e is EndOfStreamException or IOException)
        {
            return null;
        }
    }

    /// <summary>Reads until the server closes the connection; fails the test at the deadline.</summary>
    public async Task ExpectClosedAsync()
    {
        using var cts = new CancellationTokenSource(Kit.Deadline);
        var buf = new byte[64 * 1024];
        try
        {
            while (await _stream.ReadAsync(buf, cts.Token) > 0) { }
        }
        catch (IOException)
        {
            // reset by the server: closed as well
        }
        catch (OperationCanceledException)
        {
            Assert.Fail("the server did not close the connection");
        }
    }

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}

/// <summary>A TCP relay in front of a server that can be frozen: bytes stop flowing both ways, connections stay open (a cut link).</summary>
internal sealed class FreezableProxy : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly int _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = [];

    public FreezableProxy(int target)
    {
        _target = target;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
        _ = AcceptLoopAsync();
    }

    public int Port { get; }
    private volatile bool _frozen;

    public bool Frozen { get => _frozen; set => _frozen = value; }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket inbound;
            try { inbound = await _listener.AcceptAsync(_stop.Token); }
            catch (Exception) { return; }
            var outbound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try { await outbound.ConnectAsync(IPAddress.Loopback, _target, _stop.Token); }
            catch (Exception) { inbound.Dispose(); outbound.Dispose(); continue; }
            lock (_sockets) _sockets.AddRange([inbound, outbound]);
            _ = PumpAsync(inbound, outbound);
            _ = PumpAsync(outbound, inbound);
        }
    }

    private async Task PumpAsync(Socket from, Socket to)
    {
        var buf = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buf, _stop.Token);
                if (n == 0) break;
                while (_frozen) await Task.Delay(10, _stop.Token);
                await to.SendAsync(buf.AsMemory(0, n), _stop.Token);
            }
        }
        catch (Exception)
        {
        }
        try { to.Shutdown(SocketShutdown.Send); } catch (Exception) { }
    }

    public ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_sockets) foreach (var s in _sockets) s.Dispose();
        return ValueTask.CompletedTask;
    }
}
