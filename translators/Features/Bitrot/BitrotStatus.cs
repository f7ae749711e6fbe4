using System.Globalization;
using System.Text.Json;
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
/// <param name="Block">The first block that failed verification (-1 when only the mark on the file is known, e.g. after a restart).</param>
public sealed record BadFile(Gfid Gfid, string? Path, long Block, BitrotDetector FoundBy, DateTimeOffset FoundAt);

/// <summary>
/// The scrubber's report (what <c>brickctl volume bitrot VOL scrub status</c> shows): counts of the
/// last or current pass, the bad files known to this brick and when passes ran. It crosses the
/// wire as JSON (<see cref="ToJson"/>, <see cref="FromJson"/>; see <see cref="ScrubControl"/>).
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
    /// <summary>The scrubber's byte budget per second.</summary>
    public long RateBytesPerSecond { get; init; }
    /// <summary>The scrubber's file budget per second; 0 = no cap.</summary>
    public double FilesPerSecond { get; init; }
    /// <summary>The position (brick path of the last file scrubbed) the current or last pass resumed after, when a restart had cut it short; null when it started from the root.</summary>
    public string? ResumedFrom { get; init; }
    public IReadOnlyList<BadFile> BadFiles { get; init; } = [];

    /// <summary>UTF-8 JSON with camelCase names; times in ISO 8601, GFIDs in their usual text form.</summary>
    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteBoolean("running", Running);
            w.WriteNumber("filesScrubbed", FilesScrubbed);
            w.WriteNumber("bytesScrubbed", BytesScrubbed);
            w.WriteNumber("blocksSigned", BlocksSigned);
            w.WriteNumber("passes", Passes);
            w.WriteNumber("rateBytesPerSecond", RateBytesPerSecond);
            w.WriteNumber("filesPerSecond", FilesPerSecond);
            if (ResumedFrom is null) w.WriteNull("resumedFrom");
            else w.WriteString("resumedFrom", ResumedFrom);
            WriteTime(w, "lastRunStart", LastRunStart);
            WriteTime(w, "lastRunEnd", LastRunEnd);
            w.WriteStartArray("badFiles");
            foreach (var b in BadFiles)
            {
                w.WriteStartObject();
                w.WriteString("gfid", b.Gfid.ToString());
                if (b.Path is null) w.WriteNull("path");
                else w.WriteString("path", b.Path);
                w.WriteNumber("block", b.Block);
                w.WriteString("foundBy", b.FoundBy == BitrotDetector.Read ? "read" : "scrubber");
                w.WriteString("foundAt", b.FoundAt.ToString("O", CultureInfo.InvariantCulture));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static void WriteTime(Utf8JsonWriter w, string name, DateTimeOffset? t)
    {
        if (t is { } v) w.WriteString(name, v.ToString("O", CultureInfo.InvariantCulture));
        else w.WriteNull(name);
    }

    /// <summary>Parses <see cref="ToJson"/>'s output; null when it is not a status (another program answered, or a newer format lost a field).</summary>
    public static BitrotStatus? FromJson(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            using var doc = JsonDocument.ParseValue(ref reader);
            var r = doc.RootElement;
            var bad = new List<BadFile>();
            foreach (var b in r.GetProperty("badFiles").EnumerateArray())
            {
                if (!Gfid.TryParse(b.GetProperty("gfid").GetString(), out var gfid)) return null;
                bad.Add(new BadFile(gfid, b.GetProperty("path").GetString(), b.GetProperty("block").GetInt64(),
                    b.GetProperty("foundBy").GetString() == "read" ? BitrotDetector.Read : BitrotDetector.Scrubber,
                    DateTimeOffset.Parse(b.GetProperty("foundAt").GetString()!, CultureInfo.InvariantCulture)));
            }
            return new BitrotStatus
            {
                Running = r.GetProperty("running").GetBoolean(),
                FilesScrubbed = r.GetProperty("filesScrubbed").GetInt64(),
                BytesScrubbed = r.GetProperty("bytesScrubbed").GetInt64(),
                BlocksSigned = r.GetProperty("blocksSigned").GetInt64(),
                Passes = r.GetProperty("passes").GetInt64(),
                RateBytesPerSecond = r.GetProperty("rateBytesPerSecond").GetInt64(),
                FilesPerSecond = r.TryGetProperty("filesPerSecond", out var fps) ? fps.GetDouble() : 0,
                ResumedFrom = r.TryGetProperty("resumedFrom", out var rf) ? rf.GetString() : null,
                LastRunStart = ReadTime(r.GetProperty("lastRunStart")),
                LastRunEnd = ReadTime(r.GetProperty("lastRunEnd")),
                BadFiles = bad,
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    private static DateTimeOffset? ReadTime(JsonElement e) =>
        e.ValueKind == JsonValueKind.Null ? null : DateTimeOffset.Parse(e.GetString()!, CultureInfo.InvariantCulture);
}
