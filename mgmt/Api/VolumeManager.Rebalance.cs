using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Text.Json;
using Brickfs.Mgmt.Interop;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;
using Brickfs.Translators.Cluster.Distribute;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

// rebalance and remove-brick's drain: a brickfs-shd rebalance process per volume, started and
// stopped by mgmtd, reporting through its state file.
public sealed partial class VolumeManager
{
    /// <summary>What a volume's rebalance process was started for; saved beside its state file.</summary>
    private sealed record RebalanceTask(string Kind, string Bricks, int Pid, DateTimeOffset Started);

    public const string RebalanceKind = "rebalance", RemoveBrickKind = "remove-brick";

    private readonly ConcurrentDictionary<string, Process> _rebalances = new();

    /// <summary>How long a stop waits for the rebalance process to save its checkpoint and exit.</summary>
    public TimeSpan RebalanceStopTimeout { get; init; } = TimeSpan.FromSeconds(60);

    private string RebalanceStateFile(string volume) => Path.Combine(VolumesDir, volume, "rebalance.json");

    private string RebalanceTaskFile(string volume) => Path.Combine(VolumesDir, volume, "rebalance.task");

    /// <summary>The bricks a run works over: a resumed run must see the same volume layout it was checkpointed on.</summary>
    private static string BrickSignature(VolumeDefinition v) =>
        string.Join(' ', v.Bricks.Select(b => $"{b.Number}={b.Spec}")) + " drain:" + string.Join(',', v.Decommissioned.Order());

    /// <summary>
    /// <c>volume rebalance VOL start|status|stop</c>. start runs fix-layout and migration over the
    /// whole volume in a brickfs-shd rebalance process (resuming a stopped or interrupted run of
    /// the same bricks); stop makes it save its checkpoint and exit; status reports its progress.
    /// </summary>
    public async Task<MgmtResult<RebalanceStatusResponse>> RebalanceAsync(string name, string command, CancellationToken ct)
    {
        var v = (await store.ReadAsync(ct)).FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        if (command is not ("start" or "status" or "stop")) return MgmtError.Invalid($"rebalance takes start, status or stop, not '{command}'");
        if (v.SetCount < 2) return MgmtError.Invalid($"volume {name} has one {(v.ReplicaCount > 1 ? "replica set" : "brick")}: there is nothing to rebalance");
        switch (command)
        {
            case "start":
                if (v.Status != VolumeStatus.Started) return MgmtError.Conflict($"volume {name} is not started");
                if (v.Decommissioned.Count > 0) return MgmtError.Conflict($"volume {name} has a remove-brick in progress (remove-brick ... status|stop|commit)");
                return await Serialised(() => LaunchRebalanceAsync(v, RebalanceKind));
            case "stop":
                return await StopRebalanceAsync(name, RebalanceKind);
            default:
                return RebalanceStatus(name, null);
        }
    }

