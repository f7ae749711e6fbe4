using Brickfs.Mgmt.Bricks;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

/// <summary>
/// Snapshots: a read-only Btrfs snapshot of every brick of a volume. A snapshot of brick
/// <c>/M/.../B</c> on the Btrfs filesystem mounted at <c>/M</c> lives at
/// <c>/M/.brickfs-snaps/SNAP/VOL-brick-N</c>: on the same filesystem (Btrfs snapshots cannot
/// cross filesystems) and outside every brick (so it is never visible through a mount).
/// In a cluster the node asked coordinates and every node acts on its own bricks
/// (VolumeManager.SnapshotNode.cs); a standalone server snaps bricks of its own only.
/// </summary>
public sealed partial class VolumeManager
{
    public const string SnapshotDirName = ".brickfs-snaps";

    public string SnapshotStateDir => Path.Combine(stateDir, "snaps");

    public async Task<List<SnapshotInfo>> ListSnapshotsAsync(string? volume, CancellationToken ct) =>
        (await store.ReadAsync(ct)).Snapshots.Where(s => volume is null || s.Volume == volume)
            .OrderBy(s => s.CreatedAt).Select(s => SnapshotInfo.From(s)).ToList();

    public async Task<MgmtResult<SnapshotDefinition>> GetSnapshotAsync(string name, CancellationToken ct) =>
        (await store.ReadAsync(ct)).FindSnapshot(name) is { } s ? s : NoSuchSnapshot(name);

    private static MgmtError NoSuchSnapshot(string name) => MgmtError.NotFound($"snapshot {name} does not exist");

    /// <summary>
    /// Snapshots every brick of <paramref name="volumeName"/>, on every node that holds some.
    /// While a started volume's bricks snap, their brickd processes are stopped with SIGSTOP, so
    /// no fop lands on one brick and not yet on another between two snapshots: the copies share
    /// one point, as after a crash of every brick at the same moment (pending-heal markers
    /// included). Two phases make that hold across nodes: every node first checks and pauses its
    /// bricks; only when all have paused does any take its snapshots, and each resumes its
    /// bricks right after its own. So a node resumes only after every brick is paused, and no
    /// fop a resumed brick serves can be the cause of one a brick not yet snapped serves. A
    /// node keeps its bricks paused at most <see cref="SnapshotPauseLimit"/> (plus the time its
    /// snapshots take, constant-time in Btrfs) even when its coordinator is lost; if that ran
    /// out before the take, the attempt is undone everywhere and tried again, up to
    /// <see cref="SnapshotAttempts"/> times. A write the kernel is executing completes before
    /// the process stops.
    /// </summary>
    public Task<MgmtResult<SnapshotInfo>> CreateSnapshotAsync(SnapshotCreateRequest r, CancellationToken ct) => Serialised<MgmtResult<SnapshotInfo>>(async () =>
    {
        string name = r.Name ?? "", volumeName = r.Volume ?? "";
        if (VolumeValidator.CheckName(name) is { } badName) return new MgmtError(badName.Kind, badName.Message.Replace("volume name", "snapshot name"));
        var state = await store.ReadAsync(ct);
        if (state.FindSnapshot(name) is not null) return MgmtError.Conflict($"snapshot {name} already exists");
        var v = state.FindVolume(volumeName);
        if (v is null) return MgmtError.NoSuchVolume(volumeName);
        var nodes = SnapshotNodes(state, v.Bricks, SnapshotStepTimeout);
        if (!nodes.Ok) return nodes.Error!;
        for (int attempt = 1; ; attempt++)
        {
            var (result, expired) = await TrySnapshotAsync(name, v, nodes.Value, ct);
            if (!expired || attempt >= SnapshotAttempts) return result;
            logger.LogWarning(1028, "snapshot {Snapshot}: attempt {Attempt}: a node's pause ran out before every node was paused; trying again", name, attempt);
        }
    });

    /// <summary>How many times a snapshot whose pause ran out on some node is tried.</summary>
    public const int SnapshotAttempts = 3;

