using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>How a corruption was found.</summary>
public enum BitrotDetector
{
    Read,
    Scrubber,
}

/// <summary>A file this brick marked bad: its data no longer matches a checksum.</summary>
/// <param name="Path">The path on the brick when the scrubber found it; null when a read did (reads know only the GFID).</param>
/// <param name="Block">The first block that failed verification.</param>
public sealed record BadFile(Gfid Gfid, string? Path, long Block, BitrotDetector FoundBy, DateTimeOffset FoundAt);

/// <summary>
/// The scrubber's report (what <c>brickctl volume bitrot VOL scrub status</c> shows): counts of the
/// last or current pass, the bad files known to this brick and when passes ran.
/// </summary>
public sealed record BitrotStatus
{
    public bool Running { get; init; }
    public long FilesScrubbed { get; init; }
    public long BytesScrubbed { get; init; }
    /// <summary>Blocks that had no checksum (written before bitrot was on, or after a crash) and were signed.</summary>
    public long BlocksSigned { get; init; }
    public DateTimeOffset? LastRunStart { get; init; }
    public DateTimeOffset? LastRunEnd { get; init; }
    /// <summary>Passes completed since the translator started.</summary>
    public long Passes { get; init; }
    public IReadOnlyList<BadFile> BadFiles { get; init; } = [];
}
