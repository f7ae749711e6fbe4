namespace Brickfs.Tests.Fuse;

/// <summary>
/// A mount process ends its own mount, never someone else's: when another mount now sits on
/// the same directory (stacked over it, or the path reused after a lazy unmount), SIGTERM to
/// the old process must leave the newer mount alone.
/// </summary>
[NonParallelizable]
public class StackedMountTests
{
    private string _work = "";
    private string _dir = "";
    private string _volfile = "";

    [SetUp]
    public void Prepare()
    {
        _work = FuseTest.TempDir("stack");
        _dir = Path.Combine(_work, "mnt");
        Directory.CreateDirectory(_dir);
        _volfile = Path.Combine(_work, "mem.vol");
        File.WriteAllText(_volfile, "volume mem\n    type storage/memory\n    option capacity 64MB\nend-volume\n");
    }

    [TearDown]
    public void CleanUp()
    {
        for (int i = 0; i < 3 && FuseTest.IsMounted(_dir); i++) FuseTest.Run("umount", ["-l", _dir], 10_000);
        FuseTest.ForceUnmount(_dir);
        Directory.Delete(_work, recursive: true);
    }

    [Test, CancelAfter(60_000)]
    public void SigtermToTheLowerMountLeavesTheMountStackedOverItServing()
    {
        using var lower = FuseTest.Start(FuseTest.MountProgram, "-f", "--volfile", _volfile, "-o", $"log-file={_work}/lower.log", _dir);
        FuseTest.Eventually(() => FuseTest.IsMounted(_dir) && !Directory.EnumerateFileSystemEntries(_dir).Any(), TimeSpan.FromSeconds(15), "the lower mount answers");
        var upper = FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, "-o", $"log-file={_work}/upper.log", _dir]);
        Assert.That(upper.Exit, Is.Zero, upper.Err);
        File.WriteAllText(Path.Combine(_dir, "on-upper"), "kept");

        FuseTest.Kill(lower.Id, "TERM");
        Assert.That(lower.WaitForExit(20_000), Is.True, "the lower mount process exits");

        Assert.That(FuseTest.IsMounted(_dir), Is.True, "the upper mount is still there");
        Assert.That(File.ReadAllText(Path.Combine(_dir, "on-upper")), Is.EqualTo("kept"), "and still serves its files");
        Assert.That(FuseTest.Run("umount", [_dir]).Exit, Is.Zero, "the upper mount unmounts normally");
    }
}
