using Brickfs.Translators.Core;

namespace Brickfs.Translators.Debug;

/// <summary>
/// debug/delay-gen: holds chosen fops for a while before passing them on, to test timeouts,
/// interrupts and out-of-order completion. Options follow GlusterFS's delay-gen
/// (<c>delay-percentage</c>, <c>delay-duration</c> in microseconds, <c>enable</c>). The delay
/// honours the request's cancellation: an interrupted call ends with EINTR.
/// </summary>
public sealed class DelayGenTranslator : FopHookTranslator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("delay-percentage", OptionType.Int, "100", "percentage of matching calls to delay") { Min = 0, Max = 100 },
        new("delay-duration", OptionType.Int, "100000", "delay in microseconds") { Min = 0, Max = 3_600_000_000 },
        new("enable", OptionType.List, "", "comma-separated fops to delay; empty = every fop"),
    ];

    public static TranslatorType Type { get; } = new("debug/delay-gen", OptionSpecs, 1, 1,
        o => new DelayGenTranslator(o), "delays chosen fops");

    private readonly int _percent;
    private readonly HashSet<Fop> _fops = [];

    public DelayGenTranslator(TranslatorOptions options)
    {
        _percent = (int)options.GetInt("delay-percentage");
        Delay = TimeSpan.FromMicroseconds(options.GetInt("delay-duration"));
        foreach (var f in options.GetList("enable"))
        {
            if (!Enum.TryParse<Fop>(f, ignoreCase: true, out var fop)) throw new ArgumentException($"enable: '{f}' is not a fop");
            _fops.Add(fop);
        }
    }

    /// <summary>The delay; tests may change it at run time.</summary>
    public TimeSpan Delay { get; set; }

    protected override async ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx)
    {
        if ((_fops.Count > 0 && !_fops.Contains(fop)) || Random.Shared.Next(100) >= _percent || Delay <= TimeSpan.Zero) return Errno.None;
        try
        {
            await Task.Delay(Delay, ctx.Cancellation);
            return Errno.None;
        }
        catch (OperationCanceledException)
        {
            return Errno.EINTR;
        }
    }
}
