using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

/// <summary>
/// The state of one rebalance run, also its checkpoint: saved as JSON while the run goes on, so
/// a stopped or crashed run resumes without redoing finished directories.
/// </summary>
public sealed class RebalanceProgress
{
    public const string InProgress = "in progress", Completed = "completed", Stopped = "stopped", Failed = "failed";

    public string State { get; set; } = InProgress;
    public long Directories { get; set; }
    public long FilesScanned { get; set; }
    public long FilesMoved { get; set; }
    public long BytesMoved { get; set; }
    /// <summary>Files left where they are for now: open for writing (busy), no room on their hashed child, hard links.</summary>
    public long Skipped { get; set; }
    public long Failures { get; set; }
    /// <summary>The first failures and skips, "path: reason".</summary>
    public List<string> Problems { get; set; } = [];
    public DateTime StartedUtc { get; set; } = DateTime.UtcNow;
    public DateTime UpdatedUtc { get; set; } = DateTime.UtcNow;
    /// <summary>How many times the run was started (1 + resumes).</summary>
    public int Runs { get; set; }

    /// <summary>Directories whose whole subtree is done (descendants are dropped from the set).</summary>
    public List<string> DoneTrees { get; set; } = [];
    /// <summary>Directories whose own files are done, while their subdirectories are not yet.</summary>
    public List<string> DoneFiles { get; set; } = [];
    /// <summary>The directory being worked on and the listing offset after its last finished batch.</summary>
    public string? CurrentDir { get; set; }
    public long CurrentOffset { get; set; }
    /// <summary>The volume commit this run set (0: not yet); a resumed run keeps it.</summary>
    public uint Commit { get; set; }
    /// <summary>Directories the run marked complete (their layouts carry <see cref="Commit"/>, lookup-optimize trusts them).</summary>
    public long DirectoriesMarked { get; set; }

    public const int MaxProblems = 50;

    public override string ToString() =>
        $"{State}: {Directories} directories, {FilesScanned} files scanned, {FilesMoved} moved ({BytesMoved} bytes), {Skipped} skipped, {Failures} failures";
}

/// <summary>
/// The rebalance crawl (GlusterFS's rebalance process, over one client graph): every directory
/// from the root down is looked up (which creates it on new children), its layout fixed over the
/// current children, then each file in it migrated to its hashed child
/// (<see cref="DistributeTranslator.MigrateFileAsync"/>). Files busy (open for writing), without
/// room, or hard-linked are skipped; busy ones are retried after the crawl for
/// <see cref="BusyRetry"/>. Progress goes to the checkpoint callback at least every
/// <see cref="CheckpointInterval"/>; cancellation stops between files and returns the state
/// <see cref="RebalanceProgress.Stopped"/> with a checkpoint a later run resumes from.
/// With <c>decommissioned-bricks</c> set on the translator this is remove-brick's drain.
/// <para>lookup-optimize: the run first sets a new volume commit, which no directory layout
/// carries, and waits until every client has read it, so no client trusts
/// a hashed child alone while layouts change and files move (clients use a layout up to twice
/// layout-refresh old; the run waits three times it). After the crawl (and three times
/// layout-refresh after the last fix-layout, so every client creates by the new layouts) a last
/// pass lists every directory, makes sure each name off its hashed child has a link-to there,
/// and sets the directory's layout to the new commit: from then on a miss on the hashed child is
/// an answer.</para>
/// </summary>
public sealed class Rebalancer(DistributeTranslator dht)
{
    private static readonly FopContext Ctx = FopContext.Internal();
    private readonly Lock _lock = new();
    private readonly List<(Gfid Parent, string Path, string Name)> _busy = [];
    private RebalanceProgress _p = new();
    private long _lastFixLayout;
    private Func<RebalanceProgress, ValueTask>? _save;
    private long _lastSave;

    /// <summary>Files migrated at once.</summary>
    public int Parallel { get; init; } = 8;