    /// <summary>How long the coordinator waits for a node's answer to a pause, take or abort.</summary>
    public static readonly TimeSpan SnapshotStepTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long the coordinator waits for a node to restore or delete its snapshot bricks.</summary>
    public static readonly TimeSpan SnapshotBricksTimeout = TimeSpan.FromSeconds(120);

    /// <summary>One attempt: pause everywhere, take everywhere, record. Expired: a node's pause ran out; nothing is left behind.</summary>
    private async Task<(MgmtResult<SnapshotInfo> Result, bool Expired)> TrySnapshotAsync(string name, VolumeDefinition v, List<SnapshotNode> nodes, CancellationToken ct)
    {
        var id = Guid.NewGuid();
        bool started = v.Status == VolumeStatus.Started;
        int lease = (int)SnapshotPauseLimit.TotalMilliseconds;
        var paused = await Task.WhenAll(nodes.Select(n =>
        {
            var request = new SnapshotPauseRequest(id, v.Name, started, [.. n.Indexes.Select(i => Ref(v.Bricks[i]))], lease);
            return n.Client is null ? Task.Run(() => PauseSnapshotBricks(name, request)) : n.Client.SnapshotPauseAsync(name, request);
        }));
        if (paused.Select(p => p.Error).FirstOrDefault(e => e is not null) is { } refused)
        {
            await AbortSnapshotAsync(name, id, nodes);
            return (refused, false);
        }
        var taken = await Task.WhenAll(nodes.Select(n => n.Client is null ? Task.Run(() => TakeSnapshotBricks(id)) : n.Client.SnapshotTakeAsync(name, id)));
        var failed = taken.Select(t => t.Error).FirstOrDefault(e => e is not null);
        bool expired = taken.Any(t => t.Ok && t.Value.Expired);
        if (failed is not null || expired)
        {
            await AbortSnapshotAsync(name, id, nodes);
            return (failed ?? MgmtError.Unavailable($"the bricks of volume {v.Name} could not all be paused within {lease} ms of each other; nothing was taken (try again)"), failed is null);
        }

        var targets = new string[v.Bricks.Count];
        foreach (var answer in paused)
            foreach (var b in answer.Value.Bricks)
                targets[v.Bricks.FindIndex(x => x.Number == b.Number)] = b.Target!;
        double pausedMs = taken.Max(t => t.Value.PausedMilliseconds);
        var snapshot = new SnapshotDefinition
        {
            Name = name, Id = Guid.NewGuid(), Volume = v.Name, VolumeId = v.Id, CreatedAt = DateTimeOffset.UtcNow,
            Bricks = SnapshotVolume(name, v, [.. targets]), Origins = v.Bricks.Select(b => b.Path).ToList(),
        };
        var stored = await store.UpdateAsync<SnapshotDefinition>(s =>
        {
            if (s.FindSnapshot(name) is not null) return MgmtError.Conflict($"snapshot {name} already exists");
            var now = s.FindVolume(v.Name);
            if (now is null || now.Id != v.Id || !now.Bricks.Select(b => b.Spec).SequenceEqual(v.Bricks.Select(b => b.Spec)))
                return MgmtError.Conflict($"volume {v.Name} changed while snapshot {name} was taken; try again");
            s.Snapshots.Add(snapshot);
            return snapshot;
        }, ct);
        if (!stored.Ok)
        {
            await AbortSnapshotAsync(name, id, nodes);
            return (stored.Error!, false);
        }
        logger.LogInformation(1021, "snapshot {Snapshot}: created from volume {Volume} ({Bricks} bricks on {Nodes} node(s), writes paused {Paused:0.0} ms)",
            name, v.Name, targets.Length, nodes.Count, pausedMs);
        return (SnapshotInfo.From(snapshot, pausedMs), false);
    }

