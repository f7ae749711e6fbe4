using System.Net;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;

namespace Brickfs.ClientFuse.Host;

/// <summary>
/// Keeps a mounted volume's options in step with <c>volume set</c>: a long poll on brickfs-mgmtd
/// (<c>GET .../volfile?kind=client&amp;wait=S</c> with <c>If-None-Match</c>, answered as soon as
/// the client volfile differs from the one this mount runs, or 304 after S seconds), over the
/// same servers the mount fetched from (the source's host, then the backups). A new volfile
/// whose graph has the same shape (the same volumes, types and subvolumes) and whose changed
/// options every translator concerned takes live (<see cref="Translator.CanReconfigure"/>:
/// protocol/client's ping-timeout, cluster/replicate's quorum, cluster/distribute's
/// decommissioned-bricks) is applied in place, between fops, without a remount: open files, locks
/// and leases stay as they are. So is add-brick on a distributed volume: new subvolumes appended
/// to a translator that takes them (<see cref="Translator.CanChangeSubvolumes"/>) are built from
/// the new volfile, started, and attached. Any other change (bricks removed, an option only a
/// rebuilt translator takes) is logged as needing a remount and not applied; the mount keeps
/// serving with the graph it has. See mgmt/CLUSTER.md for why this is in-place reconfiguration
/// and not a graph switch.
/// </summary>
public sealed class VolfileWatcher(VolumeSource source, IReadOnlyList<string> backups, TranslatorGraph graph, string volfileText, string cachePath, Log log)
{
    /// <summary>Subgraphs built for subvolumes added while mounted; stopped when the watch ends (after the unmount).</summary>
    private readonly List<TranslatorGraph> _added = [];

    /// <summary>How long one poll waits on the server before it answers "unchanged".</summary>
    public static readonly TimeSpan PollWait = TimeSpan.FromSeconds(60);

    /// <summary>How long to wait before the next server after one failed.</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(2);

    private string _text = volfileText;

    /// <summary>
    /// Told about each subgraph built for a new subvolume once it started and before it is
    /// attached, so before any lock is taken through it (the mount hooks its protocol/clients'
    /// lock-loss notices to the kernel cache).
    /// </summary>
    public Action<TranslatorGraph>? SubvolumesAdded { get; init; }

