using Brickfs.Mgmt.Model;

namespace Brickfs.Mgmt.Api;

// The JSON bodies of the HTTP API (/api/v1), shared by brickfs-mgmtd and its client so both
// sides compile against one definition. `brickctl --json` prints these shapes.

public sealed record CreateVolumeRequest(string Name, List<string> Bricks, int Replica = 1, int Arbiter = 0, bool Force = false);

public sealed record ForceRequest(bool Force = false);

public sealed record SetOptionRequest(string Key, string Value);

/// <summary>add-brick and remove-brick; remove-brick's Command is start, status, stop or commit (null: remove at once, with Force).</summary>
public sealed record BricksRequest(List<string> Bricks, bool Force = false, string? Command = null);

public sealed record PeerProbeRequest(string Host);

/// <summary>Bricks (HOST:/DIR) a peer checks on its own disks before another node defines them (cluster mode).</summary>
public sealed record BrickCheckRequest(List<string> Bricks);

public sealed record ErrorResponse(string Error);

/// <summary>Cluster is "ETCD-CLUSTER-ID PREFIX" for a node in cluster mode, null for a standalone one: nodes with equal values share one state.</summary>
public sealed record HealthResponse(string Status, Guid NodeId, string Node, string Version, string? Cluster = null);

public sealed record BrickInfo(int Index, string Host, string Path, int Port, bool Arbiter);

public sealed record VolumeInfo(
    string Name, Guid Id, string Type, VolumeStatus Status, int ReplicaCount, int ArbiterCount,
    int BrickCount, string NumberOfBricks, List<BrickInfo> Bricks, SortedDictionary<string, string> Options)
{
    public static VolumeInfo From(VolumeDefinition v) => new(
        v.Name, v.Id, VolumeDefinition.LayoutName(v.Layout), v.Status, v.ReplicaCount, v.ArbiterCount,
        v.Bricks.Count, Volgen.Volgen.BrickCountText(v),
        v.Bricks.Select((b, i) => new BrickInfo(i, b.Host, b.Path, b.Port, v.IsArbiter(i))).ToList(),
        new SortedDictionary<string, string>(v.Options, StringComparer.Ordinal));
}

/// <summary>
/// One brick's state. Local says whether the answering node holds the brick. For another node's
/// brick, Pid, Online and FreeBytes are what that node's mgmtd reported (cluster mode), or null
/// when it was not asked or did not answer.
/// </summary>
public sealed record BrickStatus(int Index, string Host, string Path, int Port, bool Local, int? Pid, bool? Online, long? FreeBytes, int Restarts);

public sealed record VolumeStatusResponse(string Name, VolumeStatus Status, List<BrickStatus> Bricks);

public sealed record OptionValue(string Key, string? Value, string? Default, bool IsSet, string Affects, string Description);

public sealed record PeerInfo(string Host, int Port, Guid NodeId, bool Connected);

public sealed record PeerStatusResponse(List<PeerInfo> Peers);

public sealed record MessageResponse(string Message);

public sealed record HealRequest(List<string> Arguments, bool Json = false);

/// <summary>What brickfs-shd printed for a heal command (JSON when asked with --json).</summary>
public sealed record HealResponse(string Output);

public sealed record CommandRequest(string Command);

/// <summary>What <c>volume bitrot</c> did: a message, and for scrub status/ondemand one report per brick.</summary>
public sealed record BitrotResponse(string Message, List<BitrotBrickReport>? Bricks);