    public TimeSpan BusyRetry { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Runs (or resumes <paramref name="resume"/>) to completion or cancellation; never throws for cancellation.</summary>
    public async Task<RebalanceProgress> RunAsync(RebalanceProgress? resume, Func<RebalanceProgress, ValueTask>? checkpoint, CancellationToken cancellation)
    {
        _p = resume is { State: RebalanceProgress.InProgress or RebalanceProgress.Stopped } r ? r : new RebalanceProgress();
        _p.State = RebalanceProgress.InProgress;
        _p.Runs++;
        _save = checkpoint;
        await SaveAsync(force: true);
        try
        {
            var root = await dht.StatAsync(Ctx, Gfid.Root, null);
            if (!root.Ok) return await FinishAsync(RebalanceProgress.Failed, $"/: {root.Error}");
            if (_p.Commit == 0)
            {
                uint was = await dht.ReadVolumeCommitAsync();
                uint commit;
                do commit = (uint)Random.Shared.NextInt64(2, uint.MaxValue); while (commit == was);
                var set = await dht.SetVolumeCommitAsync(commit);
                if (!set.Ok) return await FinishAsync(RebalanceProgress.Failed, $"/: setting the volume commit: {set.Error}");
                lock (_lock) _p.Commit = commit;
                await SaveAsync(force: true);
            }
            await Task.Delay(3 * dht.LayoutRefresh, cancellation);
            await CrawlAsync(Gfid.Root, "/", cancellation);
            await RetryBusyAsync(cancellation);
            var settle = 3 * dht.LayoutRefresh - TimeSpan.FromMilliseconds(Environment.TickCount64 - Interlocked.Read(ref _lastFixLayout));
            if (settle > TimeSpan.Zero) await Task.Delay(settle, cancellation);
            await MarkCompleteAsync(Gfid.Root, "/", cancellation);
            return await FinishAsync(RebalanceProgress.Completed, null);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            return await FinishAsync(RebalanceProgress.Stopped, null);
        }
    }

    private async Task<RebalanceProgress> FinishAsync(string state, string? problem)
    {
        lock (_lock)
        {
            _p.State = state;
            if (problem is not null) Problem(problem, failure: true);
            if (state == RebalanceProgress.Completed)
            {
                _p.DoneTrees.Clear();
                _p.DoneFiles.Clear();
                _p.CurrentDir = null;
                _p.CurrentOffset = 0;
            }
        }
        await SaveAsync(force: true);
        return _p;
    }

    private async ValueTask SaveAsync(bool force)
    {
        if (_save is null) return;
        long now = Environment.TickCount64;
        if (!force && now - Interlocked.Read(ref _lastSave) < CheckpointInterval.TotalMilliseconds) return;
        Interlocked.Exchange(ref _lastSave, now);
        RebalanceProgress copy;
        lock (_lock)
        {
            _p.UpdatedUtc = DateTime.UtcNow;
            copy = Snapshot(_p);
        }
        await _save(copy);
    }

    private static RebalanceProgress Snapshot(RebalanceProgress p) => new()
    {
        State = p.State, Directories = p.Directories, FilesScanned = p.FilesScanned, FilesMoved = p.FilesMoved, BytesMoved = p.BytesMoved,
        Skipped = p.Skipped, Failures = p.Failures, Problems = [.. p.Problems], StartedUtc = p.StartedUtc, UpdatedUtc = p.UpdatedUtc, Runs = p.Runs,
        DoneTrees = [.. p.DoneTrees], DoneFiles = [.. p.DoneFiles], CurrentDir = p.CurrentDir, CurrentOffset = p.CurrentOffset,
        Commit = p.Commit, DirectoriesMarked = p.DirectoriesMarked,
    };

    private void Problem(string what, bool failure)
    {
        if (failure) _p.Failures++;
        else _p.Skipped++;
        if (_p.Problems.Count < RebalanceProgress.MaxProblems) _p.Problems.Add(what);
    }

    private static string Join(string dir, string name) => dir == "/" ? "/" + name : dir + "/" + name;

    private static bool Under(string path, string dir) => path.StartsWith(dir == "/" ? "/" : dir + "/", StringComparison.Ordinal);

    private async Task CrawlAsync(Gfid dir, string path, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        bool filesDone;
        lock (_lock)
        {
            if (_p.DoneTrees.Contains(path)) return;
            filesDone = _p.DoneFiles.Contains(path);
        }
        var fixedLayout = await dht.FixLayoutAsync(dir, cancellation);
        Interlocked.Exchange(ref _lastFixLayout, Environment.TickCount64);
        if (!fixedLayout.Ok)
        {
            lock (_lock) Problem($"{path}: fix-layout: {fixedLayout.Error}", failure: true);
            return;
        }
        lock (_lock) _p.Directories++;

        var subdirs = await ListAsync(dir, path, migrate: !filesDone, cancellation);
        lock (_lock)
        {
            if (!filesDone) _p.DoneFiles.Add(path);
            if (_p.CurrentDir == path) (_p.CurrentDir, _p.CurrentOffset) = (null, 0);
        }
        foreach (var (name, gfid) in subdirs.OrderBy(s => s.Name, StringComparer.Ordinal))
        {
            // A lookup through distribute creates the directory on children that lack it (new bricks).
            var l = await dht.LookupAsync(Ctx, dir, name);
            if (!l.Ok || l.Value.Gfid != gfid) continue; // removed or replaced meanwhile
            await CrawlAsync(gfid, Join(path, name), cancellation);
        }
        lock (_lock)
        {
            _p.DoneTrees.RemoveAll(p => Under(p, path));
            _p.DoneFiles.RemoveAll(p => p == path || Under(p, path));
            _p.DoneTrees.Add(path);
        }
        await SaveAsync(force: false);
    }

    /// <summary>Lists the directory through distribute, migrating its files batch by batch; returns its subdirectories.</summary>
    private async Task<List<(string Name, Gfid Gfid)>> ListAsync(Gfid dir, string path, bool migrate, CancellationToken cancellation)
    {
        var subdirs = new List<(string, Gfid)>();
        var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
        var o = await dht.OpendirAsync(Ctx, fd);
        if (!o.Ok)
        {
            lock (_lock) Problem($"{path}: opendir: {o.Error}", failure: true);
            return subdirs;
        }
        try
        {
            long offset = 0;
            // A file migrated to a child listed later shows up again there: handle each name once.
            var seen = new HashSet<string>(StringComparer.Ordinal);
            lock (_lock)
            {
                if (migrate && _p.CurrentDir == path) offset = _p.CurrentOffset;
            }
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                var batch = await dht.ReaddirplusAsync(Ctx, fd, offset, 64 << 10);
                if (batch.Error == Errno.EINVAL && offset != 0)
                {
                    offset = 0; // a checkpointed offset this listing cannot resume from: start the directory over
                    continue;
                }
                if (!batch.Ok)
                {
                    lock (_lock) Problem($"{path}: readdir: {batch.Error}", failure: true);
                    return subdirs;
                }
                if (batch.Value.Count == 0) return subdirs;
                var files = new List<string>();
                foreach (var e in batch.Value)
                {
                    if (e.Name is "." or "..") continue;
                    if (e.Attr?.IsDirectory ?? e.Type == 4)
                    {
                        if (e.Attr is { } a) subdirs.Add((e.Name, a.Gfid));
                        else if ((await dht.LookupAsync(Ctx, dir, e.Name)) is { Ok: true, Value: var la } && la.IsDirectory) subdirs.Add((e.Name, la.Gfid));
                    }
                    else if (seen.Add(e.Name)) files.Add(e.Name);
                }
                if (migrate)
                {
                    await System.Threading.Tasks.Parallel.ForEachAsync(files, new ParallelOptions { MaxDegreeOfParallelism = Parallel, CancellationToken = cancellation },
                        async (name, ct) => await MigrateAsync(dir, path, name, retry: false, ct));
                }
                offset = batch.Value[^1].NextOffset;
                lock (_lock)
                {
                    if (migrate) (_p.CurrentDir, _p.CurrentOffset) = (path, offset);
                }
                await SaveAsync(force: false);
            }
        }
        finally
        {
            await dht.ReleasedirAsync(Ctx, fd);
        }
    }