    /// <summary>Undoes an attempt on every node (resumes bricks still paused, deletes what it made); a node that does not answer is logged.</summary>
    private async Task AbortSnapshotAsync(string name, Guid id, List<SnapshotNode> nodes)
    {
        var answers = await Task.WhenAll(nodes.Select(n => n.Client is null ? Task.Run(() => AbortSnapshotBricks(id)) : n.Client.SnapshotAbortAsync(name, id)));
        for (int i = 0; i < nodes.Count; i++)
            if (answers[i].Error is { } e)
                logger.LogWarning(1029, "snapshot {Snapshot}: cannot undo the attempt on {Node}: {Reason}", name, nodes[i].Host, e.Message);
    }

    private static SnapshotBrick Ref(BrickDefinition b, string? target = null) => new(b.Number, b.Host, b.Path, target);

    /// <summary>A node holding some of the bricks (by index): this node (Client null) or a peer.</summary>
    private sealed record SnapshotNode(string Host, MgmtClient? Client, List<int> Indexes);

    /// <summary>
    /// A client of a peer's API with the given timeout. Set in cluster mode; a standalone server
    /// can only act on bricks of its own.
    /// </summary>
    public Func<PeerDefinition, TimeSpan, MgmtClient>? PeerClient { get; init; }

    /// <summary>The nodes that hold <paramref name="bricks"/>, this node first; an error names a brick no node here can act on.</summary>
    private MgmtResult<List<SnapshotNode>> SnapshotNodes(MgmtState state, IReadOnlyList<BrickDefinition> bricks, TimeSpan timeout)
    {
        var local = new SnapshotNode("this node", null, []);
        var nodes = new List<SnapshotNode>();
        for (int i = 0; i < bricks.Count; i++)
        {
            var b = bricks[i];
            if (isLocal(b.Host))
            {
                local.Indexes.Add(i);
                continue;
            }
            var node = nodes.FirstOrDefault(n => string.Equals(n.Host, b.Host, StringComparison.OrdinalIgnoreCase));
            if (node is null)
            {
                if (PeerClient is null)
                    return MgmtError.Unavailable($"brick {b.Spec} is on another node, and this server is standalone; snapshots span nodes only in a cluster");
                var peer = state.Peers.FirstOrDefault(p => p.NodeId != state.NodeId && string.Equals(p.Host, b.Host, StringComparison.OrdinalIgnoreCase));
                if (peer is null) return MgmtError.Unavailable($"brick {b.Spec} is on {b.Host}, which is not a peer of this cluster");
                node = new SnapshotNode(b.Host, PeerClient(peer, timeout), []);
                nodes.Add(node);
            }
            node.Indexes.Add(i);
        }
        if (local.Indexes.Count > 0) nodes.Insert(0, local);
        return nodes;
    }

    /// <summary>The snapshot as a volume of its own: the origin's layout and options over the snapshot directories, ports unassigned.</summary>
    private static VolumeDefinition SnapshotVolume(string name, VolumeDefinition v, List<string> paths)
    {
        var copy = MgmtJson.Clone(v);
        var bricks = copy.Bricks.Select((b, i) => new BrickDefinition { Host = b.Host, Path = paths[i], Number = b.Number, Port = 0 }).ToList();
        return new VolumeDefinition
        {
            Name = name, Id = Guid.NewGuid(), ReplicaCount = copy.ReplicaCount, ArbiterCount = copy.ArbiterCount,
            Bricks = bricks, Options = copy.Options, Status = VolumeStatus.Stopped, NextBrickNumber = copy.NextBrickNumber,
        };
    }