/// <summary>One brick's scrubber (features/bitrot) as scrub status reports it; Error says why a brick did not answer.</summary>
public sealed record BitrotBrickReport(string Brick, string? Error, bool Running, long FilesScrubbed, long BytesScrubbed, long BlocksSigned,
    long Passes, DateTimeOffset? LastRunStart, DateTimeOffset? LastRunEnd, long RateBytesPerSecond, double FilesPerSecond, string? ResumedFrom,
    List<BitrotBadFileReport> BadFiles)
{
    public static BitrotBrickReport From(string brick, string? error, Brickfs.Translators.Features.Bitrot.BitrotStatus? s) =>
        s is null ? new(brick, error, false, 0, 0, 0, 0, null, null, 0, 0, null, [])
            : new(brick, error, s.Running, s.FilesScrubbed, s.BytesScrubbed, s.BlocksSigned, s.Passes, s.LastRunStart, s.LastRunEnd,
                s.RateBytesPerSecond, s.FilesPerSecond, s.ResumedFrom,
                s.BadFiles.Select(b => new BitrotBadFileReport(b.Gfid.ToString(), b.Path, b.Block, b.FoundBy.ToString().ToLowerInvariant(), b.FoundAt)).ToList());
}

public sealed record BitrotBadFileReport(string Gfid, string? Path, long Block, string FoundBy, DateTimeOffset FoundAt);

/// <summary>
/// The state of a volume's rebalance or remove-brick drain, as its brickfs-shd rebalance
/// process last saved it. Running says whether that process is alive; Message is what brickctl prints.
/// </summary>
public sealed record RebalanceStatusResponse(
    string Volume, string Task, string State, bool Running, long Directories, long FilesScanned, long FilesMoved, long BytesMoved,
    long Skipped, long Failures, List<string> Problems, DateTime? UpdatedUtc, string Message);

public sealed record SnapshotCreateRequest(string Name, string Volume);

public sealed record SnapshotBrickInfo(string Host, string Path, string Origin, int Port);

public sealed record SnapshotInfo(string Name, Guid Id, string Volume, Guid VolumeId, DateTimeOffset CreatedAt, bool Active,
    List<SnapshotBrickInfo> Bricks, double? PausedMilliseconds = null)
{
    public static SnapshotInfo From(SnapshotDefinition s, double? paused = null) => new(
        s.Name, s.Id, s.Volume, s.VolumeId, s.CreatedAt, s.Active,
        s.Bricks.Bricks.Select((b, i) => new SnapshotBrickInfo(b.Host, b.Path, s.Origins[i], b.Port)).ToList(), paused);
}

// A snapshot of a volume whose bricks are on several nodes: the node asked coordinates, and
// each node (itself included) acts on its own bricks through these requests (cluster mode).

/// <summary>One brick in a per-node snapshot request: its number and place, and (in answers, restore and delete) the snapshot's path.</summary>
public sealed record SnapshotBrick(int Number, string Host, string Path, string? Target = null);

/// <summary>
/// Checks the node's bricks among <paramref name="Bricks"/>, then pauses them (when the volume
/// is started) for at most <paramref name="LeaseMilliseconds"/>; the answer names each brick's
/// snapshot path. <paramref name="Attempt"/> ties the later take or abort to this pause.
/// </summary>
public sealed record SnapshotPauseRequest(Guid Attempt, string Volume, bool Started, List<SnapshotBrick> Bricks, int LeaseMilliseconds);

public sealed record SnapshotPauseResponse(List<SnapshotBrick> Bricks);

/// <summary>Take (snap the paused bricks, then resume them) or abort (resume, and delete what the attempt made).</summary>
public sealed record SnapshotAttemptRequest(Guid Attempt);

/// <summary>How long the node's bricks were paused; Expired: the pause outlasted its lease, so the node resumed them and took nothing.</summary>
public sealed record SnapshotTakeResponse(double PausedMilliseconds, bool Expired);

/// <summary>
/// Restore (Path = the brick, Target = its read-only snapshot) in steps: "prepare", "commit" or
/// "abort" (<see cref="RestoreSteps"/>); or delete (Path = the snapshot's brick, Step unused).
/// </summary>
public sealed record SnapshotBricksRequest(List<SnapshotBrick> Bricks, string? Step = null);

public static class RestoreSteps
{
    public const string Prepare = "prepare", Commit = "commit", Abort = "abort";
}
