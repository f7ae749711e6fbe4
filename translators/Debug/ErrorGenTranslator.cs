using Brickfs.Translators.Core;

namespace Brickfs.Translators.Debug;

/// <summary>
/// debug/error-gen: fails chosen fops with a chosen errno, on every call or a percentage of
/// them, so tests can inject faults anywhere in a graph. Options follow GlusterFS's error-gen
/// (<c>failure</c> percent, <c>error-no</c>, <c>enable</c> = the fops to fail).
/// </summary>
public sealed class ErrorGenTranslator : FopHookTranslator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("failure", OptionType.Int, "100", "percentage of matching calls that fail") { Min = 0, Max = 100 },
        new("error-no", OptionType.String, "EIO", "the errno to return, by name (EIO, ENOSPC, ...)"),
        new("enable", OptionType.List, "", "comma-separated fops to fail (lookup,write,...); empty = every fop"),
        new("random-seed", OptionType.Int, "0", "seed for the failure draw (0 = from the clock)"),
    ];

    public static TranslatorType Type { get; } = new("debug/error-gen", OptionSpecs, 1, 1,
        o => new ErrorGenTranslator(o), "injects errno failures into chosen fops");

    private readonly int _percent;
    private readonly Errno _errno;
    private readonly HashSet<Fop> _fops;
    private readonly Random _random;
    private readonly Lock _lock = new();

    public ErrorGenTranslator(TranslatorOptions options)
    {
        _percent = (int)options.GetInt("failure");
        string name = options.GetString("error-no");
        if (!Enum.TryParse(name, ignoreCase: false, out _errno) || _errno == Errno.None)
            throw new ArgumentException($"error-no '{name}' is not an errno name");
        _fops = [];
        foreach (var f in options.GetList("enable"))
        {
            if (!Enum.TryParse<Fop>(f, ignoreCase: true, out var fop)) throw new ArgumentException($"enable: '{f}' is not a fop");
            _fops.Add(fop);
        }
        long seed = options.GetInt("random-seed");
        _random = seed == 0 ? new Random() : new Random((int)seed);
    }

    /// <summary>Turns injection on or off at run time (tests flip it mid-workload).</summary>
    public bool Active { get; set; } = true;

    /// <summary>How many calls this translator failed.</summary>
    public long Injected => Interlocked.Read(ref _injected);
    private long _injected;

    protected override ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx)
    {
        if (!Active || (_fops.Count > 0 && !_fops.Contains(fop))) return ValueTask.FromResult(Errno.None);
        bool hit;
        lock (_lock) hit = _random.Next(100) < _percent;
        if (!hit) return ValueTask.FromResult(Errno.None);
        Interlocked.Increment(ref _injected);
        return ValueTask.FromResult(_errno);
    }
}