    /// <summary>Polls until <paramref name="ct"/> ends; never throws for a server that is down or answers badly.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        var servers = new List<(string Host, int Port)> { (source.Host, source.Port) };
        servers.AddRange(backups.Select(b => (b, source.Port)));
        using var http = new HttpClient { Timeout = PollWait + TimeSpan.FromSeconds(30) };
        string? etag = null;
        int server = 0;
        string? lastFailure = null;
        while (!ct.IsCancellationRequested)
        {
            var (host, port) = servers[server];
            string where = $"{(host.Contains(':') ? $"[{host}]" : host)}:{port}";
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{where}/{source.VolfilePath}&wait={(int)PollWait.TotalSeconds}");
                if (etag is not null) request.Headers.TryAddWithoutValidation("If-None-Match", etag);
                using var response = await http.SendAsync(request, ct);
                if (response.StatusCode == HttpStatusCode.NotModified)
                {
                    lastFailure = null;
                    continue;
                }
                if (!response.IsSuccessStatusCode)
                    throw new HttpRequestException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
                string text = await response.Content.ReadAsStringAsync(ct);
                etag = response.Headers.ETag?.ToString();
                lastFailure = null;
                if (text != _text) await ApplyAsync(text);
                if (etag is null) await Task.Delay(PollWait, ct); // a server without the long poll: do not spin
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
            {
                string why = $"{where}: {(e is OperationCanceledException ? "no answer" : e.Message)}";
                if (why != lastFailure) log.Warn("volfile.watch-failed", $"volume={source.Volume} server={where} error=\"{why}\"");
                lastFailure = why;
                server = (server + 1) % servers.Count;
                try
                {
                    await Task.Delay(RetryDelay, ct);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }
        // The mount has ended (the watch stops after it): nothing uses the added subvolumes any more.
        foreach (var g in _added) await g.DisposeAsync();
        _added.Clear();
    }

    /// <summary>Applies <paramref name="text"/> in place when it can; remembers it either way, so one change is logged once.</summary>
    public async Task ApplyAsync(string text)
    {
        var running = graph.All.Concat(_added.SelectMany(g => g.All)).ToList();
        var result = await TryReconfigureAsync(running, _text, text, started: SubvolumesAdded);
        _text = text;
        _added.AddRange(result.Added);
        if (result.Reason is { } reason)
        {
            log.Warn("volfile.changed-needs-remount", $"volume={source.Volume} reason=\"{reason}\"");
            return;
        }
        log.Info("volfile.reconfigured", $"volume={source.Volume} options=\"{string.Join(" ", result.Applied)}\"");
        try
        {
            File.WriteAllText(cachePath, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.Warn("volfile.cache-failed", $"path={cachePath} error=\"{e.Message}\"");
        }
    }

    /// <summary>
    /// Reconfigures <paramref name="graph"/> (built from <paramref name="oldText"/>) to
    /// <paramref name="newText"/> when the shapes match and every changed option is live;
    /// returns null and the "volume.option=value" list applied, else why not (nothing changed).
    /// Subvolume changes are refused here (they need <see cref="TryReconfigureAsync"/>).
    /// </summary>
    public static string? TryReconfigure(TranslatorGraph graph, string oldText, string newText, out List<string> applied, TranslatorRegistry? registry = null)
    {
        var plan = Plan(graph.All, oldText, newText, registry ?? TranslatorRegistry.Builtin, subvolumeChanges: false);
        applied = plan.Applied;
        return plan.Reason ?? ApplyOptions(plan.Options);
    }

    /// <summary>What a reconfiguration did: why it was refused (null: applied), the options applied, the subgraphs it built and started.</summary>
    public sealed record Outcome(string? Reason, List<string> Applied, List<TranslatorGraph> Added);

    /// <summary>
    /// <see cref="TryReconfigure"/> that also takes subvolumes appended to running translators
    /// that accept them (<see cref="Translator.CanChangeSubvolumes"/>): each new subvolume's
    /// subtree is built from <paramref name="newText"/> alone (it may not share volumes with the
    /// running graph), started, and attached after every check passed. <paramref name="running"/>
    /// is every translator of the running graph, including subvolumes added before.
    /// <paramref name="started"/> sees each new subtree once it started, before it is attached.
    /// </summary>
    public static async Task<Outcome> TryReconfigureAsync(IReadOnlyList<Translator> running, string oldText, string newText, TranslatorRegistry? registry = null, Action<TranslatorGraph>? started = null)
    {
        registry ??= TranslatorRegistry.Builtin;
        var plan = Plan(running, oldText, newText, registry, subvolumeChanges: true);
        if (plan.Reason is not null) return new Outcome(plan.Reason, plan.Applied, []);
        var built = new Dictionary<string, TranslatorGraph>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, declarations) in plan.NewSubtrees)
            {
                var g = GraphBuilder.Build(declarations, "<new volfile>", registry);
                built[name] = g;
                await g.InitAsync(CancellationToken.None);
                started?.Invoke(g);
            }
        }
        catch (VolfileException e)
        {
            foreach (var g in built.Values) await g.DisposeAsync();
            return new Outcome(e.Message, [], []);
        }
        if (ApplyOptions(plan.Options) is { } failed)
        {
            foreach (var g in built.Values) await g.DisposeAsync();
            return new Outcome(failed, [], []);
        }
        var byName = running.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var (translator, subvolumes) in plan.Subvolumes)
        {
            var children = subvolumes.Select(n => built.TryGetValue(n, out var g) ? g.Top : byName[n]).ToList();
            await translator.ChangeSubvolumesAsync(children);
            plan.Applied.Add($"{translator.Name}.subvolumes={string.Join(',', subvolumes)}");
        }
        return new Outcome(null, plan.Applied, [.. built.Values]);
    }

    private sealed record ReconfigurePlan(
        string? Reason,
        List<string> Applied,
        List<(Translator Translator, TranslatorOptions Options)> Options,
        List<(Translator Translator, List<string> Subvolumes)> Subvolumes,
        List<(string Name, List<VolumeDeclaration> Declarations)> NewSubtrees);

    /// <summary>Checks the whole change before anything is touched: which options go where, which subvolumes are appended and what to build for them.</summary>
    private static ReconfigurePlan Plan(IReadOnlyList<Translator> running, string oldText, string newText, TranslatorRegistry registry, bool subvolumeChanges)
    {
        var applied = new List<string>();
        var options = new List<(Translator, TranslatorOptions)>();
        var subvolumes = new List<(Translator, List<string>)>();
        var subtrees = new List<(string, List<VolumeDeclaration>)>();
        ReconfigurePlan Refuse(string why) => new(why, [], [], [], []);
        const string shape = "the graph changed shape (volumes, types or subvolumes differ), which needs a new graph";

        IReadOnlyList<VolumeDeclaration> before, after;
        try
        {
            before = VolfileParser.Parse(oldText, "<running volfile>");
            after = VolfileParser.Parse(newText, "<new volfile>");
        }
        catch (VolfileException e)
        {
            return Refuse(e.Message);
        }
        var old = before.ToDictionary(v => v.Name, StringComparer.Ordinal);
        var now = after.ToDictionary(v => v.Name, StringComparer.Ordinal);
        var fresh = after.Where(v => !old.ContainsKey(v.Name)).Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        if (before.Any(v => !now.ContainsKey(v.Name)) && !subvolumeChanges) return Refuse(shape);
        var claimed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var v in after)
        {
            if (!old.TryGetValue(v.Name, out var o)) continue;
            if (o.Type != v.Type) return Refuse(shape);
            if (o.Subvolumes.SequenceEqual(v.Subvolumes)) continue;
            if (!subvolumeChanges) return Refuse(shape);
            var translator = running.FirstOrDefault(t => t.Name == v.Name);
            if (translator is null) return Refuse($"volume '{v.Name}' is not in the running graph");
            if (translator.CanChangeSubvolumes(o.Subvolumes, v.Subvolumes) is { } cannot) return Refuse(cannot);
            foreach (var added in v.Subvolumes.Where(fresh.Contains))
            {
                // The new subvolume's whole subtree must be new: it is built and started on its own.
                var closure = new List<VolumeDeclaration>();
                var stack = new Stack<string>([added]);
                while (stack.Count > 0)
                {
                    var n = stack.Pop();
                    if (!fresh.Contains(n)) return Refuse($"new subvolume '{added}' uses '{n}' of the running graph, which needs a new graph");
                    if (!claimed.Add(n)) continue;
                    var d = now[n];
                    closure.Add(d);
                    foreach (var c in d.Subvolumes) stack.Push(c);
                }
                subtrees.Add((added, closure));
            }
            subvolumes.Add((translator, v.Subvolumes));
        }
        if (before.Any(v => !now.ContainsKey(v.Name)) || fresh.Any(n => !claimed.Contains(n))) return Refuse(shape);
        foreach (var v in after.Where(v => old.ContainsKey(v.Name)))
        {
            var was = old[v.Name].Options.ToDictionary(o => o.Key, o => o.Value, StringComparer.Ordinal);
            var values = v.Options.ToDictionary(o => o.Key, o => o.Value, StringComparer.Ordinal);
            var changed = was.Keys.Union(values.Keys).Where(k => !was.TryGetValue(k, out var a) || !values.TryGetValue(k, out var b) || a != b).ToList();
            if (changed.Count == 0) continue;
            if (!registry.TryGet(v.Type!, out var type)) return Refuse($"unknown translator type '{v.Type}'");
            foreach (var (key, value) in values)
            {
                var spec = type.Options.FirstOrDefault(s => s.Name == key);
                if (spec is null) return Refuse($"{v.Type} has no option '{key}'");
                if (spec.Validate(value) is { } why) return Refuse($"volume '{v.Name}' option '{key}': {why}");
            }
            var translator = running.FirstOrDefault(t => t.Name == v.Name);
            if (translator is null) return Refuse($"volume '{v.Name}' is not in the running graph");
            if (translator.CanReconfigure(changed) is { } cannot) return Refuse(cannot);
            options.Add((translator, new TranslatorOptions(type.Options, values)));
            applied.AddRange(changed.Select(k => $"{v.Name}.{k}={(values.TryGetValue(k, out var val) ? val : "(default)")}"));
        }
        return new ReconfigurePlan(null, applied, options, subvolumes, subtrees);
    }

    private static string? ApplyOptions(List<(Translator Translator, TranslatorOptions Options)> plan)
    {
        foreach (var (translator, options) in plan)
        {
            try
            {
                translator.Reconfigure(options);
            }
            catch (ArgumentException e)
            {
                return $"{translator}: {e.Message}";
            }
        }
        return null;
    }
}
