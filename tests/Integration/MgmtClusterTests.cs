using System.Text.Json;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// Three hosts (network namespaces), each running an etcd member (one static 3-member cluster)
/// and brickfs-mgmtd in cluster mode (--etcd-endpoints, its own member first), bricks as
/// subvolumes of one loop-mounted Btrfs image (visible from every namespace), brickctl and the
/// mount in the root namespace over the bridge. The hosts are joined by peer probe once for
/// the class; each test uses its own volumes.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class MgmtClusterTests
{
    private const int Hosts = MgmtCluster.Hosts;
    private const int MgmtPort = MgmtCluster.MgmtPort;

    private MgmtCluster _c = null!;
    private string _work = "";
    private NetNamespaces _net = null!;
    private EtcdCluster _etcd = null!;
    private BtrfsImage _disk = null!;
    private MgmtdProcess[] _mgmtd = null!;

    [OneTimeSetUp]
    public void StartCluster()
    {
        _c = new MgmtCluster("cluster");
        (_work, _net, _etcd, _disk, _mgmtd) = (_c.Work, _c.Net, _c.Etcd, _c.Disk, _c.Mgmtd);
    }

    [OneTimeTearDown]
    public void StopCluster() => _c?.Dispose();

    [TearDown]
    public void Reconnect()
    {
        _net.RestoreAll();
        for (int i = 0; i < Hosts; i++)
        {
            _etcd.Start(i);
            if (!_mgmtd[i].Running) _mgmtd[i].Start();
        }
    }

    private string Host(int i) => _c.Host(i);

    private string[] Bricks(string volume) => _c.Bricks(volume);

    private List<string> InfoEverywhere(string volume) => _c.InfoEverywhere(volume);

    private bool LocalBrickOnline(int i, string volume) => _c.LocalBricksOnline(i, volume);

    private Task WaitBricksOnlineAsync(string volume) => _c.WaitBricksOnlineAsync(volume);

    [Test, CancelAfter(120_000)]
    public async Task A_volume_created_on_one_node_is_the_same_on_every_node_and_its_bricks_start_everywhere()
    {
        _mgmtd[1].MustCtl(["volume", "create", "cv", "replica", "3", .. Bricks("cv")]);
        _mgmtd[2].MustCtl("volume", "start", "cv");
        var infos = InfoEverywhere("cv");
        Assert.That(infos.Distinct().Count(), Is.EqualTo(1), string.Join("\n", infos));
        var info = JsonDocument.Parse(infos[0]).RootElement;
        Assert.That(info.GetProperty("status").GetString(), Is.EqualTo("started"));
        Assert.That(info.GetProperty("bricks").EnumerateArray().Select(b => b.GetProperty("host").GetString()), Is.EqualTo(Enumerable.Range(0, Hosts).Select(Host)));
        await WaitBricksOnlineAsync("cv");
        // Any node's status shows every brick: its own from its supervisor, the others' from their nodes.
        var status = _mgmtd[0].Json("volume", "status", "cv").GetProperty("bricks").EnumerateArray().ToList();
        Assert.That(status.Select(b => b.GetProperty("online").GetBoolean()), Is.All.True, JsonSerializer.Serialize(status));
        Assert.That(status.Select(b => b.GetProperty("pid").GetInt32()), Is.All.GreaterThan(0));
        Assert.That(status.Select(b => b.GetProperty("local").GetBoolean()), Is.EqualTo(new[] { true, false, false }));
        for (int i = 0; i < Hosts; i++)
            Assert.That(Shell.Sh($"btrfs subvolume show '{_disk.MountPoint}/cv-b{i}' >/dev/null").Ok, Is.True, $"node {i} made its brick a subvolume");

        // A brick that another node holds is checked by that node: not on Btrfs is refused unless forced.
        string plain = Directory.CreateDirectory(Path.Combine(_work, "plain")).FullName;
        var notBtrfs = _mgmtd[0].Ctl("volume", "create", "pv", $"{Host(0)}:{_disk.MountPoint}/pv-b0", $"{Host(2)}:{plain}/pv-b2");
        Assert.That(notBtrfs.Stderr, Does.StartWith($"volume create: pv: failed: brick {Host(2)}:{plain}/pv-b2 is on ").And.Contain("(add 'force' to use it anyway)"));
        Assert.That(_mgmtd[1].Ctl("volume", "info", "pv").Ok, Is.False, "nothing was defined");

        // A brick on a host that is not a peer is refused, from any node.
        var refused = _mgmtd[0].Ctl("volume", "create", "stray", $"10.255.255.1:{_disk.MountPoint}/stray");
        Assert.That(refused.Stderr, Is.EqualTo($"volume create: stray: failed: brick 10.255.255.1:{_disk.MountPoint}/stray: host 10.255.255.1 is not a peer of this cluster (brickctl peer probe 10.255.255.1)\n"));

        _mgmtd[0].MustCtl("volume", "stop", "cv");
        for (int i = 0; i < Hosts; i++)
        {
            int n = i;
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => _c.LocalBricksOffline(n, "cv"), $"node {n} stopped its brick of cv");
        }
        _mgmtd[2].MustCtl("volume", "delete", "cv");
        foreach (var m in _mgmtd) Assert.That(m.Ctl("volume", "info", "cv").Stderr, Is.EqualTo("volume info: failed: volume cv does not exist\n"));
    }

    [Test, CancelAfter(120_000)]
    public async Task A_node_whose_mgmtd_was_down_converges_when_it_returns()
    {
        _mgmtd[0].MustCtl(["volume", "create", "old", "replica", "3", .. Bricks("old")]);
        _mgmtd[0].MustCtl("volume", "start", "old");
        await WaitBricksOnlineAsync("old");

        _mgmtd[1].Kill9();
        // While node 1's mgmtd is down: a new volume with a brick on it is created and started,
        // and "old" is stopped. The brick of "old" on node 1 (left running by the killed mgmtd)
        // must stop, the one of "new" must start, once node 1's mgmtd is back.
        // Node 1 cannot check its brick now: refused, unless forced.
        Assert.That(_mgmtd[2].Ctl(["volume", "create", "new", "replica", "3", .. Bricks("new")]).Stderr,
            Does.StartWith($"volume create: new: failed: cannot check brick {Bricks("new")[1]} on its node: cannot reach brickfs-mgmtd at {Host(1)}:{MgmtPort}"));
        _mgmtd[2].MustCtl(["volume", "create", "new", "replica", "3", .. Bricks("new"), "force"]);
        _mgmtd[2].MustCtl("volume", "start", "new");
        _mgmtd[0].MustCtl("volume", "stop", "old");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => LocalBrickOnline(0, "new") && LocalBrickOnline(2, "new"), "nodes 0 and 2 run their bricks of new");

        _mgmtd[1].Start();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => LocalBrickOnline(1, "new"), "node 1 starts its brick of new when it returns");
        Assert.That(_c.LocalBricksOffline(1, "old"), Is.True, "node 1 does not run a brick of the stopped volume");
        Assert.That(InfoEverywhere("new").Distinct().Count(), Is.EqualTo(1));

        _mgmtd[0].MustCtl("volume", "stop", "new");
        _mgmtd[0].MustCtl("volume", "delete", "new");
        _mgmtd[0].MustCtl("volume", "delete", "old");
    }

    [Test, CancelAfter(120_000)]
    public async Task One_etcd_member_down_changes_nothing_a_user_sees()
    {
        _etcd.Kill(2);
        // Node 2's own member is the one down: its mgmtd carries on through the others.
        _mgmtd[2].MustCtl(["volume", "create", "e1", "replica", "3", .. Bricks("e1")]);
        _mgmtd[0].MustCtl("volume", "start", "e1");
        Assert.That(InfoEverywhere("e1").Distinct().Count(), Is.EqualTo(1));
        await WaitBricksOnlineAsync("e1");
        _mgmtd[1].MustCtl("volume", "set", "e1", "network.ping-timeout", "7");
        Assert.That(_mgmtd[2].Json("volume", "info", "e1").GetProperty("options").GetProperty("network.ping-timeout").GetString(), Is.EqualTo("7"));

        _etcd.Start(2);
        _etcd.WaitHealthy([2]);
        _mgmtd[2].MustCtl("volume", "stop", "e1");
        _mgmtd[1].MustCtl("volume", "delete", "e1");
    }

    [Test, CancelAfter(120_000)]
    public async Task A_brick_port_another_program_holds_on_its_node_is_moved_by_that_node()
    {
        _mgmtd[0].MustCtl(["volume", "create", "pt", "replica", "3", .. Bricks("pt")]);
        int port = _mgmtd[0].Json("volume", "info", "pt").GetProperty("bricks")[1].GetProperty("port").GetInt32();
        // Node 0 chose node 1's port without being able to probe it; on node 1 something else listens there.
        using var squatter = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("ip",
            ["netns", "exec", _net.Namespace(1), "python3", "-c",
             $"import socket,time; s=socket.socket(); s.bind(('{Host(1)}', {port})); s.listen(); print('listening', flush=True); time.sleep(300)"])
            { UseShellExecute = false, RedirectStandardOutput = true })!;
        try
        {
            Assert.That(await squatter.StandardOutput.ReadLineAsync(), Is.EqualTo("listening"));
            _mgmtd[2].MustCtl("volume", "start", "pt");
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => LocalBrickOnline(1, "pt"), "node 1 runs its brick on another port");
            var infos = InfoEverywhere("pt");
            Assert.That(infos.Distinct().Count(), Is.EqualTo(1), string.Join("\n", infos));
            Assert.That(JsonDocument.Parse(infos[0]).RootElement.GetProperty("bricks")[1].GetProperty("port").GetInt32(), Is.Not.EqualTo(port));
        }
        finally
        {
            squatter.Kill();
            squatter.WaitForExit(10_000);
        }
        _mgmtd[0].MustCtl("volume", "stop", "pt");
        _mgmtd[0].MustCtl("volume", "delete", "pt");
    }

    [Test, CancelAfter(150_000)]
    public async Task Mgmtd_killed_during_volume_create_leaves_the_definition_absent_or_complete_on_every_node()
    {
        var random = new Random(8);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        _mgmtd[1].MustCtl("volume", "list");
        int typical = (int)clock.ElapsedMilliseconds;
        var made = new List<string>();
        for (int round = 0; round < 3; round++)
        {
            string vol = $"k{round}";
            var psi = new System.Diagnostics.ProcessStartInfo(Programs.Find("brickctl")) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--server", _mgmtd[1].Server, "--timeout", "30", "volume", "create", vol, "replica", "3" }.Concat(Bricks(vol)))
                psi.ArgumentList.Add(a);
            using var ctl = System.Diagnostics.Process.Start(psi)!;
            var output = ctl.StandardError.ReadToEndAsync();
            // The kill lands before, during or after the etcd transaction, a different moment each round.
            await Task.Delay(random.Next(typical / 2, typical * 3 / 2 + 1));
            _mgmtd[1].Kill9();
            using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(40))) await ctl.WaitForExitAsync(limit.Token);
            await output;
            _mgmtd[1].Start();

            var answers = _mgmtd.Select(m => m.Ctl("--json", "volume", "info", vol)).ToList();
            TestContext.Out.WriteLine($"round {round}: definition {(answers[0].Ok ? "complete" : "absent")}");
            Assert.That(answers.Select(a => a.Ok).Distinct().Count(), Is.EqualTo(1), $"round {round}: every node agrees: {string.Join("\n", answers)}");
            if (answers[0].Ok)
            {
                Assert.That(answers.Select(a => a.Stdout).Distinct().Count(), Is.EqualTo(1), $"round {round}: one definition");
                Assert.That(JsonDocument.Parse(answers[0].Stdout).RootElement.GetProperty("bricks").GetArrayLength(), Is.EqualTo(3));
                made.Add(vol);
            }
            else
            {
                Assert.That(answers.Select(a => a.Stderr).Distinct(), Is.EqualTo(new[] { $"volume info: failed: volume {vol} does not exist\n" }));
            }
        }
        foreach (var vol in made) _mgmtd[0].MustCtl("volume", "delete", vol);
    }

    [Test, CancelAfter(150_000)]
    public async Task Volume_set_reaches_a_mounted_client_without_a_remount()
    {
        using var helper = new MountHelperLink();
        _mgmtd[0].MustCtl(["volume", "create", "lv", "replica", "3", .. Bricks("lv")]);
        _mgmtd[0].MustCtl("volume", "start", "lv");
        await WaitBricksOnlineAsync("lv");
        string mnt = Directory.CreateDirectory(Path.Combine(_work, "mnt")).FullName;
        string log = Path.Combine(_work, "mount.log");
        var mounted = Shell.Run("mount", ["-t", "brickfs", $"{Host(0)}:{MgmtPort}:/lv", mnt, "-o", $"backup-volfile-servers={Host(1)}:{Host(2)},log-file={log}"], TimeSpan.FromSeconds(60));
        try
        {
            Assert.That(mounted.Ok, Is.True, mounted.ToString());
            int pid = MountPid(mnt);
            File.WriteAllText(Path.Combine(mnt, "a"), "written with all three bricks up");

            // A short ping-timeout, live: the cut host below is declared down in seconds, not 42.
            _mgmtd[1].MustCtl("volume", "set", "lv", "network.ping-timeout", "2");
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => File.ReadAllText(log).Contains("lv-client-0.ping-timeout=2"), "the client applies ping-timeout 2");

            // One host cut off: quorum auto (2 of 3) keeps the volume writable.
            _net.Cut(2);
            File.WriteAllText(Path.Combine(mnt, "b"), "written with two of three bricks");

            // Quorum fixed at 3, set through a node whose etcd member and mgmtd are reachable: writes now fail.
            _mgmtd[0].MustCtl("volume", "set", "lv", "cluster.quorum-count", "3");
            _mgmtd[0].MustCtl("volume", "set", "lv", "cluster.quorum-type", "fixed");
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => !TryWrite(Path.Combine(mnt, "c")), "a write below the new quorum fails");

            _mgmtd[0].MustCtl("volume", "set", "lv", "cluster.quorum-type", "auto");
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => TryWrite(Path.Combine(mnt, "d")), "with quorum auto again, two bricks take writes");
            Assert.That(MountPid(mnt), Is.EqualTo(pid), "the same mount process served throughout: no remount");
            Assert.That(File.ReadAllText(log), Does.Not.Contain("volfile.changed-needs-remount"));
        }
        finally
        {
            _net.RestoreAll();
            Shell.Sh($"umount '{mnt}' 2>/dev/null || umount -l '{mnt}' 2>/dev/null", TimeSpan.FromSeconds(30));
        }
        _mgmtd[0].MustCtl("volume", "stop", "lv");
        _mgmtd[0].MustCtl("volume", "delete", "lv");
    }

    /// <summary>The brickd pids of <paramref name="volume"/> as the nodes report them.</summary>
    private List<int> BrickPids(string volume) =>
        [.. _mgmtd[0].Json("volume", "status", volume).GetProperty("bricks").EnumerateArray().Select(b => b.GetProperty("pid").GetInt32())];

    /// <summary>Whether the process is stopped (SIGSTOP): state 'T' in /proc/PID/stat.</summary>
    private static bool Stopped(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2] == 'T';
    }

    [Test, CancelAfter(180_000)]
    public async Task A_snapshot_one_node_refuses_or_cannot_answer_leaves_nothing_on_any_node_and_no_brick_paused()
    {
        // Node 2's brick of "sr" is a plain directory (forced): node 2 refuses to snap it.
        string plain = Path.Combine(_disk.MountPoint, "plain-sr");
        Directory.CreateDirectory(Path.Combine(plain, "b2"));
        string[] mixed = [.. Bricks("sr")[..2], $"{Host(2)}:{plain}/b2"];
        _mgmtd[0].MustCtl(["volume", "create", "sr", .. mixed, "force"]);
        _mgmtd[0].MustCtl(["volume", "create", "ss", .. Bricks("ss")]);
        foreach (var v in new[] { "sr", "ss" })
        {
            _mgmtd[1].MustCtl("volume", "start", v);
            await WaitBricksOnlineAsync(v);
        }
        string snaps = Path.Combine(_disk.MountPoint, ".brickfs-snaps");

        var refused = _mgmtd[0].Ctl("snapshot", "create", "x1", "sr");
        Assert.That(refused.ExitCode, Is.EqualTo(1), refused.ToString());
        Assert.That(refused.Stderr, Is.EqualTo($"snapshot create: x1: failed: brick {Host(2)}:{plain}/b2 is not a Btrfs subvolume, so it cannot be snapshot\n"));
        Assert.That(Directory.Exists(snaps), Is.False, "no node left a snapshot behind");
        Assert.That(BrickPids("sr").Where(Stopped), Is.Empty, "every brick was resumed");

        // Node 1's mgmtd is down (its brick runs on): the snapshot is refused, naming it, and the other nodes' bricks resume.
        _mgmtd[1].Kill9();
        var unreachable = _mgmtd[2].Ctl("snapshot", "create", "x2", "ss");
        Assert.That(unreachable.ExitCode, Is.EqualTo(1), unreachable.ToString());
        Assert.That(unreachable.Stderr, Does.StartWith($"snapshot create: x2: failed: cannot reach brickfs-mgmtd at {Host(1)}:{MgmtPort}"));
        Assert.That(unreachable.Stderr.TrimEnd('\n'), Does.Not.Contain("\n"));
        Assert.That(Directory.Exists(snaps), Is.False, "no node left a snapshot behind");
        _mgmtd[1].Start();
        await WaitBricksOnlineAsync("ss");
        Assert.That(BrickPids("ss").Where(Stopped), Is.Empty, "every brick was resumed");
        foreach (var m in _mgmtd) Assert.That(m.MustCtl("snapshot", "list").Stdout, Is.EqualTo("No snapshots present\n"));

        // With every node up, the same snapshot is taken and listed everywhere.
        _mgmtd[2].MustCtl("snapshot", "create", "x2", "ss");
        foreach (var m in _mgmtd) Assert.That(m.MustCtl("snapshot", "list").Stdout, Is.EqualTo("x2\n"));
        var parts = Directory.EnumerateDirectories(Path.Combine(snaps, "x2")).Order(StringComparer.Ordinal).ToList();
        Assert.That(parts, Has.Count.EqualTo(3));

        // Node 2's part of the snapshot is lost: a restore is refused before any node's brick changed.
        _mgmtd[0].MustCtl("volume", "stop", "ss");
        string lost = parts.Single(p => p.EndsWith("-brick-2", StringComparison.Ordinal));
        Shell.Must($"btrfs subvolume delete '{lost}' >/dev/null");
        var bricks = Bricks("ss").Select(b => b[(b.IndexOf(':') + 1)..]).ToList();
        foreach (var b in bricks) File.WriteAllText(Path.Combine(b, "after-x2"), "written after the snapshot");
        var restore = _mgmtd[1].Ctl("snapshot", "restore", "x2");
        Assert.That(restore.Stderr, Is.EqualTo($"snapshot restore: x2: failed: snapshot x2: {lost} is missing\n"), restore.ToString());
        Assert.That(bricks.Where(b => !File.Exists(Path.Combine(b, "after-x2"))), Is.Empty, "no brick was rolled back");
        Assert.That(Directory.EnumerateDirectories(_disk.MountPoint, "*.brickfs-restore"), Is.Empty, "no prepared copy is left");

        // The delete removes what is left on every node.
        _mgmtd[1].MustCtl("snapshot", "delete", "x2");
        Assert.That(Directory.Exists(snaps), Is.False);
        _mgmtd[0].MustCtl("volume", "stop", "sr");
        _mgmtd[0].MustCtl("volume", "delete", "sr");
        _mgmtd[0].MustCtl("volume", "delete", "ss");
    }

    private static bool TryWrite(string path)
    {
        try
        {
            File.WriteAllText(path, "x");
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The pid of the mount.brickfs serving <paramref name="mnt"/> (the process whose command line names it).</summary>
    private static int MountPid(string mnt)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            string[] args;
            try
            {
                args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
            }
            catch (IOException)
            {
                continue;
            }
            if (args.Any(a => Path.GetFileName(a) == "mount.brickfs") && args.Contains(mnt)) pids.Add(pid);
        }
        Assert.That(pids, Has.Count.EqualTo(1), $"one mount.brickfs serves {mnt}");
        return pids[0];
    }
}