    /// <summary>
    /// Rolls a stopped volume back to <paramref name="name"/> on every node that holds its
    /// bricks (<see cref="RestoreSnapshotBricks"/>), and the volume's options become the
    /// snapshot's. Every node first prepares a writable copy of each of its snapshots beside the
    /// brick; only when all have does any swap them in (renames), so a missing snapshot or a full
    /// disk on one node leaves every brick as it was. The snapshot stays, so the same point can
    /// be restored again.
    /// </summary>
    public Task<MgmtResult<SnapshotInfo>> RestoreSnapshotAsync(string name, CancellationToken ct) => Serialised<MgmtResult<SnapshotInfo>>(async () =>
    {
        var state = await store.ReadAsync(ct);
        var snap = state.FindSnapshot(name);
        if (snap is null) return NoSuchSnapshot(name);
        var v = state.FindVolume(snap.Volume);
        if (v is null || v.Id != snap.VolumeId) return MgmtError.NotFound($"volume {snap.Volume} of snapshot {name} no longer exists");
        if (v.Status == VolumeStatus.Started) return MgmtError.Conflict($"volume {v.Name} is started; stop it before restoring snapshot {name}");
        if (!v.Bricks.Select(b => b.Path).SequenceEqual(snap.Origins))
            return MgmtError.Conflict($"the bricks of volume {v.Name} changed since snapshot {name} was taken; it cannot be restored onto them");
        var nodes = SnapshotNodes(state, v.Bricks, SnapshotBricksTimeout);
        if (!nodes.Ok) return nodes.Error!;
        Task<MgmtResult<MessageResponse>[]> Everywhere(string step) => Task.WhenAll(nodes.Value.Select(n =>
        {
            var request = new SnapshotBricksRequest([.. n.Indexes.Select(i => Ref(v.Bricks[i], snap.Bricks.Bricks[i].Path))], step);
            return n.Client is null ? Task.Run(() => RestoreSnapshotBricks(name, request)) : n.Client.SnapshotRestoreBricksAsync(name, request);
        }));
        if ((await Everywhere(RestoreSteps.Prepare)).Select(a => a.Error).FirstOrDefault(e => e is not null) is { } unprepared)
        {
            var undone = await Everywhere(RestoreSteps.Abort);
            foreach (var e in undone.Select(a => a.Error).OfType<MgmtError>())
                logger.LogWarning(1029, "snapshot {Snapshot}: cannot undo a prepared restore: {Reason}", name, e.Message);
            return unprepared;
        }
        if ((await Everywhere(RestoreSteps.Commit)).Select(a => a.Error).FirstOrDefault(e => e is not null) is { } failed) return failed;
        var result = await store.UpdateAsync<VolumeDefinition>(s =>
        {
            var cur = s.FindVolume(v.Name);
            if (cur is null) return MgmtError.NoSuchVolume(v.Name);
            cur.Options.Clear();
            foreach (var (k, val) in snap.Bricks.Options) cur.Options[k] = val;
            return cur;
        }, ct);
        if (!result.Ok) return result.Error!;
        logger.LogInformation(1022, "snapshot {Snapshot}: restored onto volume {Volume}", name, v.Name);
        return SnapshotInfo.From(snap);
    });

    /// <summary>
    /// Deletes the snapshot's bricks on every node that holds some, then its definition. An
    /// activated snapshot is deactivated first, so no node's convergence starts its bricks again
    /// while they go. A node that cannot delete its part keeps the definition, so the delete
    /// can be repeated.
    /// </summary>
    public Task<MgmtResult<SnapshotInfo>> DeleteSnapshotAsync(string name, CancellationToken ct) => Serialised<MgmtResult<SnapshotInfo>>(async () =>
    {
        var state = await store.ReadAsync(ct);
        var snap = state.FindSnapshot(name);
        if (snap is null) return NoSuchSnapshot(name);
        var nodes = SnapshotNodes(state, snap.Bricks.Bricks, SnapshotBricksTimeout);
        if (!nodes.Ok) return nodes.Error!;
        if (snap.Active)
        {
            var off = await store.UpdateAsync<SnapshotDefinition>(s =>
            {
                var cur = s.FindSnapshot(name);
                if (cur is null) return NoSuchSnapshot(name);
                cur.Active = false;
                foreach (var b in cur.Bricks.Bricks) b.Port = 0;
                return cur;
            }, ct);
            if (!off.Ok) return off.Error!;
        }
        var answers = await Task.WhenAll(nodes.Value.Select(n =>
        {
            var request = new SnapshotBricksRequest([.. n.Indexes.Select(i => Ref(snap.Bricks.Bricks[i]))]);
            return n.Client is null ? DeleteSnapshotBricksAsync(name, request) : n.Client.SnapshotDeleteBricksAsync(name, request);
        }));
        if (answers.Select(a => a.Error).FirstOrDefault(e => e is not null) is { } failed) return failed;
        var result = await store.UpdateAsync<SnapshotDefinition>(s =>
        {
            var cur = s.FindSnapshot(name);
            if (cur is null) return NoSuchSnapshot(name);
            s.Snapshots.Remove(cur);
            return cur;
        }, ct);
        if (!result.Ok) return result.Error!;
        logger.LogInformation(1023, "snapshot {Snapshot}: deleted", name);
        return SnapshotInfo.From(snap);
    });

