using System.Text.Json;
using Brickfs.Mgmt.Model;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Store;

/// <summary>
/// The cluster store: peers, volumes and snapshots in etcd, one key per object under a prefix
/// (<c>PREFIX/volumes/NAME</c>, <c>PREFIX/peers/NODEID</c>, <c>PREFIX/snapshots/NAME</c>, each
/// the object's JSON), and <c>PREFIX/generation</c>, the guard of every change. An update reads
/// the whole prefix at one revision, applies the change to that copy and commits the changed
/// keys in one etcd transaction that compares the generation key's mod_revision with the one
/// it read (compare-and-swap). A transaction that lost the race to another node's commits
/// nothing and is retried on a fresh read, so changes from all nodes are serialised exactly as
/// on a standalone server, and a mgmtd killed at any moment leaves a change either committed
/// whole or not at all. The node id is this node's own (kept in its state directory), never
/// shared.
/// </summary>
public sealed class EtcdStateStore : StateStore
{
    public const string DefaultPrefix = "/brickfs/";
    private const int MaxAttempts = 20;

    private readonly EtcdClient _etcd;
    private readonly Guid _nodeId;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _lock = new(1, 1);

    public EtcdStateStore(EtcdClient etcd, string prefix, Guid nodeId, ILogger logger)
    {
        _etcd = etcd;
        Prefix = prefix.EndsWith('/') ? prefix : prefix + "/";
        _nodeId = nodeId;
        _logger = logger;
    }

    public string Prefix { get; }

    public EtcdClient Client => _etcd;

    /// <summary>How often the state is read again even without a watch event (a stalled watch stream cannot hide a change longer).</summary>
    public TimeSpan Resync { get; init; } = TimeSpan.FromSeconds(15);

    private string GenerationKey => Prefix + "generation";

    /// <summary>The state as stored, the revision it was read at, the generation key's mod_revision and the id of the change that wrote it.</summary>
    private sealed record Snapshot(MgmtState State, Dictionary<string, byte[]> Keys, long Revision, long GenerationModRevision, Guid ChangeId);

    /// <summary>The generation key's value: the count of changes, and an id of the last one, by which a node recognises its own commit.</summary>
    private sealed record GenerationValue(long Generation, Guid Change);

    private async Task<Snapshot> LoadAsync(CancellationToken ct)
    {
        var range = await _etcd.RangePrefixAsync(Prefix, ct);
        var state = new MgmtState { NodeId = _nodeId };
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        long generationRevision = 0;
        Guid changeId = Guid.Empty;
        foreach (var kv in range.Kvs)
        {
            string rest = kv.Key[Prefix.Length..];
            try
            {
                if (kv.Key == GenerationKey)
                {
                    var g = JsonSerializer.Deserialize<GenerationValue>(kv.Value, MgmtJson.Options)!;
                    state.Generation = g.Generation;
                    changeId = g.Change;
                    generationRevision = kv.ModRevision;
                    continue;
                }
                keys[kv.Key] = kv.Value;
                if (rest.StartsWith("volumes/", StringComparison.Ordinal))
                    state.Volumes.Add(JsonSerializer.Deserialize<VolumeDefinition>(kv.Value, MgmtJson.Options)!);
                else if (rest.StartsWith("peers/", StringComparison.Ordinal))
                    state.Peers.Add(JsonSerializer.Deserialize<PeerDefinition>(kv.Value, MgmtJson.Options)!);
                else if (rest.StartsWith("snapshots/", StringComparison.Ordinal))
                    state.Snapshots.Add(JsonSerializer.Deserialize<SnapshotDefinition>(kv.Value, MgmtJson.Options)!);
            }
            catch (JsonException e)
            {
                throw new IOException($"etcd key {kv.Key}: not a valid definition: {e.Message}", e);
            }
        }
        state.Volumes.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        state.Snapshots.Sort((a, b) => a.CreatedAt.CompareTo(b.CreatedAt));
        state.Peers.Sort((a, b) => a.ProbedAt.CompareTo(b.ProbedAt));
        return new Snapshot(state, keys, range.Revision, generationRevision, changeId);
    }

