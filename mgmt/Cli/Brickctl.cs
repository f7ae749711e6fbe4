using System.Globalization;
using System.Text.Json;
using Brickfs.Mgmt.Api;
using Brickfs.Mgmt.Model;

namespace Brickfs.Mgmt.Cli;

/// <summary>
/// brickctl: the GlusterFS-style command line over brickfs-mgmtd's API. <see cref="RunAsync"/>
/// is the whole program (Program.cs only passes the console), so tests run the real command
/// code in process. Exit status: 0 success, 1 the request failed, 2 the command line is wrong.
/// Every failure is one line on stderr.
/// </summary>
public sealed class Brickctl
{
    public const int Ok = 0, Failed = 1, Usage = 2;

    private readonly TextWriter _out;
    private readonly TextWriter _err;
    private bool _json;
    private MgmtClient _client = null!;

    private Brickctl(TextWriter stdout, TextWriter stderr)
    {
        _out = stdout;
        _err = stderr;
    }

    private sealed record Command(string Name, string Arguments, string Summary, Func<Brickctl, List<string>, Task<int>> Run);

    private static readonly Command[] Commands =
    [
        new("peer probe", "HOST[:PORT]", "add a node that runs brickfs-mgmtd as a peer", (c, a) => c.PeerProbeAsync(a)),
        new("peer detach", "HOST[:PORT] [force]", "remove a peer", (c, a) => c.PeerDetachAsync(a)),
        new("peer status", "", "list peers and whether they answer", (c, a) => c.PeerStatusAsync(a)),
        new("volume create", "VOL [replica N [arbiter 1]] HOST:/BRICKDIR... [force]", "define a volume; consecutive groups of N bricks form replica sets", (c, a) => c.CreateAsync(a)),
        new("volume start", "VOL [force]", "start the volume's bricks", (c, a) => c.SimpleAsync(a, "start", allowForce: true)),
        new("volume stop", "VOL [force]", "stop the volume's bricks", (c, a) => c.SimpleAsync(a, "stop", allowForce: true)),
        new("volume delete", "VOL", "delete a stopped volume's definition (brick directories are kept)", (c, a) => c.SimpleAsync(a, "delete", allowForce: false)),
        new("volume info", "[VOL]", "show volume definitions", (c, a) => c.InfoAsync(a)),
        new("volume status", "[VOL]", "show each brick's port, pid, online state and free space", (c, a) => c.StatusAsync(a)),
        new("volume list", "", "list volume names", (c, a) => c.ListAsync(a)),
        new("volume set", "VOL KEY VALUE", "set a volume option (see volume get VOL all)", (c, a) => c.SetAsync(a)),
        new("volume get", "VOL [KEY|all]", "show volume options with their values and defaults", (c, a) => c.GetAsync(a)),
        new("volume add-brick", "VOL HOST:/BRICKDIR... [force]", "add bricks (whole replica sets)", (c, a) => c.BricksAsync(a, add: true)),
        new("volume remove-brick", "VOL HOST:/BRICKDIR... start|status|stop|commit|force",
            "remove bricks (whole replica sets): start drains their files to the others, commit removes them; force removes them with their files", (c, a) => c.BricksAsync(a, add: false)),
        new("volume volfile", "VOL [client | brick N]", "print a generated volfile (for mount.brickfs --volfile or brickd --volfile)", (c, a) => c.VolfileAsync(a)),
        new("volume rebalance", "VOL start|status|stop", "fix layouts and move files to their hashed bricks (after add-brick); stop keeps a checkpoint that start resumes", (c, a) => c.RebalanceAsync(a)),
        new("volume heal", "VOL [info|full|split-brain (bigger-file|latest-mtime|source-brick BRICK) PATH]",
            "without a subcommand: heal what the pending-heal indexes list, once; info: pending heals per brick; full: crawl and heal everything", (c, a) => c.HealAsync(a)),
        new("volume bitrot", "VOL enable|disable | scrub status|ondemand | scrub-throttle lazy|normal|aggressive|RATE | scrub-frequency hourly|daily|weekly|monthly|SECONDS | scrub-files-per-second N",
            "per-block checksums verified on read (enable/disable restarts this node's bricks) and the scrubber: status of every brick, an on-demand pass, its rates", (c, a) => c.BitrotAsync(a)),
        new("snapshot create", "SNAP VOL", "take a read-only Btrfs snapshot of every brick of a volume (writes pause while the bricks snap)", (c, a) => c.SnapshotCreateAsync(a)),
        new("snapshot list", "[VOL]", "list snapshots (of one volume)", (c, a) => c.SnapshotListAsync(a)),
        new("snapshot info", "SNAP", "show a snapshot: its volume, time, bricks and whether it is activated", (c, a) => c.SnapshotInfoAsync(a)),
        new("snapshot restore", "SNAP", "roll a stopped volume back to a snapshot (the snapshot stays)", (c, a) => c.SnapshotVerbAsync(a, "restore")),
        new("snapshot delete", "SNAP", "delete a snapshot", (c, a) => c.SnapshotVerbAsync(a, "delete")),
        new("snapshot activate", "SNAP", "serve a snapshot, so mount -t brickfs HOST:/snaps/SNAP/VOL mounts it read-only", (c, a) => c.SnapshotVerbAsync(a, "activate")),
        new("snapshot deactivate", "SNAP", "stop serving a snapshot", (c, a) => c.SnapshotVerbAsync(a, "deactivate")),
    ];

