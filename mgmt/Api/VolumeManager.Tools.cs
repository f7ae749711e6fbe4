using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Api;

// heal and bitrot: the commands that act on a started volume's data rather than its definition.
public sealed partial class VolumeManager
{
    /// <summary>
    /// Runs <c>brickfs-shd --volfile CLIENT.vol ARGS</c> for a started replicated volume and
    /// returns what it printed. No arguments runs one index-heal pass (GlusterFS's
    /// <c>volume heal VOL</c>); <c>info</c>, <c>full</c> and <c>split-brain ...</c> are the
    /// program's own commands, checked by it. Heals do not hold the volume lock: they read and
    /// repair data through the bricks, like any client, while definitions may change.
    /// </summary>
    public async Task<MgmtResult<HealResponse>> HealAsync(string name, HealRequest r, CancellationToken ct)
    {
        var v = (await store.ReadAsync(ct)).FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        if (v.ReplicaCount == 1) return MgmtError.Invalid($"volume {name} is not replicated ({VolumeDefinition.LayoutName(v.Layout)}): there is nothing to heal");
        if (v.Status != VolumeStatus.Started) return MgmtError.Conflict($"volume {name} is not started");
        var args = r.Arguments ?? [];
        if (args.Count > 0 && args[0].StartsWith('-')) return MgmtError.Invalid($"unknown heal argument '{args[0]}'");
        string volfile = Path.Combine(VolumesDir, name, name + ".client.vol");
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(volfile)!);
            Store.AtomicFile.WriteAllText(volfile, Volgen.Volgen.ClientVolfile(v));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return MgmtError.Unavailable($"volume {name}: {e.Message}");
        }
        var command = new List<string> { "--volfile", volfile };
        if (args.Count == 0) command.Add("--once");
        else
        {
            if (r.Json) command.Add("--json");
            command.AddRange(args);
        }
        return await RunShdAsync(command, ct);
    }

    private async Task<MgmtResult<HealResponse>> RunShdAsync(List<string> args, CancellationToken ct)
    {
        var run = await Tool.RunAsync(ShdPath, args, HealTimeout, ct);
        if (run.StartError is not null) return MgmtError.Unavailable($"cannot run the self-heal program {ShdPath}: {run.StartError}");
        if (run.TimedOut) return MgmtError.Unavailable($"the heal did not finish within {HealTimeout.TotalSeconds:0} s");
        if (run.ExitCode == 0) return new HealResponse(run.Stdout);
        // The program's own failure line; connection lines it logged before are context, not the reason.
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string line = lines.LastOrDefault(l => l.StartsWith("brickfs-shd: ", StringComparison.Ordinal))
            ?? lines.LastOrDefault() ?? $"exit status {run.ExitCode}";
        if (line.StartsWith("brickfs-shd: ", StringComparison.Ordinal)) line = line["brickfs-shd: ".Length..];
        return run.ExitCode == 2 ? MgmtError.Invalid(line) : MgmtError.Unavailable(line);
    }

    /// <summary>
    /// <c>brickctl volume bitrot VOL ...</c>: <c>enable</c>/<c>disable</c> and the scrubber's
    /// <c>scrub-throttle</c>, <c>scrub-frequency</c> and <c>scrub-files-per-second</c> set the volume
    /// option (as <c>volume set</c> would) and restart this node's bricks of a started volume so
    /// they take effect (bricks on other nodes take them at their next start); <c>scrub status</c>
    /// and <c>scrub ondemand</c> ask every brick's features/bitrot through a client graph
    /// (<see cref="ScrubControl"/>), so each brick answers for itself and a brick that is down is
    /// reported as such. The bare words <c>status</c> and <c>ondemand</c> mean the scrub ones.
    /// </summary>
    public async Task<MgmtResult<BitrotResponse>> BitrotAsync(string name, string command, CancellationToken ct)
    {
        var words = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words is ["status" or "ondemand"]) words = ["scrub", words[0]];
        var v = (await store.ReadAsync(ct)).FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        switch (words)
        {
            case ["enable"]:
                return await SetBitrotOptionAsync(name, VolumeOptionTable.Bitrot, "on", ct);
            case ["disable"]:
                return await SetBitrotOptionAsync(name, VolumeOptionTable.Bitrot, "off", ct);
            case ["scrub-throttle", var rate]:
                return await SetBitrotOptionAsync(name, VolumeOptionTable.ScrubThrottle, rate, ct);
            case ["scrub-frequency", var every]:
                return await SetBitrotOptionAsync(name, VolumeOptionTable.ScrubFrequency, every, ct);
            case ["scrub-files-per-second", var files]:
                return await SetBitrotOptionAsync(name, VolumeOptionTable.ScrubFileRate, files, ct);
            case ["scrub", "status" or "ondemand"]:
                break;
            default:
                return MgmtError.Invalid($"bitrot takes enable, disable, scrub status|ondemand, scrub-throttle RATE, scrub-frequency WHEN or scrub-files-per-second N, not '{command}'");
        }
        if (VolumeOptionTable.Effective(v, VolumeOptionTable.Bitrot) != "on")
            return MgmtError.Invalid($"bitrot is off on volume {name} (brickctl volume bitrot {name} enable)");
        if (v.Status != VolumeStatus.Started) return MgmtError.Conflict($"volume {name} is not started");
        return await AskScrubbersAsync(v, words[1] == "ondemand", ct);
    }

    private async Task<MgmtResult<BitrotResponse>> SetBitrotOptionAsync(string name, string key, string value, CancellationToken ct)
    {
        var set = await SetAsync(name, key, value, ct);
        if (!set.Ok) return set.Error!;
        var v = set.Value;
        string what = key == VolumeOptionTable.Bitrot ? $"bitrot {(v.Options[key] == "on" ? "enabled" : "disabled")}" : $"{key} set to {v.Options[key]}";
        if (v.Status != VolumeStatus.Started) return new BitrotResponse($"volume bitrot: {name}: success: {what} (takes effect when the volume starts)", null);
        int restarted = await Serialised(async () =>
        {
            var local = v.Bricks.Where(b => isLocal(b.Host)).ToList();
            await StopBricksAsync(v, local);
            EnsureBricks(v);
            return local.Count;
        });
        logger.LogInformation(1011, "volume {Volume}: {What}; restarted {Count} local bricks", name, what, restarted);
        string others = restarted == v.Bricks.Count ? "" : " (bricks on other nodes take it at their next start)";
        return new BitrotResponse($"volume bitrot: {name}: success: {what}; {restarted} brick(s) of this node restarted{others}", null);
    }

    /// <summary>How long a scrub command waits for the volume's bricks to accept its connections.</summary>
    private static readonly TimeSpan ScrubConnectGrace = TimeSpan.FromSeconds(5);

    private async Task<MgmtResult<BitrotResponse>> AskScrubbersAsync(VolumeDefinition v, bool start, CancellationToken ct)
    {
        TranslatorGraph graph;
        try
        {
            graph = GraphBuilder.BuildText(Volgen.Volgen.ClientVolfile(v), $"{v.Name}.client.vol");
        }
        catch (VolfileException e)
        {
            return MgmtError.Unavailable($"volume {v.Name}: {e.Message}");
        }
        var quiet = new ProtocolLog(TextWriter.Null);
        foreach (var c in graph.All.OfType<ProtocolClientTranslator>()) c.Log = quiet;
        try
        {
            await graph.InitAsync(ct);
            var clients = graph.All.OfType<ProtocolClientTranslator>().ToList();
            var deadline = DateTime.UtcNow + ScrubConnectGrace;
            while (clients.Any(c => !c.IsConnected) && DateTime.UtcNow < deadline) await Task.Delay(50, ct);

            IReadOnlyList<BrickScrub> started = [];
            if (start) started = await ScrubControl.StartAsync(graph.Top, ct).WaitAsync(ScrubConnectGrace * 2, ct);
            var status = await ScrubControl.StatusAsync(graph.Top, ct).WaitAsync(ScrubConnectGrace * 2, ct);

            var specs = v.Bricks.ToDictionary(b => $"{v.Name}-client-{b.Number}", b => b.Spec);
            var reports = new List<BitrotBrickReport>();
            var text = new System.Text.StringBuilder();
            text.Append(start ? $"volume bitrot: {v.Name}: scrub ondemand: " : $"volume bitrot: {v.Name}: scrub status");
            if (start)
            {
                int ok = started.Count(b => b.Error == Errno.None);
                text.Append(ok == started.Count ? "success: every brick started a pass (or goes on with the one running)"
                    : $"{ok} of {started.Count} bricks started a pass");
            }
            text.AppendLine();
            foreach (var b in status)
            {
                string spec = specs.GetValueOrDefault(b.Brick, b.Brick);
                var refused = started.FirstOrDefault(x => x.Brick == b.Brick && x.Error != Errno.None);
                string? error = refused is not null ? $"did not start a pass: {refused.Error}" : b.Error == Errno.None ? null : Describe(b.Error);
                reports.Add(BitrotBrickReport.From(spec, error, b.Status));
                text.AppendLine($"  brick {spec}: " + (b.Status is { } st ? Summary(st) : error));
                if (refused is not null && b.Status is not null) text.AppendLine($"    {error}");
                foreach (var bad in b.Status?.BadFiles ?? [])
                    text.AppendLine($"    bad file {bad.Gfid} {bad.Path ?? "(path not known: found by a read)"} block {bad.Block}, found by {bad.FoundBy.ToString().ToLowerInvariant()} at {bad.FoundAt:u}");
            }
            return new BitrotResponse(text.ToString().TrimEnd('\n'), reports);
        }
        catch (TimeoutException)
        {
            return MgmtError.Unavailable($"volume {v.Name}: the bricks did not answer within {ScrubConnectGrace.TotalSeconds * 2:0} s");
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException)
        {
            return MgmtError.Unavailable($"volume {v.Name}: {e.Message}");
        }
        finally
        {
            await graph.DisposeAsync();
        }
    }

    private static string Describe(Errno e) => e switch
    {
        Errno.ENOTCONN => "down (not connected)",
        Errno.ENODATA => "no features/bitrot on this brick (restart it with bitrot enabled)",
        _ => $"no answer: {e}",
    };

    private static string Summary(BitrotStatus s) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{(s.Running ? "scrubbing" : "idle")}, {s.FilesScrubbed} files / {s.BytesScrubbed / 1048576.0:0.0} MiB scrubbed in the {(s.Running ? "current" : "last")} pass"
        + $"{(s.ResumedFrom is null ? "" : $" (resumed after {s.ResumedFrom})")}, {s.BlocksSigned} blocks signed, {s.Passes} passes completed, "
        + $"last pass {(s.LastRunEnd is { } end ? $"ended {end:u}" : "never completed")}, {s.BadFiles.Count} bad files, "
        + $"rate {s.RateBytesPerSecond / 1048576.0:0.#} MiB/s{(s.FilesPerSecond > 0 ? $" and {s.FilesPerSecond:0.##} files/s" : "")}");
}
