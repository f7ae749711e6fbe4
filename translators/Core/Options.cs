using System.Globalization;
using System.Text.RegularExpressions;

namespace Brickfs.Translators.Core;

public enum OptionType
{
    String,
    Path,
    Int,
    Bool,
    /// <summary>A byte count: 4096, 64KB, 1MB, 2GB (binary multiples).</summary>
    Size,
    /// <summary>A duration in seconds, fractions allowed: 10, 0.5.</summary>
    Seconds,
    /// <summary>One of <see cref="OptionSpec.Choices"/>.</summary>
    Choice,
    /// <summary>Comma-separated strings.</summary>
    List,
}

/// <summary>One option a translator type accepts: its type, default, range and meaning (GlusterFS's volume_options).</summary>
public sealed record OptionSpec(string Name, OptionType Type, string? Default, string Description)
{
    public long Min { get; init; } = long.MinValue;
    public long Max { get; init; } = long.MaxValue;
    public IReadOnlyList<string> Choices { get; init; } = [];
    public bool Required { get; init; }

    /// <summary>Checks <paramref name="raw"/>; returns null when valid, else the reason.</summary>
    public string? Validate(string raw)
    {
        switch (Type)
        {
            case OptionType.Int:
                if (!long.TryParse(raw, NumberStyles.Integer, CultureInfo.InvariantCulture, out long i)) return $"'{raw}' is not an integer";
                return InRange(i);
            case OptionType.Size:
                if (!TranslatorOptions.TryParseSize(raw, out long s)) return $"'{raw}' is not a size (e.g. 4096, 64KB, 1MB)";
                return InRange(s);
            case OptionType.Seconds:
                if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || d < 0 || double.IsNaN(d))
                    return $"'{raw}' is not a number of seconds";
                return InRange((long)Math.Ceiling(d));
            case OptionType.Bool:
                return TranslatorOptions.TryParseBool(raw, out _) ? null : $"'{raw}' is not on/off";
            case OptionType.Choice:
                return Choices.Contains(raw, StringComparer.Ordinal) ? null : $"'{raw}' is not one of {string.Join(", ", Choices)}";
            case OptionType.Path:
                return raw.Length > 0 && raw[0] == '/' ? null : $"'{raw}' is not an absolute path";
            default:
                return null;
        }
    }

    private string? InRange(long v) => v < Min || v > Max ? $"{v} is outside {Min}..{Max}" : null;
}

/// <summary>
/// The validated options of one translator instance. Unset options read as their declared
/// default; reading an option the type never declared is a bug.
/// </summary>
public sealed class TranslatorOptions
{
    private readonly IReadOnlyDictionary<string, OptionSpec> _specs;
    private readonly IReadOnlyDictionary<string, string> _values;

    public TranslatorOptions(IEnumerable<OptionSpec> specs, IReadOnlyDictionary<string, string> values)
    {
        _specs = specs.ToDictionary(s => s.Name, StringComparer.Ordinal);
        _values = values;
    }

    /// <summary>Options for a translator built in code (tests): values are validated like a volfile's.</summary>
    public static TranslatorOptions From(IEnumerable<OptionSpec> specs, params (string Key, string Value)[] values)
    {
        var list = specs.ToList();
        foreach (var (k, v) in values)
        {
            var spec = list.FirstOrDefault(s => s.Name == k) ?? throw new ArgumentException($"unknown option '{k}'");
            if (spec.Validate(v) is { } why) throw new ArgumentException($"option '{k}': {why}");
        }
        return new TranslatorOptions(list, values.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal));
    }

    public bool IsSet(string name) => _values.ContainsKey(name);

    public string? GetRaw(string name)
    {
        var spec = Spec(name);
        return _values.TryGetValue(name, out var v) ? v : spec.Default;
    }

    public string GetString(string name) =>
        GetRaw(name) ?? throw new InvalidOperationException($"option '{name}' has no value and no default");

    public long GetInt(string name) => long.Parse(GetString(name), CultureInfo.InvariantCulture);

    public long GetSize(string name) => TryParseSize(GetString(name), out long v) ? v : throw new FormatException(name);

    public bool GetBool(string name) => TryParseBool(GetString(name), out bool b) ? b : throw new FormatException(name);

    public TimeSpan GetSeconds(string name) =>
        TimeSpan.FromSeconds(double.Parse(GetString(name), CultureInfo.InvariantCulture));

    public IReadOnlyList<string> GetList(string name) =>
        (GetRaw(name) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private OptionSpec Spec(string name) =>
        _specs.TryGetValue(name, out var s) ? s : throw new InvalidOperationException($"option '{name}' is not declared");

    public static bool TryParseBool(string raw, out bool value)
    {
        switch (raw.ToLowerInvariant())
        {
            case "on" or "yes" or "true" or "enable" or "1":
                value = true;
                return true;
            case "off" or "no" or "false" or "disable" or "0":
                value = false;
                return true;
            default:
                value = false;
                return false;
        }
    }

    private static readonly Regex SizePattern = new(@"^(\d+)\s*([KMGT]?)(i?B)?$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    public static bool TryParseSize(string raw, out long bytes)
    {
        bytes = 0;
        var m = SizePattern.Match(raw.Trim());
        if (!m.Success || !long.TryParse(m.Groups[1].Value, CultureInfo.InvariantCulture, out long n)) return false;
        int shift = m.Groups[2].Value.ToUpperInvariant() switch { "K" => 10, "M" => 20, "G" => 30, "T" => 40, _ => 0 };
        if (n > long.MaxValue >> shift) return false;
        bytes = n << shift;
        return true;
    }
}
