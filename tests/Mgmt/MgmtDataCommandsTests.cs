using Brickfs.Mgmt.Api;
using Brickfs.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Brickfs.Tests.Mgmt;

/// <summary>
/// heal, bitrot, rebalance and snapshot commands, and the Btrfs brick checks, through brickctl's
/// real code against an in-process brickfs-mgmtd (fake brickd). Every refusal is one line, and
/// leaves the stored state byte for byte as it was.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class MgmtDataCommandsTests
{
    private MgmtdHarness _d = null!;

    [SetUp]
    public async Task SetUp() => _d = await MgmtdHarness.StartAsync();

    [TearDown]
    public async Task TearDown() => await _d.DisposeAsync();

    private string StateFile => Path.Combine(_d.StateDir, "state.json");

    private async Task Ok(params string[] args)
    {
        var r = await _d.CtlAsync(args);
        Assert.That(r.Exit, Is.EqualTo(0), r.ToString());
    }

    /// <summary>Runs a command that must be refused with <paramref name="exit"/>; returns its one line and checks nothing stored changed.</summary>
    private async Task<string> Refused(int exit, params string[] args)
    {
        var before = await File.ReadAllBytesAsync(StateFile);
        var r = await _d.CtlAsync(args);
        Assert.That(r.Exit, Is.EqualTo(exit), r.ToString());
        Assert.That(r.Out, Is.Empty, r.ToString());
        Assert.That(r.Err.TrimEnd('\n'), Does.Not.Contain("\n"), "one line");
        Assert.That(await File.ReadAllBytesAsync(StateFile), Is.EqualTo(before), $"{string.Join(' ', args)} changed the stored state");
        return r.Err.TrimEnd('\n');
    }

    [Test, CancelAfter(30_000)]
    public async Task Heal_bitrot_and_rebalance_say_why_they_cannot_run()
    {
        await Ok("volume", "create", "plain", "node2:/x/a", "node3:/x/a");
        await Ok("volume", "create", "rep", "replica", "3", "node2:/x/r", "node3:/x/r", "node4:/x/r");
        Assert.That(await Refused(1, "volume", "heal", "plain", "info"), Is.EqualTo("volume heal: plain: failed: volume plain is not replicated (Distribute): there is nothing to heal"));
        Assert.That(await Refused(1, "volume", "heal", "rep"), Is.EqualTo("volume heal: rep: failed: volume rep is not started"));
        Assert.That(await Refused(2, "volume", "heal", "rep", "everything"), Does.StartWith("brickctl: volume heal: unknown heal command 'everything'"));

        Assert.That(await Refused(1, "volume", "bitrot", "rep", "scrub", "status"), Is.EqualTo("volume bitrot: rep: failed: bitrot is off on volume rep (brickctl volume bitrot rep enable)"));
        await Ok("volume", "set", "rep", "features.bitrot", "on");
        Assert.That(await Refused(1, "volume", "bitrot", "rep", "scrub", "ondemand"), Is.EqualTo("volume bitrot: rep: failed: volume rep is not started"));
        Assert.That(await Refused(2, "volume", "bitrot", "rep", "scrub"), Does.Contain("needs VOL enable|disable"));
        Assert.That(await Refused(1, "volume", "bitrot", "rep", "scrub-throttle", "glacial"), Does.StartWith("volume bitrot: rep: failed: features.scrub-throttle: 'glacial' is not lazy, normal, aggressive"));
        Assert.That(await Refused(1, "volume", "bitrot", "rep", "scrub-files-per-second", "-1"), Does.Contain("is not a number of files per second"));

        Assert.That(await Refused(1, "volume", "rebalance", "rep", "start"), Is.EqualTo("volume rebalance: rep: failed: volume rep has one replica set: there is nothing to rebalance"));
        Assert.That(await Refused(1, "volume", "rebalance", "plain", "status"), Is.EqualTo("volume rebalance: plain: failed: no rebalance of volume plain has been started"));
        Assert.That(await Refused(1, "volume", "rebalance", "plain", "stop"), Is.EqualTo("volume rebalance: plain: failed: no rebalance of volume plain to stop"));
        Assert.That(await Refused(1, "volume", "rebalance", "plain", "start"), Is.EqualTo("volume rebalance: plain: failed: volume plain is not started"));
        Assert.That(await Refused(2, "volume", "rebalance", "plain", "go"), Does.Contain("needs VOL start|status|stop"));
    }

    [Test, CancelAfter(30_000)]
    public async Task Bitrot_enable_disable_and_scrub_rates_set_the_volume_options()
    {
        await Ok("volume", "create", "rep", "replica", "3", "node2:/x/r", "node3:/x/r", "node4:/x/r");
        var on = await _d.CtlAsync("volume", "bitrot", "rep", "enable");
        Assert.That(on.Exit, Is.EqualTo(0), on.ToString());
        Assert.That(on.Out, Is.EqualTo("volume bitrot: rep: success: bitrot enabled (takes effect when the volume starts)\n"));
        await Ok("volume", "bitrot", "rep", "scrub-throttle", "lazy");
        await Ok("volume", "bitrot", "rep", "scrub-frequency", "hourly");
        await Ok("volume", "bitrot", "rep", "scrub-files-per-second", "20");
        var get = await _d.CtlAsync("volume", "get", "rep", "all");
        Assert.That(get.Out, Does.Match(@"features\.bitrot\s+on").And.Match(@"features\.scrub-throttle\s+lazy")
            .And.Match(@"features\.scrub-freq\s+hourly").And.Match(@"features\.scrub-files-per-second\s+20"), get.ToString());
        var brick = await _d.CtlAsync("volume", "volfile", "rep", "brick", "0");
        Assert.That(brick.Out, Does.Contain("option scrub-throttle lazy").And.Contain("option scrub-frequency hourly").And.Contain("option scrub-files-per-second 20"), brick.ToString());
        await Ok("volume", "bitrot", "rep", "disable");
        Assert.That((await _d.CtlAsync("volume", "volfile", "rep", "brick", "0")).Out, Does.Not.Contain("features/bitrot"));
    }

    [Test, CancelAfter(30_000)]
    public async Task Snapshot_commands_refuse_bad_names_unknown_snapshots_and_bricks_they_cannot_snap()
    {
        await Ok("volume", "create", "far", "node2:/x/a");
        string plainDir = Path.Combine(_d.Root, "plain");
        await Ok("volume", "create", "near", $"node1:{plainDir}", "force");
        Directory.CreateDirectory(plainDir);

        Assert.That(await Refused(1, "snapshot", "create", "s/1", "near"), Is.EqualTo("snapshot create: s/1: failed: snapshot name s/1 may contain only letters, digits, '_' and '-'"));
        Assert.That(await Refused(1, "snapshot", "create", "s1", "nope"), Is.EqualTo("snapshot create: s1: failed: volume nope does not exist"));
        Assert.That(await Refused(1, "snapshot", "create", "s1", "far"), Is.EqualTo("snapshot create: s1: failed: brick node2:/x/a is on another node, and this server is standalone; snapshots span nodes only in a cluster"));
        Assert.That(await Refused(1, "snapshot", "create", "s1", "near"), Is.EqualTo($"snapshot create: s1: failed: brick node1:{plainDir} is not a Btrfs subvolume, so it cannot be snapshot"));
        foreach (var verb in new[] { "restore", "delete", "info", "activate", "deactivate" })
            Assert.That(await Refused(1, "snapshot", verb, "nope"), Does.EndWith(": failed: snapshot nope does not exist"), verb);
        Assert.That(await Refused(2, "snapshot", "create", "s1"), Does.Contain("needs SNAP and VOL"));
        Assert.That(await Refused(1, "snapshot", "list", "nope"), Is.EqualTo("snapshot list: failed: volume nope does not exist"));
        var list = await _d.CtlAsync("snapshot", "list");
        Assert.That(list.Out, Is.EqualTo("No snapshots present\n"), list.ToString());
    }

    /// <summary>The state letter of a process (/proc/PID/stat): 'T' while stopped by SIGSTOP.</summary>
    private static char ProcessState(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    [Test, CancelAfter(60_000)]
    public async Task A_nodes_snapshot_pause_ends_by_itself_when_the_take_does_not_come_and_abort_undoes_a_take()
    {
        using var disk = new BtrfsImage("mgmt-pause", 512L << 20);
        string brick = Path.Combine(disk.MountPoint, "b");
        await Ok("volume", "create", "v", $"node1:{brick}");
        await Ok("volume", "start", "v");
        int pid = 0;
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), () => (pid = _d.BrickdRuns().LastOrDefault().Pid) > 0, "the brick runs");
        var volumes = _d.Host.Volumes;
        var b = (await _d.Host.Store.ReadAsync()).FindVolume("v")!.Bricks[0];
        string target = Path.Combine(disk.MountPoint, VolumeManager.SnapshotDirName, "s", VolumeManager.Key("v", b));
        List<SnapshotBrick> bricks = [new(b.Number, b.Host, b.Path)];

        // The coordinator is lost after the pause: the brick resumes by itself after the lease, and the take is refused.
        var lost = Guid.NewGuid();
        var paused = volumes.PauseSnapshotBricks("s", new SnapshotPauseRequest(lost, "v", true, bricks, 300));
        Assert.That(paused.Ok, Is.True, paused.Error?.Message);
        Assert.That(paused.Value.Bricks.Single().Target, Is.EqualTo(target));
        Assert.That(ProcessState(pid), Is.EqualTo('T'), "paused");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), () => ProcessState(pid) != 'T', "the lease resumes the brick");
        var late = volumes.TakeSnapshotBricks(lost);
        Assert.That(late.Ok && late.Value.Expired, Is.True, late.Error?.Message);
        Assert.That(Directory.Exists(target), Is.False, "nothing was taken");
        Assert.That(volumes.AbortSnapshotBricks(lost).Ok, Is.True);

        // A take in time snaps read-only and resumes; an abort afterwards (another node failed) deletes what it made.
        var id = Guid.NewGuid();
        Assert.That(volumes.PauseSnapshotBricks("s", new SnapshotPauseRequest(id, "v", true, bricks, 1000)).Ok, Is.True);
        var taken = volumes.TakeSnapshotBricks(id);
        Assert.That(taken.Ok && !taken.Value.Expired, Is.True, taken.Error?.Message);
        Assert.That(ProcessState(pid), Is.Not.EqualTo('T'), "resumed after the take");
        Assert.That(Shell.Sh($"btrfs property get -ts '{target}' ro").Stdout.Trim(), Is.EqualTo("ro=true"));
        Assert.That(volumes.AbortSnapshotBricks(id).Ok, Is.True);
        Assert.That(Directory.Exists(Path.Combine(disk.MountPoint, VolumeManager.SnapshotDirName)), Is.False, "the abort left nothing");
        Assert.That((await _d.Host.Store.ReadAsync()).Snapshots, Is.Empty);

        // A request naming a brick of another node is refused before anything pauses.
        var wrong = volumes.PauseSnapshotBricks("s", new SnapshotPauseRequest(Guid.NewGuid(), "v", true, [new(9, "node2", "/x/a")], 1000));
        Assert.That(wrong.Error?.Message, Is.EqualTo("brick node2:/x/a is not on this node"));
        await Ok("volume", "stop", "v");
    }

    [Test, CancelAfter(60_000)]
    public async Task Bricks_must_be_Btrfs_subvolumes_unless_forced_and_new_ones_are_created_as_subvolumes()
    {
        using var disk = new BtrfsImage("mgmt-subvol", 512L << 20);
        string plain = Path.Combine(disk.MountPoint, "plain");
        Directory.CreateDirectory(plain);
        string tmpBrick = Path.Combine(_d.Root, "on-tmp");

        Assert.That(await Refused(1, "volume", "create", "v", $"node1:{plain}"), Does.Contain($"brick node1:{plain} is a plain directory, not a Btrfs subvolume"));
        Assert.That(await Refused(1, "volume", "create", "v", $"node1:{tmpBrick}"), Does.Contain("not Btrfs").Or.Contain("root filesystem"));
        Assert.That(Directory.Exists(tmpBrick), Is.False, "a refused create makes no directory");
        Assert.That(await Refused(1, "volume", "create", "v", $"node1:{plain}/b", $"node1:{plain}/b"), Does.Contain("is given twice"));
        Assert.That(Directory.Exists(Path.Combine(plain, "b")), Is.False);

        string fresh = Path.Combine(disk.MountPoint, "bricks", "b1");
        await Ok("volume", "create", "v", $"node1:{fresh}");
        Assert.That(Shell.Sh($"btrfs subvolume show '{fresh}'").Ok, Is.True, "volume create made the brick a subvolume");
        Assert.That(await Refused(1, "volume", "create", "w", $"node1:{fresh}"), Is.EqualTo($"volume create: w: failed: brick node1:{fresh} is already a brick of volume v"));
        await Ok("volume", "create", "w", $"node1:{plain}", "force");
    }

    [Test, CancelAfter(30_000)]
    public async Task With_a_secret_file_requests_without_the_secret_are_refused_and_change_nothing()
    {
        string root = Directory.CreateTempSubdirectory("brickfs-mgmtd-secret-").FullName;
        string secretFile = Path.Combine(root, "secret"), wrongFile = Path.Combine(root, "wrong");
        await File.WriteAllTextAsync(secretFile, "s3cret\n");
        await File.WriteAllTextAsync(wrongFile, "guess\n");
        var host = MgmtHost.Create(new MgmtdOptions
        {
            StateDir = Path.Combine(root, "state"), ListenHost = "127.0.0.1", ListenPort = 0, NodeAddress = "node1",
            MatchMachineAddresses = false, ProbeBrickPorts = false, SecretFile = secretFile,
        }, logging => logging.SetMinimumLevel(LogLevel.Critical));
        await host.StartAsync();
        try
        {
            string server = $"127.0.0.1:{host.Address.Port}";
            string state = Path.Combine(root, "state", "state.json");
            var before = await File.ReadAllBytesAsync(state);
            foreach (var auth in new[] { Array.Empty<string>(), ["--secret-file", wrongFile] })
            {
                var r = await MgmtdHarness.RunCtlAsync(["--server", server, .. auth, "volume", "create", "v", "node2:/x/a"]);
                Assert.That(r.Exit, Is.EqualTo(1), r.ToString());
                Assert.That(r.Err, Is.EqualTo("volume create: v: failed: wrong or missing shared secret (brickctl --secret-file FILE)\n"));
            }
            Assert.That(await File.ReadAllBytesAsync(state), Is.EqualTo(before), "a refused request stores nothing");
            var ok = await MgmtdHarness.RunCtlAsync("--server", server, "--secret-file", secretFile, "volume", "create", "v", "node2:/x/a");
            Assert.That(ok.Exit, Is.EqualTo(0), ok.ToString());
            // Mounts fetch volfiles without the secret: a volfile lets nobody change anything.
            using var http = new HttpClient();
            Assert.That(await http.GetStringAsync($"http://{server}/api/v1/volumes/v/volfile?kind=client"), Does.Contain("type protocol/client"));
            var missing = await MgmtdHarness.RunCtlAsync("--server", server, "--secret-file", Path.Combine(root, "absent"), "volume", "list");
            Assert.That(missing.Exit, Is.EqualTo(2));
            Assert.That(missing.Err, Does.StartWith($"brickctl: {Path.Combine(root, "absent")}: cannot read the secret file"));
        }
        finally
        {
            await host.DisposeAsync();
            Directory.Delete(root, recursive: true);
        }
    }
}
