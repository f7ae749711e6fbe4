using System.Text.Json;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// Growing and shrinking a distributed volume as an administrator does it: brickctl add-brick +
/// rebalance start/status, remove-brick start/status/commit, through the real brickfs-mgmtd
/// (which runs brickfs-shd rebalance), brickd and <c>mount -t brickfs</c>.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MgmtRebalanceTests : ScratchMountTest
{
    protected override string ScratchPrefix => "brickfs-mgmt-rebalance-";

    private void Mount(MgmtdProcess mgmtd)
    {
        Shell.Sh($"umount '{_mnt}' 2>/dev/null", TimeSpan.FromSeconds(30));
        var r = Shell.Run("mount", ["-t", "brickfs", $"127.0.0.1:{mgmtd.Port}:/dv", _mnt, "-o", $"log-file={Path.Combine(_work, "mount.log")}"], TimeSpan.FromSeconds(60));
        Assert.That(r.Ok, Is.True, r.ToString());
    }

    private static async Task<JsonElement> WaitDoneAsync(MgmtdProcess mgmtd, params string[] statusCommand)
    {
        JsonElement last = default;
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(240), () =>
        {
            last = mgmtd.Json(statusCommand);
            return !last.GetProperty("running").GetBoolean() && last.GetProperty("state").GetString() != "starting";
        }, $"{string.Join(' ', statusCommand)} finishes");
        return last;
    }

    [Test, CancelAfter(600_000)]
    public async Task A_brick_added_and_rebalanced_then_another_drained_and_removed_keeps_every_file()
    {
        var disk = Own(new BtrfsImage("mgmt-rebalance", 1L << 30));
        var mgmtd = Own(new MgmtdProcess(Path.Combine(_work, "mgmtd")));
        Own(new MountHelperLink());
        var brickDirs = Enumerable.Range(0, 3).Select(i => Path.Combine(disk.MountPoint, $"b{i}")).ToList();
        var bricks = brickDirs.Select(d => $"127.0.0.1:{d}").ToList();

        mgmtd.MustCtl("volume", "create", "dv", bricks[0], bricks[1], "force");
        mgmtd.MustCtl("volume", "start", "dv");
        await mgmtd.WaitOnlineAsync("dv");
        Mount(mgmtd);
        var expected = new Dictionary<string, string>();
        Directory.CreateDirectory(Path.Combine(_mnt, "d"));
        for (int i = 0; i < 300; i++) expected[i % 3 == 0 ? $"r{i}" : $"d/f{i}"] = $"content {i}\n";
        foreach (var (path, text) in expected) File.WriteAllText(Path.Combine(_mnt, path), text);

        mgmtd.MustCtl("volume", "add-brick", "dv", bricks[2], "force");
        await mgmtd.WaitOnlineAsync("dv");
        Mount(mgmtd); // the client graph with the new brick
        var started = mgmtd.MustCtl("volume", "rebalance", "dv", "start").Stdout;
        Assert.That(started, Does.StartWith("rebalance of volume dv: "));
        var done = await WaitDoneAsync(mgmtd, "volume", "rebalance", "dv", "status");
        Assert.That(done.GetProperty("state").GetString(), Is.EqualTo("completed"), done.ToString());
        Assert.That(done.GetProperty("failures").GetInt64() + done.GetProperty("skipped").GetInt64(), Is.Zero, done.ToString());
        Assert.That(done.GetProperty("filesMoved").GetInt64(), Is.GreaterThan(300 / 6), done.ToString());
        Assert.That(done.GetProperty("filesScanned").GetInt64(), Is.EqualTo(300), done.ToString());
        Assert.That(mgmtd.MustCtl("volume", "rebalance", "dv", "status").Stdout, Does.Contain("rebalance of volume dv: completed").And.Contain("Moved files: "));
        foreach (var (path, text) in expected)
        {
            int hashed = DistributeRebalanceTests.HashedBrick(brickDirs, Path.GetDirectoryName(path)!, Path.GetFileName(path));
            Assert.That(Enumerable.Range(0, 3).Where(i => DistributedMountVolume.IsDataFile(Path.Combine(brickDirs[i], path))), Is.EqualTo(new[] { hashed }), path);
            Assert.That(File.ReadAllText(Path.Combine(_mnt, path)), Is.EqualTo(text), path);
        }

        // Drain brick 0, then remove it: every file moves to the remaining bricks first.
        Assert.That(mgmtd.Ctl("volume", "remove-brick", "dv", bricks[0], "commit").Stderr, Does.Contain("the bricks were not drained"));
        mgmtd.MustCtl("volume", "remove-brick", "dv", bricks[0], "start");
        var drained = await WaitDoneAsync(mgmtd, "volume", "remove-brick", "dv", bricks[0], "status");
        Assert.That(drained.GetProperty("task").GetString(), Is.EqualTo("remove-brick"));
        Assert.That(drained.GetProperty("state").GetString(), Is.EqualTo("completed"), drained.ToString());
        Assert.That(drained.GetProperty("failures").GetInt64() + drained.GetProperty("skipped").GetInt64(), Is.Zero, drained.ToString());
        Assert.That(DistributedMountVolume.DataFilesIn(brickDirs[0]), Is.Empty, "no data file is left on the drained brick");
        mgmtd.MustCtl("volume", "remove-brick", "dv", bricks[0], "commit");
        Assert.That(mgmtd.Json("volume", "info", "dv").GetProperty("brickCount").GetInt32(), Is.EqualTo(2));
        Mount(mgmtd);
        foreach (var (path, text) in expected) Assert.That(File.ReadAllText(Path.Combine(_mnt, path)), Is.EqualTo(text), $"{path} after remove-brick commit");
        Assert.That(Directory.EnumerateFiles(Path.Combine(_mnt, "d")).Count(), Is.EqualTo(expected.Keys.Count(k => k.StartsWith("d/", StringComparison.Ordinal))));
    }
}
