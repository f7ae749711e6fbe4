using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Brickfs.Mgmt.Store;

/// <summary>One key as etcd returns it; revisions are etcd's (cluster-wide, increasing).</summary>
public sealed record EtcdKeyValue(string Key, byte[] Value, long CreateRevision, long ModRevision);

/// <summary>A range read: the keys, and the store revision the read saw.</summary>
public sealed record EtcdRange(long Revision, string ClusterId, IReadOnlyList<EtcdKeyValue> Kvs);

/// <summary>One change a watch reports.</summary>
public sealed record EtcdEvent(bool Deleted, EtcdKeyValue Kv);

/// <summary>
/// A client of etcd's v3 API through its JSON gateway (POST /v3/kv/range, /v3/kv/txn,
/// /v3/watch; keys and values base64, 64-bit numbers as strings), so mgmtd needs no gRPC
/// runtime. Requests go to the endpoint that answered last and move on to the next one when
/// an endpoint cannot be reached or does not answer within <see cref="RequestTimeout"/>, so
/// one member down is invisible to callers as long as the cluster keeps its quorum. Reads are
/// linearizable (etcd's default): a read sees every transaction that succeeded before it.
/// Failures come back as <see cref="EtcdUnavailableException"/>, which the store turns into an
/// Unavailable answer.
/// </summary>
public sealed class EtcdClient : IDisposable
{
    private readonly IReadOnlyList<Uri> _endpoints;
    private readonly HttpClient _http = new() { Timeout = Timeout.InfiniteTimeSpan };
    private int _current;

    public EtcdClient(IReadOnlyList<Uri> endpoints)
    {
        if (endpoints.Count == 0) throw new ArgumentException("no etcd endpoints", nameof(endpoints));
        _endpoints = endpoints;
    }

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public IReadOnlyList<Uri> Endpoints => _endpoints;

    /// <summary>Parses "http://h:2379,http://h2:2379" (a bare HOST:PORT means http).</summary>
    public static IReadOnlyList<Uri> ParseEndpoints(string text)
    {
        var list = new List<Uri>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var s = part.Contains("://", StringComparison.Ordinal) ? part : "http://" + part;
            if (!Uri.TryCreate(s, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.AbsolutePath != "/")
                throw new FormatException($"'{part}' is not an etcd endpoint (http://HOST:PORT)");
            list.Add(uri);
        }
        if (list.Count == 0) throw new FormatException("no etcd endpoints given");
        return list;
    }

    /// <summary>The end of the range of every key that starts with <paramref name="prefix"/> (etcd's prefix rule: last byte + 1).</summary>
    public static byte[] PrefixEnd(string prefix)
    {
        var b = Encoding.UTF8.GetBytes(prefix);
        for (int i = b.Length - 1; i >= 0; i--)
        {
            if (b[i] < 0xff)
            {
                b[i]++;
                return b[..(i + 1)];
            }
        }
        return [0];
    }

