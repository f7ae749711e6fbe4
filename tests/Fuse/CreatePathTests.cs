namespace Brickfs.Tests.Fuse;

/// <summary>
/// Around every create the kernel asks two things the bridge answers without a trip through
/// the graph: whether the new file has a file capability (before its first write), and the
/// directory's attributes (dropped by the create, needed by the next permission check there).
/// Neither shortcut may show anything older than what this mount itself changed.
/// </summary>
[NonParallelizable]
public class CreatePathTests
{
    [Test, CancelAfter(60_000)]
    public async Task FilesCreatedThroughTheMountAreWrittenWithoutAskingTheGraphForACapability()
    {
        await using var m = await InProcessMount.StartAsync();
        var r = FuseTest.Run("/bin/sh", ["-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo data > \"$0/f$i\"; done", m.Dir]);
        Assert.That(r.Exit, Is.Zero, r.Err);
        Assert.That(File.ReadAllText(m["f10"]), Is.EqualTo("data\n"));
        Assert.That(m.Recorder.Getxattrs, Does.Not.Contain("security.capability"));
    }

    private const string SetCapabilityScript = """
        import os, struct, sys
        p = sys.argv[1]
        with open(p, "w") as f: f.write("x")
        # vfs_cap_data revision 2, effective, CAP_NET_BIND_SERVICE permitted
        v = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
        os.setxattr(p, "security.capability", v)
        print(os.getxattr(p, "security.capability").hex())
        """;

    [Test, CancelAfter(60_000)]
    public async Task ACapabilitySetAfterTheCreateIsSeenAtOnce()
    {
        await using var m = await InProcessMount.StartAsync();
        var r = FuseTest.Run("python3", ["-c", SetCapabilityScript, m["prog"]]);
        Assert.That(r.Exit, Is.Zero, r.Err);
        Assert.That(r.Out.Trim(), Is.EqualTo("0100000200040000000000000000000000000000"));
    }

    private const string DirectoryAttributesScript = """
        import os, sys
        a, b = sys.argv[1] + "/a", sys.argv[1] + "/b"
        os.mkdir(a); os.mkdir(b)
        def nlink(d): return os.stat(d).st_nlink
        for i in range(60):
            os.mkdir(f"{a}/s{i}")
            assert nlink(a) == 3 + i, f"after mkdir {i}: nlink {nlink(a)}"
            with open(f"{a}/f{i}", "w") as f: f.write("x")
            assert nlink(a) == 3 + i, f"after create {i}"
        for i in range(60):
            # creates, a rename and a chmod interleaved: each leaves the directory attributes changed
            with open(f"{a}/g{i}", "w") as f: f.write("x")
            with open(f"{b}/g{i}", "w") as f: f.write("x")
            os.rename(f"{a}/s{i}", f"{b}/s{i}")
            assert (nlink(a), nlink(b)) == (61 - i, 3 + i), f"after rename {i}: {nlink(a)} {nlink(b)}"
            with open(f"{a}/h{i}", "w") as f: f.write("x")
            mode = 0o700 if i % 2 else 0o755
            os.chmod(a, mode)
            assert os.stat(a).st_mode & 0o777 == mode, f"after chmod {i}"
        for i in range(60):
            os.rmdir(f"{b}/s{i}")
            assert nlink(b) == 61 - i, f"after rmdir {i}: {nlink(b)}"
            m0 = os.stat(a).st_mtime_ns
            os.unlink(f"{a}/f{i}")
            assert os.stat(a).st_mtime_ns >= m0
        print("ok")
        """;

    /// <summary>
    /// The directory's link count after each mkdir, rename and rmdir through the mount is the new
    /// one: a stat begun before a change never answers for the directory after it.
    /// </summary>
    [Test, CancelAfter(120_000)]
    public async Task DirectoryAttributesAfterEachEntryChangeShowThatChange()
    {
        await using var m = await InProcessMount.StartAsync();
        var r = FuseTest.Run("python3", ["-c", DirectoryAttributesScript, m.Dir], 100_000);
        Assert.That(r.Exit, Is.Zero, r.Err);
        Assert.That(r.Out.Trim(), Is.EqualTo("ok"));
    }
}
