using System.Diagnostics;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// A token bucket on bytes read by the scrubber: after a burst of one second's worth, each
/// <see cref="TakeAsync"/> waits until the bytes it takes fit the rate. The clock and the wait
/// are injectable so tests check the pacing by counting (virtual time asked for), not by timing.
/// </summary>
internal sealed class ScrubThrottle
{
    private readonly long _bytesPerSecond;
    private readonly Func<TimeSpan> _now;
    private readonly Func<TimeSpan, CancellationToken, Task> _delay;
    private TimeSpan _last;
    private double _tokens;

    public ScrubThrottle(long bytesPerSecond, Func<TimeSpan>? now = null, Func<TimeSpan, CancellationToken, Task>? delay = null)
    {
        _bytesPerSecond = bytesPerSecond;
        var clock = Stopwatch.StartNew();
        _now = now ?? (() => clock.Elapsed);
        _delay = delay ?? Task.Delay;
        _last = _now();
        _tokens = bytesPerSecond; // one second of burst
    }

    public long BytesPerSecond => _bytesPerSecond;

    /// <summary>Bytes taken so far.</summary>
    public long Taken { get; private set; }

    /// <summary>Total time this throttle asked to wait.</summary>
    public TimeSpan Waited { get; private set; }

    /// <summary>Waits until <paramref name="bytes"/> may be read. One scrubber uses a throttle at a time.</summary>
    public async Task TakeAsync(long bytes, CancellationToken cancellation)
    {
        Taken += bytes;
        if (_bytesPerSecond <= 0) return;
        Refill();
        _tokens -= bytes;
        if (_tokens >= 0) return;
        var wait = TimeSpan.FromSeconds(-_tokens / _bytesPerSecond);
        Waited += wait;
        await _delay(wait, cancellation);
        Refill();
    }

    private void Refill()
    {
        var now = _now();
        _tokens = Math.Min(_bytesPerSecond, _tokens + (now - _last).TotalSeconds * _bytesPerSecond);
        _last = now;
    }
}
