using System.Text.Json;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// The command line end to end against real daemons on three hosts (issue 8, point 8): every
/// step through the real brickctl, each step asked of a different node, the volume mounted with
/// <c>mount -t brickfs</c> in the root namespace: create, start, mount, write, add-brick,
/// rebalance, snapshot (taken while a client writes; consistent across the three nodes),
/// change, stop, restore, start, the snapshot's data back, stop, delete; and bad input of every
/// kind refused with one line and nothing changed on any node.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MgmtClusterEndToEndTests
{
    private MgmtCluster _c = null!;
    private MountHelperLink _helper = null!;
    private readonly List<string> _mounts = [];

    [OneTimeSetUp]
    public void StartCluster()
    {
        // With a shared secret: brickctl sends it, and the nodes ask each other with it (snapshots, status, checks).
        _c = new MgmtCluster("cluster-e2e", secret: true);
        _helper = new MountHelperLink();
    }

    [OneTimeTearDown]
    public void StopCluster()
    {
        foreach (var m in _mounts) Shell.Sh($"umount '{m}' 2>/dev/null || umount -l '{m}' 2>/dev/null", TimeSpan.FromSeconds(30));
        _helper?.Dispose();
        _c?.Dispose();
    }

    private MgmtdProcess Node(int i) => _c.Mgmtd[i];

    private string Dir(string name) => Directory.CreateDirectory(Path.Combine(_c.Work, name)).FullName;

    /// <summary>`mount -t brickfs HOST0:24007:/SOURCE DIR` with the other two hosts as backup volfile servers.</summary>
    private void Mount(string source, string dir)
    {
        if (!_mounts.Contains(dir)) _mounts.Add(dir);
        var r = Shell.Run("mount", ["-t", "brickfs", $"{_c.Host(0)}:{MgmtCluster.MgmtPort}:/{source}", dir,
            "-o", $"backup-volfile-servers={_c.Host(1)}:{_c.Host(2)},log-file={Path.Combine(_c.Work, Path.GetFileName(dir) + ".log")}"], TimeSpan.FromSeconds(60));
        Assert.That(r.Ok, Is.True, $"mount {source}: {r}");
    }

    private static void Umount(string dir)
    {
        var r = Shell.Run("umount", [dir], TimeSpan.FromSeconds(30));
        Assert.That(r.Ok, Is.True, r.ToString());
    }

    /// <summary>Every regular file under <paramref name="root"/> (relative path → content).</summary>
    private static SortedDictionary<string, string> Contents(string root) =>
        new(Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(root, f), File.ReadAllText), StringComparer.Ordinal);

    private static bool Accepts(string host, int port)
    {
        try
        {
            using var s = new System.Net.Sockets.TcpClient();
            return s.ConnectAsync(host, port).Wait(500) && s.Connected;
        }
        catch (AggregateException)
        {
            return false;
        }
    }

    private static string SeqName(int i) => $"seq/{i:D5}";

    private static string SeqText(int i) => $"sequential write {i} " + new string('x', 200) + "\n";

    [Test, CancelAfter(600_000)]
    public async Task Create_start_mount_write_add_brick_rebalance_snapshot_restore_stop_and_delete_across_three_hosts()
    {
        var brickDirs = Enumerable.Range(0, MgmtCluster.Hosts).Select(i => $"{_c.Disk.MountPoint}/ev-b{i}").ToList();
        var bricks = _c.Bricks("ev");

        // create on node 1, start on node 2: a distributed volume, one brick per host.
        var created = Node(1).MustCtl(["volume", "create", "ev", .. bricks]).Stdout;
        Assert.That(created, Does.Contain("success"), created);
        Assert.That(_c.InfoEverywhere("ev").Distinct().Count(), Is.EqualTo(1), "every node has the same definition");
        Node(2).MustCtl("volume", "start", "ev");
        await _c.WaitBricksOnlineAsync("ev");

        string mnt = Dir("mnt");
        Mount("ev", mnt);
        var before = new Dictionary<string, string>();
        Directory.CreateDirectory(Path.Combine(mnt, "d"));
        Directory.CreateDirectory(Path.Combine(mnt, "seq"));
        for (int i = 0; i < 120; i++) before[i % 4 == 0 ? $"r{i}" : $"d/f{i}"] = $"before the snapshot {i}\n";
        foreach (var (path, text) in before) File.WriteAllText(Path.Combine(mnt, path), text);
        Assert.That(brickDirs.Count(b => Directory.EnumerateFiles(Path.Combine(b, "d")).Any()), Is.EqualTo(3), "files spread over the three hosts' bricks");

        // add-brick on node 0: a second brick on host 1.
        string added = $"{_c.Host(1)}:{_c.Disk.MountPoint}/ev-b3";
        brickDirs.Add($"{_c.Disk.MountPoint}/ev-b3");
        Node(0).MustCtl("volume", "add-brick", "ev", added);
        Assert.That(_c.InfoEverywhere("ev").Distinct().Count(), Is.EqualTo(1));
        Assert.That(Node(2).Json("volume", "info", "ev").GetProperty("brickCount").GetInt32(), Is.EqualTo(4));
        await _c.WaitBricksOnlineAsync("ev");
        // The mounted client takes the new brick in place (CLUSTER.md): no remount.
        string mountLog = Path.Combine(_c.Work, "mnt.log");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(120), () => File.ReadAllText(mountLog).Contains("[ev-client-3] connected to brick", StringComparison.Ordinal),
            "the mount attached and connected the added brick");
        Assert.That(File.ReadAllText(mountLog), Does.Not.Contain("volfile.changed-needs-remount"));

        // rebalance start and status on node 2, until done: files move onto the new brick, none is lost.
        Assert.That(Node(2).MustCtl("volume", "rebalance", "ev", "start").Stdout, Does.StartWith("rebalance of volume ev: "));
        JsonElement done = default;
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(240), () =>
        {
            done = Node(2).Json("volume", "rebalance", "ev", "status");
            return !done.GetProperty("running").GetBoolean() && done.GetProperty("state").GetString() != "starting";
        }, "the rebalance finishes");
        Assert.That(done.GetProperty("state").GetString(), Is.EqualTo("completed"), done.ToString());
        Assert.That(done.GetProperty("failures").GetInt64() + done.GetProperty("skipped").GetInt64(), Is.Zero, done.ToString());
        Assert.That(done.GetProperty("filesMoved").GetInt64(), Is.GreaterThan(0), done.ToString());
        Assert.That(DistributedMountVolume.DataFilesIn(brickDirs[3]), Is.Not.Empty, "the added brick holds files after the rebalance");
        Assert.That(Contents(mnt), Is.EqualTo(new SortedDictionary<string, string>(before, StringComparer.Ordinal)), "every file, once, with its content");

        // snapshot create on node 1 while a client writes files one after another: the snapshot
        // of the four bricks on three nodes is one point, so the files it holds are a prefix.
        int written = 0;
        using var stopWriter = new CancellationTokenSource();
        var writer = Task.Run(() =>
        {
            for (int i = 0; !stopWriter.IsCancellationRequested; i++)
            {
                File.WriteAllText(Path.Combine(mnt, SeqName(i)), SeqText(i));
                Volatile.Write(ref written, i + 1);
            }
        });
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => Volatile.Read(ref written) >= 20, "the writer is under way");
        int writtenBefore = Volatile.Read(ref written);
        var snap = Node(1).MustCtl("--json", "snapshot", "create", "s1", "ev").Stdout;
        int writtenAfter = Volatile.Read(ref written);
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => Volatile.Read(ref written) >= writtenAfter + 5, "the writer goes on after the snapshot");
        stopWriter.Cancel();
        await writer;
        var info = JsonDocument.Parse(snap).RootElement;
        TestContext.Out.WriteLine($"snapshot s1: writes paused {info.GetProperty("pausedMilliseconds").GetDouble():0.0} ms; {writtenBefore}..{writtenAfter} files written around it");
        var snapBricks = info.GetProperty("bricks").EnumerateArray().ToList();
        Assert.That(snapBricks.Select(b => b.GetProperty("origin").GetString()), Is.EqualTo(brickDirs));
        foreach (var b in snapBricks)
        {
            string path = b.GetProperty("path").GetString()!;
            Assert.That(Shell.Sh($"btrfs property get -ts '{path}' ro").Stdout.Trim(), Is.EqualTo("ro=true"), $"{path} is a read-only subvolume");
        }
        for (int i = 0; i < MgmtCluster.Hosts; i++)
            Assert.That(Node(i).MustCtl("snapshot", "list", "ev").Stdout, Is.EqualTo("s1\n"), $"node {i} lists the snapshot");
        var atSnapshot = Contents(mnt).Where(kv => !kv.Key.StartsWith("seq/", StringComparison.Ordinal)).ToDictionary();

        // change the data after the snapshot.
        File.WriteAllText(Path.Combine(mnt, "r0"), "changed after the snapshot\n");
        File.Delete(Path.Combine(mnt, "d/f1"));
        File.WriteAllText(Path.Combine(mnt, "d/later"), "written after the snapshot\n");

        // The snapshot, activated on node 0, mounts read-only as a volume of its own.
        Node(0).MustCtl("snapshot", "activate", "s1");
        string snapMnt = Dir("snap");
        // Each node starts its bricks of the snapshot (node 0 at once, the others when they see the change in etcd).
        var served = Node(1).Json("snapshot", "info", "s1");
        Assert.That(served.GetProperty("active").GetBoolean(), Is.True);
        foreach (var b in served.GetProperty("bricks").EnumerateArray())
        {
            string host = b.GetProperty("host").GetString()!;
            int port = b.GetProperty("port").GetInt32();
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => Accepts(host, port), $"the snapshot's brick on {host}:{port} accepts connections");
        }
        Mount("snaps/s1/ev", snapMnt);
        var inSnapshot = Contents(snapMnt);
        Assert.That(Shell.Sh($"touch '{snapMnt}/new'").Stderr, Does.Contain("Read-only file system"));
        Umount(snapMnt);
        Node(2).MustCtl("snapshot", "deactivate", "s1");
        var seq = inSnapshot.Where(kv => kv.Key.StartsWith("seq/", StringComparison.Ordinal)).ToList();
        int newest = seq.Count == 0 ? -1 : seq.Max(kv => int.Parse(kv.Key[4..], System.Globalization.CultureInfo.InvariantCulture));
        Assert.That(newest + 1, Is.InRange(writtenBefore, writtenAfter + 1), "the snapshot holds what was written up to its point");
        for (int i = 0; i < newest; i++)
            Assert.That(inSnapshot.GetValueOrDefault(SeqName(i)), Is.EqualTo(SeqText(i)), $"{SeqName(i)}: written before {SeqName(newest)}, so in the snapshot too (one point on every node)");
        Assert.That(inSnapshot.Where(kv => !kv.Key.StartsWith("seq/", StringComparison.Ordinal)).ToDictionary(), Is.EqualTo(atSnapshot));

        // stop (node 0), restore (node 2), start (node 1): the volume holds the snapshot's data.
        Umount(mnt);
        Assert.That(Node(2).Ctl("snapshot", "restore", "s1").Stderr, Is.EqualTo("snapshot restore: s1: failed: volume ev is started; stop it before restoring snapshot s1\n"));
        Node(0).MustCtl("volume", "stop", "ev");
        for (int i = 0; i < MgmtCluster.Hosts; i++)
        {
            int n = i;
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => _c.LocalBricksOffline(n, "ev"), $"node {n} stopped its bricks of ev");
        }
        Assert.That(Node(2).MustCtl("snapshot", "restore", "s1").Stdout, Does.StartWith("snapshot restore: success: Snap s1 restored onto volume ev"));
        Node(1).MustCtl("volume", "start", "ev");
        await _c.WaitBricksOnlineAsync("ev");
        Mount("ev", mnt);
        Assert.That(Contents(mnt), Is.EqualTo(inSnapshot), "the restored volume holds exactly the snapshot's files");
        File.WriteAllText(Path.Combine(mnt, "after-restore"), "the restored volume is writable\n");
        Umount(mnt);

        // stop and delete: the snapshot first (a volume with snapshots is not deleted), then the volume.
        Node(1).MustCtl("volume", "stop", "ev");
        Assert.That(Node(0).Ctl("volume", "delete", "ev").Stderr, Is.EqualTo("volume delete: ev: failed: volume ev has snapshots (s1); delete them first\n"));
        Node(0).MustCtl("snapshot", "delete", "s1");
        foreach (var b in snapBricks) Assert.That(Directory.Exists(b.GetProperty("path").GetString()), Is.False, "the snapshot's subvolumes are gone");
        Assert.That(Directory.Exists(Path.Combine(_c.Disk.MountPoint, ".brickfs-snaps")), Is.False);
        Node(2).MustCtl("volume", "delete", "ev");
        for (int i = 0; i < MgmtCluster.Hosts; i++)
        {
            Assert.That(Node(i).Ctl("volume", "info", "ev").Stderr, Is.EqualTo("volume info: failed: volume ev does not exist\n"));
            Assert.That(Node(i).MustCtl("snapshot", "list").Stdout, Is.EqualTo("No snapshots present\n"));
        }
    }

    /// <summary>The cluster store's etcd revision: any stored change moves it.</summary>
    private async Task<long> RevisionAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var key = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes("/brickfs/generation"));
        var r = await http.PostAsync($"{_c.Etcd.ClientUrl(0)}/v3/kv/range", new StringContent($"{{\"key\":\"{key}\",\"serializable\":false}}"));
        var json = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        return long.Parse(json.GetProperty("header").GetProperty("revision").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Everything on the bricks' disk (top level), and what every node says of the volumes.</summary>
    private string Disk() => string.Join(" ", Directory.EnumerateFileSystemEntries(_c.Disk.MountPoint).Order(StringComparer.Ordinal));

    [Test, CancelAfter(300_000)]
    public async Task Bad_input_through_brickctl_on_the_cluster_is_one_line_exit_1_and_changes_nothing_on_any_node()
    {
        var bricks = _c.Bricks("bv");
        Node(0).MustCtl(["volume", "create", "bv", .. bricks]);
        string plain = Dir("plain"), disk = _c.Disk.MountPoint;
        string wrongSecret = Path.Combine(_c.Work, "wrong-secret");
        File.WriteAllText(wrongSecret, "guess\n");
        string H(int i) => _c.Host(i);
        const string Missing = "failed: volume nope does not exist";
        (string[] Args, NUnit.Framework.Constraints.IResolveConstraint Expected)[] cases =
        [
            (["volume", "start", "nope"], Is.EqualTo($"volume start: nope: {Missing}")),
            (["volume", "info", "nope"], Is.EqualTo($"volume info: {Missing}")),
            (["volume", "set", "nope", "network.ping-timeout", "5"], Is.EqualTo($"volume set: nope: {Missing}")),
            (["volume", "add-brick", "nope", $"{H(1)}:{disk}/nope-b"], Does.EndWith(Missing)),
            (["volume", "rebalance", "nope", "start"], Does.EndWith(Missing)),
            (["snapshot", "create", "s", "nope"], Is.EqualTo($"snapshot create: s: {Missing}")),
            (["snapshot", "restore", "nope"], Is.EqualTo("snapshot restore: nope: failed: snapshot nope does not exist")),
            (["volume", "set", "bv", "network.ping-timeout", "soon"], Is.EqualTo("volume set: bv: failed: network.ping-timeout: 'soon' is not a number of seconds")),
            (["volume", "set", "bv", "cluster.quorum-typo", "auto"], Does.StartWith("volume set: bv: failed: ").And.Contain("did you mean cluster.quorum-type")),
            // Not on Btrfs, on another node than the one asked: that node checks it.
            (["volume", "create", "nb", $"{H(0)}:{disk}/nb-b0", $"{H(2)}:{plain}/nb-b2"],
                Does.StartWith($"volume create: nb: failed: brick {H(2)}:{plain}/nb-b2 is on ").And.EndWith("(add 'force' to use it anyway)")),
            (["volume", "create", "db", $"{H(1)}:{disk}/db", $"{H(1)}:{disk}/db"], Is.EqualTo($"volume create: db: failed: brick {H(1)}:{disk}/db is given twice")),
            (["volume", "create", "xb", $"{H(0)}:{disk}/xb-b0", bricks[2]], Is.EqualTo($"volume create: xb: failed: brick {bricks[2]} is already a brick of volume bv")),
            (["volume", "add-brick", "bv", bricks[1]], Does.StartWith("volume add-brick: bv: failed: ").And.Contain($"brick {bricks[1]} ")),
        ];
        long revision = await RevisionAsync();
        string onDisk = Disk();
        var infos = _c.InfoEverywhere("bv");
        for (int k = 0; k < cases.Length; k++)
        {
            var (args, expected) = cases[k];
            var r = Node(k % MgmtCluster.Hosts).Ctl(args);
            Assert.That(r.ExitCode, Is.EqualTo(1), $"{string.Join(' ', args)}: {r}");
            Assert.That(r.Stdout, Is.Empty, r.ToString());
            Assert.That(r.Stderr.EndsWith('\n') && r.Stderr.TrimEnd('\n').IndexOf('\n') < 0, Is.True, $"one line: {r.Stderr}");
            Assert.That(r.Stderr.TrimEnd('\n'), expected, string.Join(' ', args));
        }
        // Without the secret, or with a wrong one, nothing is done.
        foreach (var auth in new[] { Array.Empty<string>(), ["--secret-file", wrongSecret] })
        {
            var r = Shell.Run(Programs.Find("brickctl"), ["--server", Node(1).Server, .. auth, "volume", "create", "sb", $"{H(1)}:{disk}/sb"], TimeSpan.FromSeconds(60));
            Assert.That((r.ExitCode, r.Stderr), Is.EqualTo((1, "volume create: sb: failed: wrong or missing shared secret (brickctl --secret-file FILE)\n")), r.ToString());
            r = Shell.Run(Programs.Find("brickctl"), ["--server", Node(2).Server, .. auth, "volume", "delete", "bv"], TimeSpan.FromSeconds(60));
            Assert.That(r.ExitCode, Is.EqualTo(1), r.ToString());
        }

        Assert.That(await RevisionAsync(), Is.EqualTo(revision), "no refused request stored anything in etcd");
        Assert.That(Disk(), Is.EqualTo(onDisk), "no refused request made a brick on any node");
        Assert.That(_c.InfoEverywhere("bv"), Is.EqualTo(infos));
        Node(2).MustCtl("volume", "delete", "bv");
    }
}