    private const string GlobalUsage = "usage: brickctl [--server HOST[:PORT]] [--json] [--timeout SECONDS] [--secret-file FILE] COMMAND ...";

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, HttpMessageHandler? handler = null)
    {
        var ctl = new Brickctl(stdout, stderr);
        string server = Environment.GetEnvironmentVariable("BRICKFS_SERVER") is { Length: > 0 } env ? env : "localhost";
        double timeout = 60;
        // The node's own secret (install.sh makes it, readable by root only) is used unless another is named.
        string? secretFile = Environment.GetEnvironmentVariable("BRICKFS_SECRET_FILE") is { Length: > 0 } sf ? sf
            : File.Exists(DefaultSecretFile) && CanRead(DefaultSecretFile) ? DefaultSecretFile : null;
        bool help = false;
        var words = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string? inline = a.StartsWith("--") && a.IndexOf('=') is > 0 and var eq ? a[(eq + 1)..] : null;
            string name = inline is null ? a : a[..a.IndexOf('=')];
            string? Value()
            {
                if (inline is not null) return inline;
                return i + 1 < args.Count ? args[++i] : null;
            }
            switch (name)
            {
                case "--json": ctl._json = true; break;
                case "--help" or "-h" or "help" when words.Count == 0 || name != "help": help = true; break;
                case "--server":
                    server = Value() ?? "";
                    if (!MgmtdOptions.TryParseHostPort(server, MgmtdOptions.DefaultPort, out _, out _))
                        return ctl.UsageError($"--server needs HOST[:PORT], not '{server}'");
                    break;
                case "--timeout":
                    if (!double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out timeout) || timeout <= 0)
                        return ctl.UsageError("--timeout needs a number of seconds");
                    break;
                case "--secret-file":
                    secretFile = Value();
                    if (string.IsNullOrEmpty(secretFile)) return ctl.UsageError("--secret-file needs a FILE");
                    break;
                default:
                    if (a.StartsWith("--")) return ctl.UsageError($"unknown option '{a}'");
                    words.Add(a);
                    break;
            }
        }

        var match = words.Count >= 2 ? Commands.FirstOrDefault(c => c.Name == $"{words[0]} {words[1]}") : null;
        if (match is null)
        {
            var group = words.Count > 0 ? words[0] : "";
            bool knownGroup = Commands.Any(c => c.Name.StartsWith(group + " ", StringComparison.Ordinal));
            if (help || words.Count == 0 || (knownGroup && words.Count == 1 && help))
            {
                ctl.PrintHelp(knownGroup ? group : null);
                return words.Count == 0 && !help ? Usage : Ok;
            }
            if (!knownGroup) return ctl.UsageError($"unknown command '{group}' (try brickctl --help)");
            if (words.Count == 1) return ctl.UsageError($"'{group}' needs a subcommand (try brickctl {group} --help)");
            return ctl.UsageError($"unknown command '{group} {words[1]}' (try brickctl {group} --help)");
        }
        if (help)
        {
            stdout.WriteLine($"usage: brickctl {match.Name} {match.Arguments}".TrimEnd());
            stdout.WriteLine($"  {match.Summary}");
            stdout.WriteLine($"global options: [--server HOST[:PORT]] (default localhost:24007, or $BRICKFS_SERVER) [--json] [--timeout SECONDS]");
            return Ok;
        }
        string? secret = null;
        if (secretFile is not null)
        {
            var read = MgmtClient.ReadSecret(secretFile);
            if (!read.Ok) return ctl.UsageError(read.Error!.Message);
            secret = read.Value;
        }
        ctl._client = MgmtClient.Create(server, TimeSpan.FromSeconds(timeout), handler, secret);
        ctl._command = match;
        return await match.Run(ctl, words.Skip(2).ToList());
    }

    public const string DefaultSecretFile = "/etc/brickfs/secret";

    private static bool CanRead(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private Command _command = null!;

    private void PrintHelp(string? group)
    {
        _out.WriteLine(GlobalUsage);
        _out.WriteLine();
        foreach (var c in Commands.Where(c => group is null || c.Name.StartsWith(group + " ", StringComparison.Ordinal)))
            _out.WriteLine($"  {c.Name} {c.Arguments}".TrimEnd() + $"\n      {c.Summary}");
        _out.WriteLine();
        _out.WriteLine("  --server HOST[:PORT]  the brickfs-mgmtd to ask (default localhost:24007, or $BRICKFS_SERVER)");
        _out.WriteLine("  --json                print state as JSON");
        _out.WriteLine("  --timeout SECONDS     give up waiting for mgmtd (default 60)");
        _out.WriteLine("  --secret-file FILE    the shared secret of a brickfs-mgmtd started with --secret-file (default $BRICKFS_SECRET_FILE, else /etc/brickfs/secret)");
        _out.WriteLine("  COMMAND --help        usage of one command");
    }

    private int UsageError(string message)
    {
        _err.WriteLine($"brickctl: {message}");
        return Usage;
    }

    private int WrongArguments(string why) =>
        UsageError($"{_command.Name}: {why}; usage: brickctl {_command.Name} {_command.Arguments}".TrimEnd());

    private int Fail(string what, MgmtError error)
    {
        _err.WriteLine($"{what}: failed: {error.Message}");
        return Failed;
    }


    private void PrintJson<T>(T value) => _out.WriteLine(JsonSerializer.Serialize(value, MgmtJson.Indented));

    /// <summary>Prints success: the JSON of the answer with --json, else GlusterFS's one-line "success".</summary>
    private int Success<T>(T value, string line)
    {
        if (_json) PrintJson(value);
        else _out.WriteLine(line);
        return Ok;
    }

    private static bool TakeForce(List<string> args)
    {
        if (args.Count == 0 || args[^1] != "force") return false;
        args.RemoveAt(args.Count - 1);
        return true;
    }

    private async Task<int> PeerProbeAsync(List<string> a)
    {
        if (a.Count != 1) return WrongArguments("needs one HOST");
        var r = await _client.ProbeAsync(a[0]);
        return r.Ok ? Success(r.Value, "peer probe: success") : Fail("peer probe", r.Error!);
    }

    private async Task<int> PeerDetachAsync(List<string> a)
    {
        bool force = TakeForce(a);
        if (a.Count != 1) return WrongArguments("needs one HOST");
        var r = await _client.DetachAsync(a[0], force);
        return r.Ok ? Success(r.Value, "peer detach: success") : Fail("peer detach", r.Error!);
    }

    private async Task<int> PeerStatusAsync(List<string> a)
    {
        if (a.Count != 0) return WrongArguments("takes no arguments");
        var r = await _client.PeersAsync();
        if (!r.Ok) return Fail("peer status", r.Error!);
        if (_json)
        {
            PrintJson(r.Value);
            return Ok;
        }
        _out.WriteLine($"Number of Peers: {r.Value.Peers.Count}");
        foreach (var p in r.Value.Peers)
        {
            _out.WriteLine();
            _out.WriteLine($"Hostname: {p.Host}{(p.Port == MgmtdOptions.DefaultPort ? "" : $":{p.Port}")}");
            _out.WriteLine($"Uuid: {p.NodeId}");
            _out.WriteLine($"State: Peer in Cluster ({(p.Connected ? "Connected" : "Disconnected")})");
        }
        return Ok;
    }

    private async Task<int> CreateAsync(List<string> a)
    {
        bool force = TakeForce(a);
        if (a.Count < 2) return WrongArguments("needs VOL and at least one brick");
        string vol = a[0];
        int i = 1, replica = 1, arbiter = 0;
        if (i < a.Count && a[i] == "replica")
        {
            if (i + 1 >= a.Count || !int.TryParse(a[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out replica))
                return WrongArguments("replica needs a count");
            i += 2;
            if (i < a.Count && a[i] == "arbiter")
            {
                if (i + 1 >= a.Count || !int.TryParse(a[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out arbiter))
                    return WrongArguments("arbiter needs a count");
                i += 2;
            }
        }
        else if (i < a.Count && a[i] == "arbiter")
        {
            return WrongArguments("arbiter needs replica 3 before it");
        }
        if (i < a.Count && a[i] == "transport")
        {
            if (i + 1 >= a.Count || a[i + 1] != "tcp") return WrongArguments("only transport tcp is supported");
            i += 2;
        }
        var bricks = a.Skip(i).ToList();
        if (bricks.Count == 0) return WrongArguments("needs at least one brick");
        var r = await _client.CreateAsync(new CreateVolumeRequest(vol, bricks, replica, arbiter, force));
        if (!r.Ok) return Fail($"volume create: {vol}", r.Error!);
        if (replica == 2 && !_json)
            _err.WriteLine("warning: replica 2 volumes are prone to split-brain; replica 3 or replica 3 arbiter 1 avoids it");
        return Success(r.Value, $"volume create: {vol}: success: please start the volume to access data");
    }

    private async Task<int> SimpleAsync(List<string> a, string verb, bool allowForce)
    {
        bool force = allowForce && TakeForce(a);
        if (a.Count != 1) return WrongArguments("needs one VOL");
        string vol = a[0];
        var r = verb switch
        {
            "start" => await _client.StartAsync(vol, force),
            "stop" => await _client.StopAsync(vol, force),
            _ => await _client.DeleteAsync(vol),
        };
        return r.Ok ? Success(r.Value, $"volume {verb}: {vol}: success") : Fail($"volume {verb}: {vol}", r.Error!);
    }

    private async Task<int> InfoAsync(List<string> a)
    {
        if (a.Count > 1) return WrongArguments("takes at most one VOL");
        List<VolumeInfo> volumes;
        if (a.Count == 1)
        {
            var one = await _client.VolumeAsync(a[0]);
            if (!one.Ok) return Fail("volume info", one.Error!);
            if (_json)
            {
                PrintJson(one.Value);
                return Ok;
            }
            volumes = [one.Value];
        }
        else
        {
            var all = await _client.VolumesAsync();
            if (!all.Ok) return Fail("volume info", all.Error!);
            if (_json)
            {
                PrintJson(all.Value);
                return Ok;
            }
            volumes = all.Value;
            if (volumes.Count == 0) _out.WriteLine("No volumes present");
        }
        foreach (var v in volumes) _out.Write(FormatInfo(v));
        return Ok;
    }

    /// <summary>The text of `gluster volume info`, field for field where Brickfs has the field.</summary>
    public static string FormatInfo(VolumeInfo v)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append('\n');
        sb.Append($"Volume Name: {v.Name}\n");
        sb.Append($"Type: {v.Type}\n");
        sb.Append($"Volume ID: {v.Id}\n");
        sb.Append($"Status: {v.Status}\n");
        sb.Append($"Number of Bricks: {v.NumberOfBricks}\n");
        sb.Append("Transport-type: tcp\n");
        sb.Append("Bricks:\n");
        foreach (var b in v.Bricks)
            sb.Append($"Brick{b.Index + 1}: {b.Host}:{b.Path}{(b.Arbiter ? " (arbiter)" : "")}\n");
        if (v.Options.Count > 0)
        {
            sb.Append("Options Reconfigured:\n");
            foreach (var (k, val) in v.Options) sb.Append($"{k}: {val}\n");
        }
        return sb.ToString();
    }

    private async Task<int> StatusAsync(List<string> a)
    {
        if (a.Count > 1) return WrongArguments("takes at most one VOL");
        List<string> names;
        if (a.Count == 1)
        {
            names = [a[0]];
        }
        else
        {
            var all = await _client.VolumesAsync();
            if (!all.Ok) return Fail("volume status", all.Error!);
            names = all.Value.Select(v => v.Name).ToList();
        }
        var statuses = new List<VolumeStatusResponse>();
        foreach (var name in names)
        {
            var r = await _client.StatusAsync(name);
            if (!r.Ok) return Fail("volume status", r.Error!);
            statuses.Add(r.Value);
        }
        if (_json)
        {
            if (a.Count == 1) PrintJson(statuses[0]);
            else PrintJson(statuses);
            return Ok;
        }
        if (statuses.Count == 0) _out.WriteLine("No volumes present");
        foreach (var s in statuses)
        {
            _out.WriteLine($"Status of volume: {s.Name} ({s.Status.ToString().ToLowerInvariant()})");
            _out.WriteLine($"{"Brick",-44} {"TCP Port",-9} {"Online",-7} {"Pid",-8} Free");
            _out.WriteLine(new string('-', 78));
            foreach (var b in s.Bricks)
            {
                string online = b.Online is null ? "N/A" : b.Online.Value ? "Y" : "N";
                string pid = b.Pid?.ToString(CultureInfo.InvariantCulture) ?? "N/A";
                string free = b.FreeBytes is { } f ? FormatBytes(f) : "N/A";
                _out.WriteLine($"{$"Brick {b.Host}:{b.Path}",-44} {b.Port,-9} {online,-7} {pid,-8} {free}");
            }
            _out.WriteLine();
        }
        return Ok;
    }

    private static string FormatBytes(long n)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = n;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return string.Create(CultureInfo.InvariantCulture, $"{v:0.#}{units[u]}");
    }

    private async Task<int> ListAsync(List<string> a)
    {
        if (a.Count != 0) return WrongArguments("takes no arguments");
        var r = await _client.VolumesAsync();
        if (!r.Ok) return Fail("volume list", r.Error!);
        if (_json)
        {
            PrintJson(r.Value.Select(v => v.Name).ToList());
            return Ok;
        }
        if (r.Value.Count == 0) _out.WriteLine("No volumes present in cluster");
        foreach (var v in r.Value) _out.WriteLine(v.Name);
        return Ok;
    }

    private async Task<int> SetAsync(List<string> a)
    {
        if (a.Count != 3) return WrongArguments("needs VOL KEY VALUE");
        var r = await _client.SetAsync(a[0], a[1], a[2]);
        return r.Ok ? Success(r.Value, "volume set: success") : Fail($"volume set: {a[0]}", r.Error!);
    }

    private async Task<int> GetAsync(List<string> a)
    {
        if (a.Count is < 1 or > 2) return WrongArguments("needs VOL and optionally KEY or all");
        var r = await _client.OptionsAsync(a[0]);
        if (!r.Ok) return Fail($"volume get: {a[0]}", r.Error!);
        var options = r.Value;
        if (a.Count == 2 && a[1] != "all")
        {
            options = options.Where(o => o.Key == a[1]).ToList();
            if (options.Count == 0) return Fail($"volume get: {a[0]}", MgmtError.Invalid(VolumeOptionTable.UnknownKeyMessage(a[1])));
        }
        if (_json)
        {
            PrintJson(options);
            return Ok;
        }
        _out.WriteLine($"{"Option",-40} Value");
        _out.WriteLine($"{"------",-40} -----");
        foreach (var o in options) _out.WriteLine($"{o.Key,-40} {o.Value ?? "(unset)"}{(o.IsSet ? "" : " (default)")}");
        return Ok;
    }

    private async Task<int> BricksAsync(List<string> a, bool add)
    {
        string verb = add ? "add-brick" : "remove-brick";
        bool force = TakeForce(a);
        if (a.Count >= 2 && a[1] == "replica") return Fail($"volume {verb}: {a[0]}", MgmtError.Invalid("changing the replica count is not available yet"));
        string? command = !add && a.Count > 0 && a[^1] is "start" or "status" or "commit" or "stop" ? a[^1] : null;
        if (command is not null) a.RemoveAt(a.Count - 1);
        if (a.Count < 2) return WrongArguments("needs VOL and at least one brick");
        var request = new BricksRequest(a.Skip(1).ToList(), force, command);
        if (command is "start" or "status" or "stop")
        {
            var t = await _client.RemoveBrickTaskAsync(a[0], request);
            return t.Ok ? Success(t.Value, t.Value.Message) : Fail($"volume {verb}: {a[0]}", t.Error!);
        }
        var r = add ? await _client.AddBricksAsync(a[0], request) : await _client.RemoveBricksAsync(a[0], request);
        return r.Ok ? Success(r.Value, $"volume {verb}: success") : Fail($"volume {verb}: {a[0]}", r.Error!);
    }

    private async Task<int> VolfileAsync(List<string> a)
    {
        int? brick = null;
        if (a.Count == 3 && a[1] == "brick" && int.TryParse(a[2], NumberStyles.None, CultureInfo.InvariantCulture, out int n)) brick = n;
        else if (!(a.Count == 1 || (a.Count == 2 && a[1] == "client"))) return WrongArguments("needs VOL and optionally client or brick N");
        var r = await _client.VolfileAsync(a[0], brick);
        if (!r.Ok) return Fail($"volume volfile: {a[0]}", r.Error!);
        _out.Write(r.Value);
        return Ok;
    }

    private async Task<int> HealAsync(List<string> a)
    {
        if (a.Count < 1) return WrongArguments("needs VOL");
        if (a.Count >= 2 && a[1] is not ("info" or "full" or "split-brain"))
            return WrongArguments($"unknown heal command '{a[1]}'");
        var r = await _client.HealAsync(a[0], new HealRequest(a.Skip(1).ToList(), _json));
        if (!r.Ok) return Fail($"volume heal: {a[0]}", r.Error!);
        _out.Write(r.Value.Output);
        return Ok;
    }

    private async Task<int> BitrotAsync(List<string> a)
    {
        bool valid = a.Count switch
        {
            2 => a[1] is "enable" or "disable",
            3 => a[1] == "scrub" && a[2] is "status" or "ondemand" || a[1] is "scrub-throttle" or "scrub-frequency" or "scrub-files-per-second",
            _ => false,
        };
        if (!valid) return WrongArguments("needs VOL enable|disable, VOL scrub status|ondemand, or VOL scrub-throttle|scrub-frequency|scrub-files-per-second VALUE");
        var r = await _client.BitrotAsync(a[0], string.Join(' ', a.Skip(1)));
        return r.Ok ? Success(r.Value, r.Value.Message) : Fail($"volume bitrot: {a[0]}", r.Error!);
    }

    private async Task<int> RebalanceAsync(List<string> a)
    {
        if (a.Count != 2 || a[1] is not ("start" or "status" or "stop")) return WrongArguments("needs VOL start|status|stop");
        var r = await _client.RebalanceAsync(a[0], a[1]);
        return r.Ok ? Success(r.Value, r.Value.Message) : Fail($"volume rebalance: {a[0]}", r.Error!);
    }

    private async Task<int> SnapshotCreateAsync(List<string> a)
    {
        if (a.Count != 2) return WrongArguments("needs SNAP and VOL");
        var r = await _client.CreateSnapshotAsync(a[0], a[1]);
        if (!r.Ok) return Fail($"snapshot create: {a[0]}", r.Error!);
        return Success(r.Value, string.Create(CultureInfo.InvariantCulture,
            $"snapshot create: success: Snap {a[0]} created successfully (writes paused {r.Value.PausedMilliseconds ?? 0:0} ms)"));
    }

    private async Task<int> SnapshotListAsync(List<string> a)
    {
        if (a.Count > 1) return WrongArguments("takes at most one VOL");
        if (a.Count == 1)
        {
            var v = await _client.VolumeAsync(a[0]);
            if (!v.Ok) return Fail("snapshot list", v.Error!);
        }
        var r = await _client.SnapshotsAsync(a.Count == 1 ? a[0] : null);
        if (!r.Ok) return Fail("snapshot list", r.Error!);
        if (_json)
        {
            PrintJson(r.Value);
            return Ok;
        }
        if (r.Value.Count == 0) _out.WriteLine("No snapshots present");
        foreach (var s in r.Value) _out.WriteLine(s.Name);
        return Ok;
    }

    private async Task<int> SnapshotInfoAsync(List<string> a)
    {
        if (a.Count != 1) return WrongArguments("needs one SNAP");
        var r = await _client.SnapshotAsync(a[0]);
        if (!r.Ok) return Fail("snapshot info", r.Error!);
        if (_json)
        {
            PrintJson(r.Value);
            return Ok;
        }
        var s = r.Value;
        _out.WriteLine($"Snapshot                  : {s.Name}");
        _out.WriteLine($"Snap UUID                 : {s.Id}");
        _out.WriteLine($"Created                   : {s.CreatedAt.ToUniversalTime():yyyy-MM-dd HH:mm:ss} UTC");
        _out.WriteLine($"Origin Volume             : {s.Volume}");
        _out.WriteLine($"Status                    : {(s.Active ? "Started" : "Stopped")}");
        foreach (var b in s.Bricks) _out.WriteLine($"Brick                     : {b.Host}:{b.Path} (of {b.Origin}{(s.Active ? $", port {b.Port}" : "")})");
        return Ok;
    }

    private async Task<int> SnapshotVerbAsync(List<string> a, string verb)
    {
        if (a.Count != 1) return WrongArguments("needs one SNAP");
        var r = verb switch
        {
            "restore" => await _client.RestoreSnapshotAsync(a[0]),
            "delete" => await _client.DeleteSnapshotAsync(a[0]),
            "activate" => await _client.ActivateSnapshotAsync(a[0], true),
            _ => await _client.ActivateSnapshotAsync(a[0], false),
        };
        if (!r.Ok) return Fail($"snapshot {verb}: {a[0]}", r.Error!);
        string line = verb switch
        {
            "restore" => $"snapshot restore: success: Snap {a[0]} restored onto volume {r.Value.Volume}",
            "delete" => $"snapshot delete: {a[0]}: snap removed successfully",
            "activate" => $"snapshot activate: {a[0]}: Snap activated successfully (mount HOST:/snaps/{a[0]}/{r.Value.Volume})",
            _ => $"snapshot deactivate: {a[0]}: Snap deactivated successfully",
        };
        return Success(r.Value, line);
    }
}