    private async Task<MgmtResult<RebalanceStatusResponse>> LaunchRebalanceAsync(VolumeDefinition v, string kind)
    {
        if (IsRebalanceRunning(v.Name, out _)) return MgmtError.Conflict($"a {ReadTask(v.Name)?.Kind ?? "rebalance"} of volume {v.Name} is already in progress");
        string dir = Path.Combine(VolumesDir, v.Name);
        string state = RebalanceStateFile(v.Name), volfile = Path.Combine(dir, v.Name + ".rebalance.vol");
        string signature = BrickSignature(v);
        try
        {
            Directory.CreateDirectory(dir);
            var previous = ReadTask(v.Name);
            var progress = ReadProgress(v.Name);
            bool resume = previous is not null && previous.Kind == kind && previous.Bricks == signature
                && progress?.State is RebalanceProgress.Stopped or RebalanceProgress.InProgress;
            if (!resume && File.Exists(state)) File.Delete(state);
            AtomicFile.WriteAllText(volfile, Volgen.Volgen.ClientVolfile(v));
            var psi = new ProcessStartInfo(ShdPath) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--volfile", volfile, "rebalance", "--state-file", state }) psi.ArgumentList.Add(a);
            var log = new StreamWriter(Path.Combine(dir, "rebalance.log"), append: true) { AutoFlush = true };
            Process p;
            try
            {
                p = Process.Start(psi) ?? throw new InvalidOperationException("no process");
            }
            catch (Exception e) when (e is Win32Exception or InvalidOperationException)
            {
                log.Dispose();
                return MgmtError.Unavailable($"cannot run the rebalance program {ShdPath}: {e.Message}");
            }
            p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
            p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
            p.EnableRaisingEvents = true;
            p.Exited += (_, _) =>
            {
                _rebalances.TryRemove(new KeyValuePair<string, Process>(v.Name, p));
                lock (log) log.Dispose();
                p.Dispose();
            };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            _rebalances[v.Name] = p;
            AtomicFile.WriteAllText(RebalanceTaskFile(v.Name), JsonSerializer.Serialize(new RebalanceTask(kind, signature, p.Id, DateTimeOffset.UtcNow), MgmtJson.Options));
            logger.LogInformation(1030, "volume {Volume}: {Kind} started (pid {Pid}{Resumed})", v.Name, kind, p.Id, resume ? ", resuming its checkpoint" : "");
            return RebalanceStatus(v.Name, kind) is { Ok: true } s ? s.Value with { Running = true } : MgmtError.Unavailable("no status");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return MgmtError.Unavailable($"volume {v.Name}: {e.Message}");
        }
    }

    /// <summary>SIGTERM to the volume's rebalance process, then waits for it to save its checkpoint and exit.</summary>
    private async Task<MgmtResult<RebalanceStatusResponse>> StopRebalanceAsync(string name, string kind)
    {
        var task = ReadTask(name);
        if (task is null || task.Kind != kind) return MgmtError.Invalid($"no {kind} of volume {name} to stop");
        if (IsRebalanceRunning(name, out int pid))
        {
            Native.Signal(pid, Native.SIGTERM);
            var deadline = DateTime.UtcNow + RebalanceStopTimeout;
            while (IsRebalanceRunning(name, out _) && DateTime.UtcNow < deadline) await Task.Delay(50);
            if (IsRebalanceRunning(name, out _)) return MgmtError.Unavailable($"the {kind} of volume {name} did not stop within {RebalanceStopTimeout.TotalSeconds:0} s");
            logger.LogInformation(1031, "volume {Volume}: {Kind} stopped", name, kind);
        }
        return RebalanceStatus(name, kind);
    }

    /// <summary>Whether the volume's rebalance process lives: the one this mgmtd started, or the pid a previous mgmtd recorded.</summary>
    private bool IsRebalanceRunning(string name, out int pid)
    {
        pid = 0;
        if (_rebalances.TryGetValue(name, out var p))
        {
            try
            {
                if (!p.HasExited)
                {
                    pid = p.Id;
                    return true;
                }
            }
            catch (InvalidOperationException)
            {
                // disposed as it exited
            }
            return false;
        }
        if (ReadTask(name) is { } t && t.Pid > 0 && File.Exists($"/proc/{t.Pid}/cmdline")
            && File.ReadAllText($"/proc/{t.Pid}/cmdline").Contains(RebalanceStateFile(name), StringComparison.Ordinal))
        {
            pid = t.Pid;
            return true;
        }
        return false;
    }

    private RebalanceTask? ReadTask(string name)
    {
        try
        {
            return File.Exists(RebalanceTaskFile(name)) ? JsonSerializer.Deserialize<RebalanceTask>(File.ReadAllText(RebalanceTaskFile(name)), MgmtJson.Options) : null;
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null;
        }
    }

    private RebalanceProgress? ReadProgress(string name)
    {
        try
        {
            return File.Exists(RebalanceStateFile(name)) ? JsonSerializer.Deserialize<RebalanceProgress>(File.ReadAllText(RebalanceStateFile(name)), MgmtJson.Options) : null;
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null; // being replaced right now, or damaged: reported as not started
        }
    }