    /// <summary>Starts (or stops) brickd processes serving the snapshot's bricks, so <c>HOST:/snaps/SNAP/VOL</c> mounts it read-only.</summary>
    public Task<MgmtResult<SnapshotInfo>> ActivateSnapshotAsync(string name, bool active, CancellationToken ct) => Serialised<MgmtResult<SnapshotInfo>>(async () =>
    {
        var result = await store.UpdateAsync<SnapshotDefinition>(s =>
        {
            var snap = s.FindSnapshot(name);
            if (snap is null) return NoSuchSnapshot(name);
            if (snap.Active == active) return MgmtError.Conflict($"snapshot {name} is already {(active ? "activated" : "deactivated")}");
            snap.Active = active;
            if (active)
            {
                if (BrickPorts.Assign(s, snap.Bricks, PortTaken) is { } noPort) return noPort;
            }
            else
            {
                foreach (var b in snap.Bricks.Bricks) b.Port = 0;
            }
            return snap;
        }, ct);
        if (!result.Ok) return result.Error!;
        if (active)
        {
            try
            {
                StartSnapshotBricks(result.Value);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return MgmtError.Unavailable($"snapshot {name}: {e.Message}");
            }
        }
        else
        {
            await StopSnapshotBricksAsync(result.Value);
        }
        logger.LogInformation(1025, "snapshot {Snapshot}: {State}", name, active ? "activated" : "deactivated");
        return SnapshotInfo.From(result.Value);
    });

    /// <summary>The client volfile of an activated snapshot; its mount is read-only (mount.brickfs makes /snaps/ mounts ro).</summary>
    public async Task<MgmtResult<string>> SnapshotVolfileAsync(string name, CancellationToken ct)
    {
        var snap = (await store.ReadAsync(ct)).FindSnapshot(name);
        if (snap is null) return NoSuchSnapshot(name);
        if (!snap.Active) return MgmtError.Conflict($"snapshot {name} is not activated (brickctl snapshot activate {name})");
        return Volgen.Volgen.ClientVolfile(snap.Bricks);
    }

    private static string SnapshotKey(string snap, BrickDefinition b) => $"snap.{snap}-brick-{b.Number}";

    private void StartSnapshotBricks(SnapshotDefinition snap)
    {
        var dir = Path.Combine(SnapshotStateDir, snap.Name);
        Directory.CreateDirectory(dir);
        Directory.CreateDirectory(RunDir);
        Directory.CreateDirectory(LogDir);
        for (int i = 0; i < snap.Bricks.Bricks.Count; i++)
        {
            var b = snap.Bricks.Bricks[i];
            if (!isLocal(b.Host)) continue;
            var key = SnapshotKey(snap.Name, b);
            var volfile = Path.Combine(dir, key + ".vol");
            AtomicFile.WriteAllText(volfile, Volgen.Volgen.BrickVolfile(snap.Bricks, i, brickListenHost));
            supervisor.Ensure(new BrickLaunch(key, volfile, Path.Combine(LogDir, key + ".log"), Path.Combine(RunDir, key + ".pid"), b.Port));
        }
    }

    private Task StopSnapshotBricksAsync(SnapshotDefinition snap) =>
        Task.WhenAll(snap.Bricks.Bricks.Where(b => isLocal(b.Host)).Select(b => supervisor.StopAsync(SnapshotKey(snap.Name, b))));
}
