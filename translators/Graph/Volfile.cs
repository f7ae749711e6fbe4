namespace Brickfs.Translators.Graph;

/// <summary>An error in a volfile, naming the file and line.</summary>
public sealed class VolfileException(string file, int line, string message)
    : Exception($"{file}:{line}: {message}")
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Reason { get; } = message;
}

public sealed record VolfileOption(string Key, string Value, int Line);

/// <summary>One <c>volume … end-volume</c> block.</summary>
public sealed record VolumeDeclaration(string Name, int Line)
{
    public string? Type { get; set; }
    public int TypeLine { get; set; }
    public List<VolfileOption> Options { get; } = [];
    public List<string> Subvolumes { get; } = [];
    public int SubvolumesLine { get; set; }
}

/// <summary>
/// The GlusterFS volfile grammar: <c>volume NAME</c>, <c>type CATEGORY/NAME</c>,
/// <c>option KEY VALUE</c> (the value is the rest of the line), <c>subvolumes A B …</c>,
/// <c>end-volume</c>; <c>#</c> starts a comment. Parsing checks only the grammar;
/// <see cref="GraphBuilder"/> checks types, options and links.
/// </summary>
public static class VolfileParser
{
    public static IReadOnlyList<VolumeDeclaration> ParseFile(string path)
    {
        string text;
        try
        {
            text = System.IO.File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VolfileException(path, 0, $"cannot read volfile: {e.Message}");
        }
        return Parse(text, path);
    }

    public static IReadOnlyList<VolumeDeclaration> Parse(string text, string fileName = "<volfile>")
    {
        var volumes = new List<VolumeDeclaration>();
        VolumeDeclaration? current = null;
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            int lineNo = i + 1;
            string line = StripComment(lines[i]).Trim();
            if (line.Length == 0) continue;
            var (keyword, rest) = SplitFirst(line);
            VolfileException Error(string msg) => new(fileName, lineNo, msg);
            switch (keyword)
            {
                case "volume":
                    if (current is not null) throw Error($"'volume {rest}' inside volume '{current.Name}' (missing end-volume)");
                    if (rest.Length == 0 || rest.Contains(' ') || rest.Contains('\t')) throw Error("'volume' needs exactly one name");
                    if (volumes.Any(v => v.Name == rest)) throw Error($"volume '{rest}' is declared twice");
                    current = new VolumeDeclaration(rest, lineNo);
                    break;
                case "type":
                    if (current is null) throw Error("'type' outside a volume");
                    if (current.Type is not null) throw Error($"volume '{current.Name}' has a second 'type'");
                    if (rest.Length == 0 || rest.Contains(' ')) throw Error("'type' needs exactly one CATEGORY/NAME");
                    current.Type = rest;
                    current.TypeLine = lineNo;
                    break;
                case "option":
                {
                    if (current is null) throw Error("'option' outside a volume");
                    var (key, value) = SplitFirst(rest);
                    if (key.Length == 0 || value.Length == 0) throw Error("'option' needs a key and a value");
                    if (current.Options.Any(o => o.Key == key)) throw Error($"option '{key}' is set twice in volume '{current.Name}'");
                    current.Options.Add(new VolfileOption(key, value, lineNo));
                    break;
                }
                case "subvolumes":
                    if (current is null) throw Error("'subvolumes' outside a volume");
                    if (current.Subvolumes.Count > 0) throw Error($"volume '{current.Name}' has a second 'subvolumes' line");
                    current.Subvolumes.AddRange(rest.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries));
                    if (current.Subvolumes.Count == 0) throw Error("'subvolumes' needs at least one name");
                    current.SubvolumesLine = lineNo;
                    break;
                case "end-volume":
                    if (current is null) throw Error("'end-volume' without 'volume'");
                    if (rest.Length != 0) throw Error("'end-volume' takes no arguments");
                    if (current.Type is null) throw Error($"volume '{current.Name}' has no 'type'");
                    volumes.Add(current);
                    current = null;
                    break;
                default:
                    throw Error($"unknown keyword '{keyword}' (expected volume, type, option, subvolumes or end-volume)");
            }
        }
        if (current is not null) throw new VolfileException(fileName, current.Line, $"volume '{current.Name}' is not closed by 'end-volume'");
        if (volumes.Count == 0) throw new VolfileException(fileName, lines.Length, "no volumes declared");
        return volumes;
    }

    private static string StripComment(string line)
    {
        int hash = line.IndexOf('#');
        return (hash >= 0 ? line[..hash] : line).TrimEnd('\r');
    }

    private static (string Head, string Tail) SplitFirst(string s)
    {
        int sp = s.IndexOfAny([' ', '\t']);
        return sp < 0 ? (s, "") : (s[..sp], s[(sp + 1)..].Trim());
    }
}
