using System.Diagnostics;
using Brickfs.Mgmt.Bricks;
using Brickfs.Mgmt.Interop;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;
using Brickfs.Mgmt.Store;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

/// <summary>
/// Snapshots: a read-only Btrfs snapshot of every brick of a volume. A snapshot of brick
/// <c>/M/.../B</c> on the Btrfs filesystem mounted at <c>/M</c> lives at
/// <c>/M/.brickfs-snaps/SNAP/VOL-brick-N</c>: on the same filesystem (Btrfs snapshots cannot
/// cross filesystems) and outside every brick (so it is never visible through a mount).
/// Standalone servers only for now: every brick must be on this node.
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
    /// Snapshots every brick of <paramref name="volumeName"/>. While a started volume's bricks
    /// snap, its brickd processes are stopped with SIGSTOP, so no fop lands on one brick and not
    /// yet on another between two snapshots: the copies share one point, as after a crash of
    /// every brick at the same moment (pending-heal markers included). A write the kernel is
    /// executing completes before the process stops. The pause lasts as long as the snapshots
    /// (Btrfs snapshots are constant-time; typically tens of milliseconds for three bricks).
    /// </summary>
    public Task<MgmtResult<SnapshotInfo>> CreateSnapshotAsync(SnapshotCreateRequest r, CancellationToken ct) => Serialised<MgmtResult<SnapshotInfo>>(async () =>
    {
        string name = r.Name ?? "", volumeName = r.Volume ?? "";
        if (VolumeValidator.CheckName(name) is { } badName) return new MgmtError(badName.Kind, badName.Message.Replace("volume name", "snapshot name"));
        var state = await store.ReadAsync(ct);
        if (state.FindSnapshot(name) is not null) return MgmtError.Conflict($"snapshot {name} already exists");
        var v = state.FindVolume(volumeName);
        if (v is null) return MgmtError.NoSuchVolume(volumeName);
        if (v.Bricks.FirstOrDefault(b => !isLocal(b.Host)) is { } remote)
            return MgmtError.Unavailable($"brick {remote.Spec} is on another node; snapshots of volumes spanning nodes are not available yet");
        var targets = new List<string>();
        foreach (var b in v.Bricks)
        {
            if (!Btrfs.IsSubvolume(b.Path))
                return MgmtError.Invalid($"brick {b.Spec} is not a Btrfs subvolume, so it cannot be snapshot");
            var mount = MountPoint.Of(b.Path);
            if (mount.Path == b.Path)
                return MgmtError.Invalid($"brick {b.Spec} is the root of its mount; snapshots need the brick to be a subvolume below the mount point");
            var target = Path.Combine(mount.Path, SnapshotDirName, name, Key(v.Name, b));
            if (Directory.Exists(target)) return MgmtError.Conflict($"{target} exists already (left by an earlier snapshot {name}?)");
            targets.Add(target);
        }

        var made = new List<string>();
        MgmtError? failed = null;
        var pids = v.Status == VolumeStatus.Started
            ? v.Bricks.Select(b => supervisor.State(Key(v.Name, b))?.Pid).OfType<int>().ToList()
            : [];
        var paused = Stopwatch.StartNew();
        foreach (var pid in pids) Native.Signal(pid, Native.SIGSTOP);
        try
        {
            for (int i = 0; i < v.Bricks.Count && failed is null; i++)
            {
                failed = Btrfs.Snapshot(v.Bricks[i].Path, targets[i], readOnly: true);
                if (failed is null) made.Add(targets[i]);
            }
        }
        finally
        {
            foreach (var pid in pids) Native.Signal(pid, Native.SIGCONT);
            paused.Stop();
        }
        if (failed is not null)
        {
            foreach (var m in made) Btrfs.DeleteSubvolume(m);
            return failed;
        }

        var snapshot = new SnapshotDefinition
        {
            Name = name, Id = Guid.NewGuid(), Volume = v.Name, VolumeId = v.Id, CreatedAt = DateTimeOffset.UtcNow,
            Bricks = SnapshotVolume(name, v, targets), Origins = v.Bricks.Select(b => b.Path).ToList(),
        };
        var stored = await store.UpdateAsync<SnapshotDefinition>(s =>
        {
            if (s.FindSnapshot(name) is not null) return MgmtError.Conflict($"snapshot {name} already exists");
            s.Snapshots.Add(snapshot);
            return snapshot;
        }, ct);
        if (!stored.Ok)
        {
            foreach (var m in made) Btrfs.DeleteSubvolume(m);
            return stored.Error!;
        }
        logger.LogInformation(1021, "snapshot {Snapshot}: created from volume {Volume} ({Bricks} bricks, writes paused {Paused:0.0} ms)",
            name, v.Name, targets.Count, paused.Elapsed.TotalMilliseconds);
        return SnapshotInfo.From(snapshot, paused.Elapsed.TotalMilliseconds);
    });

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
    /// Rolls a stopped volume back to <paramref name="name"/>: each brick subvolume is replaced by
    /// a writable snapshot of its read-only snapshot (made beside it, then swapped in by two
    /// renames, the old brick deleted last), and the volume's options become the snapshot's.
    /// The snapshot stays, so the same point can be restored again.
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
        foreach (var (b, i) in snap.Bricks.Bricks.Select((b, i) => (b, i)))
            if (!Btrfs.IsSubvolume(b.Path)) return MgmtError.Unavailable($"snapshot {name}: {b.Path} is missing");

        for (int i = 0; i < v.Bricks.Count; i++)
        {
            string origin = v.Bricks[i].Path, fresh = origin + ".brickfs-restore", old = origin + ".brickfs-old";
            foreach (var leftover in new[] { fresh, old }.Where(Directory.Exists))
                if (Btrfs.DeleteSubvolume(leftover) is { } e) return e;
            if (Btrfs.Snapshot(snap.Bricks.Bricks[i].Path, fresh, readOnly: false) is { } error) return error;
            try
            {
                if (Directory.Exists(origin)) Directory.Move(origin, old);
                Directory.Move(fresh, origin);
            }
            catch (IOException e)
            {
                return MgmtError.Unavailable($"restore of {v.Bricks[i].Spec}: {e.Message}");
            }
            if (Directory.Exists(old) && Btrfs.DeleteSubvolume(old) is { } notDeleted)
                logger.LogWarning(1024, "snapshot {Snapshot}: {Reason}; the old brick stays at {Path}", name, notDeleted.Message, old);
        }
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

    public Task<MgmtResult<SnapshotInfo>> DeleteSnapshotAsync(string name, CancellationToken ct) => Serialised<MgmtResult<SnapshotInfo>>(async () =>
    {
        var snap = (await store.ReadAsync(ct)).FindSnapshot(name);
        if (snap is null) return NoSuchSnapshot(name);
        await StopSnapshotBricksAsync(snap);
        foreach (var b in snap.Bricks.Bricks.Where(b => Directory.Exists(b.Path)))
            if (Btrfs.DeleteSubvolume(b.Path) is { } error) return error;
        var result = await store.UpdateAsync<SnapshotDefinition>(s =>
        {
            var cur = s.FindSnapshot(name);
            if (cur is null) return NoSuchSnapshot(name);
            s.Snapshots.Remove(cur);
            return cur;
        }, ct);
        if (!result.Ok) return result.Error!;
        foreach (var dir in snap.Bricks.Bricks.Select(b => Path.GetDirectoryName(b.Path)!).Distinct())
        {
            try
            {
                if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
                var all = Path.GetDirectoryName(dir)!;
                if (Directory.Exists(all) && !Directory.EnumerateFileSystemEntries(all).Any()) Directory.Delete(all);
            }
            catch (IOException)
            {
                // Someone put something there: leave it.
            }
        }
        var files = Path.Combine(SnapshotStateDir, name);
        if (Directory.Exists(files)) Directory.Delete(files, recursive: true);
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
