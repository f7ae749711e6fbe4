using System.Globalization;
using System.Text.Json;
using Brickfs.Mgmt.Api;
using Brickfs.Mgmt.Model;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Shd;

/// <summary>
/// brickfs-shd as a program: the daemon, and the heal commands (info, full, split-brain) that
/// move to <c>brickctl volume heal</c> later. <see cref="RunAsync"/> is the whole program
/// (Program.cs passes the console and SIGTERM), so tests run it in process. Exit status: 0
/// success, 1 the work failed, 2 the command line is wrong; every failure is one line on stderr.
/// </summary>
public sealed class ShdCommand
{
    public const int Ok = 0, Failed = 1, Usage = 2;

    public const string UsageText = """
        usage: brickfs-shd (--volfile FILE | --volfile-server HOST[:PORT] --volume VOL) [OPTIONS] [COMMAND]
          the self-heal daemon of a volume: heals what the bricks' pending-heal indexes list

        commands (none: run the daemon until SIGTERM):
          info                                  pending heals per brick; split-brain entries marked
          full                                  crawl the whole volume once and heal what any brick blames or misses
          split-brain bigger-file PATH          resolve a split-brain file: the biggest copy wins
          split-brain latest-mtime PATH         resolve a split-brain file: the latest modified copy wins
          split-brain source-brick BRICK PATH   resolve a split-brain file: BRICK's copy wins (BRICK as info names it)
          rebalance --state-file FILE           fix layouts and move files to their hashed subvolumes (cluster/distribute),
                                                progress and checkpoint in FILE; resumes a stopped run found there

        options:
          --volfile FILE                 the client volfile of the volume
          --volfile-server HOST[:PORT]   fetch the client volfile from brickfs-mgmtd (default port 24007)
          --volume VOL                   the volume to fetch (with --volfile-server)
          --interval SECONDS             seconds between passes of the daemon (default 60)
          --parallel N                   heals in flight at once (default 4)
          --once                         the daemon runs one pass and exits
          --json                         print info, full and split-brain results as JSON
          --timeout SECONDS              give up waiting for brickfs-mgmtd (default 30)
          --state-file FILE              the rebalance state (progress, checkpoint) to keep and resume
          --help                         this text
        """;

    /// <summary>How long commands wait for every brick to connect before they work with those that did.</summary>
    public static TimeSpan ConnectGrace { get; set; } = TimeSpan.FromSeconds(3);

    private readonly TextWriter _out;
    private readonly TextWriter _err;
    private string? _volfile, _server, _volume, _stateFile;
    private int _interval = 60, _parallel = 4;
    private double _timeout = 30;
    private bool _once, _json;
    private readonly List<string> _words = [];

