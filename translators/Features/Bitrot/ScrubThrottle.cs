using System.Diagnostics;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// Two token buckets paced on one clock: bytes read by the scrubber and files it starts. After a
/// burst of one second's worth, each <see cref="TakeAsync"/> (bytes) and <see cref="TakeFileAsync"/>
/// waits until what it takes fits its rate; a rate of 0 is no cap. The clock and the wait are
/// injectable so tests check the pacing by counting (virtual time asked for), not by timing.
/// </summary>
internal sealed class ScrubThrottle
{
    private readonly long _bytesPerSecond;
    private readonly double _filesPerSecond;
    private readonly Func<TimeSpan> _now;
    private readonly Func<TimeSpan, CancellationToken, Task> _delay;
    private TimeSpan _last;
    private double _tokens, _fileTokens;

    public ScrubThrottle(long bytesPerSecond, Func<TimeSpan>? now = null, Func<TimeSpan, CancellationToken, Task>? delay = null, double filesPerSecond = 0)
    {
        _bytesPerSecond = bytesPerSecond;
        _filesPerSecond = filesPerSecond;
        var clock = Stopwatch.StartNew();
        _now = now ?? (() => clock.Elapsed);
        _delay = delay ?? Task.Delay;
        _last = _now();
        _tokens = bytesPerSecond; // one second of burst
        _fileTokens = Math.Max(1, filesPerSecond);
    }

    public long BytesPerSecond => _bytesPerSecond;

    public double FilesPerSecond => _filesPerSecond;

    /// <summary>Files taken so far.</summary>
    public long FilesTaken { get; private set; }

    /// <summary>Waits until one more file may be started.</summary>
    public async Task TakeFileAsync(CancellationToken cancellation)
    {
        FilesTaken++;
        if (_filesPerSecond <= 0) return;
        Refill();
        _fileTokens -= 1;
        if (_fileTokens >= 0) return;
        var wait = TimeSpan.FromSeconds(-_fileTokens / _filesPerSecond);
        Waited += wait;
        await _delay(wait, cancellation);
        Refill();
    }

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
        double seconds = (now - _last).TotalSeconds;
        _tokens = Math.Min(_bytesPerSecond, _tokens + seconds * _bytesPerSecond);
        if (_filesPerSecond > 0) _fileTokens = Math.Min(Math.Max(1, _filesPerSecond), _fileTokens + seconds * _filesPerSecond);
        _last = now;
    }
}
