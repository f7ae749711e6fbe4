using System.Reflection;
using Brickfs.Mgmt.Bricks;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;
using Brickfs.Mgmt.Store;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

/// <summary>
/// brickfs-mgmtd as an object: the store, the brick supervisor and the HTTP API on Kestrel.
/// Program.cs only parses arguments and runs one; tests start one in process on a free port.
/// Stopping the host stops this node's bricks.
/// </summary>
public sealed class MgmtHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly FileStateStore _local;
    private readonly EtcdStateStore? _etcd;
    private readonly BrickSupervisor _supervisor;
    private readonly CancellationTokenSource _stop = new();
    private Task _watch = Task.CompletedTask;

    private MgmtHost(WebApplication app, FileStateStore local, EtcdStateStore? etcd, BrickSupervisor supervisor, VolumeManager volumes)
    {
        _app = app;
        _local = local;
        _etcd = etcd;
        _supervisor = supervisor;
        Volumes = volumes;
    }

    public VolumeManager Volumes { get; }

    /// <summary>Where definitions live: etcd in cluster mode, else the embedded store.</summary>
    public StateStore Store => _etcd is null ? _local : _etcd;

    /// <summary>The address the API answers on, e.g. http://127.0.0.1:41234 (known after <see cref="StartAsync"/>).</summary>
    public Uri Address => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    public static MgmtHost Create(MgmtdOptions options, Action<ILoggingBuilder>? logging = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "brickfs-mgmtd" });
        string host = options.ListenHost.Contains(':') ? $"[{options.ListenHost}]" : options.ListenHost;
        builder.WebHost.UseUrls($"http://{host}:{options.ListenPort}");
        builder.Services.ConfigureHttpJsonOptions(o => MgmtJson.Configure(o.SerializerOptions));
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        if (Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 })
        {
            // Under systemd: one line per event with <N> priority prefixes the journal understands.
            builder.Logging.ClearProviders();
            builder.Logging.AddSystemdConsole();
        }
        if (logging is not null) logging(builder.Logging);
        string? secret = null;
        if (options.SecretFile is not null)
        {
            var read = MgmtClient.ReadSecret(options.SecretFile);
            if (!read.Ok) throw new IOException(read.Error!.Message);
            secret = read.Value;
        }
        var app = builder.Build();

        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        // The embedded store keeps this node's identity in both modes; in cluster mode the
        // definitions live in etcd instead.
        var local = FileStateStore.Open(options.StateDir);
        var nodeId = local.ReadAsync().AsTask().GetAwaiter().GetResult().NodeId;
        EtcdStateStore? etcd = options.EtcdEndpoints is { } endpoints
            ? new EtcdStateStore(new EtcdClient(endpoints), options.EtcdPrefix, nodeId, loggers.CreateLogger("Brickfs.Mgmt.Etcd"))
            : null;
        StateStore store = etcd is null ? local : etcd;
        var node = new NodeIdentity([options.NodeAddress ?? "", options.ListenHost], options.MatchMachineAddresses);
        var validator = new VolumeValidator(node.IsLocal, path => MountPoint.Of(path), Btrfs.IsSubvolume) { RequirePeers = etcd is not null };
        var supervisor = new BrickSupervisor(options.ResolvedBrickdPath, loggers.CreateLogger("Brickfs.Mgmt.Bricks"));
        var volumes = new VolumeManager(store, validator, node.IsLocal, supervisor, options.StateDir, options.BrickListenHost,
            loggers.CreateLogger("Brickfs.Mgmt.Volumes"))
        {
            ShdPath = options.ResolvedShdPath,
            ProbePorts = options.ProbeBrickPorts,
            AskPeer = etcd is null ? null : (peer, volume, ct) => PeerStatusAsync(peer, volume, secret, ct),
            CheckOnPeer = etcd is null ? null : (peer, bricks, ct) => PeerCheckAsync(peer, bricks, secret, ct),
            PeerClient = etcd is null ? null : (peer, timeout) => PeerClient(peer, secret, timeout),
        };
        string? clusterId = null;
        Func<CancellationToken, Task<string?>> cluster = etcd is null
            ? _ => Task.FromResult<string?>(null)
            : async ct => clusterId ??= $"{await etcd.Client.ClusterIdAsync(ct)} {etcd.Prefix}";
        var peers = new PeerManager(store, new HttpClient(), loggers.CreateLogger("Brickfs.Mgmt.Peers"))
        {
            ClusterAsync = cluster,
            Self = () => (options.NodeAddress ?? System.Net.Dns.GetHostName(), new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port),
        };
        MapRoutes(app, new Identity(nodeId, node, cluster), volumes, peers, options.BrickListenHost, secret);
        return new MgmtHost(app, local, etcd, supervisor, volumes);
    }

    /// <summary>Connections to peers, pooled across requests.</summary>
    private static readonly SocketsHttpHandler PeerConnections = new() { PooledConnectionLifetime = TimeSpan.FromMinutes(1) };

    /// <summary>How long <c>volume status</c> waits for a peer's answer about its bricks.</summary>
    public static readonly TimeSpan PeerStatusTimeout = TimeSpan.FromSeconds(3);

    /// <summary>A client of a peer's API. Nodes of one cluster share the secret.</summary>
    private static MgmtClient PeerClient(PeerDefinition peer, string? secret, TimeSpan? timeout = null) =>
        MgmtClient.Create($"{(peer.Host.Contains(':') ? $"[{peer.Host}]" : peer.Host)}:{peer.Port}", timeout ?? PeerStatusTimeout, PeerConnections, secret);

    /// <summary>A peer's own bricks of <paramref name="volume"/>; null when it does not answer in time.</summary>
    private static async Task<VolumeStatusResponse?> PeerStatusAsync(PeerDefinition peer, string volume, string? secret, CancellationToken ct)
    {
        var r = await PeerClient(peer, secret).StatusAsync(volume, localOnly: true);
        return r.Ok ? r.Value : null;
    }

    /// <summary>The peer's verdict on its bricks; a peer that cannot answer refuses them (force skips the check).</summary>
    private static async Task<MgmtError?> PeerCheckAsync(PeerDefinition peer, BrickCheckRequest bricks, string? secret, CancellationToken ct)
    {
        var r = await PeerClient(peer, secret).CheckBricksAsync(bricks);
        if (r.Ok) return null;
        return r.Error!.Kind == MgmtErrorKind.Unavailable
            ? MgmtError.Unavailable($"cannot check brick {bricks.Bricks[0]} on its node: {r.Error.Message} (add 'force' to skip the check)")
            : r.Error;
    }

    /// <summary>What the health check reports about this node.</summary>
    private sealed record Identity(Guid NodeId, NodeIdentity Node, Func<CancellationToken, Task<string?>> Cluster);

    /// <summary>
    /// Starts the API, then brings this node's bricks in line with the definitions: once from
    /// the embedded store, or, in cluster mode, now and after every change any node makes in
    /// etcd (a watch on the prefix) for as long as the host runs.
    /// </summary>
    public async Task StartAsync(CancellationToken ct = default)
    {
        await _app.StartAsync(ct);
        if (_etcd is null) await Volumes.ConvergeAsync(ct);
        else _watch = Task.Run(() => _etcd.WatchAsync(Volumes.ConvergeAsync, _stop.Token), CancellationToken.None);
        SystemdNotify.Send("READY=1");
    }

    public Task WaitForShutdownAsync(CancellationToken ct = default) => _app.WaitForShutdownAsync(ct);

    private int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        SystemdNotify.Send("STOPPING=1");
        _stop.Cancel();
        await _watch;
        await _app.StopAsync();
        await _supervisor.DisposeAsync();
        await _app.DisposeAsync();
        if (_etcd is not null) await _etcd.DisposeAsync();
        await _local.DisposeAsync();
    }

    public static string Version =>
        typeof(MgmtHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";

    private static void MapRoutes(WebApplication app, Identity self, VolumeManager volumes, PeerManager peers, string brickListenHost, string? secret)
    {
        // A bug or broken infrastructure (disk full, permissions) still answers one line, and is logged.
        var failures = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Brickfs.Mgmt.Api");
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            catch (EtcdUnavailableException e) when (!context.Response.HasStarted)
            {
                // Broken infrastructure a user can act on: say so, as the one line.
                failures.LogWarning(1303, "{Method} {Path}: {Reason}", context.Request.Method, context.Request.Path, e.Message);
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                await context.Response.WriteAsJsonAsync(new ErrorResponse(e.Message), MgmtJson.Options);
            }
            catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
            {
                failures.LogError(1301, e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
                context.Response.StatusCode = StatusCodes.Status500InternalServerError;
                await context.Response.WriteAsJsonAsync(new ErrorResponse($"internal error in brickfs-mgmtd: {e.Message}"), MgmtJson.Options);
            }
        });
        if (secret is not null)
        {
            var expected = System.Text.Encoding.UTF8.GetBytes(secret);
            app.Use(async (context, next) =>
            {
                var path = context.Request.Path.Value ?? "";
                bool open = HttpMethods.IsGet(context.Request.Method) && (path == "/api/v1/health" || path.EndsWith("/volfile", StringComparison.Ordinal));
                var given = System.Text.Encoding.UTF8.GetBytes(context.Request.Headers[MgmtClient.SecretHeader].ToString());
                if (!open && !System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, expected))
                {
                    failures.LogWarning(1302, "{Method} {Path} from {Remote}: wrong or missing shared secret", context.Request.Method, path, context.Connection.RemoteIpAddress);
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    await context.Response.WriteAsJsonAsync(new ErrorResponse("wrong or missing shared secret (brickctl --secret-file FILE)"), MgmtJson.Options);
                    return;
                }
                await next(context);
            });
        }
        var api = app.MapGroup("/api/v1");
        api.MapGet("/health", async (CancellationToken ct) =>
            new HealthResponse("ok", self.NodeId, self.Node.Name, Version, await self.Cluster(ct)));

        api.MapGet("/peers", async (CancellationToken ct) => await peers.StatusAsync(ct));
        api.MapPost("/peers", async (PeerProbeRequest r, CancellationToken ct) => Reply(await peers.ProbeAsync(r.Host, ct)));
        api.MapDelete("/peers/{host}", async (string host, bool? force, CancellationToken ct) =>
            Reply(await peers.DetachAsync(host, force ?? false, ct)));

        api.MapPost("/bricks/check", (BrickCheckRequest r) =>
            volumes.CheckLocalBricks(r.Bricks ?? []) is { } bad ? Error(bad) : Results.Ok(new MessageResponse("bricks pass")));

        api.MapGet("/volumes", async (CancellationToken ct) => await volumes.ListAsync(ct));
        api.MapPost("/volumes", async (CreateVolumeRequest r, CancellationToken ct) =>
        {
            var v = await volumes.CreateAsync(r, ct);
            return v.Ok ? Results.Created($"/api/v1/volumes/{v.Value.Name}", VolumeInfo.From(v.Value)) : Error(v.Error!);
        });
        api.MapGet("/volumes/{vol}", async (string vol, CancellationToken ct) => Reply(await volumes.GetAsync(vol, ct)));
        api.MapDelete("/volumes/{vol}", async (string vol, CancellationToken ct) => Reply(await volumes.DeleteAsync(vol, ct)));
        api.MapPost("/volumes/{vol}/start", async (string vol, bool? force, CancellationToken ct) =>
            Reply(await volumes.StartAsync(vol, force ?? false, ct)));
        api.MapPost("/volumes/{vol}/stop", async (string vol, bool? force, CancellationToken ct) =>
            Reply(await volumes.StopAsync(vol, force ?? false, ct)));
        api.MapGet("/volumes/{vol}/status", async (string vol, bool? local, CancellationToken ct) => Reply(await volumes.StatusAsync(vol, ct, local ?? false)));
        api.MapGet("/volumes/{vol}/options", async (string vol, CancellationToken ct) => Reply(await volumes.GetOptionsAsync(vol, ct)));
        api.MapPost("/volumes/{vol}/options", async (string vol, SetOptionRequest r, CancellationToken ct) =>
            Reply(await volumes.SetAsync(vol, r.Key, r.Value, ct)));
        api.MapPost("/volumes/{vol}/add-brick", async (string vol, BricksRequest r, CancellationToken ct) =>
            Reply(await volumes.AddBricksAsync(vol, r, ct)));
        api.MapPost("/volumes/{vol}/remove-brick", async (string vol, BricksRequest r, CancellationToken ct) =>
            Reply(await volumes.RemoveBricksAsync(vol, r, ct)));
        api.MapPost("/volumes/{vol}/remove-brick/task", async (string vol, BricksRequest r, CancellationToken ct) =>
            Reply(await volumes.RemoveBrickTaskAsync(vol, r, ct)));
        MapDataRoutes(api, volumes);
        api.MapGet("/volumes/{vol}/volfile", async (HttpContext http, string vol, string? kind, int? brick, double? wait, CancellationToken ct) =>
        {
            var v = await volumes.GetAsync(vol, ct);
            if (!v.Ok) return Error(v.Error!);
            switch (kind ?? "client")
            {
                case "client":
                    return await ClientVolfileAsync(http, volumes, v.Value, wait, ct);
                case "brick":
                    if (brick is not { } i || i < 0 || i >= v.Value.Bricks.Count)
                        return Error(MgmtError.Invalid($"kind=brick needs brick=N with N in 0..{v.Value.Bricks.Count - 1}"));
                    return Results.Text(Volgen.Volgen.BrickVolfile(v.Value, i, brickListenHost), "text/plain; charset=utf-8");
                default:
                    return Error(MgmtError.Invalid($"kind must be client or brick, not '{kind}'"));
            }
        });
    }

    /// <summary>The longest a volfile watch waits before answering 304 (clients ask again).</summary>
    public static readonly TimeSpan MaxVolfileWait = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A client volfile with its ETag (a hash of the text, equal on every node, since volgen's
    /// output depends only on the definition). With <c>If-None-Match: ETAG</c> and
    /// <c>wait=SECONDS</c> this is a long poll: it answers as soon as the volfile differs from
    /// the one the client has, or 304 Not Modified after SECONDS; mounts use it to learn of
    /// <c>volume set</c> without polling often, from whichever server they reach.
    /// </summary>
    private static async Task<IResult> ClientVolfileAsync(HttpContext http, VolumeManager volumes, VolumeDefinition v, double? wait, CancellationToken ct)
    {
        string known = http.Request.Headers.IfNoneMatch.ToString();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(Math.Clamp(wait ?? 0, 0, MaxVolfileWait.TotalSeconds));
        while (true)
        {
            var changed = volumes.Changed;
            string text = Volgen.Volgen.ClientVolfile(v);
            string etag = Volgen.Volgen.ETag(text);
            http.Response.Headers.ETag = etag;
            if (etag != known) return Results.Text(text, "text/plain; charset=utf-8");
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) return Results.StatusCode(StatusCodes.Status304NotModified);
            try
            {
                await changed.WaitAsync(left, ct);
            }
            catch (TimeoutException)
            {
                return Results.StatusCode(StatusCodes.Status304NotModified);
            }
            var again = await volumes.GetAsync(v.Name, ct);
            if (!again.Ok) return Error(again.Error!);
            v = again.Value;
        }
    }

    private static void MapDataRoutes(RouteGroupBuilder api, VolumeManager volumes)
    {
        api.MapPost("/volumes/{vol}/heal", async (string vol, HealRequest r, CancellationToken ct) => Reply(await volumes.HealAsync(vol, r, ct)));
        api.MapPost("/volumes/{vol}/bitrot", async (string vol, CommandRequest r, CancellationToken ct) =>
            Reply(await volumes.BitrotAsync(vol, r.Command ?? "", ct)));
        api.MapPost("/volumes/{vol}/rebalance", async (string vol, CommandRequest r, CancellationToken ct) =>
            Reply(await volumes.RebalanceAsync(vol, r.Command ?? "", ct)));

        api.MapGet("/snapshots", async (string? volume, CancellationToken ct) => await volumes.ListSnapshotsAsync(volume, ct));
        api.MapPost("/snapshots", async (SnapshotCreateRequest r, CancellationToken ct) =>
        {
            var s = await volumes.CreateSnapshotAsync(r, ct);
            return s.Ok ? Results.Created($"/api/v1/snapshots/{s.Value.Name}", s.Value) : Error(s.Error!);
        });
        api.MapGet("/snapshots/{snap}", async (string snap, CancellationToken ct) =>
        {
            var s = await volumes.GetSnapshotAsync(snap, ct);
            return s.Ok ? Results.Ok(SnapshotInfo.From(s.Value)) : Error(s.Error!);
        });
        api.MapDelete("/snapshots/{snap}", async (string snap, CancellationToken ct) => Reply(await volumes.DeleteSnapshotAsync(snap, ct)));
        api.MapPost("/snapshots/{snap}/restore", async (string snap, CancellationToken ct) => Reply(await volumes.RestoreSnapshotAsync(snap, ct)));
        api.MapPost("/snapshots/{snap}/activate", async (string snap, CancellationToken ct) => Reply(await volumes.ActivateSnapshotAsync(snap, true, ct)));
        api.MapPost("/snapshots/{snap}/deactivate", async (string snap, CancellationToken ct) => Reply(await volumes.ActivateSnapshotAsync(snap, false, ct)));
        // One node's share of a snapshot spanning nodes, asked by the coordinating node.
        api.MapPost("/snapshots/{snap}/node/pause", (string snap, SnapshotPauseRequest r) => Reply(volumes.PauseSnapshotBricks(snap, r)));
        api.MapPost("/snapshots/{snap}/node/take", (string snap, SnapshotAttemptRequest r) => Reply(volumes.TakeSnapshotBricks(r.Attempt)));
        api.MapPost("/snapshots/{snap}/node/abort", (string snap, SnapshotAttemptRequest r) => Reply(volumes.AbortSnapshotBricks(r.Attempt)));
        api.MapPost("/snapshots/{snap}/node/restore", (string snap, SnapshotBricksRequest r) => Reply(volumes.RestoreSnapshotBricks(snap, r)));
        api.MapPost("/snapshots/{snap}/node/delete", async (string snap, SnapshotBricksRequest r) => Reply(await volumes.DeleteSnapshotBricksAsync(snap, r)));
        api.MapGet("/snapshots/{snap}/volfile", async (string snap, CancellationToken ct) =>
        {
            var v = await volumes.SnapshotVolfileAsync(snap, ct);
            return v.Ok ? Results.Text(v.Value, "text/plain; charset=utf-8") : Error(v.Error!);
        });
    }

    private static IResult Reply(MgmtResult<VolumeDefinition> r) => r.Ok ? Results.Ok(VolumeInfo.From(r.Value)) : Error(r.Error!);

    private static IResult Reply<T>(MgmtResult<T> r) => r.Ok ? Results.Ok(r.Value) : Error(r.Error!);

    private static IResult Error(MgmtError e) => Results.Json(new ErrorResponse(e.Message), MgmtJson.Options, statusCode: e.Kind switch
    {
        MgmtErrorKind.NotFound => StatusCodes.Status404NotFound,
        MgmtErrorKind.Conflict => StatusCodes.Status409Conflict,
        MgmtErrorKind.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status400BadRequest,
    });
}
