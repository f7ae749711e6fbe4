using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Brickfs.Mgmt.Model;

namespace Brickfs.Mgmt.Api;

/// <summary>
/// The HTTP API of brickfs-mgmtd from the caller's side (brickctl, and later mount.brickfs and
/// other mgmtds). Every call answers a value or one line saying why not, including when the
/// daemon cannot be reached or does not answer within the client's timeout.
/// </summary>
public sealed class MgmtClient(HttpClient http, string server)
{
    /// <summary>The "HOST:PORT" this client talks to, for messages.</summary>
    public string Server => server;

    /// <summary>The header that carries the shared secret (see <see cref="MgmtdOptions.SecretFile"/>).</summary>
    public const string SecretHeader = "X-Brickfs-Secret";

    public static MgmtClient Create(string hostPort, TimeSpan timeout, HttpMessageHandler? handler = null, string? secret = null)
    {
        MgmtdOptions.TryParseHostPort(hostPort, MgmtdOptions.DefaultPort, out var host, out var port);
        string h = host.Contains(':') ? $"[{host}]" : host;
        var http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
        http.BaseAddress = new Uri($"http://{h}:{port}/api/v1/");
        http.Timeout = timeout;
        if (secret is not null) http.DefaultRequestHeaders.Add(SecretHeader, secret);
        return new MgmtClient(http, $"{h}:{port}");
    }

    /// <summary>Reads a shared-secret file: its first line, trimmed; an error when it is unreadable or empty.</summary>
    public static MgmtResult<string> ReadSecret(string path)
    {
        try
        {
            var secret = (File.ReadLines(path).FirstOrDefault() ?? "").Trim();
            return secret.Length > 0 ? secret : MgmtError.Invalid($"{path}: the secret file is empty");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return MgmtError.Invalid($"{path}: cannot read the secret file: {e.Message}");
        }
    }

    public Task<MgmtResult<HealthResponse>> HealthAsync() => SendAsync<HealthResponse>(HttpMethod.Get, "health");
    public Task<MgmtResult<PeerStatusResponse>> PeersAsync() => SendAsync<PeerStatusResponse>(HttpMethod.Get, "peers");
    public Task<MgmtResult<PeerInfo>> ProbeAsync(string host) => SendAsync<PeerInfo>(HttpMethod.Post, "peers", new PeerProbeRequest(host));
    public Task<MgmtResult<PeerInfo>> DetachAsync(string host, bool force) => SendAsync<PeerInfo>(HttpMethod.Delete, $"peers/{E(host)}?force={B(force)}");
    public Task<MgmtResult<List<VolumeInfo>>> VolumesAsync() => SendAsync<List<VolumeInfo>>(HttpMethod.Get, "volumes");
    public Task<MgmtResult<VolumeInfo>> VolumeAsync(string vol) => SendAsync<VolumeInfo>(HttpMethod.Get, $"volumes/{E(vol)}");
    public Task<MgmtResult<VolumeInfo>> CreateAsync(CreateVolumeRequest r) => SendAsync<VolumeInfo>(HttpMethod.Post, "volumes", r);
    public Task<MgmtResult<VolumeInfo>> StartAsync(string vol, bool force) => SendAsync<VolumeInfo>(HttpMethod.Post, $"volumes/{E(vol)}/start?force={B(force)}");
    public Task<MgmtResult<VolumeInfo>> StopAsync(string vol, bool force) => SendAsync<VolumeInfo>(HttpMethod.Post, $"volumes/{E(vol)}/stop?force={B(force)}");
    public Task<MgmtResult<VolumeInfo>> DeleteAsync(string vol) => SendAsync<VolumeInfo>(HttpMethod.Delete, $"volumes/{E(vol)}");
    /// <summary>Every brick's state; <paramref name="localOnly"/>: only the answering node's own bricks (how peers ask each other).</summary>
    public Task<MgmtResult<VolumeStatusResponse>> StatusAsync(string vol, bool localOnly = false) =>
        SendAsync<VolumeStatusResponse>(HttpMethod.Get, localOnly ? $"volumes/{E(vol)}/status?local=true" : $"volumes/{E(vol)}/status");
    public Task<MgmtResult<List<OptionValue>>> OptionsAsync(string vol) => SendAsync<List<OptionValue>>(HttpMethod.Get, $"volumes/{E(vol)}/options");
    public Task<MgmtResult<VolumeInfo>> SetAsync(string vol, string key, string value) =>
        SendAsync<VolumeInfo>(HttpMethod.Post, $"volumes/{E(vol)}/options", new SetOptionRequest(key, value));
    public Task<MgmtResult<MessageResponse>> CheckBricksAsync(BrickCheckRequest r) => SendAsync<MessageResponse>(HttpMethod.Post, "bricks/check", r);
    public Task<MgmtResult<VolumeInfo>> AddBricksAsync(string vol, BricksRequest r) => SendAsync<VolumeInfo>(HttpMethod.Post, $"volumes/{E(vol)}/add-brick", r);
    public Task<MgmtResult<VolumeInfo>> RemoveBricksAsync(string vol, BricksRequest r) => SendAsync<VolumeInfo>(HttpMethod.Post, $"volumes/{E(vol)}/remove-brick", r);

    /// <summary>remove-brick start, status or stop (r.Command): the drain's state.</summary>
    public Task<MgmtResult<RebalanceStatusResponse>> RemoveBrickTaskAsync(string vol, BricksRequest r) =>
        SendAsync<RebalanceStatusResponse>(HttpMethod.Post, $"volumes/{E(vol)}/remove-brick/task", r);

