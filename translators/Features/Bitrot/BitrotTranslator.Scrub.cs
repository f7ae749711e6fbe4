using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Bitrot;

// The scrubber: a background task that walks every regular file of the brick through the child
// every scrub-frequency, at the scrub-throttle byte rate, verifying every signed block, signing
// unsigned ones and marking bad files. ScrubNowAsync runs a pass on demand (joining one that runs).
public sealed partial class BitrotTranslator
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _scrubLock = new();
    private Task? _loop;
    private Task<BitrotStatus>? _pass;
    private BitrotStatus _status = new();
    private long _files, _bytes, _signed;

    /// <summary>Test hooks: the throttle's clock and wait (virtual time in tests).</summary>
    internal Func<TimeSpan>? ThrottleClock { get; set; }
    internal Func<TimeSpan, CancellationToken, Task>? ThrottleDelay { get; set; }

    /// <summary>The throttle of the last pass started (tests read what it counted).</summary>
    internal ScrubThrottle? LastThrottle { get; private set; }

    /// <summary>The scrubber's counters (of the running pass, else the last one) and the bad files this brick knows.</summary>
    public BitrotStatus Status
    {
        get
        {
            BitrotStatus s;
            lock (_scrubLock) s = _status;
            List<BadFile> bad;
            lock (_badLock) bad = [.. _bad.Values.OrderBy(b => b.FoundAt)];
            return s with
            {
                FilesScrubbed = Interlocked.Read(ref _files), BytesScrubbed = Interlocked.Read(ref _bytes),
                BlocksSigned = Interlocked.Read(ref _signed), BadFiles = bad, RateBytesPerSecond = ScrubRate,
            };
        }
    }

    private void StartScrubber() => _loop = Task.Run(async () =>
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await Task.Delay(ScrubInterval, _stop.Token);
                await ScrubNowAsync(_stop.Token);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    });

    private async ValueTask StopScrubberAsync()
    {
        _stop.Cancel();
        Task? pass;
        lock (_scrubLock) pass = _pass;
        foreach (var t in new[] { _loop, pass })
        {
            if (t is null) continue;
            try { await t; }
            catch (OperationCanceledException) { }
        }
    }

    /// <summary>
    /// Runs a full scrub pass now, or joins the one running, and returns the status at its end
    /// (<c>brickctl volume bitrot VOL scrub ondemand</c>).
    /// </summary>
    public Task<BitrotStatus> ScrubNowAsync(CancellationToken cancellation = default)
    {
        if (!_enabled) return Task.FromResult(Status);
        return StartPass().WaitAsync(cancellation);
    }

    /// <summary>The running pass, or a new one started now; the pass itself is awaited by <see cref="StopScrubberAsync"/>.</summary>
    private Task<BitrotStatus> StartPass()
    {
        lock (_scrubLock)
        {
            if (_pass is { IsCompleted: false } running) return running;
            _status = _status with { Running = true, LastRunStart = DateTimeOffset.UtcNow };
            Interlocked.Exchange(ref _files, 0);
            Interlocked.Exchange(ref _bytes, 0);
            Interlocked.Exchange(ref _signed, 0);
            var throttle = new ScrubThrottle(ScrubRate, ThrottleClock, ThrottleDelay);
            LastThrottle = throttle;
            _pass = Task.Run(() => RunPassAsync(throttle, _stop.Token));
            return _pass;
        }
    }

    private async Task<BitrotStatus> RunPassAsync(ScrubThrottle throttle, CancellationToken stop)
    {
        try
        {
            var dirs = new Stack<(Gfid Gfid, string Path)>();
            dirs.Push((Gfid.Root, ""));
            while (dirs.TryPop(out var dir))
            {
                stop.ThrowIfCancellationRequested();
                await WalkDirAsync(dir.Gfid, dir.Path, dirs, throttle, stop);
            }
        }
        finally
        {
            lock (_scrubLock)
            {
                _status = _status with { Running = false, LastRunEnd = DateTimeOffset.UtcNow, Passes = _status.Passes + (stop.IsCancellationRequested ? 0 : 1) };
            }
        }
        return Status;
    }

    private async Task WalkDirAsync(Gfid dir, string path, Stack<(Gfid, string)> dirs, ScrubThrottle throttle, CancellationToken stop)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        if (!(await Child.OpendirAsync(Ctx, fd)).Ok) return;
        try
        {
            long cookie = 0;
            while (true)
            {
                var r = await Child.ReaddirplusAsync(Ctx, fd, cookie, 64 * 1024);
                if (!r.Ok || r.Value.Count == 0) return;
                foreach (var e in r.Value)
                {
                    cookie = e.NextOffset;
                    if (e.Name is "." or "..") continue;
                    if (dir == Gfid.Root && e.Name == ChecksumStore.HiddenDir) continue;
                    var attr = e.Attr;
                    if (attr is null)
                    {
                        var l = await Child.LookupAsync(Ctx, dir, e.Name);
                        if (!l.Ok) continue;
                        attr = l.Value;
                    }
                    string child = path + "/" + e.Name;
                    if (attr.IsDirectory) dirs.Push((attr.Gfid, child));
                    else if (attr.IsRegular) await ScrubFileAsync(attr.Gfid, child, throttle, stop);
                }
            }
        }
        finally
        {
            await Child.ReleasedirAsync(Ctx, fd);
        }
    }

    /// <summary>Verifies every signed block of one file and signs the unsigned ones, reading in 1 MiB steps at the throttled rate.</summary>
    private async Task ScrubFileAsync(Gfid gfid, string path, ScrubThrottle throttle, CancellationToken stop)
    {
        var s = Acquire(gfid);
        try
        {
            if (await EnsureLoadedAsync(s, null) != Errno.None) return;
            if (s.Bad)
            {
                NoteBad(gfid, path, -1, BitrotDetector.Scrubber, onlyIfNew: true);
                return;
            }
            var reader = await ReaderAsync(s, null);
            if (reader is null) return;
            int chunkBlocks = Math.Max(1, (1 << 20) >> _blockShift);
            for (long b = 0; ; b += chunkBlocks)
            {
                stop.ThrowIfCancellationRequested();
                var r = await Child.ReadAsync(Ctx, reader, b << _blockShift, chunkBlocks << _blockShift);
                if (!r.Ok) return;
                int got;
                bool mismatch, unsigned = false;
                using (var data = r.Value)
                {
                    got = data.Length;
                    Interlocked.Add(ref _bytes, got);
                    mismatch = FirstMismatch(s, b, data.Span) >= 0;
                    for (long i = b; i < b + BlocksOf(got); i++) unsigned |= s.Sum(i) == 0;
                }
                await throttle.TakeAsync(got, stop);
                if ((mismatch || unsigned) && !await CheckChunkLockedAsync(s, reader, b, chunkBlocks, path)) return;
                if (got < chunkBlocks << _blockShift) break;
            }
            Interlocked.Increment(ref _files);
        }
        finally
        {
            await ReleaseStateAsync(s);
        }
    }

    /// <summary>
    /// Under the file lock (so no write is half done): re-reads a chunk, signs its unsigned blocks
    /// and judges its signed ones. False when the file turned out bad.
    /// </summary>
    private async Task<bool> CheckChunkLockedAsync(FileState s, FileHandle reader, long first, int count, string path)
    {
        await s.Lock.WaitAsync();
        try
        {
            var r = await Child.ReadAsync(Ctx, reader, first << _blockShift, count << _blockShift);
            if (!r.Ok) return true;
            using var data = r.Value;
            long bad = FirstMismatch(s, first, data.Span);
            if (bad >= 0)
            {
                await MarkBadLockedAsync(s, path, bad, BitrotDetector.Scrubber);
                return false;
            }
            int signed = 0, blocks = 0;
            for (int at = 0; at < data.Length; at += _blockSize, blocks++)
            {
                if (s.Sum(first + blocks) != 0) continue;
                s.Set(first + blocks, [BlockSum(data.Span.Slice(at, Math.Min(_blockSize, data.Length - at)))]);
                signed++;
            }
            if (signed > 0)
            {
                await PersistLockedAsync(s, first, s.Slice(first, blocks));
                Interlocked.Add(ref _signed, signed);
            }
            return true;
        }
        finally
        {
            s.Lock.Release();
        }
    }
}