    private ShdCommand(TextWriter stdout, TextWriter stderr)
    {
        _out = stdout;
        _err = stderr;
    }

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, CancellationToken cancellation,
        HttpMessageHandler? handler = null)
    {
        var c = new ShdCommand(stdout, stderr);
        if (c.Parse(args) is { } early) return early;
        string? command = c._words.Count > 0 ? c._words[0] : null;
        switch (command)
        {
            case null when c._json:
                return c.UsageError("--json applies to info, full and split-brain");
            case null or "info" or "full":
                if (c._words.Count > 1) return c.UsageError($"'{command}' takes no arguments");
                break;
            case "split-brain":
                if (c.CheckSplitBrainArguments() is { } bad) return bad;
                break;
            case "rebalance":
                if (c._words.Count > 1) return c.UsageError("'rebalance' takes no arguments");
                if (c._stateFile is null) return c.UsageError("rebalance needs --state-file FILE");
                break;
            default:
                return c.UsageError($"unknown command '{command}' (try brickfs-shd --help)");
        }

        if (c._stateFile is not null && command != "rebalance") return c.UsageError("--state-file goes with rebalance");
        var (graph, error) = await c.LoadGraphAsync(command is null or "full" or "rebalance", handler);
        if (graph is null) return c.Fail(error!);
        await using (graph)
        {
            if (command == "rebalance") return await RebalanceCommand.RunAsync(graph, c._stateFile!, stdout, stderr, cancellation);
            var replicas = SelfHealDaemon.FindReplicas(graph);
            if (replicas.Count == 0) return c.Fail("the volfile has no cluster/replicate translator: nothing to heal");
            var daemon = new SelfHealDaemon(replicas, c._parallel, new ProtocolLog(stderr));
            try
            {
                return command switch
                {
                    null => await c.DaemonAsync(daemon, cancellation),
                    "info" => await c.InfoAsync(graph.Top, replicas, cancellation),
                    "full" => await c.FullAsync(daemon, cancellation),
                    _ => await c.SplitBrainAsync(graph.Top, replicas, cancellation),
                };
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                return c.Fail("interrupted");
            }
        }
    }

    /// <summary>Reads the options; an exit status when the program should stop (help, or a usage error).</summary>
    private int? Parse(IReadOnlyList<string> args)
    {
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string? inline = a.StartsWith("--", StringComparison.Ordinal) && a.IndexOf('=') is > 0 and var eq ? a[(eq + 1)..] : null;
            string name = inline is null ? a : a[..a.IndexOf('=')];
            string? Value() => inline ?? (i + 1 < args.Count ? args[++i] : null);
            switch (name)
            {
                case "--help" or "-h":
                    _out.WriteLine(UsageText);
                    return Ok;
                case "--volfile":
                    if ((_volfile = Value()) is null) return UsageError("--volfile needs a FILE");
                    break;
                case "--volfile-server":
                    _server = Value();
                    if (_server is null || !MgmtdOptions.TryParseHostPort(_server, MgmtdOptions.DefaultPort, out _, out _))
                        return UsageError($"--volfile-server needs HOST[:PORT]{(_server is null ? "" : $", not '{_server}'")}");
                    break;
                case "--volume":
                    if ((_volume = Value()) is null) return UsageError("--volume needs a volume name");
                    break;
                case "--interval":
                    if (!int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out _interval) || _interval < 1)
                        return UsageError("--interval needs a whole number of seconds, at least 1");
                    break;
                case "--parallel":
                    if (!int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out _parallel) || _parallel is < 1 or > 1024)
                        return UsageError("--parallel needs a number from 1 to 1024");
                    break;
                case "--timeout":
                    if (!double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out _timeout) || _timeout <= 0)
                        return UsageError("--timeout needs a number of seconds");
                    break;
                case "--state-file":
                    if ((_stateFile = Value()) is null) return UsageError("--state-file needs a FILE");
                    break;
                case "--once": _once = true; break;
                case "--json": _json = true; break;
                default:
                    if (a.StartsWith('-')) return UsageError($"unknown option '{a}'");
                    _words.Add(a);
                    break;
            }
        }
        if (_volfile is not null && _server is not null) return UsageError("give --volfile or --volfile-server, not both");
        if (_volfile is null && _server is null) return UsageError("needs --volfile FILE or --volfile-server HOST[:PORT] --volume VOL");
        if (_server is not null && _volume is null) return UsageError("--volfile-server needs --volume VOL");
        if (_volume is not null && _server is null) return UsageError("--volume goes with --volfile-server");
        if (_once && _words.Count > 0) return UsageError("--once applies to the daemon, not to a command");
        return null;
    }

    private int? CheckSplitBrainArguments()
    {
        if (_words.Count < 2) return UsageError("split-brain needs bigger-file PATH, latest-mtime PATH or source-brick BRICK PATH");
        int want = _words[1] switch { "bigger-file" or "latest-mtime" => 3, "source-brick" => 4, _ => -1 };
        if (want < 0) return UsageError($"unknown split-brain policy '{_words[1]}' (bigger-file, latest-mtime or source-brick)");
        if (_words.Count != want) return UsageError(want == 3 ? $"split-brain {_words[1]} needs one PATH" : "split-brain source-brick needs BRICK PATH");
        if (!_words[^1].StartsWith('/')) return UsageError($"PATH is a path inside the volume starting with /, not '{_words[^1]}'");
        return null;
    }

    private async Task<(TranslatorGraph?, string?)> LoadGraphAsync(bool logConnections, HttpMessageHandler? handler)
    {
        string text, name;
        if (_volfile is not null)
        {
            try
            {
                text = await File.ReadAllTextAsync(_volfile);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return (null, $"cannot read {_volfile}: {e.Message}");
            }
            name = _volfile;
        }
        else
        {
            var client = MgmtClient.Create(_server!, TimeSpan.FromSeconds(_timeout), handler);
            var r = await client.VolfileAsync(_volume!);
            if (!r.Ok) return (null, r.Error!.Message);
            text = r.Value;
            name = $"{client.Server}/{_volume}";
        }
        TranslatorGraph graph;
        try
        {
            graph = GraphBuilder.BuildText(text, name);
        }
        catch (VolfileException e)
        {
            return (null, e.Message);
        }
        // The commands print their own result; the protocol's connection lines would only clutter it.
        var log = new ProtocolLog(logConnections ? _err : TextWriter.Null);
        foreach (var c in graph.All.OfType<ProtocolClientTranslator>()) c.Log = log;
        try
        {
            await graph.InitAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException)
        {
            await graph.DisposeAsync();
            return (null, $"{name}: {e.Message}");
        }
        // A brick whose first connection attempt failed (busy, or just restarted) gets a few
        // seconds of retries, so info does not report a brick down that answers a moment later;
        // a brick that is really down costs this much once.
        var clients = graph.All.OfType<ProtocolClientTranslator>().ToList();
        var deadline = DateTime.UtcNow + ConnectGrace;
        while (clients.Any(c => !c.IsConnected) && DateTime.UtcNow < deadline) await Task.Delay(50);
        return (graph, null);
    }

    // ---- daemon ------------------------------------------------------------------------------

    private async Task<int> DaemonAsync(SelfHealDaemon daemon, CancellationToken cancellation)
    {
        if (_once)
        {
            var s = await daemon.RunPassAsync(cancellation);
            _out.WriteLine($"heal pass: {s}");
            return Ok;
        }
        // Under systemd (Type=notify): started once the volfile is loaded and the bricks were tried.
        Brickfs.Mgmt.Node.SystemdNotify.Send("READY=1");
        await daemon.RunAsync(TimeSpan.FromSeconds(_interval), cancellation);
        Brickfs.Mgmt.Node.SystemdNotify.Send("STOPPING=1");
        return Ok;
    }

    private async Task<int> FullAsync(SelfHealDaemon daemon, CancellationToken cancellation)
    {
        var s = await daemon.RunFullCrawlAsync(cancellation);
        if (_json) _out.WriteLine(JsonSerializer.Serialize(s, MgmtJson.Indented));
        else _out.WriteLine($"full heal: {s}");
        return Ok;
    }

    // ---- info --------------------------------------------------------------------------------

    /// <summary>One pending entry: its GFID and, where the walk of the volume found it, its path (else null).</summary>
    public sealed record InfoEntry(string Gfid, bool SplitBrain, string? Stale, string? Path);
    public sealed record InfoBrick(string Brick, string Status, bool Connected, List<InfoEntry> Entries);
    public sealed record InfoReplica(string Replica, List<InfoBrick> Bricks, List<SplitBrainEntry> SplitBrain);
    public sealed record SplitBrainEntry(string Gfid, string Kind, string? Parent, string? Name, string Detail)
    {
        /// <summary>The file's path (for a GFID mismatch: the name's), where the walk found it; else null.</summary>
        public string? Path { get; init; }
    }

    /// <summary>
    /// GlusterFS's <c>heal info</c>: per brick its pending entries (paths where a walk of the
    /// volume finds them, see <see cref="PathResolver"/>; those in split-brain marked), its status
    /// and count.
    /// </summary>
    private async Task<int> InfoAsync(Translator top, IReadOnlyList<ReplicateTranslator> replicas, CancellationToken cancellation)
    {
        var found = new List<(ReplicateTranslator Replica, IReadOnlyList<ChildPending> ByChild, Dictionary<Gfid, HealStatus> Status)>();
        foreach (var r in replicas)
        {
            var byChild = await r.ListPendingByChildAsync(cancellation);
            var status = new Dictionary<Gfid, HealStatus>();
            foreach (var g in byChild.SelectMany(c => c.Pending).Distinct()) status[g] = await r.InspectAsync(g, cancellation);
            found.Add((r, byChild, status));
        }
        var splitBrain = replicas.SelectMany(r => r.ListSplitBrain()).ToList();
        var paths = await PathResolver.ResolveAsync(top,
            found.SelectMany(f => f.Status.Keys).Concat(splitBrain.Select(s => s.Parent ?? s.Gfid)), cancellation);
        string? PathOf(Gfid g) => paths.TryGetValue(g, out var p) ? p : null;
        var report = new List<InfoReplica>();
        foreach (var (r, byChild, status) in found)
        {
            var bricks = byChild.Select(c => new InfoBrick(c.Child,
                c.Error == Errno.None ? "Connected" : Describe(c.Error), c.Error == Errno.None,
                [.. c.Pending.Select(g => new InfoEntry(g.ToString(), status[g].SplitBrain != SplitBrainKind.None,
                    status[g].Stale.Count > 0 ? string.Join(",", status[g].Stale) : null, PathOf(g)))])).ToList();
            var split = r.ListSplitBrain().Select(s => new SplitBrainEntry(s.Gfid.ToString(), s.Kind.ToString(), s.Parent?.ToString(), s.Name, s.Detail)
            {
                Path = s.Parent is { } parent ? PathOf(parent) is { } pp ? (pp == "/" ? "" : pp) + "/" + s.Name : null : PathOf(s.Gfid),
            }).ToList();
            report.Add(new InfoReplica(r.Name, bricks, split));
        }
        if (_json)
        {
            _out.WriteLine(JsonSerializer.Serialize(report, MgmtJson.Indented));
            return Ok;
        }
        foreach (var rep in report)
        {
            foreach (var b in rep.Bricks)
            {
                _out.WriteLine($"Brick {b.Brick}");
                foreach (var e in b.Entries) _out.WriteLine((e.Path ?? Show(e.Gfid)) + (e.SplitBrain ? " - Is in split-brain" : ""));
                if (b.Entries.Count > 0) _out.WriteLine();
                _out.WriteLine($"Status: {b.Status}");
                _out.WriteLine($"Number of entries: {(b.Connected ? b.Entries.Count.ToString(CultureInfo.InvariantCulture) : "-")}");
                _out.WriteLine();
            }
            _out.WriteLine($"Split-brain entries of {rep.Replica}: {rep.SplitBrain.Count}");
            foreach (var s in rep.SplitBrain)
            {
                _out.WriteLine(s.Name is null ? $"{s.Path ?? Show(s.Gfid)} ({s.Kind.ToLowerInvariant()})" : $"{s.Path ?? $"<gfid:{s.Parent}>/{s.Name}"} (gfid mismatch)");
            }
            _out.WriteLine();
        }
        return Ok;
    }

    private static string Show(string gfid) => gfid == Gfid.Root.ToString() ? "/" : $"<gfid:{gfid}>";

    private static string Describe(Errno e) => e switch
    {
        Errno.ENOTCONN => "Transport endpoint is not connected",
        _ => $"not answering ({e})",
    };

    // ---- split-brain ---------------------------------------------------------------------------

    private async Task<int> SplitBrainAsync(Translator top, IReadOnlyList<ReplicateTranslator> replicas, CancellationToken cancellation)
    {
        var policy = _words[1] switch
        {
            "bigger-file" => SplitBrainPolicy.BiggerFile,
            "latest-mtime" => SplitBrainPolicy.LatestMtime,
            _ => SplitBrainPolicy.SourceBrick,
        };
        string? brick = policy == SplitBrainPolicy.SourceBrick ? _words[2] : null;
        string path = _words[^1];
        var ctx = new FopContext { Uid = 0, Gid = 0, ClientId = "brickfs-shd", Cancellation = cancellation };
        var gfid = Gfid.Root;
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var r = await top.LookupAsync(ctx, gfid, part);
            if (r.Error == Errno.EIO) return Fail($"{path}: '{part}' has different GFIDs on the bricks; resolve its directory instead");
            if (!r.Ok) return Fail($"{path}: {(r.Error == Errno.ENOENT ? "No such file or directory" : r.Error.ToString())}");
            gfid = r.Value.Gfid;
        }
        foreach (var r in replicas)
        {
            var st = await r.InspectAsync(gfid, cancellation);
            if (st.Error != Errno.None) continue;
            if (st.SplitBrain == SplitBrainKind.None) return Fail($"{path}: not in split-brain");
            if (brick is not null && !r.Children.Any(c => c.Name == brick))
                return Fail($"{path}: no brick '{brick}' in {r.Name} (its bricks: {string.Join(", ", r.Children.Select(c => c.Name))})");
            var result = await r.ResolveSplitBrainAsync(gfid, policy, brick, cancellation);
            if (result.Outcome != HealOutcome.Healed) return Fail($"{path}: not resolved: {result.Detail ?? result.Outcome.ToString()}");
            if (_json) _out.WriteLine(JsonSerializer.Serialize(new { path, gfid = gfid.ToString(), source = result.Detail, sinks = result.Sinks, healed = result.Healed.ToString() }, MgmtJson.Indented));
            else _out.WriteLine($"Healed {path} ({result.Detail}; overwrote {string.Join(",", result.Sinks)})");
            return Ok;
        }
        return Fail($"{path}: no replica set holds it");
    }

    private int UsageError(string message)
    {
        _err.WriteLine($"brickfs-shd: {message}");
        return Usage;
    }

    private int Fail(string message)
    {
        _err.WriteLine($"brickfs-shd: {message}");
        return Failed;
    }
}