    public Task<MgmtResult<HealResponse>> HealAsync(string vol, HealRequest r) => SendAsync<HealResponse>(HttpMethod.Post, $"volumes/{E(vol)}/heal", r);
    public Task<MgmtResult<BitrotResponse>> BitrotAsync(string vol, string command) =>
        SendAsync<BitrotResponse>(HttpMethod.Post, $"volumes/{E(vol)}/bitrot", new CommandRequest(command));
    public Task<MgmtResult<RebalanceStatusResponse>> RebalanceAsync(string vol, string command) =>
        SendAsync<RebalanceStatusResponse>(HttpMethod.Post, $"volumes/{E(vol)}/rebalance", new CommandRequest(command));
    public Task<MgmtResult<List<SnapshotInfo>>> SnapshotsAsync(string? volume = null) =>
        SendAsync<List<SnapshotInfo>>(HttpMethod.Get, volume is null ? "snapshots" : $"snapshots?volume={E(volume)}");
    public Task<MgmtResult<SnapshotInfo>> SnapshotAsync(string snap) => SendAsync<SnapshotInfo>(HttpMethod.Get, $"snapshots/{E(snap)}");
    public Task<MgmtResult<SnapshotInfo>> CreateSnapshotAsync(string snap, string vol) =>
        SendAsync<SnapshotInfo>(HttpMethod.Post, "snapshots", new SnapshotCreateRequest(snap, vol));
    public Task<MgmtResult<SnapshotInfo>> DeleteSnapshotAsync(string snap) => SendAsync<SnapshotInfo>(HttpMethod.Delete, $"snapshots/{E(snap)}");
    public Task<MgmtResult<SnapshotInfo>> RestoreSnapshotAsync(string snap) => SendAsync<SnapshotInfo>(HttpMethod.Post, $"snapshots/{E(snap)}/restore");
    public Task<MgmtResult<SnapshotInfo>> ActivateSnapshotAsync(string snap, bool active) =>
        SendAsync<SnapshotInfo>(HttpMethod.Post, $"snapshots/{E(snap)}/{(active ? "activate" : "deactivate")}");

    /// <summary>The per-node steps of a snapshot spanning nodes (what the coordinating mgmtd asks of each node).</summary>
    public Task<MgmtResult<SnapshotPauseResponse>> SnapshotPauseAsync(string snap, SnapshotPauseRequest r) =>
        SendAsync<SnapshotPauseResponse>(HttpMethod.Post, $"snapshots/{E(snap)}/node/pause", r);
    public Task<MgmtResult<SnapshotTakeResponse>> SnapshotTakeAsync(string snap, Guid attempt) =>
        SendAsync<SnapshotTakeResponse>(HttpMethod.Post, $"snapshots/{E(snap)}/node/take", new SnapshotAttemptRequest(attempt));
    public Task<MgmtResult<MessageResponse>> SnapshotAbortAsync(string snap, Guid attempt) =>
        SendAsync<MessageResponse>(HttpMethod.Post, $"snapshots/{E(snap)}/node/abort", new SnapshotAttemptRequest(attempt));
    public Task<MgmtResult<MessageResponse>> SnapshotRestoreBricksAsync(string snap, SnapshotBricksRequest r) =>
        SendAsync<MessageResponse>(HttpMethod.Post, $"snapshots/{E(snap)}/node/restore", r);
    public Task<MgmtResult<MessageResponse>> SnapshotDeleteBricksAsync(string snap, SnapshotBricksRequest r) =>
        SendAsync<MessageResponse>(HttpMethod.Post, $"snapshots/{E(snap)}/node/delete", r);

    /// <summary>The client volfile (<paramref name="brick"/> null) or brick N's volfile, as text.</summary>
    public Task<MgmtResult<string>> VolfileAsync(string vol, int? brick = null) =>
        SendAsync<string>(HttpMethod.Get, brick is { } n ? $"volumes/{E(vol)}/volfile?kind=brick&brick={n}" : $"volumes/{E(vol)}/volfile?kind=client");

    private static string E(string s) => Uri.EscapeDataString(s);
    private static string B(bool b) => b ? "true" : "false";

    private async Task<MgmtResult<T>> SendAsync<T>(HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: MgmtJson.Options);
        try
        {
            using var response = await http.SendAsync(request);
            if (!response.IsSuccessStatusCode)
            {
                string text = await response.Content.ReadAsStringAsync();
                try
                {
                    if (JsonSerializer.Deserialize<ErrorResponse>(text, MgmtJson.Options)?.Error is { } message)
                        return new MgmtError(KindOf(response.StatusCode), message);
                }
                catch (JsonException)
                {
                    // Not one of ours: report the status below.
                }
                return new MgmtError(KindOf(response.StatusCode), $"{server} answered HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            }
            if (typeof(T) == typeof(string)) return (T)(object)await response.Content.ReadAsStringAsync();
            var value = await response.Content.ReadFromJsonAsync<T>(MgmtJson.Options);
            return value is null ? MgmtError.Unavailable($"{server} answered an empty body") : value;
        }
        catch (HttpRequestException e)
        {
            return MgmtError.Unavailable($"cannot reach brickfs-mgmtd at {server}: {e.Message}");
        }
        catch (TaskCanceledException)
        {
            return MgmtError.Unavailable($"no answer from brickfs-mgmtd at {server} within {http.Timeout.TotalSeconds:0} s");
        }
        catch (JsonException e)
        {
            return MgmtError.Unavailable($"{server} answered something that is not brickfs-mgmtd JSON: {e.Message}");
        }
    }

    private static MgmtErrorKind KindOf(HttpStatusCode code) => code switch
    {
        HttpStatusCode.NotFound => MgmtErrorKind.NotFound,
        HttpStatusCode.Conflict => MgmtErrorKind.Conflict,
        HttpStatusCode.BadRequest => MgmtErrorKind.Invalid,
        _ => MgmtErrorKind.Unavailable,
    };
}
