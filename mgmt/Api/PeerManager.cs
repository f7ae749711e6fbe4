using System.Net.Http.Json;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

/// <summary>
/// Peers of this node. A probe asks the peer's mgmtd for /api/v1/health and records it.
/// Standalone, a peer is a recorded, reachable neighbour and nothing more. In cluster mode
/// (etcd) the peer list is the cluster's: a probe joins a node that runs brickfs-mgmtd on the
/// same etcd cluster and prefix (its health says which) by recording it, and this node too,
/// under <c>peers/NODEID</c>; from then on volumes may place bricks on it, and every node's
/// <c>peer status</c> lists all the others. A node on another etcd cluster, or a standalone
/// one, is refused with what to change.
/// </summary>
public sealed class PeerManager(StateStore store, HttpClient http, ILogger logger)
{
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    /// <summary>This node's cluster identity (see <see cref="HealthResponse.Cluster"/>); null when standalone.</summary>
    public Func<CancellationToken, Task<string?>> ClusterAsync { get; init; } = _ => Task.FromResult<string?>(null);

    /// <summary>The name and API port under which other nodes reach this one (recorded when this node probes in cluster mode).</summary>
    public Func<(string Host, int Port)> Self { get; init; } = () => ("localhost", MgmtdOptions.DefaultPort);

    public async Task<MgmtResult<PeerInfo>> ProbeAsync(string target, CancellationToken ct)
    {
        if (!MgmtdOptions.TryParseHostPort(target ?? "", MgmtdOptions.DefaultPort, out var host, out var port) || port == 0)
            return MgmtError.Invalid($"'{target}' is not HOST or HOST:PORT");
        var health = await HealthAsync(host, port, ProbeTimeout, ct);
        if (!health.Ok) return health.Error!;
        var cluster = await ClusterAsync(ct);
        if (cluster is not null && health.Value.Cluster != cluster)
        {
            return MgmtError.Invalid(health.Value.Cluster is null
                ? $"{target} runs brickfs-mgmtd standalone; start it with --etcd-endpoints of this cluster's etcd to let it join"
                : $"{target} keeps its state in another etcd cluster ({health.Value.Cluster}), not this one ({cluster})");
        }
        var self = await store.ReadAsync(ct);
        if (health.Value.NodeId == self.NodeId) return MgmtError.Invalid($"{target} is this node");
        var (selfHost, selfPort) = Self();
        var result = await store.UpdateAsync<PeerInfo>(state =>
        {
            if (state.Peers.Any(p => p.NodeId == health.Value.NodeId || (p.Host == host && p.Port == port)))
                return MgmtError.Conflict($"{target} is already a peer");
            if (cluster is not null && state.Peers.All(p => p.NodeId != state.NodeId))
                state.Peers.Add(new PeerDefinition { Host = selfHost, Port = selfPort, NodeId = state.NodeId, ProbedAt = DateTimeOffset.UtcNow });
            state.Peers.Add(new PeerDefinition { Host = host, Port = port, NodeId = health.Value.NodeId, ProbedAt = DateTimeOffset.UtcNow });
            return new PeerInfo(host, port, health.Value.NodeId, true);
        }, ct);
        if (result.Ok) logger.LogInformation(1201, "peer {Host}:{Port} ({NodeId}) probed and added", host, port, health.Value.NodeId);
        return result;
    }

    public async Task<MgmtResult<PeerInfo>> DetachAsync(string target, bool force, CancellationToken ct)
    {
        if (!MgmtdOptions.TryParseHostPort(target ?? "", MgmtdOptions.DefaultPort, out var host, out var port))
            return MgmtError.Invalid($"'{target}' is not HOST or HOST:PORT");
        bool portGiven = target!.Contains(':') && !target.EndsWith(']');
        var result = await store.UpdateAsync<PeerInfo>(state =>
        {
            var peer = state.Peers.FirstOrDefault(p => p.Host == host && (!portGiven || p.Port == port));
            if (peer is null) return MgmtError.NotFound($"{target} is not a peer");
            if (peer.NodeId == state.NodeId) return MgmtError.Invalid($"{target} is this node");
            var holding = state.Volumes.FirstOrDefault(v => v.Bricks.Any(b => b.Host == host));
            if (holding is not null && !force)
                return MgmtError.Conflict($"peer {host} holds bricks of volume {holding.Name} (add 'force' to detach anyway)");
            state.Peers.Remove(peer);
            return new PeerInfo(peer.Host, peer.Port, peer.NodeId, false);
        }, ct);
        if (result.Ok) logger.LogInformation(1202, "peer {Host} detached", host);
        return result;
    }

    public async Task<PeerStatusResponse> StatusAsync(CancellationToken ct)
    {
        var state = await store.ReadAsync(ct);
        var peers = state.Peers.Where(p => p.NodeId != state.NodeId).ToList();
        var answers = await Task.WhenAll(peers.Select(async p =>
        {
            var h = await HealthAsync(p.Host, p.Port, TimeSpan.FromSeconds(2), ct);
            return new PeerInfo(p.Host, p.Port, p.NodeId, h.Ok && h.Value.NodeId == p.NodeId);
        }));
        return new PeerStatusResponse(answers.ToList());
    }

    private async Task<MgmtResult<HealthResponse>> HealthAsync(string host, int port, TimeSpan timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        string hostPart = host.Contains(':') ? $"[{host}]" : host;
        try
        {
            var h = await http.GetFromJsonAsync<HealthResponse>($"http://{hostPart}:{port}/api/v1/health", MgmtJson.Options, cts.Token);
            if (h is null || h.Status != "ok") return MgmtError.Unavailable($"{host}:{port} answered, but not as a healthy brickfs-mgmtd");
            return h;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return MgmtError.Unavailable($"{host}:{port}: no answer within {timeout.TotalSeconds:0} s");
        }
        catch (HttpRequestException e)
        {
            return MgmtError.Unavailable($"{host}:{port}: {e.Message}");
        }
        catch (System.Text.Json.JsonException)
        {
            return MgmtError.Unavailable($"{host}:{port} answered, but not as a brickfs-mgmtd");
        }
    }
}