    /// <summary>The keys and values that store <paramref name="state"/> (the generation key aside).</summary>
    private Dictionary<string, byte[]> KeysOf(MgmtState state)
    {
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var v in state.Volumes) keys[Prefix + "volumes/" + v.Name] = JsonSerializer.SerializeToUtf8Bytes(v, MgmtJson.Options);
        foreach (var p in state.Peers) keys[Prefix + "peers/" + p.NodeId.ToString("D")] = JsonSerializer.SerializeToUtf8Bytes(p, MgmtJson.Options);
        foreach (var s in state.Snapshots) keys[Prefix + "snapshots/" + s.Name] = JsonSerializer.SerializeToUtf8Bytes(s, MgmtJson.Options);
        return keys;
    }

    public override async ValueTask<MgmtState> ReadAsync(CancellationToken cancellation = default) => (await LoadAsync(cancellation)).State;

    /// <summary>The state and the etcd revision it was read at (what a watcher resumes from).</summary>
    public async Task<(MgmtState State, long Revision)> ReadWithRevisionAsync(CancellationToken ct)
    {
        var s = await LoadAsync(ct);
        return (s.State, s.Revision);
    }

    public override async ValueTask<MgmtResult<T>> UpdateAsync<T>(Func<MgmtState, MgmtResult<T>> change, CancellationToken cancellation = default)
    {
        // Serialised within this node too, so its own requests do not make each other retry.
        await _lock.WaitAsync(cancellation);
        try
        {
            // A transaction whose answer was lost (an endpoint timed out after the leader took it)
            // may have committed although the retry on the next endpoint reports a failed
            // compare: the next read recognises it by its change id, and its result stands.
            var previous = (Change: Guid.Empty, Result: default(MgmtResult<T>));
            for (int attempt = 1; ; attempt++)
            {
                Snapshot read;
                try
                {
                    read = await LoadAsync(cancellation);
                }
                catch (EtcdUnavailableException e)
                {
                    return MgmtError.Unavailable(e.Message);
                }
                if (previous.Change != Guid.Empty && read.ChangeId == previous.Change) return previous.Result;
                var copy = MgmtJson.Clone(read.State);
                var result = change(copy);
                if (!result.Ok) return result;
                copy.Generation = read.State.Generation + 1;
                var after = KeysOf(copy);
                var changeId = Guid.NewGuid();
                var operations = new List<EtcdClient.Operation>
                {
                    new(GenerationKey, JsonSerializer.SerializeToUtf8Bytes(new GenerationValue(copy.Generation, changeId), MgmtJson.Options)),
                };
                foreach (var (key, value) in after)
                    if (!read.Keys.TryGetValue(key, out var old) || !old.AsSpan().SequenceEqual(value)) operations.Add(new(key, value));
                foreach (var key in read.Keys.Keys.Where(k => !after.ContainsKey(k))) operations.Add(new(key, null));
                bool committed;
                try
                {
                    (committed, _) = await _etcd.TxnAsync([new(GenerationKey, read.GenerationModRevision)], operations, cancellation);
                }
                catch (EtcdUnavailableException e)
                {
                    // Whether a transaction whose answer was lost committed is unknown here; the
                    // caller sees Unavailable and every node sees whatever etcd holds.
                    return MgmtError.Unavailable(e.Message);
                }
                if (committed) return result;
                previous = (changeId, result);
                if (attempt >= MaxAttempts)
                    return MgmtError.Unavailable($"the cluster state changed under {MaxAttempts} attempts in a row; try again");
                _logger.LogDebug(1401, "etcd: generation {Generation} changed under this update; retrying", read.State.Generation);
                await Task.Delay(Random.Shared.Next(5, 20 * attempt), cancellation);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Calls <paramref name="changed"/> once at the start and then whenever something under the
    /// prefix changed (a watch event), and at least every <see cref="Resync"/> when the
    /// revision moved without one, until <paramref name="ct"/> ends. A broken watch is resumed
    /// on the next endpoint from the last revision seen; etcd being unavailable is logged and
    /// retried every second.
    /// </summary>
    public async Task WatchAsync(Func<CancellationToken, Task> changed, CancellationToken ct)
    {
        long seen = -1;
        bool unavailableLogged = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var (_, revision) = await ReadWithRevisionAsync(ct);
                if (revision != seen)
                {
                    await changed(ct);
                    seen = revision;
                }
                if (unavailableLogged) _logger.LogInformation(1402, "etcd: reachable again");
                unavailableLogged = false;
                using var resync = CancellationTokenSource.CreateLinkedTokenSource(ct);
                resync.CancelAfter(Resync);
                try
                {
                    await _etcd.WatchPrefixAsync(Prefix, seen + 1, async (events, rev) =>
                    {
                        if (events.Count > 0) await changed(ct);
                        seen = Math.Max(seen, rev);
                    }, resync.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    // Time to read again in full.
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                if (!unavailableLogged) _logger.LogWarning(1403, "etcd: {Reason}; retrying every second", e.Message);
                unavailableLogged = true;
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
        }
    }

    public override ValueTask DisposeAsync()
    {
        _etcd.Dispose();
        return ValueTask.CompletedTask;
    }
}
