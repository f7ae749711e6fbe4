using System.Collections.Concurrent;
using System.Diagnostics;
using Brickfs.Mgmt.Interop;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

// One node's share of a snapshot: what the coordinating mgmtd (this one or a peer) asks of
// the node that holds some of a volume's bricks. These steps do not take the node's operation
// lock: a node coordinating a snapshot holds its own lock while it asks the others, and two
// nodes coordinating at once must not wait on each other.
public sealed partial class VolumeManager
{
    /// <summary>How long a node keeps its bricks paused waiting for the take; past it they resume and the attempt fails on that node.</summary>
    public TimeSpan SnapshotPauseLimit { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>What one snapshot attempt did on this node, until it is aborted (or forgotten after <see cref="AttemptMemory"/>).</summary>
    private sealed class SnapshotAttempt(string snap, List<(BrickDefinition Brick, string Target)> bricks, List<int> pids)
    {
        public string Snap { get; } = snap;
        public List<(BrickDefinition Brick, string Target)> Bricks { get; } = bricks;
        public List<int> Pids { get; } = pids;
        public Stopwatch Paused { get; } = Stopwatch.StartNew();
        public DateTime Created { get; } = DateTime.UtcNow;
        public List<string> Made { get; } = [];
        public AttemptState State { get; set; } = AttemptState.Paused;
        public Timer? Lease { get; set; }
    }

    private enum AttemptState { Paused, Taking, Taken, Expired, Aborted }

    /// <summary>Attempts a coordinator never aborted (it succeeded, or died) are dropped after this.</summary>
    private static readonly TimeSpan AttemptMemory = TimeSpan.FromMinutes(10);

    private readonly ConcurrentDictionary<Guid, SnapshotAttempt> _attempts = new();

    /// <summary>
    /// Checks this node's bricks among the request's (each a Btrfs subvolume below its mount
    /// point, its snapshot path free), then, when the volume is started, stops their brickd
    /// processes with SIGSTOP until the take or for at most the lease, whichever comes first.
    /// Answers each brick's snapshot path. Nothing is changed on a refusal.
    /// </summary>
    public MgmtResult<SnapshotPauseResponse> PauseSnapshotBricks(string snap, SnapshotPauseRequest r)
    {
        foreach (var (id, old) in _attempts)
            if (DateTime.UtcNow - old.Created > AttemptMemory) _attempts.TryRemove(id, out _);
        var bricks = new List<(BrickDefinition Brick, string Target)>();
        foreach (var s in r.Bricks ?? [])
        {
            var b = new BrickDefinition { Number = s.Number, Host = s.Host, Path = s.Path };
            if (!isLocal(b.Host)) return MgmtError.Invalid($"brick {b.Spec} is not on this node");
            if (!Btrfs.IsSubvolume(b.Path))
                return MgmtError.Invalid($"brick {b.Spec} is not a Btrfs subvolume, so it cannot be snapshot");
            var mount = MountPoint.Of(b.Path);
            if (mount.Path == b.Path)
                return MgmtError.Invalid($"brick {b.Spec} is the root of its mount; snapshots need the brick to be a subvolume below the mount point");
            var target = Path.Combine(mount.Path, SnapshotDirName, snap, Key(r.Volume, b));
            if (Directory.Exists(target)) return MgmtError.Conflict($"{target} exists already (left by an earlier snapshot {snap}?)");
            bricks.Add((b, target));
        }
        var pids = r.Started ? bricks.Select(b => supervisor.State(Key(r.Volume, b.Brick))?.Pid).OfType<int>().ToList() : [];
        var attempt = new SnapshotAttempt(snap, bricks, pids);
        if (!_attempts.TryAdd(r.Attempt, attempt)) return MgmtError.Conflict($"snapshot attempt {r.Attempt} is known already");
        foreach (var pid in pids) Native.Signal(pid, Native.SIGSTOP);
        // kill(2) returns before the target has stopped: the pause is answered once every brick
        // process shows stopped, so a take never snaps a brick still running (bounded wait).
        foreach (var pid in pids) WaitStopped(pid, TimeSpan.FromMilliseconds(500));
        var lease = TimeSpan.FromMilliseconds(Math.Clamp(r.LeaseMilliseconds, 1, (int)SnapshotPauseLimit.TotalMilliseconds));
        attempt.Lease = new Timer(_ =>
        {
            lock (attempt)
            {
                if (attempt.State != AttemptState.Paused) return;
                Resume(attempt);
                attempt.State = AttemptState.Expired;
            }
            logger.LogWarning(1026, "snapshot {Snapshot}: the take did not come within {Lease} ms; bricks of volume {Volume} resumed", snap, lease.TotalMilliseconds, r.Volume);
        }, null, lease, Timeout.InfiniteTimeSpan);
        return new SnapshotPauseResponse([.. bricks.Select(b => new SnapshotBrick(b.Brick.Number, b.Brick.Host, b.Brick.Path, b.Target))]);
    }

    /// <summary>Waits until process <paramref name="pid"/> is stopped ('T' in /proc/PID/stat) or gone, at most <paramref name="limit"/>.</summary>
    private static void WaitStopped(int pid, TimeSpan limit)
    {
        var deadline = Environment.TickCount64 + (long)limit.TotalMilliseconds;
        while (Environment.TickCount64 < deadline)
        {
            string stat;
            try
            {
                stat = File.ReadAllText($"/proc/{pid}/stat");
            }
            catch (IOException)
            {
                return;
            }
            if (stat[stat.LastIndexOf(')') + 2] is 'T' or 't' or 'Z' or 'X') return;
            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// Snaps the bricks an attempt paused (read-only), then resumes them. An attempt whose lease
    /// ran out answers Expired and takes nothing; a failed snapshot deletes the ones made.
    /// </summary>
    public MgmtResult<SnapshotTakeResponse> TakeSnapshotBricks(Guid id)
    {
        if (!_attempts.TryGetValue(id, out var attempt)) return MgmtError.NotFound($"snapshot attempt {id} is not known on this node");
        lock (attempt)
        {
            if (attempt.State == AttemptState.Expired) return new SnapshotTakeResponse(attempt.Paused.Elapsed.TotalMilliseconds, true);
            if (attempt.State != AttemptState.Paused) return MgmtError.Conflict($"snapshot attempt {id} is {attempt.State.ToString().ToLowerInvariant()}, not paused");
            attempt.State = AttemptState.Taking;
        }
        MgmtError? failed = null;
        try
        {
            foreach (var (brick, target) in attempt.Bricks)
            {
                failed = Btrfs.Snapshot(brick.Path, target, readOnly: true);
                if (failed is not null) break;
                attempt.Made.Add(target);
            }
        }
        finally
        {
            lock (attempt)
            {
                Resume(attempt);
                attempt.State = failed is null ? AttemptState.Taken : AttemptState.Aborted;
            }
        }
        if (failed is not null)
        {
            DeleteMade(attempt);
            return failed;
        }
        return new SnapshotTakeResponse(attempt.Paused.Elapsed.TotalMilliseconds, false);
    }

    /// <summary>Resumes an attempt's bricks if still paused and deletes the snapshots it made; an unknown attempt has nothing to undo.</summary>
    public MgmtResult<MessageResponse> AbortSnapshotBricks(Guid id)
    {
        if (!_attempts.TryRemove(id, out var attempt)) return new MessageResponse("nothing to undo");
        lock (attempt)
        {
            if (attempt.State == AttemptState.Paused) Resume(attempt);
            attempt.State = AttemptState.Aborted;
        }
        DeleteMade(attempt);
        return new MessageResponse($"snapshot {attempt.Snap}: attempt undone on this node");
    }

    private static void Resume(SnapshotAttempt attempt)
    {
        foreach (var pid in attempt.Pids) Native.Signal(pid, Native.SIGCONT);
        attempt.Paused.Stop();
        attempt.Lease?.Dispose();
    }

    private void DeleteMade(SnapshotAttempt attempt)
    {
        List<string> made;
        lock (attempt)
        {
            made = [.. attempt.Made];
            attempt.Made.Clear();
        }
        foreach (var m in made)
            if (Btrfs.DeleteSubvolume(m) is { } e) logger.LogWarning(1027, "snapshot {Snapshot}: cannot undo {Path}: {Reason}", attempt.Snap, m, e.Message);
        RemoveEmptySnapshotDirs(attempt.Bricks.Select(b => b.Target));
    }

    /// <summary>
    /// Rolls this node's bricks back to their snapshots (Path = the brick, Target = its read-only
    /// snapshot) in steps, so that a node that cannot restore keeps every node's bricks as they
    /// were. prepare: each snapshot must be there, and a writable snapshot of it is made beside
    /// the brick (<c>BRICK.brickfs-restore</c>); the slow, failing part. commit: each prepared
    /// copy is swapped in by two renames and the old brick deleted. abort: the prepared copies
    /// are deleted.
    /// </summary>
    public MgmtResult<MessageResponse> RestoreSnapshotBricks(string snap, SnapshotBricksRequest r)
    {
        var bricks = r.Bricks ?? [];
        if (bricks.FirstOrDefault(b => !isLocal(b.Host)) is { } remote) return MgmtError.Invalid($"brick {remote.Host}:{remote.Path} is not on this node");
        static string Fresh(SnapshotBrick b) => b.Path + ".brickfs-restore";
        switch (r.Step)
        {
            case RestoreSteps.Prepare:
                foreach (var b in bricks)
                    if (b.Target is null || !Btrfs.IsSubvolume(b.Target)) return MgmtError.Unavailable($"snapshot {snap}: {b.Target} is missing");
                foreach (var b in bricks)
                {
                    foreach (var leftover in new[] { Fresh(b), b.Path + ".brickfs-old" }.Where(Directory.Exists))
                        if (Btrfs.DeleteSubvolume(leftover) is { } e) return e;
                    if (Btrfs.Snapshot(b.Target!, Fresh(b), readOnly: false) is { } error) return error;
                }
                return new MessageResponse($"snapshot {snap}: {bricks.Count} brick(s) prepared on this node");
            case RestoreSteps.Commit:
                foreach (var b in bricks)
                {
                    string old = b.Path + ".brickfs-old";
                    try
                    {
                        if (!Directory.Exists(Fresh(b))) return MgmtError.Unavailable($"restore of {b.Host}:{b.Path}: {Fresh(b)} is missing (not prepared)");
                        if (Directory.Exists(b.Path)) Directory.Move(b.Path, old);
                        Directory.Move(Fresh(b), b.Path);
                    }
                    catch (IOException e)
                    {
                        return MgmtError.Unavailable($"restore of {b.Host}:{b.Path}: {e.Message}");
                    }
                    if (Directory.Exists(old) && Btrfs.DeleteSubvolume(old) is { } notDeleted)
                        logger.LogWarning(1024, "snapshot {Snapshot}: {Reason}; the old brick stays at {Path}", snap, notDeleted.Message, old);
                }
                return new MessageResponse($"snapshot {snap}: {bricks.Count} brick(s) restored on this node");
            case RestoreSteps.Abort:
                foreach (var b in bricks.Where(b => Directory.Exists(Fresh(b))))
                    if (Btrfs.DeleteSubvolume(Fresh(b)) is { } e) return e;
                return new MessageResponse($"snapshot {snap}: restore undone on this node");
            default:
                return MgmtError.Invalid($"restore step must be {RestoreSteps.Prepare}, {RestoreSteps.Commit} or {RestoreSteps.Abort}, not '{r.Step}'");
        }
    }

    /// <summary>Stops this node's bricks serving the snapshot and deletes its snapshot subvolumes (Path = the snapshot's brick).</summary>
    public async Task<MgmtResult<MessageResponse>> DeleteSnapshotBricksAsync(string snap, SnapshotBricksRequest r)
    {
        var bricks = (r.Bricks ?? []).Select(s => new BrickDefinition { Number = s.Number, Host = s.Host, Path = s.Path }).ToList();
        if (bricks.FirstOrDefault(b => !isLocal(b.Host)) is { } remote) return MgmtError.Invalid($"brick {remote.Spec} is not on this node");
        await Task.WhenAll(bricks.Select(b => supervisor.StopAsync(SnapshotKey(snap, b))));
        foreach (var b in bricks.Where(b => Directory.Exists(b.Path)))
            if (Btrfs.DeleteSubvolume(b.Path) is { } error) return error;
        RemoveEmptySnapshotDirs(bricks.Select(b => b.Path));
        var files = Path.Combine(SnapshotStateDir, snap);
        if (Directory.Exists(files)) Directory.Delete(files, recursive: true);
        return new MessageResponse($"snapshot {snap}: {bricks.Count} brick(s) deleted on this node");
    }

    /// <summary>Removes <c>.brickfs-snaps/SNAP</c> and <c>.brickfs-snaps</c> above deleted snapshot bricks once they are empty.</summary>
    private static void RemoveEmptySnapshotDirs(IEnumerable<string> paths)
    {
        foreach (var dir in paths.Select(p => Path.GetDirectoryName(p)!).Distinct())
        {
            try
            {
                if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
                var all = Path.GetDirectoryName(dir)!;
                if (Directory.Exists(all) && !Directory.EnumerateFileSystemEntries(all).Any()) Directory.Delete(all);
            }
            catch (IOException)
            {
                // Someone put something there (or another node's snapshot did): leave it.
            }
        }
    }
}
