using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Bitrot;

// The scrubber: a background task that walks every regular file of the brick through the child
// every scrub-frequency, at the scrub-throttle byte rate and scrub-files-per-second file rate,
// verifying every signed block, signing unsigned ones and marking bad files. ScrubNowAsync runs a
// pass on demand (joining one that runs). The walk visits names in ordinal order, depth first,
// so "the last file scrubbed" is a position: it is kept in the store (scrub-position, at most a
// second behind, and on a clean stop), and a pass cut short by a stop or a crash resumes after it
// when the brick starts again instead of starting over.
public sealed partial class BitrotTranslator
{
    /// <summary>The store's file holding the scrubber's persisted state (<see cref="ScrubState"/>).</summary>
    public const string ScrubStateFile = "scrub-position";

    /// <summary>What survives a restart: the counters of the last passes and, while a pass is unfinished, where it got to.</summary>
    private sealed record ScrubState(long Passes, DateTimeOffset? LastRunStart, DateTimeOffset? LastRunEnd,
        string? Position, long Files, long Bytes, long Signed);

    private string? _position;
    private string? _resumeFrom;
    private long _positionSavedAt;

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
                FilesPerSecond = ScrubFileRate,
            };
        }
    }

    /// <summary>Reads the persisted scrub state: the counters of earlier passes, and the position of an unfinished one.</summary>
    private async ValueTask LoadScrubStateAsync()
    {
        var raw = await Store.ReadFileAsync(ScrubStateFile);
        ScrubState? st = null;
        try
        {
            if (raw is not null) st = System.Text.Json.JsonSerializer.Deserialize<ScrubState>(raw);
        }
        catch (System.Text.Json.JsonException)
        {
            // Torn by a crash mid-write: the next pass starts from the root.
        }
        if (st is null) return;
        lock (_scrubLock)
        {
            _status = _status with { Passes = st.Passes, LastRunStart = st.LastRunStart, LastRunEnd = st.LastRunEnd };
            _resumeFrom = st.Position;
            if (st.Position is not null)
            {
                _files = st.Files;
                _bytes = st.Bytes;
                _signed = st.Signed;
            }
        }
    }

    private async ValueTask SaveScrubStateAsync(bool finished)
    {
        ScrubState st;
        lock (_scrubLock)
        {
            st = new ScrubState(_status.Passes, _status.LastRunStart, _status.LastRunEnd, finished ? null : _position,
                Interlocked.Read(ref _files), Interlocked.Read(ref _bytes), Interlocked.Read(ref _signed));
        }
        _positionSavedAt = Environment.TickCount64;
        await Store.WriteFileAsync(ScrubStateFile, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(st));
    }

    private void StartScrubber() => _loop = Task.Run(async () =>
    {
        try
        {
            bool resume;
            lock (_scrubLock) resume = _resumeFrom is not null;
            if (resume) await ScrubNowAsync(_stop.Token); // a pass a restart cut short goes on at once
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
            string? resume = _resumeFrom;
            _resumeFrom = null;
            _position = resume;
            if (resume is null)
            {
                _status = _status with { Running = true, LastRunStart = DateTimeOffset.UtcNow, ResumedFrom = null };
                Interlocked.Exchange(ref _files, 0);
                Interlocked.Exchange(ref _bytes, 0);
                Interlocked.Exchange(ref _signed, 0);
            }
            else _status = _status with { Running = true, ResumedFrom = resume };
            var throttle = new ScrubThrottle(ScrubRate, ThrottleClock, ThrottleDelay, ScrubFileRate);
            LastThrottle = throttle;
            _pass = Task.Run(() => RunPassAsync(throttle, resume, _stop.Token));
            return _pass;
        }
    }

    private async Task<BitrotStatus> RunPassAsync(ScrubThrottle throttle, string? resumeAfter, CancellationToken stop)
    {
        bool finished = false;
        try
        {
            await WalkDirAsync(Gfid.Root, "", resumeAfter, throttle, stop);
            finished = true;
        }
        finally
        {
            lock (_scrubLock)
            {
                _status = _status with
                {
                    Running = false,
                    LastRunEnd = finished ? DateTimeOffset.UtcNow : _status.LastRunEnd,
                    Passes = _status.Passes + (finished ? 1 : 0),
                };
            }
            // A pass cut short leaves its position for the next start; a finished one clears it.
            await SaveScrubStateAsync(finished);
        }
        return Status;
    }

    /// <summary>
    /// Orders paths as the walk visits them: component by component, ordinal, a directory
    /// before what it holds.
    /// </summary>
    internal static int ComparePaths(string a, string b)
    {
        var x = a.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var y = b.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
        {
            int c = string.CompareOrdinal(x[i], y[i]);
            if (c != 0) return c;
        }
        return x.Length.CompareTo(y.Length);
    }

    /// <summary>
    /// Scrubs the files below <paramref name="dir"/> in walk order. With <paramref name="resumeAfter"/>,
    /// files at or before that position were scrubbed by the pass a restart cut short, and whole
    /// subtrees before it are not even listed.
    /// </summary>
    private async Task WalkDirAsync(Gfid dir, string path, string? resumeAfter, ScrubThrottle throttle, CancellationToken stop)
    {
        stop.ThrowIfCancellationRequested();
        var entries = await ListForScrubAsync(dir);
        foreach (var (name, attr) in entries)
        {
            string child = path + "/" + name;
            int cmp = resumeAfter is null ? 1 : ComparePaths(child, resumeAfter);
            if (attr.IsDirectory)
            {
                bool holdsPosition = resumeAfter is not null && resumeAfter.StartsWith(child + "/", StringComparison.Ordinal);
                if (cmp < 0 && !holdsPosition) continue;
                await WalkDirAsync(attr.Gfid, child, holdsPosition ? resumeAfter : null, throttle, stop);
            }
            else if (attr.IsRegular && cmp > 0)
            {
                await throttle.TakeFileAsync(stop);
                await ScrubFileAsync(attr.Gfid, child, throttle, stop);
                lock (_scrubLock) _position = child;
                if (Environment.TickCount64 - _positionSavedAt >= 1000) await SaveScrubStateAsync(finished: false);
            }
        }
    }

    /// <summary>The directories and regular files of one directory, by name in ordinal order (the store left out).</summary>
    private async Task<List<(string Name, Iatt Attr)>> ListForScrubAsync(Gfid dir)
    {
        var list = new List<(string, Iatt)>();
        var fd = new FileHandle(dir, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        if (!(await Child.OpendirAsync(Ctx, fd)).Ok) return list;
        try
        {
            long cookie = 0;
            while (true)
            {
                var r = await Child.ReaddirplusAsync(Ctx, fd, cookie, 64 * 1024);
                if (!r.Ok || r.Value.Count == 0) break;
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
                    if (attr.IsDirectory || attr.IsRegular) list.Add((e.Name, attr));
                }
            }
        }
        finally
        {
            await Child.ReleasedirAsync(Ctx, fd);
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return list;
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
        using (await s.Blocks.LockAsync(first, first + count))
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
                // The data signed may still be only in the page cache: the marker keeps the new
                // checksums from being trusted after a power cut until close has synced both.
                if (signed == 0 && await MarkDirtyLockedAsync(s, reader, first) != Errno.None) return true;
                s.Set(first + blocks, [BlockSum(data.Span.Slice(at, Math.Min(_blockSize, data.Length - at)))]);
                signed++;
            }
            if (signed > 0)
            {
                await PersistLockedAsync(s, first, blocks);
                Interlocked.Add(ref _signed, signed);
            }
            return true;
        }
    }
}