    /// <summary>
    /// The last pass: every name in <paramref name="dir"/> listed from a child other than its
    /// hashed one gets its link-to checked (made where missing); when all are, the directory's
    /// layout takes the run's commit. Then its subdirectories, in name order.
    /// </summary>
    private async Task MarkCompleteAsync(Gfid dir, string path, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        var layout = await dht.GetLayoutAsync(dir);
        if (!layout.Ok) return;
        var subdirs = new List<(string Name, Gfid Gfid)>();
        bool complete = layout.Value.IsComplete;
        var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
        if (!(await dht.OpendirAsync(Ctx, fd)).Ok) return;
        try
        {
            long offset = 0;
            while (true)
            {
                var batch = await dht.ReaddirplusAsync(Ctx, fd, offset, 64 << 10);
                if (!batch.Ok)
                {
                    complete = false;
                    break;
                }
                if (batch.Value.Count == 0) break;
                foreach (var e in batch.Value)
                {
                    if (e.Name is "." or "..") continue;
                    if (e.Attr?.IsDirectory ?? e.Type == 4)
                    {
                        if (e.Attr is { } a) subdirs.Add((e.Name, a.Gfid));
                        continue;
                    }
                    var (child, _, mapped) = DirCookie.Unpack(e.NextOffset);
                    if (!mapped && child == layout.Value.ChildFor(e.Name)) continue;
                    var on = await dht.EnsureOnHashedAsync(dir, e.Name);
                    if (!on.Ok || !on.Value) complete = false;
                }
                offset = batch.Value[^1].NextOffset;
            }
        }
        finally
        {
            await dht.ReleasedirAsync(Ctx, fd);
        }
        if (complete && (await dht.SetLayoutCommitAsync(dir, _p.Commit)).Ok)
        {
            lock (_lock) _p.DirectoriesMarked++;
        }
        foreach (var (name, gfid) in subdirs.OrderBy(s => s.Name, StringComparer.Ordinal)) await MarkCompleteAsync(gfid, Join(path, name), cancellation);
    }

