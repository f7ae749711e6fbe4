using Brickfs.Mgmt.Bricks;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

/// <summary>
/// The volume operations behind the API: each checks the request against the stored state,
/// changes the state in one store update, and then brings this node in line (volfiles on disk,
/// brickd processes). Operations are serialised, so two concurrent starts of one volume cannot
/// both spawn its bricks. Files a started volume needs are written before its status changes,
/// so a failure there leaves the definition as it was.
/// </summary>
public sealed partial class VolumeManager(
    StateStore store, VolumeValidator validator, Func<string, bool> isLocal, BrickSupervisor supervisor,
    string stateDir, string brickListenHost, ILogger logger)
{
    private readonly SemaphoreSlim _lock = new(1, 1);

    /// <summary>The self-heal program that heal commands run against a volume's client volfile.</summary>
    public string ShdPath { get; init; } = "brickfs-shd";

    /// <summary>How long a heal command may run before mgmtd gives up on it.</summary>
    public TimeSpan HealTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Whether ports for this node's bricks are probed for other listeners (see <see cref="MgmtdOptions.ProbeBrickPorts"/>).</summary>
    public bool ProbePorts { get; init; } = true;

    public string VolumesDir => Path.Combine(stateDir, "vols");
    public string RunDir => Path.Combine(stateDir, "run");
    public string LogDir => Path.Combine(stateDir, "logs", "bricks");

    public async Task<List<VolumeInfo>> ListAsync(CancellationToken ct) =>
        (await store.ReadAsync(ct)).Volumes.Select(VolumeInfo.From).ToList();

    public async Task<MgmtResult<VolumeDefinition>> GetAsync(string name, CancellationToken ct) =>
        (await store.ReadAsync(ct)).FindVolume(name) is { } v ? v : MgmtError.NoSuchVolume(name);

    /// <summary>
    /// Has a peer run <see cref="CheckLocalBricks"/> on its bricks among a request's; null when
    /// they pass. Set in cluster mode, where only a brick's own node can tell which filesystem
    /// holds it.
    /// </summary>
    public Func<PeerDefinition, BrickCheckRequest, CancellationToken, Task<MgmtError?>>? CheckOnPeer { get; init; }

    /// <summary>The filesystem checks of this node's bricks among <paramref name="specs"/> (what a peer asks before it defines them).</summary>
    public MgmtError? CheckLocalBricks(IReadOnlyList<string> specs)
    {
        var bricks = new List<BrickDefinition>();
        foreach (var spec in specs)
        {
            var b = VolumeValidator.ParseBrick(spec);
            if (!b.Ok) return b.Error;
            bricks.Add(b.Value);
        }
        return validator.CheckLocalFilesystems(bricks);
    }

    /// <summary>Has each peer holding some of <paramref name="specs"/> check them (unless forced); a peer that cannot be asked refuses the request.</summary>
    private async Task<MgmtError?> CheckRemoteBricksAsync(IReadOnlyList<string> specs, bool force, CancellationToken ct)
    {
        if (CheckOnPeer is null || force) return null;
        var state = await store.ReadAsync(ct);
        var remote = specs.Select(VolumeValidator.ParseBrick).Where(b => b.Ok && !isLocal(b.Value.Host)).Select(b => b.Value)
            .GroupBy(b => b.Host, StringComparer.OrdinalIgnoreCase);
        foreach (var host in remote)
        {
            // A host that is no peer is refused by the validator, with its own message.
            var peer = state.Peers.FirstOrDefault(p => p.NodeId != state.NodeId && string.Equals(p.Host, host.Key, StringComparison.OrdinalIgnoreCase));
            if (peer is null) continue;
            if (await CheckOnPeer(peer, new BrickCheckRequest([.. host.Select(b => b.Spec)]), ct) is { } error) return error;
        }
        return null;
    }

    public Task<MgmtResult<VolumeDefinition>> CreateAsync(CreateVolumeRequest r, CancellationToken ct) => Serialised(async () =>
    {
        if (await CheckRemoteBricksAsync(r.Bricks ?? [], r.Force, ct) is { } remote) return remote;
        // Subvolumes this request made, over all of the store's attempts (a lost compare-and-swap retries).
        var made = new List<string>();
        Guid id = Guid.Empty;
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = validator.ValidateCreate(state, r.Name ?? "", r.Replica, r.Arbiter, r.Bricks ?? [], r.Force);
            if (!v.Ok) return v;
            if (BrickPorts.Assign(state, v.Value, PortTaken) is { } noPort) return noPort;
            if (CreateBrickSubvolumes(v.Value, made) is { } cannot) return cannot;
            id = v.Value.Id;
            state.Volumes.Add(v.Value);
            return v;
        }, ct);
        if (!result.Ok && made.Count > 0) result = await UndoRefusedCreateAsync(r.Name ?? "", id, result.Error!, made, ct);
        if (result.Ok) logger.LogInformation(1001, "volume {Volume}: created, {Layout} {Bricks}", r.Name, VolumeDefinition.LayoutName(result.Value.Layout), Volgen.Volgen.BrickCountText(result.Value));
        return result;
    });

    public Task<MgmtResult<VolumeDefinition>> StartAsync(string name, bool force, CancellationToken ct) => Serialised(async () =>
    {
        var current = (await store.ReadAsync(ct)).FindVolume(name);
        if (current is null) return MgmtError.NoSuchVolume(name);
        if (current.Status == VolumeStatus.Started && !force) return MgmtError.Conflict($"volume {name} is already started");
        var moved = await MoveBlockedPortsAsync(name, ct);
        if (moved.Ok) current = moved.Value;
        else if (!ReferenceEquals(moved.Error, Unchanged)) return moved.Error!;
        try
        {
            WriteVolfiles(current, createBrickDirs: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return MgmtError.Unavailable($"volume {name}: {e.Message}");
        }
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            v.Status = VolumeStatus.Started;
            return v;
        }, ct);
        if (!result.Ok) return result;
        EnsureBricks(result.Value);
        logger.LogInformation(1002, "volume {Volume}: started", name);
        return result;
    });

    /// <summary>
    /// A port another program took since the brick got it would keep that brick from ever
    /// listening (and a client could reach the wrong server there): each such brick of this
    /// node that does not run yet gets a new port, which the client volfile mounts fetch from
    /// now on carries. <see cref="Unchanged"/> when no port is blocked.
    /// </summary>
    private async Task<MgmtResult<VolumeDefinition>> MoveBlockedPortsAsync(string name, CancellationToken ct) =>
        await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            var blocked = v.Bricks.Where(b => PortBlocked(name, b)).ToList();
            if (blocked.Count == 0) return Unchanged;
            foreach (var b in blocked) b.Port = 0;
            if (BrickPorts.Assign(state, v, PortTaken) is { } noPort) return noPort;
            logger.LogWarning(1010, "volume {Volume}: ports of {Bricks} are taken by other programs; moved to {Ports}", name,
                string.Join(" ", blocked.Select(b => b.Spec)), string.Join(" ", blocked.Select(b => b.Port)));
            return v;
        }, ct);

    public Task<MgmtResult<VolumeDefinition>> StopAsync(string name, bool force, CancellationToken ct) => Serialised(async () =>
    {
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            if (v.Status != VolumeStatus.Started && !force) return MgmtError.Conflict($"volume {name} is not started");
            v.Status = VolumeStatus.Stopped;
            return v;
        }, ct);
        if (!result.Ok) return result;
        await StopBricksAsync(result.Value, result.Value.Bricks);
        logger.LogInformation(1003, "volume {Volume}: stopped", name);
        return result;
    });

    public Task<MgmtResult<VolumeDefinition>> DeleteAsync(string name, CancellationToken ct) => Serialised(async () =>
    {
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            if (v.Status == VolumeStatus.Started) return MgmtError.Conflict($"volume {name} is started; stop it first");
            var snaps = state.Snapshots.Where(s => s.VolumeId == v.Id).Select(s => s.Name).ToList();
            if (snaps.Count > 0) return MgmtError.Conflict($"volume {name} has snapshots ({string.Join(", ", snaps)}); delete them first");
            state.Volumes.Remove(v);
            return v;
        }, ct);
        if (!result.Ok) return result;
        var dir = Path.Combine(VolumesDir, name);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        logger.LogInformation(1004, "volume {Volume}: deleted (brick directories are left as they are)", name);
        return result;
    });

    public Task<MgmtResult<VolumeDefinition>> SetAsync(string name, string key, string value, CancellationToken ct) => Serialised(async () =>
    {
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            var stored = VolumeOptionTable.Validate(v, key ?? "", value ?? "");
            if (!stored.Ok) return stored.Error!;
            v.Options[key!] = stored.Value;
            return v;
        }, ct);
        if (!result.Ok) return result;
        if (result.Value.Status == VolumeStatus.Started) await ApplyAsync(result.Value);
        logger.LogInformation(1005, "volume {Volume}: set {Key} = {Value}", name, key, result.Value.Options[key!]);
        return result;
    });

    public async Task<MgmtResult<List<OptionValue>>> GetOptionsAsync(string name, CancellationToken ct)
    {
        var v = (await store.ReadAsync(ct)).FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        return VolumeOptionTable.All.Select(o => new OptionValue(o.Key, VolumeOptionTable.Effective(v, o.Key), o.Default,
            v.Options.ContainsKey(o.Key), o.Affects == VolfileKind.Client ? "client" : "brick", o.Description)).ToList();
    }

    public Task<MgmtResult<VolumeDefinition>> AddBricksAsync(string name, BricksRequest r, CancellationToken ct) => Serialised(async () =>
    {
        if (await CheckRemoteBricksAsync(r.Bricks ?? [], r.Force, ct) is { } remote) return remote;
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            if (validator.CheckBricks(state, v, r.Bricks ?? [], r.Force) is { } bad) return bad;
            if (BrickPorts.Assign(state, v, PortTaken) is { } noPort) return noPort;
            return v;
        }, ct);
        if (!result.Ok) return result;
        if (result.Value.Status == VolumeStatus.Started)
        {
            WriteVolfiles(result.Value, createBrickDirs: true);
            EnsureBricks(result.Value);
        }
        logger.LogInformation(1006, "volume {Volume}: added {Bricks}", name, string.Join(" ", r.Bricks ?? []));
        return result;
    });

    /// <summary>
    /// Removes bricks from the volume: with <c>commit</c> the bricks a finished
    /// <c>remove-brick ... start</c> drained (refused while files are left on them, unless
    /// Force); without a command only with Force, files on them leaving the volume.
    /// </summary>
    public Task<MgmtResult<VolumeDefinition>> RemoveBricksAsync(string name, BricksRequest r, CancellationToken ct) => Serialised(async () =>
    {
        var removed = new List<BrickDefinition>();
        bool commit = r.Command == "commit";
        if (r.Command is not (null or "commit")) return MgmtError.Invalid($"remove-brick takes start, status, stop, commit or force, not '{r.Command}'");
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            var chosen = SelectBricks(v, r.Bricks ?? []);
            if (!chosen.Ok) return chosen.Error!;
            var indexes = chosen.Value;
            if (commit)
            {
                if (v.Decommissioned.Count > 0 && !SameDrain(v, indexes)) return MgmtError.Invalid($"those bricks of volume {name} are not the ones being removed");
                if (!r.Force && DrainIncomplete(v) is { } why) return MgmtError.Invalid(why);
            }
            else if (!r.Force)
                return MgmtError.Invalid("files on removed bricks leave the volume: drain them first with remove-brick ... start, then commit (or add 'force' to remove at once)");
            removed.AddRange(indexes.Select(i => v.Bricks[i]));
            v.Bricks.RemoveAll(removed.Contains);
            v.Decommissioned.Clear();
            return v;
        }, ct);
        if (!result.Ok) return result;
        if (result.Value.Status == VolumeStatus.Started)
        {
            await StopBricksAsync(result.Value, removed);
            WriteVolfiles(result.Value, createBrickDirs: false);
        }
        foreach (var path in removed.Select(b => BrickVolfilePath(result.Value.Name, b)).Where(File.Exists)) File.Delete(path);
        logger.LogInformation(1007, "volume {Volume}: removed {Bricks}", name, string.Join(" ", removed.Select(b => b.Spec)));
        return result;
    });

    /// <summary>
    /// Asks a peer's mgmtd for the state of its own bricks of a volume (its status with
    /// <c>local=true</c>); null when it does not answer. Set in cluster mode, where every brick
    /// host is a peer running mgmtd.
    /// </summary>
    public Func<PeerDefinition, string, CancellationToken, Task<VolumeStatusResponse?>>? AskPeer { get; init; }

    /// <summary>
    /// Each brick's state. This node's bricks it knows itself; in cluster mode it asks the peer
    /// that holds each other brick (unless <paramref name="localOnly"/>, which is how peers ask
    /// each other), and a brick whose peer does not answer shows as unknown (Online null).
    /// </summary>
    public async Task<MgmtResult<VolumeStatusResponse>> StatusAsync(string name, CancellationToken ct, bool localOnly = false)
    {
        var state = await store.ReadAsync(ct);
        var v = state.FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        var remote = new Dictionary<string, VolumeStatusResponse?>(StringComparer.OrdinalIgnoreCase);
        if (AskPeer is not null && !localOnly)
        {
            var asks = v.Bricks.Select(b => b.Host).Where(h => !isLocal(h)).Distinct(StringComparer.OrdinalIgnoreCase)
                .Select(h => (Host: h, Peer: state.Peers.FirstOrDefault(p => p.NodeId != state.NodeId && string.Equals(p.Host, h, StringComparison.OrdinalIgnoreCase))))
                .Where(a => a.Peer is not null)
                .Select(async a => (a.Host, Status: await AskPeer(a.Peer!, name, ct)));
            foreach (var (host, status) in await Task.WhenAll(asks)) remote[host] = status;
        }
        var bricks = v.Bricks.Select((b, i) =>
        {
            if (!isLocal(b.Host))
            {
                var there = remote.GetValueOrDefault(b.Host)?.Bricks.FirstOrDefault(r => r.Index == i && r.Local && r.Path == b.Path);
                return there is null ? new BrickStatus(i, b.Host, b.Path, b.Port, false, null, null, null, 0) : there with { Local = false };
            }
            var s = supervisor.State(Key(v.Name, b));
            return new BrickStatus(i, b.Host, b.Path, b.Port, true, s?.Pid, s?.Online ?? false, FreeBytes(b.Path), s?.Restarts ?? 0);
        }).ToList();
        return new VolumeStatusResponse(v.Name, v.Status, bricks);
    }

    /// <summary>
    /// Brings this node in line with the stored definitions: every local brick of a started
    /// volume or an activated snapshot runs with its current volfile (a brick whose volfile
    /// changed, e.g. after <c>volume set features.bitrot</c>, is restarted on the new one), and
    /// every other brick this node runs is stopped (its volume was stopped or deleted, or the
    /// brick removed, maybe by another node). What a restarted mgmtd does first, and in cluster
    /// mode what every mgmtd does after each change in etcd. Failures of one volume are logged
    /// and do not keep the others from converging.
    /// </summary>
    public Task ConvergeAsync(CancellationToken ct) => Serialised(async () =>
    {
        var state = await store.ReadAsync(ct);
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var started in state.Volumes.Where(v => v.Status == VolumeStatus.Started))
        {
            var v = started;
            foreach (var b in v.Bricks.Where(b => isLocal(b.Host))) wanted.Add(Key(v.Name, b));
            try
            {
                // Another node gave this node's brick its port without being able to probe it here.
                if (v.Bricks.Any(b => PortBlocked(v.Name, b)))
                {
                    var moved = await MoveBlockedPortsAsync(v.Name, ct);
                    if (moved.Ok) v = moved.Value;
                    else if (!ReferenceEquals(moved.Error, Unchanged)) logger.LogError(1014, "volume {Volume}: {Reason}", v.Name, moved.Error!.Message);
                }
                await ApplyAsync(v);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogError(1008, "volume {Volume}: cannot start its bricks: {Reason}", v.Name, e.Message);
            }
        }
        foreach (var snap in state.Snapshots.Where(s => s.Active))
        {
            foreach (var b in snap.Bricks.Bricks.Where(b => isLocal(b.Host))) wanted.Add(SnapshotKey(snap.Name, b));
            try
            {
                StartSnapshotBricks(snap);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogError(1009, "snapshot {Snapshot}: cannot start its bricks: {Reason}", snap.Name, e.Message);
            }
        }
        foreach (var key in supervisor.Keys.Where(k => !wanted.Contains(k)))
        {
            logger.LogInformation(1012, "brick {Brick}: no longer wanted on this node; stopping it", key);
            await supervisor.StopAsync(key);
        }
        // Volfiles of volumes deleted meanwhile (maybe through another node) go too.
        if (Directory.Exists(VolumesDir))
        {
            foreach (var dir in Directory.EnumerateDirectories(VolumesDir).Where(d => state.FindVolume(Path.GetFileName(d)) is null))
                Directory.Delete(dir, recursive: true);
        }
        return true;
    });

    /// <summary>Writes a started volume's volfiles and runs its local bricks, restarting those whose brick volfile changed.</summary>
    private async Task ApplyAsync(VolumeDefinition v)
    {
        foreach (var key in WriteVolfiles(v, createBrickDirs: true).Where(k => supervisor.State(k) is not null))
        {
            logger.LogInformation(1013, "brick {Brick}: its volfile changed; restarting it", key);
            await supervisor.StopAsync(key);
        }
        EnsureBricks(v);
    }

    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Completes at the next change this node makes or converges to (a request it served, or
    /// a change another node made in etcd); take it before reading the state, so no change
    /// between the read and the wait is missed.
    /// </summary>
    public Task Changed => Volatile.Read(ref _changed).Task;

    private void SignalChanged() => Interlocked.Exchange(ref _changed, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>
    /// Makes each local brick of a new volume that does not exist yet and lies on Btrfs a
    /// subvolume of its own, so snapshots cover one brick each, adding each to
    /// <paramref name="made"/>. Bricks on other nodes are made by their own node when the volume
    /// starts (its convergence), so a create touches no other node's disks.
    /// </summary>
    private MgmtError? CreateBrickSubvolumes(VolumeDefinition v, List<string> made)
    {
        foreach (var b in v.Bricks.Where(b => isLocal(b.Host) && !Directory.Exists(b.Path)))
        {
            if (Node.MountPoint.Of(b.Path).FileSystemType != "btrfs") continue;
            if (Node.Btrfs.CreateSubvolume(b.Path) is { } error) return error;
            made.Add(b.Path);
        }
        return null;
    }

    /// <summary>
    /// After a create that did not succeed: deletes the brick subvolumes it made, so a refused
    /// create leaves the disks as they were (a later attempt of the store may have been refused,
    /// e.g. because another node created the name meanwhile). When the store could not say
    /// whether the change committed (etcd's answer lost), the state is read again: a committed
    /// create is reported as done and keeps its bricks; if that cannot be read either, the
    /// subvolumes stay (an empty subvolume is harmless; a deleted brick of a live volume is not).
    /// </summary>
    private async Task<MgmtResult<VolumeDefinition>> UndoRefusedCreateAsync(string name, Guid id, MgmtError error, List<string> made, CancellationToken ct)
    {
        if (error.Kind == MgmtErrorKind.Unavailable)
        {
            try
            {
                if ((await store.ReadAsync(ct)).FindVolume(name) is { } stored && stored.Id == id) return stored;
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                logger.LogWarning(1015, "volume {Volume}: create not confirmed ({Reason}); its new brick subvolumes stay: {Paths}", name, e.Message, string.Join(" ", made));
                return error;
            }
        }
        foreach (var m in made.Where(Directory.Exists))
            if (Node.Btrfs.DeleteSubvolume(m) is { } notDeleted) logger.LogWarning(1016, "volume {Volume}: cannot undo brick subvolume {Path}: {Reason}", name, m, notDeleted.Message);
        return error;
    }

    /// <summary>Ends a store update that has nothing to change without writing.</summary>
    private static readonly MgmtError Unchanged = MgmtError.Conflict("unchanged");

    /// <summary>Whether a program already listens on <paramref name="port"/> of this node (for another node: unknown, so no).</summary>
    private bool PortTaken(string host, int port)
    {
        if (!ProbePorts || port == 0 || !isLocal(host)) return false;
        var address = System.Net.IPAddress.TryParse(brickListenHost, out var a) ? a : System.Net.IPAddress.Any;
        try
        {
            var probe = new System.Net.Sockets.TcpListener(address, port);
            probe.Start();
            probe.Stop();
            return false;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return true;
        }
    }

    /// <summary>Whether another program holds the port of this node's brick, which is neither running nor left running by an earlier mgmtd.</summary>
    private bool PortBlocked(string volume, BrickDefinition b) =>
        supervisor.State(Key(volume, b)) is null && PortTaken(b.Host, b.Port)
        && BrickSupervisor.LeftRunning(Path.Combine(RunDir, Key(volume, b) + ".pid"), BrickVolfilePath(volume, b)) is null;

    public static string Key(string volume, BrickDefinition b) => $"{volume}-brick-{b.Number}";

    public string BrickVolfilePath(string volume, BrickDefinition b) => Path.Combine(VolumesDir, volume, Key(volume, b) + ".vol");

    /// <summary>Writes the volume's client volfile and its local bricks' volfiles; returns the keys of bricks whose volfile existed and changed.</summary>
    private List<string> WriteVolfiles(VolumeDefinition v, bool createBrickDirs)
    {
        var dir = Path.Combine(VolumesDir, v.Name);
        Directory.CreateDirectory(dir);
        Directory.CreateDirectory(RunDir);
        Directory.CreateDirectory(LogDir);
        WriteIfChanged(Path.Combine(dir, v.Name + ".client.vol"), Volgen.Volgen.ClientVolfile(v));
        var changed = new List<string>();
        for (int i = 0; i < v.Bricks.Count; i++)
        {
            var b = v.Bricks[i];
            if (!isLocal(b.Host)) continue;
            if (createBrickDirs) MakeBrickDirectory(b);
            if (WriteIfChanged(BrickVolfilePath(v.Name, b), Volgen.Volgen.BrickVolfile(v, i, brickListenHost)) is true) changed.Add(Key(v.Name, b));
        }
        return changed;
    }

    /// <summary>
    /// Makes a local brick's directory when it does not exist yet: a subvolume of its own on
    /// Btrfs (so snapshots cover one brick each), else a plain directory. In a cluster this is
    /// how a brick defined on another node comes to exist on this one.
    /// </summary>
    private static void MakeBrickDirectory(BrickDefinition b)
    {
        if (Directory.Exists(b.Path)) return;
        var parent = Path.GetDirectoryName(b.Path)!;
        Directory.CreateDirectory(parent);
        if (Node.MountPoint.Of(parent).FileSystemType == "btrfs")
        {
            if (Node.Btrfs.CreateSubvolume(b.Path) is { } error) throw new IOException(error.Message);
            return;
        }
        Directory.CreateDirectory(b.Path);
    }

    /// <summary>Replaces the file when its text differs: null when it was new, true when it changed, false when it was already so.</summary>
    private static bool? WriteIfChanged(string path, string text)
    {
        bool existed = File.Exists(path);
        if (existed && File.ReadAllText(path) == text) return false;
        AtomicFile.WriteAllText(path, text);
        return existed ? true : null;
    }

    private void EnsureBricks(VolumeDefinition v)
    {
        foreach (var b in v.Bricks.Where(b => isLocal(b.Host)))
        {
            var key = Key(v.Name, b);
            supervisor.Ensure(new BrickLaunch(key, BrickVolfilePath(v.Name, b), Path.Combine(LogDir, key + ".log"),
                Path.Combine(RunDir, key + ".pid"), b.Port));
        }
    }

    private Task StopBricksAsync(VolumeDefinition v, IEnumerable<BrickDefinition> bricks) =>
        Task.WhenAll(bricks.Where(b => isLocal(b.Host)).Select(b => supervisor.StopAsync(Key(v.Name, b))));

    private static long? FreeBytes(string path)
    {
        try
        {
            return Directory.Exists(path) ? new DriveInfo(path).AvailableFreeSpace : null;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Runs one operation at a time on this node; each one wakes the watchers of <see cref="Changed"/> when it ends.</summary>
    private async Task<T> Serialised<T>(Func<Task<T>> operation)
    {
        await _lock.WaitAsync();
        try
        {
            return await operation();
        }
        finally
        {
            _lock.Release();
            SignalChanged();
        }
    }
}