    /// <summary>The last saved progress of the volume's rebalance (of <paramref name="kind"/> when given).</summary>
    private MgmtResult<RebalanceStatusResponse> RebalanceStatus(string name, string? kind)
    {
        var task = ReadTask(name);
        if (task is null || (kind is not null && task.Kind != kind))
            return MgmtError.Invalid($"no {kind ?? "rebalance"} of volume {name} has been started");
        bool running = IsRebalanceRunning(name, out _);
        var p = ReadProgress(name);
        string state = p?.State ?? (running ? "starting" : "not started");
        if (!running && state == RebalanceProgress.InProgress) state = "interrupted";
        var problems = p?.Problems ?? [];
        var message = new System.Text.StringBuilder();
        message.Append($"{task.Kind} of volume {name}: {state}");
        if (p is not null)
        {
            message.Append($"\nDirectories: {p.Directories}\nScanned files: {p.FilesScanned}\nMoved files: {p.FilesMoved}\nMoved bytes: {p.BytesMoved}");
            message.Append($"\nSkipped: {p.Skipped}\nFailures: {p.Failures}\nRun time: {(p.UpdatedUtc - p.StartedUtc).TotalSeconds:0} s");
            foreach (var problem in problems) message.Append($"\n  {problem}");
        }
        if (state is "interrupted" or RebalanceProgress.Stopped) message.Append($"\n({(task.Kind == RebalanceKind ? $"volume rebalance {name} start" : "remove-brick ... start")} resumes it)");
        return new RebalanceStatusResponse(name, task.Kind, state, running, p?.Directories ?? 0, p?.FilesScanned ?? 0, p?.FilesMoved ?? 0,
            p?.BytesMoved ?? 0, p?.Skipped ?? 0, p?.Failures ?? 0, problems, p?.UpdatedUtc, message.ToString());
    }

    // ---- remove-brick start|status|stop --------------------------------------------------------

    /// <summary>
    /// <c>remove-brick VOL BRICKS start|status|stop</c>. start marks the bricks' sets
    /// decommissioned in the client volfile (no hash range, no new files) and drains them with a
    /// rebalance process; stop ends the drain and gives the sets back (a later rebalance
    /// restores their ranges); commit (<see cref="RemoveBricksAsync"/>) removes them once drained.
    /// </summary>
    public async Task<MgmtResult<RebalanceStatusResponse>> RemoveBrickTaskAsync(string name, BricksRequest r, CancellationToken ct)
    {
        string command = r.Command ?? "";
        if (command is not ("start" or "status" or "stop")) return MgmtError.Invalid($"remove-brick takes start, status, stop, commit or force, not '{command}'");
        var current = (await store.ReadAsync(ct)).FindVolume(name);
        if (current is null) return MgmtError.NoSuchVolume(name);
        if (command == "status")
        {
            var chosen = SelectBricks(current, r.Bricks ?? []);
            if (!chosen.Ok) return chosen.Error!;
            if (!SameDrain(current, chosen.Value)) return MgmtError.Invalid($"those bricks of volume {name} are not being removed");
            return RebalanceStatus(name, RemoveBrickKind);
        }
        return await Serialised(async () =>
        {
            if (command == "stop")
            {
                var chosen = SelectBricks(current, r.Bricks ?? []);
                if (!chosen.Ok) return chosen.Error!;
                if (!SameDrain(current, chosen.Value)) return MgmtError.Invalid($"those bricks of volume {name} are not being removed");
                var stopped = await StopRebalanceAsync(name, RemoveBrickKind);
                if (!stopped.Ok) return stopped;
                var cleared = await SetDecommissionedAsync(name, [], ct);
                return cleared.Ok ? stopped : cleared.Error!;
            }
            if (current.Status != VolumeStatus.Started) return MgmtError.Conflict($"volume {name} is not started");
            if (IsRebalanceRunning(name, out _)) return MgmtError.Conflict($"a {ReadTask(name)?.Kind ?? "rebalance"} of volume {name} is in progress; stop it first");
            var marked = await store.UpdateAsync<VolumeDefinition>(state =>
            {
                var v = state.FindVolume(name);
                if (v is null) return MgmtError.NoSuchVolume(name);
                var chosen = SelectBricks(v, r.Bricks ?? []);
                if (!chosen.Ok) return chosen.Error!;
                if (v.Decommissioned.Count > 0 && !SameDrain(v, chosen.Value))
                    return MgmtError.Conflict($"volume {name} is already draining other bricks (remove-brick ... stop or commit them first)");
                v.Decommissioned.Clear();
                v.Decommissioned.AddRange(chosen.Value.Select(i => v.Bricks[i].Number));
                return v;
            }, ct);
            if (!marked.Ok) return marked.Error!;
            WriteVolfiles(marked.Value, createBrickDirs: false);
            logger.LogInformation(1032, "volume {Volume}: draining {Bricks}", name, string.Join(" ", marked.Value.Bricks.Where(b => marked.Value.Decommissioned.Contains(b.Number)).Select(b => b.Spec)));
            return await LaunchRebalanceAsync(marked.Value, RemoveBrickKind);
        });
    }

