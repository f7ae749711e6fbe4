using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Shd;

/// <summary>How one pass ended: heals by outcome, and what the indexes still listed when it stopped.</summary>
public sealed record PassSummary(int Healed, int Clean, int SplitBrain, int Unavailable, int Gone, int Remaining)
{
    public static PassSummary operator +(PassSummary a, PassSummary b) => new(a.Healed + b.Healed, a.Clean + b.Clean,
        a.SplitBrain + b.SplitBrain, a.Unavailable + b.Unavailable, a.Gone + b.Gone, a.Remaining + b.Remaining);

    public static PassSummary Empty { get; } = new(0, 0, 0, 0, 0, 0);

    public override string ToString() =>
        $"healed {Healed}, clean {Clean}, split-brain {SplitBrain}, unavailable {Unavailable}, gone {Gone}, still pending {Remaining}";
}

/// <summary>
/// The self-heal daemon's work over the replica sets of one client graph: index passes (the
/// bricks' pending-heal indexes, healed with at most <see cref="Parallel"/> heals in flight),
/// full crawls, and the loop that runs passes every interval and at once when a brick comes
/// back. Callable in-process; <see cref="ShdCommand"/> wraps it as the program.
/// </summary>
public sealed class SelfHealDaemon
{
    /// <summary>Rounds of one index pass: healing a directory can leave its new entries listed once more, so a pass lists again while heals make progress.</summary>
    private const int MaxRounds = 8;

    private readonly IReadOnlyList<ReplicateTranslator> _replicas;
    private readonly ProtocolLog _log;
    private readonly Dictionary<(ReplicateTranslator, int), bool> _reachable = [];

    public SelfHealDaemon(IReadOnlyList<ReplicateTranslator> replicas, int parallel, ProtocolLog log)
    {
        if (parallel < 1) throw new ArgumentOutOfRangeException(nameof(parallel), "at least one heal at a time");
        _replicas = replicas;
        Parallel = parallel;
        _log = log;
    }

    /// <summary>Every cluster/replicate translator of <paramref name="graph"/>.</summary>
    public static IReadOnlyList<ReplicateTranslator> FindReplicas(TranslatorGraph graph) => [.. graph.All.OfType<ReplicateTranslator>()];

    public IReadOnlyList<ReplicateTranslator> Replicas => _replicas;

    /// <summary>Most heals in flight at once, over all replica sets.</summary>
    public int Parallel { get; }

    /// <summary>The heal of one inode; replaceable so tests can watch the heals a pass starts.</summary>
    public Func<ReplicateTranslator, Gfid, CancellationToken, Task<HealResult>> Heal { get; init; } = (r, g, c) => r.HealAsync(g, c);

    /// <summary>How often the loop asks each brick whether it answers, to heal at once when one returns.</summary>
    public TimeSpan ProbePeriod { get; init; } = TimeSpan.FromSeconds(5);

    private static FopContext ShdContext(CancellationToken cancellation, IReadOnlyList<string>? xattrs = null) => new()
    {
        Uid = 0, Gid = 0, Pid = 0, ClientId = "brickfs-shd", Cancellation = cancellation, XattrRequest = xattrs,
    };

    // ---- index passes ------------------------------------------------------------------------

    /// <summary>
    /// Heals what the bricks' indexes list, round after round while heals make progress (at
    /// most <see cref="MaxRounds"/>); returns when the indexes are empty or the rest cannot be
    /// healed now (split-brain, a sink still down).
    /// </summary>
    public async Task<PassSummary> RunPassAsync(CancellationToken cancellation = default)
    {
        var total = PassSummary.Empty;
        for (int round = 0; round < MaxRounds; round++)
        {
            var work = new List<(ReplicateTranslator, Gfid)>();
            foreach (var r in _replicas)
            {
                foreach (var g in await r.ListPendingAsync(cancellation)) work.Add((r, g));
            }
            if (work.Count == 0) return total with { Remaining = 0 };
            var s = await HealAllAsync(work, cancellation);
            total += s;
            if (s.Healed + s.Gone == 0) return total with { Remaining = work.Count };
        }
        int left = 0;
        foreach (var r in _replicas) left += (await r.ListPendingAsync(cancellation)).Count;
        return total with { Remaining = left };
    }

