namespace Brickfs.Translators.Core;

/// <summary>A translator type: its type string, the options it takes, how many children, and its factory.</summary>
public sealed record TranslatorType(
    string TypeName,
    IReadOnlyList<OptionSpec> Options,
    int MinChildren,
    int MaxChildren,
    Func<TranslatorOptions, Translator> Create,
    string Description);

/// <summary>
/// Type string → translator type. <see cref="Builtin"/> holds every translator Brickfs ships;
/// programs may add their own (the FUSE bridge and brick server add nothing here: they sit
/// outside the graph).
/// </summary>
public sealed class TranslatorRegistry
{
    private readonly Dictionary<string, TranslatorType> _types = new(StringComparer.Ordinal);

    public IEnumerable<TranslatorType> Types => _types.Values;

    public TranslatorRegistry Register(TranslatorType type)
    {
        if (!_types.TryAdd(type.TypeName, type)) throw new InvalidOperationException($"translator type '{type.TypeName}' registered twice");
        return this;
    }

    public bool TryGet(string typeName, out TranslatorType type) => _types.TryGetValue(typeName, out type!);

    public static TranslatorRegistry Builtin { get; } = BuiltinTypes.Register(new TranslatorRegistry());
}
