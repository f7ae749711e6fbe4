using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// add-brick reaching a client that stays mounted: brickfs-mgmtd serves the grown client
/// volfile, the mount's volfile watch builds the new protocol/client and appends it to
/// cluster/distribute in place; after the rebalance (fix-layout and migration, run by mgmtd)
/// the same mount, never remounted, creates files on the new brick where their names hash.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class DistributeLiveGrowthTests : ScratchMountTest
{
    protected override string ScratchPrefix => "brickfs-dist-live-";

    private string MountLog => Path.Combine(_work, "mount.log");

    [Test, CancelAfter(600_000)]
    public async Task A_mounted_client_takes_an_added_brick_in_place_and_creates_files_on_it_after_the_rebalance()
    {
        var disk = Own(new BtrfsImage("dist-live", 1L << 30));
        var mgmtd = Own(new MgmtdProcess(Path.Combine(_work, "mgmtd")));
        var brickDirs = Enumerable.Range(0, 3).Select(i => Path.Combine(disk.MountPoint, $"b{i}")).ToList();
        mgmtd.MustCtl("volume", "create", "lv", $"127.0.0.1:{brickDirs[0]}", $"127.0.0.1:{brickDirs[1]}", "force");
        mgmtd.MustCtl("volume", "start", "lv");
        await mgmtd.WaitOnlineAsync("lv");
        var mounted = Shell.Run(Programs.MountBrickfs, [$"127.0.0.1:{mgmtd.Port}:/lv", _mnt, "-o", $"log-file={MountLog}"], TimeSpan.FromSeconds(60));
        Assert.That(mounted.Ok, Is.True, mounted.ToString());
        int pid = MountPid();

        var expected = new Dictionary<string, string>();
        Directory.CreateDirectory(Path.Combine(_mnt, "d"));
        for (int i = 0; i < 60; i++) expected[i % 2 == 0 ? $"old{i}" : $"d/old{i}"] = $"before the brick {i}\n";
        foreach (var (path, text) in expected) File.WriteAllText(Path.Combine(_mnt, path), text);

        mgmtd.MustCtl("volume", "add-brick", "lv", $"127.0.0.1:{brickDirs[2]}", "force");
        await mgmtd.WaitOnlineAsync("lv");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(120), () => File.ReadAllText(MountLog).Contains("volfile.reconfigured", StringComparison.Ordinal),
            "the mount applied the grown volfile");
        Assert.That(File.ReadAllText(MountLog), Does.Contain("lv-dht.subvolumes="), "the new brick was attached to distribute");
        Assert.That(File.ReadAllText(MountLog), Does.Not.Contain("volfile.changed-needs-remount"));
        // The new protocol/client connects in the background; until it has, distribute places
        // new directories on the bricks it reaches (rebalance's fix-layout extends them later).
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => File.ReadAllText(MountLog).Contains("[lv-client-2] connected to brick", StringComparison.Ordinal),
            "the mount connected to the new brick");

        // A directory made now is laid out over all three bricks at once.
        Directory.CreateDirectory(Path.Combine(_mnt, "fresh"));
        Assert.That(Directory.Exists(Path.Combine(brickDirs[2], "fresh")), Is.True, "mkdir reached the new brick");
        for (int i = 0; i < 60; i++) File.WriteAllText(Path.Combine(_mnt, "fresh", $"n{i}"), $"fresh {i}\n");
        Assert.That(Enumerable.Range(0, 60).Count(i => DistributedMountVolume.IsDataFile(Path.Combine(brickDirs[2], "fresh", $"n{i}"))), Is.GreaterThan(5),
            "files of the new directory land on the new brick");
        for (int i = 0; i < 60; i++) expected[$"fresh/n{i}"] = $"fresh {i}\n";

        mgmtd.MustCtl("volume", "rebalance", "lv", "start");
        System.Text.Json.JsonElement status = default;
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(240), () =>
        {
            status = mgmtd.Json("volume", "rebalance", "lv", "status");
            return !status.GetProperty("running").GetBoolean() && status.GetProperty("state").GetString() != "starting";
        }, "the rebalance ends");
        Assert.That(status.GetProperty("state").GetString(), Is.EqualTo("completed"), status.ToString());

        // The same mount, after the layout fix: new names go where the new layouts hash them, the new brick included.
        for (int i = 0; i < 90; i++)
        {
            string path = i % 2 == 0 ? $"new{i}" : $"d/new{i}";
            File.WriteAllText(Path.Combine(_mnt, path), $"after the rebalance {i}\n");
            expected[path] = $"after the rebalance {i}\n";
        }
        int onNew = 0;
        foreach (var (path, text) in expected)
        {
            string dir = Path.GetDirectoryName(path)!, name = Path.GetFileName(path);
            int hashed = DistributeRebalanceTests.HashedBrick(brickDirs, dir, name);
            Assert.That(Enumerable.Range(0, 3).Where(b => DistributedMountVolume.IsDataFile(Path.Combine(brickDirs[b], path))), Is.EqualTo(new[] { hashed }),
                $"{path}: its data only on its hashed brick");
            if (path.Contains("new", StringComparison.Ordinal) && hashed == 2) onNew++;
            Assert.That(File.ReadAllText(Path.Combine(_mnt, path)), Is.EqualTo(text), path);
        }
        Assert.That(onNew, Is.GreaterThan(10), "the mounted client created files on the added brick");
        Assert.That(MountPid(), Is.EqualTo(pid), "the mount was never remounted");
        Assert.That(Directory.EnumerateFileSystemEntries(_mnt).Count(), Is.EqualTo(expected.Keys.Count(k => !k.Contains('/')) + 2));
    }

    /// <summary>The mount.brickfs process serving the mount point.</summary>
    private int MountPid()
    {
        var line = Shell.Must($"ps -eo pid,args | grep -F 'mount.brickfs' | grep -F '{_mnt}' | grep -v grep | head -1", TimeSpan.FromSeconds(10)).Trim();
        Assert.That(line, Is.Not.Empty, "a mount.brickfs process serves the mount");
        return int.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
    }
}
