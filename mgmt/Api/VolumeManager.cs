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

    public Task<MgmtResult<VolumeDefinition>> CreateAsync(CreateVolumeRequest r, CancellationToken ct) => Serialised(async () =>
    {
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = validator.ValidateCreate(state, r.Name ?? "", r.Replica, r.Arbiter, r.Bricks ?? [], r.Force);
            if (!v.Ok) return v;
            if (BrickPorts.Assign(state, v.Value, PortTaken) is { } noPort) return noPort;
            if (CreateBrickSubvolumes(v.Value) is { } cannot) return cannot;
            state.Volumes.Add(v.Value);
            return v;
        }, ct);
        if (result.Ok) logger.LogInformation(1001, "volume {Volume}: created, {Layout} {Bricks}", r.Name, VolumeDefinition.LayoutName(result.Value.Layout), Volgen.Volgen.BrickCountText(result.Value));
        return result;
    });

    public Task<MgmtResult<VolumeDefinition>> StartAsync(string name, bool force, CancellationToken ct) => Serialised(async () =>
    {
        var current = (await store.ReadAsync(ct)).FindVolume(name);
        if (current is null) return MgmtError.NoSuchVolume(name);
        if (current.Status == VolumeStatus.Started && !force) return MgmtError.Conflict($"volume {name} is already started");
        // A port another program took since the brick got it would keep that brick from ever
        // listening (and a client could reach the wrong server there): such a brick gets a new
        // port, which the client volfile mounts fetch from now on carries.
        var moved = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            var blocked = v.Bricks.Where(b => supervisor.State(Key(name, b)) is null && PortTaken(b.Host, b.Port)).ToList();
            if (blocked.Count == 0) return Unchanged;
            foreach (var b in blocked) b.Port = 0;
            if (BrickPorts.Assign(state, v, PortTaken) is { } noPort) return noPort;
            logger.LogWarning(1010, "volume {Volume}: ports of {Bricks} are taken by other programs; moved to {Ports}", name,
                string.Join(" ", blocked.Select(b => b.Spec)), string.Join(" ", blocked.Select(b => b.Port)));
            return v;
        }, ct);
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
        if (result.Value.Status == VolumeStatus.Started) WriteVolfiles(result.Value, createBrickDirs: false);
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

    public async Task<MgmtResult<VolumeStatusResponse>> StatusAsync(string name, CancellationToken ct)
    {
        var v = (await store.ReadAsync(ct)).FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        var bricks = v.Bricks.Select((b, i) =>
        {
            if (!isLocal(b.Host)) return new BrickStatus(i, b.Host, b.Path, b.Port, false, null, null, null, 0);
            var s = supervisor.State(Key(v.Name, b));
            return new BrickStatus(i, b.Host, b.Path, b.Port, true, s?.Pid, s?.Online ?? false, FreeBytes(b.Path), s?.Restarts ?? 0);
        }).ToList();
        return new VolumeStatusResponse(v.Name, v.Status, bricks);
    }

    /// <summary>Starts the local bricks of every started volume: what a restarted mgmtd does first.</summary>
    public async Task ConvergeAsync(CancellationToken ct)
    {
        foreach (var v in (await store.ReadAsync(ct)).Volumes.Where(v => v.Status == VolumeStatus.Started))
        {
            try
            {
                WriteVolfiles(v, createBrickDirs: true);
                EnsureBricks(v);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogError(1008, "volume {Volume}: cannot start its bricks: {Reason}", v.Name, e.Message);
            }
        }
        foreach (var snap in (await store.ReadAsync(ct)).Snapshots.Where(s => s.Active))
        {
            try
            {
                StartSnapshotBricks(snap);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogError(1009, "snapshot {Snapshot}: cannot start its bricks: {Reason}", snap.Name, e.Message);
            }
        }
    }

    /// <summary>
    /// Makes each local brick of a new volume that does not exist yet and lies on Btrfs a
    /// subvolume of its own, so snapshots cover one brick each. Those made here are removed
    /// again when a later one fails, so a refused create leaves the disks as they were.
    /// </summary>
    private MgmtError? CreateBrickSubvolumes(VolumeDefinition v)
    {
        var made = new List<string>();
        foreach (var b in v.Bricks.Where(b => isLocal(b.Host) && !Directory.Exists(b.Path)))
        {
            if (Node.MountPoint.Of(b.Path).FileSystemType != "btrfs") continue;
            if (Node.Btrfs.CreateSubvolume(b.Path) is { } error)
            {
                foreach (var m in made) Node.Btrfs.DeleteSubvolume(m);
                return error;
            }
            made.Add(b.Path);
        }
        return null;
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

    public static string Key(string volume, BrickDefinition b) => $"{volume}-brick-{b.Number}";

    public string BrickVolfilePath(string volume, BrickDefinition b) => Path.Combine(VolumesDir, volume, Key(volume, b) + ".vol");

    private void WriteVolfiles(VolumeDefinition v, bool createBrickDirs)
    {
        var dir = Path.Combine(VolumesDir, v.Name);
        Directory.CreateDirectory(dir);
        Directory.CreateDirectory(RunDir);
        Directory.CreateDirectory(LogDir);
        AtomicFile.WriteAllText(Path.Combine(dir, v.Name + ".client.vol"), Volgen.Volgen.ClientVolfile(v));
        for (int i = 0; i < v.Bricks.Count; i++)
        {
            var b = v.Bricks[i];
            if (!isLocal(b.Host)) continue;
            if (createBrickDirs) Directory.CreateDirectory(b.Path);
            AtomicFile.WriteAllText(BrickVolfilePath(v.Name, b), Volgen.Volgen.BrickVolfile(v, i, brickListenHost));
        }
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
        }
    }
}
