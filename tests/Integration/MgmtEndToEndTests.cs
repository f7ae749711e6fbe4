using System.Diagnostics;
using System.Text.Json;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// The management plane as an administrator uses it: the real brickfs-mgmtd, brickctl, brickd,
/// brickfs-shd and mount.brickfs (through <c>mount -t brickfs</c>), bricks on loop-mounted Btrfs.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class MgmtEndToEndTests
{
    private readonly List<IDisposable> _owned = [];
    private readonly List<string> _mounts = [];
    private string _work = "";

    [SetUp]
    public void SetUp() => _work = Directory.CreateTempSubdirectory("brickfs-mgmt-e2e-").FullName;

    [TearDown]
    public void TearDown()
    {
        foreach (var m in _mounts) Shell.Sh($"umount '{m}' 2>/dev/null || umount -l '{m}' 2>/dev/null", TimeSpan.FromSeconds(30));
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
        _mounts.Clear();
        Directory.Delete(_work, recursive: true);
    }

    private T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }

    private string Dir(string name) => Directory.CreateDirectory(Path.Combine(_work, name)).FullName;

    private static bool IsMounted(string dir) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == dir);

    /// <summary>`mount -t brickfs SOURCE DIR -o OPTIONS`; the mount is undone in TearDown if the test does not.</summary>
    private ShellResult MountBrickfs(string source, string dir, string options = "")
    {
        _mounts.Add(dir);
        string o = $"log-file={Path.Combine(_work, Path.GetFileName(dir) + ".log")}" + (options.Length > 0 ? "," + options : "");
        return Shell.Run("mount", ["-t", "brickfs", source, dir, "-o", o], TimeSpan.FromSeconds(60));
    }

    private static void Umount(string dir)
    {
        var r = Shell.Run("umount", [dir], TimeSpan.FromSeconds(30));
        Assert.That(r.Ok, Is.True, r.ToString());
    }

    [Test, CancelAfter(150_000)]
    public async Task A_replica_3_volume_is_created_mounted_healed_snapshot_and_restored()
    {
        var disks = Enumerable.Range(1, 3).Select(i => Own(new BtrfsImage($"mgmt-e2e-{i}", 1L << 30))).ToList();
        var mgmtd = Own(new MgmtdProcess(Dir("mgmtd")));
        Own(new MountHelperLink());
        var bricks = disks.Select(d => $"127.0.0.1:{Path.Combine(d.MountPoint, "brick")}").ToArray();
        string source = $"127.0.0.1:{mgmtd.Port}:/gv";

        mgmtd.MustCtl(["volume", "create", "gv", "replica", "3", .. bricks, "force"]);
        mgmtd.MustCtl("volume", "start", "gv");
        await mgmtd.WaitOnlineAsync("gv");
        var status = mgmtd.MustCtl("volume", "status", "gv").Stdout;
        Assert.That(status.Split('\n').Count(l => l.StartsWith("Brick 127.0.0.1:") && l.Contains(" Y ")), Is.EqualTo(3), status);

        string mnt = Dir("mnt");
        var mounted = MountBrickfs(source, mnt);
        Assert.That(mounted.Ok, Is.True, mounted.ToString());
        File.WriteAllText(Path.Combine(mnt, "kept.txt"), "before the snapshot");
        Assert.That(File.ReadAllText(Path.Combine(mnt, "kept.txt")), Is.EqualTo("before the snapshot"));
        foreach (var d in disks)
            Assert.That(File.ReadAllText(Path.Combine(d.MountPoint, "brick", "kept.txt")), Is.EqualTo("before the snapshot"), "every replica holds the file");

        // A write's pending marks stay while replicate's eager batch lasts (post-op-delay-secs, 1 s
        // by default) and are settled after it: heal info then lists nothing on any brick.
        string heal = "";
        bool settled = await Eventually.TryAsync(TimeSpan.FromSeconds(20), () =>
        {
            heal = mgmtd.MustCtl("volume", "heal", "gv", "info").Stdout;
            return heal.Split('\n').Count(l => l == "Number of entries: 0") == 3;
        }, TimeSpan.FromMilliseconds(500));
        Assert.That(settled, Is.True, heal);

        var created = mgmtd.MustCtl("snapshot", "create", "s1", "gv");
        Assert.That(created.Stdout, Does.StartWith("snapshot create: success: Snap s1 created successfully"));
        Assert.That(mgmtd.MustCtl("snapshot", "list").Stdout, Is.EqualTo("s1\n"));
        File.WriteAllText(Path.Combine(mnt, "kept.txt"), "after the snapshot");
        File.WriteAllText(Path.Combine(mnt, "later.txt"), "written after the snapshot");

        // The snapshot, served as a volume of its own, mounts read-only with the old content.
        mgmtd.MustCtl("snapshot", "activate", "s1");
        string snapMnt = Dir("snap");
        var snapMount = MountBrickfs($"127.0.0.1:{mgmtd.Port}:/snaps/s1/gv", snapMnt);
        Assert.That(snapMount.Ok, Is.True, snapMount.ToString());
        Assert.That(File.ReadAllText(Path.Combine(snapMnt, "kept.txt")), Is.EqualTo("before the snapshot"));
        Assert.That(File.Exists(Path.Combine(snapMnt, "later.txt")), Is.False);
        Assert.That(Shell.Sh($"touch '{snapMnt}/new'").Stderr, Does.Contain("Read-only file system"));
        Umount(snapMnt);

        Umount(mnt);
        Assert.That(mgmtd.Ctl("snapshot", "restore", "s1").Stderr, Is.EqualTo("snapshot restore: s1: failed: volume gv is started; stop it before restoring snapshot s1\n"));
        mgmtd.MustCtl("volume", "stop", "gv");
        mgmtd.MustCtl("snapshot", "restore", "s1");
        mgmtd.MustCtl("volume", "start", "gv");
        await mgmtd.WaitOnlineAsync("gv");
        mounted = MountBrickfs(source, mnt);
        Assert.That(mounted.Ok, Is.True, mounted.ToString());
        Assert.That(File.ReadAllText(Path.Combine(mnt, "kept.txt")), Is.EqualTo("before the snapshot"), "restore rolled the volume back");
        Assert.That(File.Exists(Path.Combine(mnt, "later.txt")), Is.False);
        File.WriteAllText(Path.Combine(mnt, "after-restore.txt"), "the restored volume is writable");
        Umount(mnt);

        Assert.That(mgmtd.Ctl("volume", "stop", "gv").Ok, Is.True);
        Assert.That(mgmtd.Ctl("volume", "delete", "gv").Stderr, Is.EqualTo("volume delete: gv: failed: volume gv has snapshots (s1); delete them first\n"));
        mgmtd.MustCtl("snapshot", "delete", "s1");
        Assert.That(mgmtd.MustCtl("snapshot", "list").Stdout, Is.EqualTo("No snapshots present\n"));
        foreach (var d in disks) Assert.That(Directory.Exists(Path.Combine(d.MountPoint, ".brickfs-snaps")), Is.False, "the snapshot subvolumes are gone");
        mgmtd.MustCtl("volume", "delete", "gv");
    }

    [Test, CancelAfter(150_000)]
    public async Task Bitrot_is_enabled_and_scrubbed_on_demand_through_brickctl_and_reports_rot_with_its_path()
    {
        var disk = Own(new BtrfsImage("mgmt-bitrot", 512L << 20));
        var mgmtd = Own(new MgmtdProcess(Dir("mgmtd")));
        Own(new MountHelperLink());
        string brick = Path.Combine(disk.MountPoint, "brick");
        mgmtd.MustCtl("volume", "create", "bv", $"127.0.0.1:{brick}");
        mgmtd.MustCtl("volume", "start", "bv");
        await mgmtd.WaitOnlineAsync("bv");
        Assert.That(mgmtd.Ctl("volume", "bitrot", "bv", "scrub", "status").Stderr.TrimEnd('\n'),
            Is.EqualTo("volume bitrot: bv: failed: bitrot is off on volume bv (brickctl volume bitrot bv enable)"));
        var enabled = mgmtd.MustCtl("volume", "bitrot", "bv", "enable").Stdout;
        Assert.That(enabled, Is.EqualTo("volume bitrot: bv: success: bitrot enabled; 1 brick(s) of this node restarted\n"));
        mgmtd.MustCtl("volume", "bitrot", "bv", "scrub-files-per-second", "50");
        await mgmtd.WaitOnlineAsync("bv");

        string mnt = Dir("mnt");
        var mounted = MountBrickfs($"127.0.0.1:{mgmtd.Port}:/bv", mnt);
        Assert.That(mounted.Ok, Is.True, mounted.ToString());
        var data = new byte[300_000];
        new Random(9).NextBytes(data);
        Directory.CreateDirectory(Path.Combine(mnt, "d"));
        File.WriteAllBytes(Path.Combine(mnt, "d", "cold"), data);
        File.WriteAllText(Path.Combine(mnt, "warm"), "warm\n");
        Umount(mnt);
        using (var f = new FileStream(Path.Combine(brick, "d", "cold"), FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = 200_000;
            int b = f.ReadByte();
            f.Position = 200_000;
            f.WriteByte((byte)(b ^ 0x5A));
        }

        var started = mgmtd.MustCtl("volume", "bitrot", "bv", "scrub", "ondemand").Stdout;
        Assert.That(started, Does.StartWith("volume bitrot: bv: scrub ondemand: success: every brick started a pass"), started);
        JsonElement report = default;
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () =>
        {
            report = mgmtd.Json("volume", "bitrot", "bv", "scrub", "status").GetProperty("bricks")[0];
            return !report.GetProperty("running").GetBoolean() && report.GetProperty("passes").GetInt64() >= 1;
        }, "the on-demand pass finishes");
        Assert.That(report.GetProperty("brick").GetString(), Is.EqualTo($"127.0.0.1:{brick}"));
        Assert.That(report.GetProperty("error").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(report.GetProperty("filesScrubbed").GetInt64(), Is.EqualTo(1), "the good file completed; the rotted one stopped at its bad block");
        Assert.That(report.GetProperty("filesPerSecond").GetDouble(), Is.EqualTo(50));
        var bad = report.GetProperty("badFiles").EnumerateArray().Single();
        Assert.That((bad.GetProperty("path").GetString(), bad.GetProperty("block").GetInt64(), bad.GetProperty("foundBy").GetString()),
            Is.EqualTo(("/d/cold", 200_000L / 65536, "scrubber")));
        var text = mgmtd.MustCtl("volume", "bitrot", "bv", "scrub", "status").Stdout;
        Assert.That(text, Does.Contain($"brick 127.0.0.1:{brick}: idle, 1 files").And.Contain("bad file").And.Contain("/d/cold block 3"), text);

        Assert.That(mgmtd.MustCtl("volume", "bitrot", "bv", "disable").Stdout, Does.StartWith("volume bitrot: bv: success: bitrot disabled"));
        await mgmtd.WaitOnlineAsync("bv");
        Assert.That(mgmtd.Ctl("volume", "bitrot", "bv", "scrub", "ondemand").ExitCode, Is.EqualTo(1), "off again");
    }

    [Test, CancelAfter(90_000)]
    public async Task Mounting_by_name_falls_back_to_backup_servers_and_works_from_an_fstab()
    {
        var disk = Own(new BtrfsImage("mgmt-fstab", 512L << 20));
        var mgmtd = Own(new MgmtdProcess(Dir("mgmtd")));
        Own(new MountHelperLink());
        mgmtd.MustCtl("volume", "create", "fv", $"127.0.0.1:{Path.Combine(disk.MountPoint, "brick")}");
        mgmtd.MustCtl("volume", "start", "fv");
        await mgmtd.WaitOnlineAsync("fv");
        string mnt = Dir("mnt");

        var unknown = MountBrickfs($"127.0.0.1:{mgmtd.Port}:/nope", mnt);
        Assert.That(unknown.ExitCode, Is.Not.Zero);
        Assert.That(unknown.Stderr.TrimEnd('\n'), Is.EqualTo($"mount.brickfs: 127.0.0.1:/nope: 127.0.0.1:{mgmtd.Port}: volume nope does not exist"));
        int deadPort = BrickProcess.FreePort();
        var unreachable = MountBrickfs($"127.0.0.1:{deadPort}:/fv", mnt, "backup-volfile-servers=localhost");
        Assert.That(unreachable.ExitCode, Is.Not.Zero);
        Assert.That(unreachable.Stderr.TrimEnd('\n'), Does.StartWith("mount.brickfs: 127.0.0.1:/fv: no volfile server answered (127.0.0.1:").And.Not.Contain("\n"));
        Assert.That(IsMounted(mnt), Is.False);

        // 127.0.0.2 is loopback too, but mgmtd listens on 127.0.0.1 only: the first server refuses, the backup answers.
        string fstab = Path.Combine(_work, "fstab");
        File.WriteAllText(fstab, $"127.0.0.2:{mgmtd.Port}:/fv {mnt} brickfs defaults,_netdev,backup-volfile-servers=127.0.0.1,log-file={_work}/fstab-mount.log 0 0\n");
        _mounts.Add(mnt);
        var r = Shell.Run("mount", ["-T", fstab, mnt], TimeSpan.FromSeconds(60));
        Assert.That(r.Ok, Is.True, r.ToString());
        Assert.That(IsMounted(mnt), Is.True);
        File.WriteAllText(Path.Combine(mnt, "f"), "from fstab");
        Assert.That(File.ReadAllText(Path.Combine(disk.MountPoint, "brick", "f")), Is.EqualTo("from fstab"));
        Umount(mnt);
        Assert.That(IsMounted(mnt), Is.False);
    }

    [Test, CancelAfter(120_000)]
    public async Task Mgmtd_killed_during_volume_create_keeps_each_definition_absent_or_complete()
    {
        var disk = Own(new BtrfsImage("mgmt-kill", 512L << 20));
        var mgmtd = Own(new MgmtdProcess(Dir("mgmtd")));
        var random = new Random(8);
        // brickctl's own start-up takes most of a request's time: aim the kills around its length.
        var clock = Stopwatch.StartNew();
        mgmtd.MustCtl("volume", "list");
        int typical = (int)clock.ElapsedMilliseconds;
        for (int round = 0; round < 4; round++)
        {
            string vol = $"k{round}";
            string[] bricks = [.. Enumerable.Range(1, 3).Select(i => $"127.0.0.1:{disk.MountPoint}/{vol}/b{i}")];
            var psi = new ProcessStartInfo(Programs.Find("brickctl")) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--server", mgmtd.Server, "--timeout", "30", "volume", "create", vol, "replica", "3" }.Concat(bricks).Append("force"))
                psi.ArgumentList.Add(a);
            using var ctl = Process.Start(psi)!;
            clock.Restart();
            var output = ctl.StandardError.ReadToEndAsync();
            // The fault lands at a different moment of the request each round: before, during or after the store update.
            await Task.Delay(random.Next(typical / 2, typical * 3 / 2 + 1));
            mgmtd.Kill9();
            clock.Stop();
            using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(40))) await ctl.WaitForExitAsync(limit.Token);
            await output;
            mgmtd.Start();

            var info = mgmtd.Ctl("--json", "volume", "info", vol);
            TestContext.Out.WriteLine($"round {round}: killed after {clock.ElapsedMilliseconds} ms of {typical}; definition {(info.Ok ? "complete" : "absent")}");
            if (info.Ok)
            {
                var v = System.Text.Json.JsonDocument.Parse(info.Stdout).RootElement;
                var stored = v.GetProperty("bricks").EnumerateArray().ToList();
                Assert.That(stored, Has.Count.EqualTo(3), $"round {round}: a stored definition is complete");
                Assert.That(stored.All(b => b.GetProperty("port").GetInt32() >= 49152), Is.True, info.Stdout);
            }
            else
            {
                Assert.That(info.Stderr, Is.EqualTo($"volume info: failed: volume {vol} does not exist\n"), $"round {round}: {info}");
                // Whatever the killed request left on disk does not stand in the way of doing it again.
                mgmtd.MustCtl(["volume", "create", vol, "replica", "3", .. bricks, "force"]);
            }
        }
        Assert.That(mgmtd.MustCtl("volume", "list").Stdout, Is.EqualTo("k0\nk1\nk2\nk3\n"));
    }
}
