using Brickfs.Translators.Core;

namespace Brickfs.Translators.Graph;

/// <summary>A built translator graph: every volume by name and the top one that callers talk to.</summary>
public sealed class TranslatorGraph : IAsyncDisposable
{
    private readonly IReadOnlyList<Translator> _bottomUp;

    internal TranslatorGraph(Translator top, IReadOnlyList<Translator> bottomUp)
    {
        Top = top;
        _bottomUp = bottomUp;
    }

    public Translator Top { get; }

    public IReadOnlyList<Translator> All => _bottomUp;

    public Translator this[string name] => _bottomUp.First(t => t.Name == name);

    public T Find<T>() where T : Translator => _bottomUp.OfType<T>().First();

    /// <summary>Starts children before parents.</summary>
    public async ValueTask InitAsync(CancellationToken cancellation)
    {
        foreach (var t in _bottomUp) await t.InitAsync(cancellation);
    }

    /// <summary>Stops parents before children.</summary>
    public async ValueTask DisposeAsync()
    {
        for (int i = _bottomUp.Count - 1; i >= 0; i--) await _bottomUp[i].DisposeAsync();
    }
}

/// <summary>
/// Builds a graph from parsed volfile declarations: every type registered, every option known
/// and valid, every required option present, every subvolume declared, child counts within
/// the type's bounds, no cycles, and exactly one top (a volume nobody uses as a subvolume).
/// Errors name the file and line.
/// </summary>
public static class GraphBuilder
{
    public static TranslatorGraph BuildFile(string path, TranslatorRegistry? registry = null) =>
        Build(VolfileParser.ParseFile(path), path, registry);

    public static TranslatorGraph BuildText(string text, string fileName = "<volfile>", TranslatorRegistry? registry = null) =>
        Build(VolfileParser.Parse(text, fileName), fileName, registry);

    public static TranslatorGraph Build(IReadOnlyList<VolumeDeclaration> volumes, string fileName, TranslatorRegistry? registry = null)
    {
        registry ??= TranslatorRegistry.Builtin;
        var byName = volumes.ToDictionary(v => v.Name, StringComparer.Ordinal);
        var types = new Dictionary<string, TranslatorType>(StringComparer.Ordinal);

        foreach (var v in volumes)
        {
            if (!registry.TryGet(v.Type!, out var type))
                throw new VolfileException(fileName, v.TypeLine, $"unknown translator type '{v.Type}' in volume '{v.Name}'");
            types[v.Name] = type;
            foreach (var o in v.Options)
            {
                var spec = type.Options.FirstOrDefault(s => s.Name == o.Key)
                    ?? throw new VolfileException(fileName, o.Line, $"{type.TypeName} has no option '{o.Key}'");
                if (spec.Validate(o.Value) is { } why)
                    throw new VolfileException(fileName, o.Line, $"option '{o.Key}': {why}");
            }
            foreach (var spec in type.Options.Where(s => s.Required && s.Default is null))
            {
                if (v.Options.All(o => o.Key != spec.Name))
                    throw new VolfileException(fileName, v.Line, $"volume '{v.Name}' ({type.TypeName}) needs option '{spec.Name}'");
            }
            foreach (var child in v.Subvolumes)
            {
                if (!byName.ContainsKey(child))
                    throw new VolfileException(fileName, v.SubvolumesLine, $"volume '{v.Name}' names subvolume '{child}', which is not declared");
            }
            if (v.Subvolumes.Distinct().Count() != v.Subvolumes.Count)
                throw new VolfileException(fileName, v.SubvolumesLine, $"volume '{v.Name}' lists a subvolume twice");
            if (v.Subvolumes.Count < type.MinChildren || v.Subvolumes.Count > type.MaxChildren)
            {
                string want = type.MinChildren == type.MaxChildren ? $"{type.MinChildren}" : $"{type.MinChildren}..{(type.MaxChildren == int.MaxValue ? "any" : type.MaxChildren)}";
                throw new VolfileException(fileName, v.Subvolumes.Count > 0 ? v.SubvolumesLine : v.Line,
                    $"{type.TypeName} '{v.Name}' takes {want} subvolumes, has {v.Subvolumes.Count}");
            }
        }

        var order = TopologicalOrder(volumes, byName, fileName);
        var used = volumes.SelectMany(v => v.Subvolumes).ToHashSet(StringComparer.Ordinal);
        var tops = volumes.Where(v => !used.Contains(v.Name)).ToList();
        if (tops.Count != 1)
            throw new VolfileException(fileName, tops[^1].Line,
                $"the graph has {tops.Count} top volumes ({string.Join(", ", tops.Select(t => t.Name))}); exactly one volume must be nobody's subvolume");

        var built = new Dictionary<string, Translator>(StringComparer.Ordinal);
        var bottomUp = new List<Translator>();
        foreach (var v in order)
        {
            var type = types[v.Name];
            var values = v.Options.ToDictionary(o => o.Key, o => o.Value, StringComparer.Ordinal);
            Translator t;
            try
            {
                t = type.Create(new TranslatorOptions(type.Options, values));
            }
            catch (ArgumentException e)
            {
                throw new VolfileException(fileName, v.Line, $"volume '{v.Name}': {e.Message}");
            }
            t.Name = v.Name;
            t.TypeName = type.TypeName;
            t.Children = v.Subvolumes.Select(c => built[c]).ToArray();
            built[v.Name] = t;
            bottomUp.Add(t);
        }
        return new TranslatorGraph(built[tops[0].Name], bottomUp);
    }

    private static List<VolumeDeclaration> TopologicalOrder(
        IReadOnlyList<VolumeDeclaration> volumes, Dictionary<string, VolumeDeclaration> byName, string fileName)
    {
        var order = new List<VolumeDeclaration>();
        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1 = visiting, 2 = done
        void Visit(VolumeDeclaration v, Stack<string> path)
        {
            if (state.TryGetValue(v.Name, out int s))
            {
                if (s == 2) return;
                var cycle = path.Reverse().SkipWhile(n => n != v.Name).Append(v.Name);
                throw new VolfileException(fileName, v.SubvolumesLine > 0 ? v.SubvolumesLine : v.Line,
                    $"cycle in the graph: {string.Join(" -> ", cycle)}");
            }
            state[v.Name] = 1;
            path.Push(v.Name);
            foreach (var c in v.Subvolumes) Visit(byName[c], path);
            path.Pop();
            state[v.Name] = 2;
            order.Add(v);
        }
        foreach (var v in volumes) Visit(v, new Stack<string>());
        return order;
    }
}