    /// <summary>Migrates one file and counts the outcome; busy files are queued for the retry round unless this is it.</summary>
    private async ValueTask<bool> MigrateAsync(Gfid dir, string path, string name, bool retry, CancellationToken cancellation)
    {
        var r = await dht.MigrateFileAsync(dir, name, cancellation);
        string full = Join(path, name);
        lock (_lock)
        {
            if (!retry) _p.FilesScanned++;
            if (r.Ok)
            {
                if (r.Value.Outcome == MigrationOutcome.Moved)
                {
                    _p.FilesMoved++;
                    _p.BytesMoved += r.Value.Bytes;
                }
                return true;
            }
            switch (r.Error)
            {
                case Errno.ENOENT or Errno.ESTALE:
                    return true; // removed or renamed meanwhile: its new name is someone else's business
                case Errno.EBUSY when !retry:
                    _busy.Add((dir, path, name));
                    return false;
                case Errno.EBUSY:
                    return false;
                case Errno.ENOSPC or Errno.EMLINK:
                    Problem($"{full}: skipped ({(r.Error == Errno.ENOSPC ? "no room on its hashed subvolume" : "hard-linked")})", failure: false);
                    return true;
                default:
                    Problem($"{full}: {r.Error}", failure: true);
                    return true;
            }
        }
    }

    /// <summary>Files that were open for writing during the crawl get more tries until <see cref="BusyRetry"/> runs out; the rest are skipped.</summary>
    private async Task RetryBusyAsync(CancellationToken cancellation)
    {
        var deadline = DateTime.UtcNow + BusyRetry;
        var pending = _busy.ToList();
        var delay = TimeSpan.FromMilliseconds(50);
        while (pending.Count > 0 && DateTime.UtcNow < deadline)
        {
            var still = new List<(Gfid, string, string)>();
            foreach (var b in pending)
            {
                if (!await MigrateAsync(b.Parent, b.Path, b.Name, retry: true, cancellation)) still.Add(b);
            }
            pending = still;
            if (pending.Count == 0) break;
            await Task.Delay(delay, cancellation); // back off: writers close their files in their own time
            delay = TimeSpan.FromMilliseconds(Math.Min(1000, delay.TotalMilliseconds * 2));
        }
        lock (_lock)
        {
            foreach (var b in pending) Problem($"{Join(b.Path, b.Name)}: skipped (open for writing)", failure: false);
        }
    }
}