    private static bool SameDrain(VolumeDefinition v, List<int> indexes) =>
        v.Decommissioned.Count > 0 && v.Decommissioned.Order().SequenceEqual(indexes.Select(i => v.Bricks[i].Number).Order());

    private async Task<MgmtResult<VolumeDefinition>> SetDecommissionedAsync(string name, List<int> numbers, CancellationToken ct)
    {
        var result = await store.UpdateAsync<VolumeDefinition>(state =>
        {
            var v = state.FindVolume(name);
            if (v is null) return MgmtError.NoSuchVolume(name);
            v.Decommissioned.Clear();
            v.Decommissioned.AddRange(numbers);
            return v;
        }, ct);
        if (result.Ok && result.Value.Status == VolumeStatus.Started) WriteVolfiles(result.Value, createBrickDirs: false);
        return result;
    }

    /// <summary>The positions of the named bricks: whole replica sets, not every brick of the volume.</summary>
    private static MgmtResult<List<int>> SelectBricks(VolumeDefinition v, List<string> specs)
    {
        if (specs.Count == 0) return MgmtError.Invalid("no bricks given");
        var indexes = new List<int>();
        foreach (var spec in specs)
        {
            var parsed = VolumeValidator.ParseBrick(spec);
            if (!parsed.Ok) return parsed.Error!;
            int i = v.Bricks.FindIndex(b => b.Host == parsed.Value.Host && b.Path == parsed.Value.Path);
            if (i < 0) return MgmtError.Invalid($"brick {parsed.Value.Spec} is not a brick of volume {v.Name}");
            if (indexes.Contains(i)) return MgmtError.Invalid($"brick {parsed.Value.Spec} is given twice");
            indexes.Add(i);
        }
        var sets = indexes.GroupBy(i => i / v.ReplicaCount).ToList();
        if (sets.Any(s => s.Count() != v.ReplicaCount))
            return MgmtError.Invalid($"remove whole replica sets: every set of volume {v.Name} has {v.ReplicaCount} bricks (changing the replica count is not available yet)");
        if (indexes.Count == v.Bricks.Count) return MgmtError.Invalid($"cannot remove every brick of volume {v.Name}; delete the volume instead");
        return indexes;
    }

    /// <summary>Why the drained bricks cannot be committed yet; null when the drain finished with every file moved.</summary>
    private string? DrainIncomplete(VolumeDefinition v)
    {
        if (v.Decommissioned.Count == 0) return "the bricks were not drained: run remove-brick ... start first (or force to remove them with their files)";
        var task = ReadTask(v.Name);
        var p = ReadProgress(v.Name);
        if (task?.Kind != RemoveBrickKind || task.Bricks != BrickSignature(v) || p is null) return "no drain of these bricks has run: remove-brick ... start";
        if (IsRebalanceRunning(v.Name, out _)) return "the drain is still in progress (remove-brick ... status)";
        if (p.State != RebalanceProgress.Completed) return $"the drain is {p.State}: remove-brick ... start resumes it";
        if (p.Failures + p.Skipped > 0) return $"the drain left files behind ({p.Failures} failures, {p.Skipped} skipped; remove-brick ... status lists them): start it again, or force";
        return null;
    }
}
