using System.Text.RegularExpressions;
using Brickfs.Mgmt.Model;
using Brickfs.Translators.Core;

namespace Brickfs.Mgmt.Model;

public enum VolfileKind
{
    Client,
    Brick,
}

/// <summary>
/// One key <c>volume set</c> accepts: its value type, default and range (as a translator
/// <see cref="OptionSpec"/>, so values are checked by the same code that checks volfiles), and
/// the volfile it changes. Only keys that change a generated volfile are listed: a key that
/// does nothing would let users believe they tuned something.
/// </summary>
public sealed record VolumeOption(string Key, OptionSpec Spec, VolfileKind Affects, string Translator)
{
    public string? Default => Spec.Default;
    public string Description => Spec.Description;
}

public static partial class VolumeOptionTable
{
    public const string QuorumType = "cluster.quorum-type";
    public const string QuorumCount = "cluster.quorum-count";
    public const string PingTimeout = "network.ping-timeout";
    public const string Bitrot = "features.bitrot";
    public const string ScrubThrottle = "features.scrub-throttle";
    public const string ScrubFrequency = "features.scrub-freq";
    public const string ScrubFileRate = "features.scrub-files-per-second";
    public const string AuthAllow = "auth.allow";

    public static IReadOnlyList<VolumeOption> All { get; } =
    [
        new(QuorumType, new OptionSpec("quorum-type", OptionType.Choice, "auto",
            "writes to a replica set succeed with: auto = more than half of its bricks (with an even count the first brick breaks ties), fixed = cluster.quorum-count bricks, none = any one brick")
            { Choices = ["none", "auto", "fixed"] }, VolfileKind.Client, "cluster/replicate"),
        new(QuorumCount, new OptionSpec("quorum-count", OptionType.Int, null,
            "bricks of a replica set that must take a write when cluster.quorum-type is fixed")
            { Min = 1, Max = 16 }, VolfileKind.Client, "cluster/replicate"),
        new(PingTimeout, new OptionSpec("ping-timeout", OptionType.Seconds, "42",
            "seconds without an answer from a brick before the client declares it down and fails over")
            { Min = 0, Max = 1013 }, VolfileKind.Client, "protocol/client"),
        new(Bitrot, new OptionSpec("bitrot", OptionType.Bool, "off",
            "per-block xxHash checksums written with the data and verified on read (features/bitrot in the brick graph)"),
            VolfileKind.Brick, "features/bitrot"),
        new(ScrubThrottle, new OptionSpec("scrub-throttle", OptionType.String, "normal",
            "bitrot scrubber read rate per brick: lazy (8 MiB/s), normal (32 MiB/s), aggressive (128 MiB/s) or bytes per second (e.g. 20MB)"),
            VolfileKind.Brick, "features/bitrot"),
        new(ScrubFrequency, new OptionSpec("scrub-frequency", OptionType.String, "daily",
            "time between bitrot scrubber passes: hourly, daily, weekly, monthly or seconds"),
            VolfileKind.Brick, "features/bitrot"),
        new(ScrubFileRate, new OptionSpec("scrub-files-per-second", OptionType.String, "0",
            "bitrot scrubber file rate per brick: files started per second; 0 = no cap"),
            VolfileKind.Brick, "features/bitrot"),
        new(AuthAllow, new OptionSpec("auth.allow", OptionType.List, "*",
            "comma-separated client addresses the bricks accept: IPv4/IPv6 addresses, CIDR ranges, or patterns with *"),
            VolfileKind.Brick, "protocol/server"),
    ];

    public static bool TryGet(string key, out VolumeOption option)
    {
        option = All.FirstOrDefault(o => o.Key == key)!;
        return option is not null;
    }

    /// <summary>The value <paramref name="key"/> has on <paramref name="volume"/>: the set value, else the default, else null.</summary>
    public static string? Effective(VolumeDefinition volume, string key) =>
        volume.Options.TryGetValue(key, out var v) ? v : TryGet(key, out var o) ? o.Default : null;

    /// <summary>
    /// Checks that <paramref name="key"/> may be set to <paramref name="value"/> on
    /// <paramref name="volume"/> and returns the value as stored (booleans normalised to on/off).
    /// </summary>
    public static MgmtResult<string> Validate(VolumeDefinition volume, string key, string value)
    {
        if (!TryGet(key, out var option)) return MgmtError.Invalid(UnknownKeyMessage(key));
        value = value.Trim();
        if (option.Spec.Validate(value) is { } why) return MgmtError.Invalid($"{key}: {why}");
        switch (key)
        {
            case QuorumType or QuorumCount when volume.ReplicaCount == 1:
                return MgmtError.Invalid($"{key} applies to replicated volumes; {volume.Name} is {VolumeDefinition.LayoutName(volume.Layout)}");
            case QuorumCount when int.Parse(value) > volume.ReplicaCount:
                return MgmtError.Invalid($"{key} {value} is more than the replica count {volume.ReplicaCount}");
            case Bitrot:
                TranslatorOptions.TryParseBool(value, out bool on);
                return on ? "on" : "off";
            case ScrubThrottle when !Brickfs.Translators.Features.Bitrot.BitrotTranslator.IsValidThrottle(value):
                return MgmtError.Invalid($"{key}: '{value}' is not lazy, normal, aggressive or a byte rate (e.g. 20MB)");
            case ScrubFrequency when !Brickfs.Translators.Features.Bitrot.BitrotTranslator.IsValidFrequency(value):
                return MgmtError.Invalid($"{key}: '{value}' is not hourly, daily, weekly, monthly or a number of seconds");
            case ScrubFileRate when !Brickfs.Translators.Features.Bitrot.BitrotTranslator.IsValidFileRate(value):
                return MgmtError.Invalid($"{key}: '{value}' is not a number of files per second (0 = no cap)");
            case AuthAllow:
                foreach (var entry in value.Split(',', StringSplitOptions.TrimEntries))
                    if (!AuthEntry().IsMatch(entry)) return MgmtError.Invalid($"{key}: '{entry}' is not an address, CIDR range or pattern");
                return string.Join(",", value.Split(',', StringSplitOptions.TrimEntries));
        }
        return value;
    }

    public static string UnknownKeyMessage(string key)
    {
        var similar = All.Select(o => o.Key)
            .Where(k => Distance(k, key) <= Math.Max(3, key.Length / 3) || k.Contains(key, StringComparison.OrdinalIgnoreCase)
                        || key.Contains(k.Split('.')[^1], StringComparison.OrdinalIgnoreCase))
            .ToList();
        return similar.Count > 0
            ? $"unknown option '{key}'; did you mean {string.Join(" or ", similar)}?"
            : $"unknown option '{key}'; known options: {string.Join(", ", All.Select(o => o.Key))}";
    }

    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        return d[a.Length, b.Length];
    }

    [GeneratedRegex(@"^[0-9A-Za-z.:*/\-\[\]]+$")]
    private static partial Regex AuthEntry();
}
