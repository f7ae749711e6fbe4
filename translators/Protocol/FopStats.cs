using System.Diagnostics;
using System.Globalization;
using System.Text;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Protocol;

/// <summary>
/// Round trips per fop as protocol/client sees them (request sent to reply decoded): count,
/// total, largest, and a histogram in powers of two of microseconds. Lock-free (one interlocked
/// add per field), so it can stay on under load; <see cref="TakeSummary"/> reads and resets.
/// Enabled by protocol/client's <c>latency-stats</c> option, for finding where a workload's
/// time goes (which fops, how many, how long each).
/// </summary>
public sealed class FopStats
{
    private const int Buckets = 24; // up to 2^23 us = 8 s; slower calls land in the last bucket
    private static readonly int FopCount = Enum.GetValues<Fop>().Max(f => (int)f) + 1;

    private readonly long[] _count = new long[FopCount];
    private readonly long[] _totalTicks = new long[FopCount];
    private readonly long[] _maxTicks = new long[FopCount];
    private readonly long[] _histogram = new long[FopCount * Buckets];

    /// <summary>Records one round trip of <paramref name="fop"/> that started at Stopwatch timestamp <paramref name="started"/>.</summary>
    public void Record(Fop fop, long started)
    {
        int f = (int)fop;
        if ((uint)f >= (uint)FopCount) return;
        long ticks = Stopwatch.GetTimestamp() - started;
        Interlocked.Increment(ref _count[f]);
        Interlocked.Add(ref _totalTicks[f], ticks);
        long max;
        while (ticks > (max = Volatile.Read(ref _maxTicks[f])) && Interlocked.CompareExchange(ref _maxTicks[f], ticks, max) != max) { }
        long us = ticks * 1_000_000 / Stopwatch.Frequency;
        int bucket = Math.Min(Buckets - 1, us <= 0 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)us));
        Interlocked.Increment(ref _histogram[f * Buckets + bucket]);
    }

    /// <summary>
    /// One line per fop called since the last summary (name, count, mean and largest in µs, and
    /// the histogram as "&lt;Nus:count" for its non-empty buckets), then resets; null when nothing was called.
    /// </summary>
    public string? TakeSummary()
    {
        var sb = new StringBuilder();
        for (int f = 0; f < FopCount; f++)
        {
            long n = Interlocked.Exchange(ref _count[f], 0);
            long total = Interlocked.Exchange(ref _totalTicks[f], 0);
            long max = Interlocked.Exchange(ref _maxTicks[f], 0);
            var hist = new long[Buckets];
            for (int b = 0; b < Buckets; b++) hist[b] = Interlocked.Exchange(ref _histogram[f * Buckets + b], 0);
            if (n == 0) continue;
            sb.Append(CultureInfo.InvariantCulture, $"{(Fop)f} n={n} mean={Us(total) / n}us max={Us(max)}us");
            for (int b = 0; b < Buckets; b++)
            {
                if (hist[b] != 0) sb.Append(CultureInfo.InvariantCulture, $" <{1L << b}us:{hist[b]}");
            }
            sb.Append('\n');
        }
        return sb.Length == 0 ? null : sb.ToString().TrimEnd('\n');
    }

    private static long Us(long ticks) => ticks * 1_000_000 / Stopwatch.Frequency;
}
