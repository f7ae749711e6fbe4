using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Protocol;

/// <summary>
/// protocol/server: the top of a brick graph. Accepts client connections (TCP, or in-process
/// with <c>transport-type memory</c>), checks each handshake (brick name = this volume's child,
/// <c>auth.allow</c> address patterns, <c>auth.secret</c>, optional <c>volume-name</c>), then runs
/// every request on the child concurrently and answers in completion order. A connection that
/// breaks the protocol or stops reading is closed with a logged reason; the brick and its other
/// connections carry on. When a client's last connection goes, its open handles are released and
/// every <see cref="IClientAware"/> translator below forgets that client.
/// </summary>
public sealed class ProtocolServerTranslator : Translator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("listen-host", OptionType.String, "0.0.0.0", "address to listen on"),
        new("listen-port", OptionType.Int, "24100", "TCP port to listen on; 0 picks a free one") { Min = 0, Max = 65535 },
        new("transport-type", OptionType.Choice, "tcp", "tcp, or memory: in-process clients only (tests)") { Choices = ["tcp", "memory"] },
        new("auth.allow", OptionType.List, "*", "client addresses allowed to connect; '*' wildcards (10.0.0.*)"),
        new("auth.secret", OptionType.String, "", "shared secret a client must present in its handshake; empty = none"),
        new("volume-name", OptionType.String, "", "when set, the volume name a client's handshake must carry"),
        new("frame-max", OptionType.Size, "4160KB", "largest frame accepted or sent (header + message + bulk)") { Min = 64 * 1024, Max = 1L << 30 },
        new("write-timeout", OptionType.Seconds, "10", "a connection whose replies cannot be sent for this long is closed") { Min = 0, Max = 3600 },
        new("outstanding-rpc-limit", OptionType.Int, "256", "requests in flight per connection before the server stops reading it") { Min = 1, Max = 65536 },
        new("lease-timeout", OptionType.Seconds, "10", "a client that sends no frame (pings included) for this long loses its lease: its connection, locks and lock epoch are dropped; 0 = only a closed connection does") { Min = 0, Max = 3600 },
    ];

    public static TranslatorType Type { get; } = new("protocol/server", OptionSpecs, 1, 1,
        o => new ProtocolServerTranslator(o), "serves its child (the brick) to protocol/client over the wire protocol");

    public const uint ProtocolVersion = 1;

    private readonly string _listenHost;
    private readonly int _listenPort;
    private readonly bool _inMemory;
    private readonly Regex[] _allow;
    private readonly string _secret;
    private readonly string _volumeName;
    private readonly ConcurrentDictionary<ServerConnection, byte> _connections = new();
    private readonly Dictionary<string, ServerConnection> _clients = new(StringComparer.Ordinal);
    private readonly Lock _clientsLock = new();
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _listener;
    private Task? _acceptLoop;
    private Timer? _watchdog;
    private string? _memoryAddress;
    private int _disposed;

    public ProtocolServerTranslator(TranslatorOptions options)
    {
        _listenHost = options.GetString("listen-host");
        _listenPort = (int)options.GetInt("listen-port");
        _inMemory = options.GetString("transport-type") == "memory";
        _allow = options.GetList("auth.allow").Select(GlobToRegex).ToArray();
        _secret = options.GetString("auth.secret");
        _volumeName = options.GetString("volume-name");
        FrameMax = options.GetSize("frame-max");
        WriteTimeout = options.GetSeconds("write-timeout");
        OutstandingRpcLimit = (int)options.GetInt("outstanding-rpc-limit");
        LeaseTimeout = options.GetSeconds("lease-timeout");
    }

    public long FrameMax { get; }
    public TimeSpan WriteTimeout { get; }
    public int OutstandingRpcLimit { get; }

    /// <summary>How long a client's lease lasts without a frame from it (see LEASES.md in translators/Features/Locks).</summary>
    public TimeSpan LeaseTimeout { get; }

    /// <summary>
    /// Lease epochs: one per accepted connection. Seeded from the wall clock in 100 ns ticks, so a
    /// restarted brick never hands out an epoch an earlier run gave (unless the clock went back or
    /// a run accepted ten million connections a second), and a request stamped with a lock epoch
    /// of an earlier run is refused like one of an earlier connection.
    /// </summary>
    private long _lastEpoch = DateTime.UtcNow.Ticks;

    internal ulong NextLeaseEpoch() => (ulong)Interlocked.Increment(ref _lastEpoch);

    /// <summary>Where log lines go; set before InitAsync.</summary>
    public ProtocolLog Log { get; set; } = ProtocolLog.Stderr;

    /// <summary>The bound TCP address once listening (the real port when listen-port is 0).</summary>
    public IPEndPoint? ListenEndPoint { get; private set; }

    /// <summary>Connections currently open (handshaken or not).</summary>
    public int ConnectionCount => _connections.Count;

    internal Translator Brick => Child;

    /// <summary>The brick this server serves: its child's volume name, which clients name as remote-subvolume.</summary>
    public string BrickName => Children.Count == 1 ? Children[0].Name : "";

    private static Regex GlobToRegex(string pattern) =>
        new("^" + Regex.Escape(pattern).Replace("\\*", ".*", StringComparison.Ordinal) + "$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    internal bool AddressAllowed(string address) => _allow.Any(r => r.IsMatch(address));

    internal bool SecretMatches(string presented) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(presented), System.Text.Encoding.UTF8.GetBytes(_secret));

    internal string? VolumeMismatch(string volume) =>
        _volumeName.Length > 0 && volume != _volumeName ? $"volume '{volume}' is not '{_volumeName}'" : null;

    /// <summary>Binds the listener; a port in use fails here (SocketException).</summary>
    public override ValueTask InitAsync(CancellationToken cancellation)
    {
        if (_inMemory)
        {
            _memoryAddress = $"{_listenHost}:{_listenPort}";
            InMemoryNetwork.Listen(_memoryAddress, ConnectInMemory);
        }
        else
        {
            var address = IPAddress.Parse(_listenHost);
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(address, _listenPort));
                socket.Listen(512);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            _listener = socket;
            ListenEndPoint = (IPEndPoint)socket.LocalEndPoint!;
            _acceptLoop = AcceptLoopAsync(socket);
            Log.Write('I', Name, $"serving brick '{BrickName}' on {ListenEndPoint}");
        }
        double periodMs = WriteTimeout.TotalMilliseconds / 4;
        if (LeaseTimeout > TimeSpan.Zero) periodMs = Math.Min(periodMs, LeaseTimeout.TotalMilliseconds / 8);
        var period = TimeSpan.FromMilliseconds(Math.Clamp(periodMs, 50, 1000));
        _watchdog = new Timer(_ => CheckConnections(), null, period, period);
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Opens an in-process connection to this server and returns the client's end; the server
    /// serves the other end as if it came from <paramref name="clientAddress"/>.
    /// </summary>
    public Transport ConnectInMemory(string clientAddress = "memory")
    {
        var (client, server) = InMemoryTransport.CreatePair(clientAddress);
        Serve(server);
        return client;
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await listener.AcceptAsync(_stopping.Token);
            }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException e)
            {
                if (_stopping.IsCancellationRequested) return;
                Log.Write('W', Name, $"accept failed: {e.Message}");
                await Task.Delay(100);
                continue;
            }
            Serve(new SocketTransport(s));
        }
    }

    private void Serve(Transport transport)
    {
        var conn = new ServerConnection(this, transport);
        _connections[conn] = 0;
        _ = RunConnectionAsync(conn);
    }

    private async Task RunConnectionAsync(ServerConnection conn)
    {
        try
        {
            await conn.StartAsync(_stopping.Token);
        }
        finally
        {
            _connections.TryRemove(conn, out _);
        }
    }

    /// <summary>Closes connections whose replies have been stuck (client not reading), whose handshake never came, or whose lease expired.</summary>
    private void CheckConnections()
    {
        foreach (var conn in _connections.Keys) conn.CheckTimeouts(WriteTimeout, LeaseTimeout);
    }

    /// <summary>
    /// Makes <paramref name="conn"/> the connection of its client id. An older connection of the
    /// same client (it reconnected before we noticed the old one die) is closed and cleaned up first,
    /// so its handles and locks never leak into the new session.
    /// </summary>
    internal async ValueTask RegisterClientAsync(ServerConnection conn)
    {
        ServerConnection? old;
        lock (_clientsLock) _clients.TryGetValue(conn.ClientId, out old);
        if (old is not null && old != conn)
        {
            Log.Write('I', Name, $"client {conn.ClientId} reconnected from {conn.RemoteAddress}; closing its previous connection");
            old.Abort("superseded by a new connection of the same client");
            await old.Finished;
        }
        lock (_clientsLock) _clients[conn.ClientId] = conn;
    }

    /// <summary>Called once a connection is down and its handles are released.</summary>
    internal void UnregisterClient(ServerConnection conn)
    {
        bool last;
        lock (_clientsLock)
        {
            last = _clients.TryGetValue(conn.ClientId, out var cur) && cur == conn;
            if (last) _clients.Remove(conn.ClientId);
        }
        if (!last) return;
        foreach (var t in BrickTranslators())
        {
            if (t is not IClientAware aware) continue;
            try
            {
                aware.ReleaseClient(conn.ClientId);
            }
            catch (Exception e)
            {
                Log.Write('E', Name, $"{t} ReleaseClient({conn.ClientId}) failed: {e}");
            }
        }
    }

    private IEnumerable<Translator> BrickTranslators()
    {
        var seen = new HashSet<Translator>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Translator>(Children);
        while (stack.Count > 0)
        {
            var t = stack.Pop();
            if (!seen.Add(t)) continue;
            yield return t;
            foreach (var c in t.Children) stack.Push(c);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping.Cancel();
        if (_memoryAddress is not null) InMemoryNetwork.Unlisten(_memoryAddress);
        _listener?.Dispose();
        if (_acceptLoop is not null) await _acceptLoop;
        _watchdog?.Dispose();
        var all = _connections.Keys.ToList();
        foreach (var c in all) c.Abort("brick shutting down");
        foreach (var c in all) await c.Finished;
        await base.DisposeAsync();
    }
}
