using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;

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
    /// Scrub status and on-demand scrubs live inside each brick's features/bitrot, and brickd has
    /// no control interface yet through which mgmtd could ask for them; this says so plainly
    /// instead of printing numbers it does not have.
    /// </summary>
    public async Task<MgmtResult<MessageResponse>> BitrotAsync(string name, string command, CancellationToken ct)
    {
        var v = (await store.ReadAsync(ct)).FindVolume(name);
        if (v is null) return MgmtError.NoSuchVolume(name);
        if (command is not ("status" or "ondemand")) return MgmtError.Invalid($"bitrot scrub takes status or ondemand, not '{command}'");
        if (VolumeOptionTable.Effective(v, VolumeOptionTable.Bitrot) != "on")
            return MgmtError.Invalid($"bitrot is off on volume {name} (brickctl volume set {name} {VolumeOptionTable.Bitrot} on)");
        return MgmtError.Unavailable($"scrub {command} is not available yet: the bricks of {name} scrub on their own schedule, but brickd has no interface yet through which brickfs-mgmtd could report or start a scrub");
    }
}
