using System.Text.Json;
using Brickfs.Mgmt.Model;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Mgmt;

/// <summary>brickctl's real code against an in-process brickfs-mgmtd over HTTP.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class MgmtApiTests
{
    private MgmtdHarness _d = null!;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);

    [SetUp]
    public async Task SetUp() => _d = await MgmtdHarness.StartAsync();

    [TearDown]
    public async Task TearDown() => await _d.DisposeAsync();

    private string Brick(string name) => $"node1:{Path.Combine(_d.Root, name)}";

    private async Task<CtlRun> Ok(params string[] args)
    {
        var r = await _d.CtlAsync(args);
        Assert.That(r.Exit, Is.EqualTo(0), r.ToString());
        return r;
    }

    private async Task<string> Refused(int exit, params string[] args)
    {
        var r = await _d.CtlAsync(args);
        Assert.That(r.Exit, Is.EqualTo(exit), r.ToString());
        Assert.That(r.Out, Is.Empty, r.ToString());
        Assert.That(r.Err.TrimEnd('\n'), Does.Not.Contain("\n"), "one line");
        return r.Err.TrimEnd('\n');
    }

    [Test]
    public async Task Create_info_set_get_and_delete_a_volume()
    {
        var created = await Ok("volume", "create", "gv0", "replica", "3", "arbiter", "1", "node2:/x/b1", "node3:/x/b1", "node4:/x/b1");
        Assert.That(created.Out, Is.EqualTo("volume create: gv0: success: please start the volume to access data\n"));
        await Ok("volume", "set", "gv0", "network.ping-timeout", "10");

        var info = await Ok("volume", "info", "gv0");
        var id = (await _d.Host.Store.ReadAsync()).FindVolume("gv0")!.Id;
        Assert.That(info.Out, Is.EqualTo($"""

            Volume Name: gv0
            Type: Replicate
            Volume ID: {id}
            Status: Created
            Number of Bricks: 1 x (2 + 1) = 3
            Transport-type: tcp
            Bricks:
            Brick1: node2:/x/b1
            Brick2: node3:/x/b1
            Brick3: node4:/x/b1 (arbiter)
            Options Reconfigured:
            network.ping-timeout: 10

            """));

        var get = await Ok("volume", "get", "gv0", "all");
        Assert.That(get.Out, Does.Contain("network.ping-timeout                     10\n").And.Contain("cluster.quorum-type                      auto (default)\n"));

        Assert.That((await Ok("volume", "list")).Out, Is.EqualTo("gv0\n"));
        Assert.That((await Ok("volume", "delete", "gv0")).Out, Is.EqualTo("volume delete: gv0: success\n"));
        Assert.That((await Ok("volume", "info")).Out, Is.EqualTo("No volumes present\n"));
    }

    [Test]
    public async Task Json_output_has_the_documented_shape()
    {
        await Ok("volume", "create", "dr", "replica", "2", "node1:/x/a", "node2:/x/a", "node1:/x/b", "node2:/x/b", "force");
        using var info = JsonDocument.Parse((await Ok("--json", "volume", "info", "dr")).Out);
        var v = info.RootElement;
        Assert.That(v.GetProperty("name").GetString(), Is.EqualTo("dr"));
        Assert.That(v.GetProperty("type").GetString(), Is.EqualTo("Distributed-Replicate"));
        Assert.That(v.GetProperty("status").GetString(), Is.EqualTo("created"));
        Assert.That(v.GetProperty("replicaCount").GetInt32(), Is.EqualTo(2));
        Assert.That(v.GetProperty("numberOfBricks").GetString(), Is.EqualTo("2 x 2 = 4"));
        var bricks = v.GetProperty("bricks").EnumerateArray().ToList();
        Assert.That(bricks.Select(b => $"{b.GetProperty("host").GetString()}:{b.GetProperty("path").GetString()}:{b.GetProperty("port").GetInt32()}"),
            Is.EqualTo(new[] { "node1:/x/a:49152", "node2:/x/a:49152", "node1:/x/b:49153", "node2:/x/b:49153" }));
        Assert.That(v.GetProperty("options").EnumerateObject(), Is.Empty);

        using var all = JsonDocument.Parse((await Ok("volume", "info", "--json")).Out);
        Assert.That(all.RootElement.ValueKind, Is.EqualTo(JsonValueKind.Array), "info without VOL is a list");

        using var status = JsonDocument.Parse((await Ok("--json", "volume", "status", "dr")).Out);
        var first = status.RootElement.GetProperty("bricks")[0];
        Assert.That(first.EnumerateObject().Select(p => p.Name),
            Is.EqualTo(new[] { "index", "host", "path", "port", "local", "pid", "online", "freeBytes", "restarts" }));
        var remote = status.RootElement.GetProperty("bricks")[1];
        Assert.That(remote.GetProperty("local").GetBoolean(), Is.False);
        Assert.That(remote.GetProperty("online").ValueKind, Is.EqualTo(JsonValueKind.Null), "another node's brick state is unknown here");

        using var options = JsonDocument.Parse((await Ok("--json", "volume", "get", "dr", "network.ping-timeout")).Out);
        var o = options.RootElement.EnumerateArray().Single();
        Assert.That(o.GetProperty("key").GetString(), Is.EqualTo("network.ping-timeout"));
        Assert.That(o.GetProperty("value").GetString(), Is.EqualTo("42"));
        Assert.That(o.GetProperty("isSet").GetBoolean(), Is.False);
        Assert.That(o.GetProperty("affects").GetString(), Is.EqualTo("client"));
    }

    [Test]
    public async Task Volume_start_spawns_brickd_for_this_nodes_bricks_and_stop_stops_them()
    {
        await Ok("volume", "create", "gv0", "replica", "2", Brick("b1"), "node2:/x/b1", Brick("b2"), "node2:/x/b2", "force");
        Assert.That((await Ok("volume", "start", "gv0")).Out, Is.EqualTo("volume start: gv0: success\n"));

        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 2, "two local bricks started");
        var runs = _d.BrickdRuns();
        var vols = Path.Combine(_d.StateDir, "vols", "gv0");
        Assert.That(runs.Select(r => r.Args), Is.EquivalentTo(new[] { 0, 2 }.Select(n =>
            $"--volfile {vols}/gv0-brick-{n}.vol --log-file {_d.StateDir}/logs/bricks/gv0-brick-{n}.log --pid-file {_d.StateDir}/run/gv0-brick-{n}.pid")));
        Assert.That(File.ReadAllText(Path.Combine(vols, "gv0-brick-2.vol")), Does.Contain($"option directory {_d.Root}/b2\n"));
        Assert.That(Directory.Exists(Path.Combine(_d.Root, "b1")), "start creates local brick directories");
        Assert.That(File.Exists(Path.Combine(vols, "gv0-brick-1.vol")), Is.False, "node2's brick volfile is node2's business");

        await Eventually.HoldsAsync(Deadline, async () => (await _d.Host.Volumes.StatusAsync("gv0", default)).Value.Bricks.Count(b => b.Online == true) == 2, "status shows both online");
        var status = (await _d.Host.Volumes.StatusAsync("gv0", default)).Value;
        Assert.That(status.Bricks.Where(b => b.Local).Select(b => b.Pid!.Value), Is.EquivalentTo(runs.Select(r => r.Pid)));
        var text = (await Ok("volume", "status", "gv0")).Out;
        Assert.That(text, Does.Contain($"Brick node1:{_d.Root}/b1").And.Contain("Brick node2:/x/b1"));

        Assert.That(await Refused(1, "volume", "start", "gv0"), Is.EqualTo("volume start: gv0: failed: volume gv0 is already started"));
        Assert.That(await Refused(1, "volume", "delete", "gv0"), Is.EqualTo("volume delete: gv0: failed: volume gv0 is started; stop it first"));

        Assert.That((await Ok("volume", "stop", "gv0")).Out, Is.EqualTo("volume stop: gv0: success\n"));
        foreach (var (pid, _) in runs) Assert.That(MgmtdHarness.Alive(pid), Is.False, $"brickd {pid} stopped when stop returned");
        Assert.That((await _d.Host.Volumes.StatusAsync("gv0", default)).Value.Bricks.Where(b => b.Local).Select(b => b.Online), Is.All.False);
    }

    [Test]
    public async Task A_brick_option_set_on_a_started_volume_restarts_its_brick_on_the_new_volfile_and_a_client_option_does_not()
    {
        await Ok("volume", "create", "v", Brick("b1"), "force");
        await Ok("volume", "start", "v");
        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 1, "brick started");
        string volfile = Path.Combine(_d.StateDir, "vols", "v", "v-brick-0.vol");
        Assert.That(File.ReadAllText(volfile), Does.Not.Contain("features/bitrot"));

        await Ok("volume", "set", "v", "network.ping-timeout", "5");
        Assert.That(_d.BrickdRuns(), Has.Count.EqualTo(1), "a client option leaves the brick alone");
        Assert.That(MgmtdHarness.Alive(_d.BrickdRuns()[0].Pid), Is.True);

        await Ok("volume", "set", "v", "features.bitrot", "on");
        Assert.That(File.ReadAllText(volfile), Does.Contain("type features/bitrot"));
        Assert.That(MgmtdHarness.Alive(_d.BrickdRuns()[0].Pid), Is.False, "the brick on the old volfile stopped when set returned");
        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 2, "the brick runs again, on the new volfile");
    }

    [Test]
    public async Task A_client_volfile_long_poll_answers_when_the_volfile_changes()
    {
        await Ok("volume", "create", "v", Brick("b1"), "force");
        using var http = new HttpClient { BaseAddress = new Uri($"http://{_d.Server}/api/v1/"), Timeout = TimeSpan.FromSeconds(30) };
        using var first = await http.GetAsync("volumes/v/volfile?kind=client");
        var etag = first.Headers.ETag!.ToString();
        Assert.That(await first.Content.ReadAsStringAsync(), Does.Contain("option ping-timeout 42"));

        using var same = new HttpRequestMessage(HttpMethod.Get, "volumes/v/volfile?kind=client&wait=0");
        same.Headers.TryAddWithoutValidation("If-None-Match", etag);
        Assert.That((await http.SendAsync(same)).StatusCode, Is.EqualTo(System.Net.HttpStatusCode.NotModified), "unchanged: 304");

        using var poll = new HttpRequestMessage(HttpMethod.Get, "volumes/v/volfile?kind=client&wait=25");
        poll.Headers.TryAddWithoutValidation("If-None-Match", etag);
        var waiting = http.SendAsync(poll);
        await Ok("volume", "set", "v", "network.ping-timeout", "5");
        using var changed = await waiting;
        Assert.That(changed.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.OK));
        Assert.That(await changed.Content.ReadAsStringAsync(), Does.Contain("option ping-timeout 5"));
        Assert.That(changed.Headers.ETag!.ToString(), Is.Not.EqualTo(etag));
    }

    [Test]
    public async Task A_brickd_that_dies_is_restarted()
    {
        await Ok("volume", "create", "v", Brick("b1"), "force");
        await Ok("volume", "start", "v");
        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 1, "brick started");
        int first = _d.BrickdRuns()[0].Pid;
        System.Diagnostics.Process.GetProcessById(first).Kill();

        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 2, "brick restarted after it died");
        int second = _d.BrickdRuns()[1].Pid;
        await Eventually.HoldsAsync(Deadline, async () => (await _d.Host.Volumes.StatusAsync("v", default)).Value.Bricks[0] is { Online: true } b && b.Pid == second,
            "status reports the new pid");
        Assert.That((await _d.Host.Volumes.StatusAsync("v", default)).Value.Bricks[0].Restarts, Is.EqualTo(1));
    }

    [Test]
    public async Task A_restarted_mgmtd_remembers_volumes_and_starts_the_started_ones()
    {
        await Ok("volume", "create", "v", Brick("b1"), "force");
        await Ok("volume", "create", "idle", Brick("b2"), "force");
        await Ok("volume", "start", "v");
        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 1, "brick started");

        await _d.RestartAsync();
        Assert.That(MgmtdHarness.Alive(_d.BrickdRuns()[0].Pid), Is.False, "stopping mgmtd stops its bricks");
        await Eventually.HoldsAsync(Deadline, () => _d.BrickdRuns().Count == 2, "the started volume's brick runs again");
        Assert.That(_d.BrickdRuns()[1].Args, Does.Contain("v-brick-0.vol"));
        Assert.That((await Ok("volume", "list")).Out, Is.EqualTo("v\nidle\n"));
    }

    [Test]
    public async Task Volfiles_are_served_for_mounts_and_bricks()
    {
        await Ok("volume", "create", "v", "replica", "2", "node2:/x/a", "node3:/x/a");
        var def = (await _d.Host.Store.ReadAsync()).FindVolume("v")!;
        using var http = new HttpClient { BaseAddress = _d.Host.Address };
        Assert.That(await http.GetStringAsync("/api/v1/volumes/v/volfile?kind=client"), Is.EqualTo(Brickfs.Mgmt.Volgen.Volgen.ClientVolfile(def)));
        Assert.That(await http.GetStringAsync("/api/v1/volumes/v/volfile?kind=brick&brick=1"), Is.EqualTo(Brickfs.Mgmt.Volgen.Volgen.BrickVolfile(def, 1)));
        Assert.That((await Ok("volume", "volfile", "v")).Out, Is.EqualTo(Brickfs.Mgmt.Volgen.Volgen.ClientVolfile(def)));

        var bad = await http.GetAsync("/api/v1/volumes/v/volfile?kind=brick&brick=2");
        Assert.That((int)bad.StatusCode, Is.EqualTo(400));
        Assert.That(await bad.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"kind=brick needs brick=N with N in 0..1\"}"));
        Assert.That((int)(await http.GetAsync("/api/v1/volumes/nope/volfile")).StatusCode, Is.EqualTo(404));
    }

    [Test]
    public async Task Add_brick_and_remove_brick_change_the_layout_in_whole_replica_sets()
    {
        await Ok("volume", "create", "v", "replica", "2", "node3:/x/a", "node2:/x/a");
        Assert.That(await Refused(1, "volume", "add-brick", "v", "node3:/x/b"), Is.EqualTo("volume add-brick: v: failed: 1 bricks is not a multiple of the replica count 2"));
        Assert.That((await Ok("volume", "add-brick", "v", "node3:/x/b", "node2:/x/b")).Out, Is.EqualTo("volume add-brick: success\n"));
        var info = (await Ok("volume", "info", "v")).Out;
        Assert.That(info, Does.Contain("Type: Distributed-Replicate\n").And.Contain("Number of Bricks: 2 x 2 = 4\n").And.Contain("Brick4: node2:/x/b\n"));

        Assert.That(await Refused(1, "volume", "remove-brick", "v", "node3:/x/a"), Does.Contain("remove whole replica sets"));
        Assert.That(await Refused(1, "volume", "remove-brick", "v", "node3:/x/a", "node2:/x/a"), Does.Contain("drain them first with remove-brick ... start").And.Contain("force"));
        Assert.That(await Refused(1, "volume", "remove-brick", "v", "node3:/x/a", "node2:/x/a", "commit"), Does.Contain("the bricks were not drained"));
        Assert.That(await Refused(1, "volume", "remove-brick", "v", "node3:/x/a", "node2:/x/a", "status"), Does.Contain("those bricks of volume v are not being removed"));
        Assert.That(await Refused(1, "volume", "remove-brick", "v", "node3:/x/a", "node2:/x/a", "start"), Does.Contain("volume v is not started"));
        await Ok("volume", "remove-brick", "v", "node3:/x/a", "node2:/x/a", "force");
        var after = (await _d.Host.Store.ReadAsync()).FindVolume("v")!;
        Assert.That(after.Bricks.Select(b => (b.Spec, b.Number)), Is.EqualTo(new[] { ("node3:/x/b", 2), ("node2:/x/b", 3) }));
        Assert.That(after.Layout, Is.EqualTo(VolumeLayout.Replicate));
    }

    [Test]
    public async Task Bad_requests_fail_with_one_line_and_change_nothing()
    {
        await Ok("volume", "create", "v", "replica", "3", "node1:/x/a", "node2:/x/a", "node3:/x/a", "force");
        var before = await File.ReadAllTextAsync(Path.Combine(_d.StateDir, "state.json"));

        Assert.That(await Refused(1, "volume", "start", "nope"), Is.EqualTo("volume start: nope: failed: volume nope does not exist"));
        Assert.That(await Refused(1, "volume", "info", "nope"), Is.EqualTo("volume info: failed: volume nope does not exist"));
        Assert.That(await Refused(1, "volume", "set", "v", "network.ping-timeout", "soon"), Is.EqualTo("volume set: v: failed: network.ping-timeout: 'soon' is not a number of seconds"));
        Assert.That(await Refused(1, "volume", "set", "v", "cluster.quorum-typo", "auto"), Does.Contain("did you mean cluster.quorum-type"));
        Assert.That(await Refused(1, "volume", "create", "w", "node2:/y/a", "node2:/y/a"), Is.EqualTo("volume create: w: failed: brick node2:/y/a is given twice"));
        Assert.That(await Refused(1, "volume", "create", "w", "node1:/x/a/deeper", "force"), Does.Contain("is inside brick node1:/x/a of volume v"));
        Assert.That(await Refused(1, "volume", "create", "w", "replica", "2", "node2:/y/a", "node2:/y/b"), Does.Contain("same host"));
        Assert.That(await Refused(1, "volume", "create", "v", "node2:/y/a"), Is.EqualTo("volume create: v: failed: volume v already exists"));
        Assert.That(await Refused(1, "volume", "stop", "v"), Is.EqualTo("volume stop: v: failed: volume v is not started"));
        Assert.That(await Refused(1, "peer", "detach", "node9"), Is.EqualTo("peer detach: failed: node9 is not a peer"));

        Assert.That(await File.ReadAllTextAsync(Path.Combine(_d.StateDir, "state.json")), Is.EqualTo(before), "refused requests store nothing");
    }

    [Test]
    public async Task Command_line_mistakes_exit_2_and_commands_on_an_unknown_volume_name_it()
    {
        Assert.That(await Refused(2, "volume", "create", "v"), Does.StartWith("brickctl: volume create: needs VOL and at least one brick; usage: brickctl volume create VOL [replica N [arbiter 1]]"));
        Assert.That(await Refused(2, "volume", "create", "v", "replica", "x", "n:/a"), Does.Contain("replica needs a count"));
        Assert.That(await Refused(2, "volume", "set", "v", "k"), Does.Contain("needs VOL KEY VALUE"));
        Assert.That(await Refused(2, "volume", "frobnicate"), Is.EqualTo("brickctl: unknown command 'volume frobnicate' (try brickctl volume --help)"));
        Assert.That(await Refused(2, "dance"), Is.EqualTo("brickctl: unknown command 'dance' (try brickctl --help)"));
        Assert.That(await Refused(2, "--colour", "volume", "list"), Is.EqualTo("brickctl: unknown option '--colour'"));
        foreach (var cmd in new[] { new[] { "volume", "heal", "v", "info" }, ["volume", "rebalance", "v", "start"], ["volume", "bitrot", "v", "scrub", "status"], ["snapshot", "create", "s", "v"] })
            Assert.That(await Refused(1, cmd), Does.EndWith(": failed: volume v does not exist"), string.Join(' ', cmd));
    }

    [Test]
    public async Task Every_command_has_help()
    {
        var top = await Ok("--help");
        Assert.That(top.Out, Does.StartWith("usage: brickctl [--server HOST[:PORT]] [--json]"));
        foreach (var cmd in new[] { "peer probe", "peer detach", "peer status", "volume create", "volume start", "volume stop", "volume delete",
                     "volume info", "volume status", "volume set", "volume get", "volume add-brick", "volume remove-brick", "volume rebalance",
                     "volume heal", "volume bitrot", "snapshot create", "snapshot list", "snapshot restore", "snapshot delete" })
        {
            Assert.That(top.Out, Does.Contain($"  {cmd}"), cmd);
            var one = await Ok([.. cmd.Split(' '), "--help"]);
            Assert.That(one.Out, Does.StartWith($"usage: brickctl {cmd}"), cmd);
        }
        Assert.That((await Ok("volume", "--help")).Out, Does.Contain("volume create").And.Not.Contain("peer probe"));
    }

    [Test]
    public async Task An_unreachable_server_is_one_line_naming_it()
    {
        var r = await MgmtdHarness.RunCtlAsync("--server", "127.0.0.1:1", "--timeout", "5", "volume", "list");
        Assert.That(r.Exit, Is.EqualTo(1));
        Assert.That(r.Err, Does.StartWith("volume list: failed: cannot reach brickfs-mgmtd at 127.0.0.1:1:"));
        Assert.That(r.Err.TrimEnd('\n'), Does.Not.Contain("\n"));
    }

    [Test]
    public async Task Peer_probe_records_a_live_mgmtd_and_detach_removes_it()
    {
        await using var other = await MgmtdHarness.StartAsync();
        Assert.That((await Ok("peer", "probe", other.Server)).Out, Is.EqualTo("peer probe: success\n"));
        Assert.That(await Refused(1, "peer", "probe", other.Server), Is.EqualTo($"peer probe: failed: {other.Server} is already a peer"));
        Assert.That(await Refused(1, "peer", "probe", _d.Server), Is.EqualTo($"peer probe: failed: {_d.Server} is this node"));
        Assert.That(await Refused(1, "peer", "probe", "127.0.0.1:1"), Does.StartWith("peer probe: failed: 127.0.0.1:1: "));

        var otherId = (await other.Host.Store.ReadAsync()).NodeId;
        var status = (await Ok("peer", "status")).Out;
        Assert.That(status, Is.EqualTo($"Number of Peers: 1\n\nHostname: {other.Server}\nUuid: {otherId}\nState: Peer in Cluster (Connected)\n"));

        string otherServer = other.Server;
        await other.Host.DisposeAsync();
        using (var json = JsonDocument.Parse((await Ok("peer", "status", "--json")).Out))
            Assert.That(json.RootElement.GetProperty("peers")[0].GetProperty("connected").GetBoolean(), Is.False, "a stopped peer shows disconnected");

        Assert.That((await Ok("peer", "detach", otherServer)).Out, Is.EqualTo("peer detach: success\n"));
        Assert.That((await Ok("peer", "status")).Out, Is.EqualTo("Number of Peers: 0\n"));
    }
}
