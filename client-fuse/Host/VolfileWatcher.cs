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
/// protocol/client's ping-timeout, cluster/replicate's quorum) is applied in place, between
/// fops, without a remount: open files, locks and leases stay as they are. Any other change
/// (bricks added or removed, an option only a rebuilt translator takes) is logged as needing a
/// remount and not applied; the mount keeps serving with the graph it has. See mgmt/CLUSTER.md for why this is in-place reconfiguration and not a graph switch.
/// </summary>
public sealed class VolfileWatcher(VolumeSource source, IReadOnlyList<string> backups, TranslatorGraph graph, string volfileText, string cachePath, Log log)
{
    /// <summary>How long one poll waits on the server before it answers "unchanged".</summary>
    public static readonly TimeSpan PollWait = TimeSpan.FromSeconds(60);

    /// <summary>How long to wait before the next server after one failed.</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(2);

    private string _text = volfileText;

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
                if (text != _text) Apply(text);
                if (etag is null) await Task.Delay(PollWait, ct); // a server without the long poll: do not spin
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
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
                    return;
                }
            }
        }
    }

    /// <summary>Applies <paramref name="text"/> in place when it can; remembers it either way, so one change is logged once.</summary>
    public void Apply(string text)
    {
        var reason = TryReconfigure(graph, _text, text, out var applied);
        _text = text;
        if (reason is not null)
        {
            log.Warn("volfile.changed-needs-remount", $"volume={source.Volume} reason=\"{reason}\"");
            return;
        }
        log.Info("volfile.reconfigured", $"volume={source.Volume} options=\"{string.Join(" ", applied)}\"");
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
    /// </summary>
    public static string? TryReconfigure(TranslatorGraph graph, string oldText, string newText, out List<string> applied, TranslatorRegistry? registry = null)
    {
        applied = [];
        registry ??= TranslatorRegistry.Builtin;
        IReadOnlyList<VolumeDeclaration> before, after;
        try
        {
            before = VolfileParser.Parse(oldText, "<running volfile>");
            after = VolfileParser.Parse(newText, "<new volfile>");
        }
        catch (VolfileException e)
        {
            return e.Message;
        }
        var old = before.ToDictionary(v => v.Name, StringComparer.Ordinal);
        if (after.Count != before.Count || after.Any(v => !old.TryGetValue(v.Name, out var o) || o.Type != v.Type || !o.Subvolumes.SequenceEqual(v.Subvolumes)))
            return "the graph changed shape (volumes, types or subvolumes differ), which needs a new graph";
        var plan = new List<(Translator Translator, TranslatorOptions Options)>();
        foreach (var v in after)
        {
            var was = old[v.Name].Options.ToDictionary(o => o.Key, o => o.Value, StringComparer.Ordinal);
            var now = v.Options.ToDictionary(o => o.Key, o => o.Value, StringComparer.Ordinal);
            var changed = was.Keys.Union(now.Keys).Where(k => !was.TryGetValue(k, out var a) || !now.TryGetValue(k, out var b) || a != b).ToList();
            if (changed.Count == 0) continue;
            if (!registry.TryGet(v.Type!, out var type)) return $"unknown translator type '{v.Type}'";
            foreach (var (key, value) in now)
            {
                var spec = type.Options.FirstOrDefault(s => s.Name == key);
                if (spec is null) return $"{v.Type} has no option '{key}'";
                if (spec.Validate(value) is { } why) return $"volume '{v.Name}' option '{key}': {why}";
            }
            var translator = graph.All.FirstOrDefault(t => t.Name == v.Name);
            if (translator is null) return $"volume '{v.Name}' is not in the running graph";
            if (translator.CanReconfigure(changed) is { } cannot) return cannot;
            plan.Add((translator, new TranslatorOptions(type.Options, now)));
            applied.AddRange(changed.Select(k => $"{v.Name}.{k}={(now.TryGetValue(k, out var val) ? val : "(default)")}"));
        }
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