    private static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s));

    /// <summary>Every key beginning with <paramref name="prefix"/>, at the current revision.</summary>
    public async Task<EtcdRange> RangePrefixAsync(string prefix, CancellationToken ct)
    {
        var body = new JsonObject { ["key"] = B64(prefix), ["range_end"] = Convert.ToBase64String(PrefixEnd(prefix)) };
        var reply = await PostAsync("v3/kv/range", body, ct);
        var kvs = reply["kvs"] is JsonArray a ? a.Select(k => ParseKv(k!)).ToList() : [];
        return new EtcdRange(Revision(reply), ClusterId(reply), kvs);
    }

    /// <summary>A comparison of a transaction: the key's mod_revision equals <paramref name="modRevision"/> (0: the key does not exist).</summary>
    public sealed record Compare(string Key, long ModRevision);

    /// <summary>An operation of a transaction: a put (value not null) or a delete.</summary>
    public sealed record Operation(string Key, byte[]? Value);

    /// <summary>
    /// Applies <paramref name="operations"/> atomically if every comparison holds (etcd's
    /// compare-and-swap); returns whether it did, and the revision after the transaction.
    /// </summary>
    public async Task<(bool Succeeded, long Revision)> TxnAsync(IEnumerable<Compare> compares, IEnumerable<Operation> operations, CancellationToken ct)
    {
        var compare = new JsonArray();
        foreach (var c in compares)
            compare.Add(new JsonObject { ["key"] = B64(c.Key), ["target"] = "MOD", ["result"] = "EQUAL", ["mod_revision"] = c.ModRevision.ToString() });
        var success = new JsonArray();
        foreach (var o in operations)
        {
            success.Add(o.Value is null
                ? new JsonObject { ["request_delete_range"] = new JsonObject { ["key"] = B64(o.Key) } }
                : new JsonObject { ["request_put"] = new JsonObject { ["key"] = B64(o.Key), ["value"] = Convert.ToBase64String(o.Value) } });
        }
        var reply = await PostAsync("v3/kv/txn", new JsonObject { ["compare"] = compare, ["success"] = success }, ct);
        return (reply["succeeded"]?.GetValue<bool>() ?? false, Revision(reply));
    }

    /// <summary>The cluster id and member id of the endpoint that answers (the first reachable one).</summary>
    public async Task<string> ClusterIdAsync(CancellationToken ct) =>
        ClusterId(await PostAsync("v3/maintenance/status", new JsonObject(), ct));

    /// <summary>
    /// Watches every key under <paramref name="prefix"/> from <paramref name="startRevision"/>
    /// on, calling <paramref name="onEvents"/> with each batch and the revision it brings the
    /// watcher to. Returns when the stream ends (the member went away, or it cancelled the
    /// watch, e.g. because the start revision was compacted); the caller re-reads and watches
    /// again. Throws <see cref="EtcdUnavailableException"/> when no endpoint accepts the watch.
    /// The watch asks for a member that has a leader, so a member cut off from the quorum ends
    /// the stream instead of silently reporting nothing.
    /// </summary>
    public async Task WatchPrefixAsync(string prefix, long startRevision, Func<IReadOnlyList<EtcdEvent>, long, Task> onEvents, CancellationToken ct)
    {
        var body = new JsonObject
        {
            ["create_request"] = new JsonObject
            {
                ["key"] = B64(prefix), ["range_end"] = Convert.ToBase64String(PrefixEnd(prefix)),
                ["start_revision"] = startRevision.ToString(), ["progress_notify"] = true,
            },
        };
        HttpResponseMessage? response = null;
        var failures = new List<string>();
        for (int attempt = 0; attempt < _endpoints.Count && response is null; attempt++)
        {
            int index = (Volatile.Read(ref _current) + attempt) % _endpoints.Count;
            var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_endpoints[index], "v3/watch"))
            {
                Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("Grpc-Metadata-hasleader", "true");
            using var connect = CancellationTokenSource.CreateLinkedTokenSource(ct);
            connect.CancelAfter(RequestTimeout);
            try
            {
                var r = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, connect.Token);
                if (r.IsSuccessStatusCode)
                {
                    response = r;
                    Volatile.Write(ref _current, index);
                }
                else
                {
                    failures.Add($"{_endpoints[index]}: HTTP {(int)r.StatusCode}");
                    r.Dispose();
                }
            }
            catch (Exception e) when (e is HttpRequestException || (e is OperationCanceledException && !ct.IsCancellationRequested))
            {
                failures.Add($"{_endpoints[index]}: {(e is OperationCanceledException ? "no answer" : e.Message)}");
            }
        }
        if (response is null) throw new EtcdUnavailableException($"no etcd endpoint accepts a watch ({string.Join("; ", failures)})");
        using (response)
        {
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            while (await ReadLineAsync(reader, ct) is { } line)
            {
                if (line.Length == 0) continue;
                JsonNode? node;
                try
                {
                    node = JsonNode.Parse(line);
                }
                catch (JsonException)
                {
                    return;
                }
                var result = node?["result"];
                if (result is null) return; // an error object: the stream is over
                if (result["canceled"]?.GetValue<bool>() == true || result["compact_revision"] is not null) return;
                var events = result["events"] is JsonArray a
                    ? a.Select(e => new EtcdEvent(e!["type"]?.GetValue<string>() == "DELETE", ParseKv(e["kv"]!))).ToList()
                    : [];
                await onEvents(events, Revision(result));
            }
        }
    }

    /// <summary>A line of the watch stream; null at its end, also when the connection breaks.</summary>
    private static async Task<string?> ReadLineAsync(StreamReader reader, CancellationToken ct)
    {
        try
        {
            return await reader.ReadLineAsync(ct);
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>Rounds over all endpoints before a request fails: a second round outlasts a leader election (members answer "no leader" meanwhile).</summary>
    private const int Rounds = 2;

    private static readonly TimeSpan BetweenRounds = TimeSpan.FromMilliseconds(500);

    private async Task<JsonNode> PostAsync(string path, JsonObject body, CancellationToken ct)
    {
        var failures = new List<string>();
        for (int attempt = 0; attempt < _endpoints.Count * Rounds; attempt++)
        {
            if (attempt > 0 && attempt % _endpoints.Count == 0) await Task.Delay(BetweenRounds, ct);
            int index = (Volatile.Read(ref _current) + attempt) % _endpoints.Count;
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
            limit.CancelAfter(RequestTimeout);
            try
            {
                using var response = await _http.PostAsync(new Uri(_endpoints[index], path),
                    new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), limit.Token);
                var text = await response.Content.ReadAsStringAsync(limit.Token);
                if (!response.IsSuccessStatusCode)
                {
                    // A member without a leader, or one still starting, answers an error: try the next.
                    failures.Add($"{_endpoints[index]}: HTTP {(int)response.StatusCode} {MessageOf(text)}");
                    continue;
                }
                Volatile.Write(ref _current, index);
                return JsonNode.Parse(text) ?? throw new EtcdUnavailableException($"{_endpoints[index]} answered an empty body");
            }
            catch (Exception e) when (e is HttpRequestException || (e is OperationCanceledException && !ct.IsCancellationRequested))
            {
                failures.Add($"{_endpoints[index]}: {(e is OperationCanceledException ? $"no answer within {RequestTimeout.TotalSeconds:0.#} s" : e.Message)}");
            }
            catch (JsonException e)
            {
                failures.Add($"{_endpoints[index]}: not etcd JSON: {e.Message}");
            }
        }
        throw new EtcdUnavailableException($"etcd is unavailable ({string.Join("; ", failures.Distinct())})");
    }

    private static string MessageOf(string text)
    {
        try
        {
            return JsonNode.Parse(text)?["message"]?.GetValue<string>() ?? text.Trim();
        }
        catch (JsonException)
        {
            return text.Trim();
        }
    }

    private static EtcdKeyValue ParseKv(JsonNode kv) => new(
        Encoding.UTF8.GetString(Convert.FromBase64String(kv["key"]!.GetValue<string>())),
        kv["value"] is { } v ? Convert.FromBase64String(v.GetValue<string>()) : [],
        Long(kv["create_revision"]), Long(kv["mod_revision"]));

    private static long Revision(JsonNode reply) => Long(reply["header"]?["revision"]);

    private static string ClusterId(JsonNode reply) => reply["header"]?["cluster_id"]?.GetValue<string>() ?? "";

    /// <summary>64-bit numbers arrive as strings; absent means 0 (proto3 JSON omits defaults).</summary>
    private static long Long(JsonNode? n) => n is null ? 0 : n.GetValueKind() == JsonValueKind.String ? long.Parse(n.GetValue<string>()) : n.GetValue<long>();

    public void Dispose() => _http.Dispose();
}

/// <summary>No etcd endpoint answered (or none with a leader): broken infrastructure, reported as Unavailable.</summary>
public sealed class EtcdUnavailableException(string message) : IOException(message);