    /// <summary>Heals <paramref name="work"/> with at most <see cref="Parallel"/> heals in flight, logging each.</summary>
    private async Task<PassSummary> HealAllAsync(IReadOnlyList<(ReplicateTranslator Replica, Gfid Gfid)> work, CancellationToken cancellation, IReadOnlyDictionary<Gfid, string>? paths = null)
    {
        int healed = 0, clean = 0, split = 0, unavailable = 0, gone = 0;
        await System.Threading.Tasks.Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = Parallel, CancellationToken = cancellation }, async (item, ct) =>
        {
            var r = await Heal(item.Replica, item.Gfid, ct);
            string what = paths is not null && paths.TryGetValue(item.Gfid, out var p) ? $"{item.Gfid} ({p})"
                : item.Gfid == Gfid.Root ? $"{item.Gfid} (/)" : item.Gfid.ToString();
            switch (r.Outcome)
            {
                case HealOutcome.Healed:
                    Interlocked.Increment(ref healed);
                    _log.Write('I', item.Replica.Name, $"healed {what}: {r.Healed} on {string.Join(",", r.Sinks)}{(r.Detail is null ? "" : $" ({r.Detail})")}");
                    break;
                case HealOutcome.Clean:
                    Interlocked.Increment(ref clean);
                    _log.Write('I', item.Replica.Name, $"heal {what}: clean among the reachable bricks");
                    break;
                case HealOutcome.SplitBrain:
                    Interlocked.Increment(ref split);
                    _log.Write('W', item.Replica.Name, $"heal {what}: split-brain ({r.Healed}), resolve it with a policy");
                    break;
                case HealOutcome.Unavailable:
                    Interlocked.Increment(ref unavailable);
                    _log.Write('W', item.Replica.Name, $"heal {what}: not possible now: {r.Detail}");
                    break;
                case HealOutcome.Gone:
                    Interlocked.Increment(ref gone);
                    _log.Write('I', item.Replica.Name, $"heal {what}: gone from every reachable brick");
                    break;
            }
        });
        return new PassSummary(healed, clean, split, unavailable, gone, 0);
    }

    // ---- full crawl ----------------------------------------------------------------------------

    /// <summary>
    /// Walks each replica set's whole namespace from the root, on every brick: a directory that
    /// some copy blames is healed before it is read, names some bricks miss are created there
    /// (<see cref="ReplicateTranslator.MergeEntriesAsync"/>), and every inode with a non-zero
    /// counter on any copy is healed. Finds what the indexes lost; ends with an index pass.
    /// </summary>
    public async Task<PassSummary> RunFullCrawlAsync(CancellationToken cancellation = default)
    {
        var total = PassSummary.Empty;
        foreach (var r in _replicas)
        {
            var found = new List<(ReplicateTranslator, Gfid)>();
            var paths = new Dictionary<Gfid, string>();
            total += await CrawlDirectoryAsync(r, Gfid.Root, "/", found, paths, new HashSet<Gfid>(), cancellation);
            _log.Write('I', r.Name, $"full crawl: {found.Count} inodes to heal");
            total += await HealAllAsync(found, cancellation, paths);
        }
        return total + await RunPassAsync(cancellation);
    }

    private async Task<PassSummary> CrawlDirectoryAsync(ReplicateTranslator r, Gfid dir, string path, List<(ReplicateTranslator, Gfid)> found,
        Dictionary<Gfid, string> paths, HashSet<Gfid> visited, CancellationToken cancellation)
    {
        if (!visited.Add(dir)) return PassSummary.Empty;
        var summary = PassSummary.Empty;
        var status = await r.InspectAsync(dir, cancellation);
        if (status.Error != Errno.None) return summary;
        if (status.SplitBrain != SplitBrainKind.None)
        {
            _log.Write('W', r.Name, $"full crawl: {path} ({dir}) is in split-brain ({status.SplitBrain}); not descending");
            return summary with { SplitBrain = 1 };
        }
        if (status.Stale.Count > 0) summary += await HealAllAsync([(r, dir)], cancellation, new Dictionary<Gfid, string> { [dir] = path });
        var merged = await r.MergeEntriesAsync(dir, cancellation);
        if (merged.Outcome == HealOutcome.Healed)
        {
            _log.Write('I', r.Name, $"full crawl: {path} ({dir}): names created on {string.Join(",", merged.Sinks)}");
            summary += new PassSummary(1, 0, 0, 0, 0, 0);
        }

        var ctx = ShdContext(cancellation, r.PendingKeys);
        var entries = new Dictionary<string, (Gfid Gfid, bool IsDirectory, bool Blamed)>(StringComparer.Ordinal);
        for (int i = 0; i < r.Children.Count; i++)
        {
            var listing = await ListAsync(r.Children[i], ctx, dir);
            if (listing is null) continue;
            foreach (var e in listing)
            {
                bool blamed = e.Attr!.Xattrs is { } x && r.PendingKeys.Any(k => x.TryGetValue(k, out var v) && XattrCounters.Decode(v).Any(c => c != 0));
                entries[e.Name] = entries.TryGetValue(e.Name, out var seen)
                    ? seen with { Blamed = seen.Blamed || blamed || seen.Gfid != e.Gfid!.Value }
                    : (e.Gfid!.Value, e.Attr.IsDirectory, blamed);
            }
        }
        foreach (var (name, e) in entries.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            string child = path == "/" ? "/" + name : path + "/" + name;
            if (e.Blamed && !e.IsDirectory)
            {
                found.Add((r, e.Gfid));
                paths[e.Gfid] = child;
            }
            if (e.IsDirectory) summary += await CrawlDirectoryAsync(r, e.Gfid, child, found, paths, visited, cancellation);
        }
        return summary;
    }

    /// <summary>
    /// The entries of <paramref name="dir"/> on one brick (without the dots; with
    /// <paramref name="withoutAttributes"/> also those that come without attributes), or null
    /// when it cannot list them.
    /// </summary>
    internal static async Task<List<DirEntry>?> ListAsync(Translator child, FopContext ctx, Gfid dir, bool withoutAttributes = false)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        if (!(await child.OpendirAsync(ctx, fd)).Ok) return null;
        try
        {
            var all = new List<DirEntry>();
            long offset = 0;
            while (true)
            {
                var page = await child.ReaddirplusAsync(ctx, fd, offset, 64 * 1024);
                if (!page.Ok) return null;
                if (page.Value.Count == 0) return all;
                all.AddRange(page.Value.Where(e => e.Name is not ("." or "..") && e.Gfid is not null && (withoutAttributes || e.Attr is not null)));
                offset = page.Value[^1].NextOffset;
            }
        }
        finally
        {
            await child.ReleasedirAsync(ctx, fd);
        }
    }

    // ---- the daemon loop ---------------------------------------------------------------------

    /// <summary>
    /// Runs an index pass now, then every <paramref name="interval"/>, and also as soon as a
    /// brick that did not answer the last probe answers again. Returns when
    /// <paramref name="cancellation"/> fires (SIGTERM); a pass in progress stops between heals.
    /// </summary>
    public async Task RunAsync(TimeSpan interval, CancellationToken cancellation)
    {
        try
        {
            // The start line comes after the first probe: from then on a brick that returns is noticed.
            await ProbeAsync(cancellation);
            _log.Write('I', "brickfs-shd", $"healing {string.Join(", ", _replicas.Select(r => r.Name))} every {interval.TotalSeconds:0} s, {Parallel} at a time");
            while (true)
            {
                var s = await RunPassAsync(cancellation);
                if (s.Healed + s.SplitBrain + s.Unavailable + s.Gone + s.Remaining > 0) _log.Write('I', "brickfs-shd", $"pass done: {s}");
                var until = DateTime.UtcNow + interval;
                while (DateTime.UtcNow < until)
                {
                    var wait = until - DateTime.UtcNow;
                    await Task.Delay(wait < ProbePeriod ? wait : ProbePeriod, cancellation);
                    if (await ProbeAsync(cancellation))
                    {
                        _log.Write('I', "brickfs-shd", "a brick is back: healing now");
                        break;
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            _log.Write('I', "brickfs-shd", "stopping");
        }
    }

    /// <summary>Asks every brick at once for the root's attributes; true when one that did not answer last time answers now.</summary>
    public async Task<bool> ProbeAsync(CancellationToken cancellation)
    {
        var ctx = ShdContext(cancellation);
        var probes = _replicas.SelectMany(r => r.Children.Select((c, i) => (Replica: r, Index: i, Child: c))).ToList();
        var up = await Task.WhenAll(probes.Select(async p => (await p.Child.StatAsync(ctx, Gfid.Root, null)).Error != Errno.ENOTCONN));
        bool cameBack = false;
        for (int k = 0; k < probes.Count; k++)
        {
            var key = (probes[k].Replica, probes[k].Index);
            if (_reachable.TryGetValue(key, out bool was) && !was && up[k]) cameBack = true;
            _reachable[key] = up[k];
        }
        return cameBack;
    }
}
