using System.Text.RegularExpressions;

namespace Brickfs.Tests.Fuse;

/// <summary>One volume mounted by the real mount.brickfs (background mode) over storage/memory, used through plain System.IO and shell tools.</summary>
[NonParallelizable]
public class MountedVolumeTests
{
    private string _work = "";
    private string _dir = "";

    private string P(string name) => Path.Combine(_dir, name);

    [OneTimeSetUp]
    public void MountVolume()
    {
        _work = FuseTest.TempDir("vol");
        _dir = Path.Combine(_work, "mnt");
        Directory.CreateDirectory(_dir);
        string volfile = Path.Combine(_work, "mem.vol");
        File.WriteAllText(volfile, "volume mem\n    type storage/memory\n    option capacity 2GB\nend-volume\n");
        var r = FuseTest.Run(FuseTest.MountProgram, ["--volfile", volfile, "-o", $"log-file={_work}/mount.log", _dir]);
        Assert.That(r.Exit, Is.Zero, r.Err);
        Assert.That(FuseTest.IsMounted(_dir), Is.True, "mounted when the program returns");
    }

    [OneTimeTearDown]
    public void Unmount()
    {
        if (FuseTest.IsMounted(_dir)) FuseTest.Run("umount", [_dir], 10_000);
        FuseTest.ForceUnmount(_dir);
        Directory.Delete(_work, recursive: true);
    }

    private static FuseTest.Result Sh(string script)
    {
        var r = FuseTest.Sh(script);
        Assert.That(r.Exit, Is.Zero, $"{script}\n{r.Err}");
        return r;
    }

    [Test, CancelAfter(30_000)]
    public void FilesAreCreatedWrittenReadAndStatted()
    {
        var data = new byte[3 << 20];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(P("data.bin"), data);
        Assert.That(File.ReadAllBytes(P("data.bin")), Is.EqualTo(data));
        Assert.That(new FileInfo(P("data.bin")).Length, Is.EqualTo(data.Length));
        Assert.That(Sh($"stat -c '%s %F' {P("data.bin")}").Out.Trim(), Is.EqualTo($"{data.Length} regular file"));
        Assert.That(Sh($"cat {P("data.bin")} | cmp - {P("data.bin")} && echo same").Out.Trim(), Is.EqualTo("same"));
    }

    [Test, CancelAfter(30_000)]
    public void DirectoriesAreMadeListedAndRemoved()
    {
        Sh($"mkdir -p {P("tree/a/b")} && touch {P("tree/a/f")}");
        Assert.That(Directory.GetFileSystemEntries(P("tree/a")).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "b", "f" }));
        Assert.That(Sh($"stat -c %h {P("tree/a")}").Out.Trim(), Is.EqualTo("3"), "a directory counts 2 + its subdirectories");
        Assert.That(FuseTest.Sh($"rmdir {P("tree/a")}").Exit, Is.Not.Zero, "a non-empty directory stays");
        Sh($"rm -r {P("tree")}");
        Assert.That(Directory.Exists(P("tree")), Is.False);
    }

    [Test, CancelAfter(30_000)]
    public void RenameLinksSymlinksAndFifosBehaveAsOnALocalFilesystem()
    {
        Sh($"echo one > {P("orig")} && mv {P("orig")} {P("moved")} && ln {P("moved")} {P("hard")} && ln -s moved {P("soft")} && mkfifo {P("fifo")}");
        Assert.That(File.Exists(P("orig")), Is.False);
        Assert.That(File.ReadAllText(P("hard")), Is.EqualTo("one\n"));
        var inodes = Sh($"stat -c '%i %h' {P("moved")} {P("hard")}").Out.Trim().Split('\n');
        Assert.That(inodes[0], Is.EqualTo(inodes[1]), "hard links share one inode number");
        Assert.That(inodes[0], Does.EndWith(" 2"));
        Assert.That(Sh($"readlink {P("soft")}").Out.Trim(), Is.EqualTo("moved"));
        Assert.That(File.ReadAllText(P("soft")), Is.EqualTo("one\n"));
        Assert.That(Sh($"stat -c %F {P("fifo")}").Out.Trim(), Is.EqualTo("fifo"));
        Sh($"echo two > {P("other")} && mv -f {P("other")} {P("moved")}");
        Assert.That(File.ReadAllText(P("moved")), Is.EqualTo("two\n"));
        Assert.That(File.ReadAllText(P("hard")), Is.EqualTo("one\n"), "renaming over one link leaves the other");
    }

    [Test, CancelAfter(30_000)]
    public void XattrsAreSetListedReadAndRemoved()
    {
        Sh($"touch {P("x")} && setfattr -n user.colour -v blue {P("x")} && setfattr -n user.size -v 0x{new string('a', 2000)} {P("x")}");
        var dump = Sh($"getfattr -d {P("x")}").Out;
        Assert.That(dump, Does.Contain("user.colour=\"blue\""));
        Assert.That(dump, Does.Contain("user.size="));
        Assert.That(Sh($"getfattr --only-values -n user.size {P("x")} | wc -c").Out.Trim(), Is.EqualTo("1000"));
        Sh($"setfattr -x user.colour {P("x")}");
        Assert.That(FuseTest.Sh($"getfattr -n user.colour {P("x")}").Err, Does.Contain("No such attribute"));
        Assert.That(FuseTest.Sh($"setfattr -n user.size -v 1 --raw {P("x")} 2>&1; python3 -c \"import os; os.setxattr('{P("x")}', 'user.size', b'1', os.XATTR_CREATE)\"").Err,
            Does.Contain("File exists"), "XATTR_CREATE on an existing name fails with EEXIST");
    }

    [Test, CancelAfter(60_000)]
    public void ADirectoryOfTwoThousandEntriesListsCompletely()
    {
        Directory.CreateDirectory(P("many"));
        for (int i = 0; i < 2000; i++) File.Create(P($"many/entry-{i:D4}-with-a-longish-name")).Dispose();
        Assert.That(Directory.GetFiles(P("many")), Has.Length.EqualTo(2000));
        Assert.That(Sh($"ls {P("many")} | wc -l").Out.Trim(), Is.EqualTo("2000"));
        Assert.That(Sh($"ls -l {P("many")} | grep -c entry-").Out.Trim(), Is.EqualTo("2000"));
        Assert.That(Sh($"find {P("many")} -type f | sort -u | wc -l").Out.Trim(), Is.EqualTo("2000"));
    }

    [Test, CancelAfter(60_000)]
    public async Task ConcurrentReadersAllSeeTheSameData()
    {
        var data = new byte[8 << 20];
        Random.Shared.NextBytes(data);
        await File.WriteAllBytesAsync(P("shared.bin"), data);
        var readers = Enumerable.Range(0, 8).Select(_ => Task.Run(() => File.ReadAllBytes(P("shared.bin")))).ToArray();
        foreach (var bytes in await Task.WhenAll(readers)) Assert.That(bytes, Is.EqualTo(data));
    }

    [Test, CancelAfter(30_000)]
    public void AppendAndExclusiveCreateKeepTheirPromises()
    {
        File.WriteAllText(P("log"), "a");
        using (var s = new FileStream(P("log"), FileMode.Append)) s.Write("b"u8);
        Sh($"printf c >> {P("log")}");
        Assert.That(File.ReadAllText(P("log")), Is.EqualTo("abc"));

        Assert.Throws<IOException>(() => new FileStream(P("log"), FileMode.CreateNew).Dispose());
        Assert.That(FuseTest.Sh($"set -C; echo x > {P("log")}").Exit, Is.Not.Zero, "O_EXCL on an existing name fails");
        Assert.That(File.ReadAllText(P("log")), Is.EqualTo("abc"));
    }

    [Test, CancelAfter(30_000)]
    public void TruncateFallocateAndStatfsWork()
    {
        Sh($"printf 0123456789 > {P("t")} && truncate -s 4 {P("t")} && fallocate -l 8192 {P("t2")}");
        Assert.That(File.ReadAllText(P("t")), Is.EqualTo("0123"));
        Assert.That(new FileInfo(P("t2")).Length, Is.EqualTo(8192));
        var df = Sh($"df -B1 --output=size {_dir} | tail -1").Out.Trim();
        Assert.That(long.Parse(df), Is.EqualTo(2L << 30));
    }
}

/// <summary>The program's life cycle: errors, the mount(8) calling form, signals, external unmount, and recovery after SIGKILL.</summary>
[NonParallelizable]
public class MountProgramTests
{
    private string _work = "";
    private string _volfile = "";
    private string _dir = "";

    [SetUp]
    public void MakeDirs()
    {
        _work = FuseTest.TempDir("prog");
        _dir = Path.Combine(_work, "mnt");
        Directory.CreateDirectory(_dir);
        _volfile = Path.Combine(_work, "mem.vol");
        File.WriteAllText(_volfile, "volume mem\n    type storage/memory\nend-volume\n");
    }

    [TearDown]
    public void Cleanup()
    {
        FuseTest.ForceUnmount(_dir);
        Directory.Delete(_work, recursive: true);
    }

    private string LogFile => Path.Combine(_work, "mount.log");

    private FuseTest.Result Mount(params string[] extra) =>
        FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, "-o", $"log-file={LogFile}", .. extra, _dir]);

    private int DaemonPid()
    {
        var m = Regex.Match(File.ReadAllText(LogFile), @"mount\.serving .* pid=(\d+)");
        Assert.That(m.Success, Is.True, "the daemon logs its pid");
        return int.Parse(m.Groups[1].Value);
    }

    private static void AssertOneLineError(FuseTest.Result r, string expected)
    {
        Assert.That(r.Exit, Is.Not.Zero);
        var lines = r.Err.TrimEnd('\n').Split('\n');
        Assert.That(lines, Has.Length.EqualTo(1), r.Err);
        Assert.That(lines[0], Does.StartWith("mount.brickfs: "));
        Assert.That(lines[0], Does.Contain(expected));
    }

    [Test, CancelAfter(30_000)]
    public void HelpDescribesTheUsage()
    {
        var r = FuseTest.Run(FuseTest.MountProgram, ["--help"]);
        Assert.That(r.Exit, Is.Zero);
        Assert.That(r.Out, Does.Contain("--volfile FILE").And.Contain("attribute-timeout"));
    }

    [Test, CancelAfter(30_000)]
    public void EachMistakeIsOneLineAndAFailure()
    {
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, [_dir]), "no volfile given");
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", Path.Combine(_work, "nope.vol"), _dir]), "nope.vol: no such volfile");
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, Path.Combine(_work, "absent")]), "absent: no such directory");
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, _volfile]), "not a directory");
        File.WriteAllText(Path.Combine(_dir, "occupant"), "");
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, _dir]), "directory is not empty");
        File.Delete(Path.Combine(_dir, "occupant"));
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, _dir], env: new Dictionary<string, string> { ["BRICKFS_FUSE_DEVICE"] = "/dev/no-such-fuse" }),
            "/dev/no-such-fuse: no FUSE device");
        AssertOneLineError(FuseTest.Run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", FuseTest.MountProgram, "--volfile", _volfile, _dir]), "must be run as root");
        Assert.That(FuseTest.IsMounted(_dir), Is.False);
    }

    [Test, CancelAfter(30_000)]
    public void ABadVolfileLineIsReportedWithFileAndLine()
    {
        File.WriteAllText(_volfile, "volume mem\n    type storage/memory\n    option colour blue\nend-volume\n");
        AssertOneLineError(Mount(), $"{_volfile}:3: storage/memory has no option 'colour'");
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["-f", "--volfile", _volfile, _dir]), $"{_volfile}:3:");
        Assert.That(FuseTest.IsMounted(_dir), Is.False);
    }

    [Test, CancelAfter(30_000)]
    public void TheMountHelperCallingFormAcceptsGenericOptions()
    {
        var r = FuseTest.Run(FuseTest.MountProgram,
            ["localhost:/vol0", _dir, "-o", $"rw,defaults,_netdev,noauto,nofail,x-systemd.automount,volfile={_volfile},log-file={LogFile},entry-timeout=0.5"]);
        Assert.That(r.Exit, Is.Zero, r.Err);
        File.WriteAllText(Path.Combine(_dir, "f"), "hi");
        Assert.That(File.ReadAllText(Path.Combine(_dir, "f")), Is.EqualTo("hi"));
        Assert.That(FuseTest.Run("umount", [_dir]).Exit, Is.Zero);
    }

    [Test, CancelAfter(30_000)]
    public void ReadOnlyMountsRefuseWrites()
    {
        Assert.That(Mount("-o", "ro").Exit, Is.Zero);
        var r = FuseTest.Sh($"touch {_dir}/f");
        Assert.That(r.Err, Does.Contain("Read-only file system"));
    }

    [Test, CancelAfter(30_000)]
    public void SigtermUnmountsAndExitsZero()
    {
        using var p = FuseTest.Start(FuseTest.MountProgram, "-f", "--volfile", _volfile, _dir);
        FuseTest.Eventually(() => FuseTest.IsMounted(_dir) && Directory.Exists(_dir) && !Directory.EnumerateFileSystemEntries(_dir).Any(), TimeSpan.FromSeconds(15), "the foreground mount answers");
        File.WriteAllText(Path.Combine(_dir, "f"), "x");
        FuseTest.Kill(p.Id, "TERM");
        Assert.That(p.WaitForExit(15_000), Is.True);
        Assert.That(p.ExitCode, Is.Zero);
        Assert.That(FuseTest.IsMounted(_dir), Is.False);
    }

    [Test, CancelAfter(30_000)]
    public void SigtermToTheBackgroundDaemonUnmounts()
    {
        Assert.That(Mount().Exit, Is.Zero);
        int pid = DaemonPid();
        FuseTest.Kill(pid, "TERM");
        FuseTest.Eventually(() => !FuseTest.ProcessAlive(pid), TimeSpan.FromSeconds(15), "the daemon exits");
        Assert.That(FuseTest.IsMounted(_dir), Is.False);
        Assert.That(File.ReadAllText(LogFile), Does.Contain("mount.exit"));
    }

    [Test, CancelAfter(30_000)]
    public void AnExternalUmountEndsTheDaemon()
    {
        Assert.That(Mount().Exit, Is.Zero);
        int pid = DaemonPid();
        Assert.That(FuseTest.Run("umount", [_dir]).Exit, Is.Zero);
        FuseTest.Eventually(() => !FuseTest.ProcessAlive(pid), TimeSpan.FromSeconds(15), "the daemon exits after umount");
        Assert.That(File.ReadAllText(LogFile), Does.Contain("mount.exit"));
    }

    [Test, CancelAfter(30_000)]
    public void AfterSigkillALazyUmountRecoversTheMountPoint()
    {
        Assert.That(Mount().Exit, Is.Zero);
        int pid = DaemonPid();
        FuseTest.Kill(pid, "KILL");
        FuseTest.Eventually(() => !FuseTest.ProcessAlive(pid), TimeSpan.FromSeconds(15), "the daemon is dead");
        // The dead connection answers ENOTCONN (or ECONNABORTED once the kernel marked it aborted,
        // or ECANCELED for a request the io_uring queues held when they were torn down).
        var stat = FuseTest.Sh($"stat {_dir}");
        Assert.That(stat.Exit, Is.Not.Zero);
        Assert.That(stat.Err, Does.Contain("Transport endpoint is not connected").Or.Contain("connection abort").Or.Contain("Operation canceled"));
        Assert.That(FuseTest.Run("umount", ["-l", _dir]).Exit, Is.Zero);
        Assert.That(FuseTest.IsMounted(_dir), Is.False);
        Assert.That(Directory.EnumerateFileSystemEntries(_dir), Is.Empty);
        Assert.That(Mount().Exit, Is.Zero, "the mount point can be mounted again");
    }

    /// <summary>-o fuse-transport=dev keeps /dev/fuse; =uring takes the io_uring queues (install.sh enables them); the log names the one in use.</summary>
    [Test, CancelAfter(60_000)]
    public void TheFuseTransportOptionChoosesHowRequestsTravel()
    {
        foreach (var (option, expected) in new[] { ("dev", "transport=dev"), ("uring", "transport=uring queues="), ("auto", "transport=uring queues=") })
        {
            File.WriteAllText(LogFile, "");
            var r = Mount("-o", $"fuse-transport={option}");
            Assert.That(r.Exit, Is.Zero, r.Err);
            File.WriteAllText(Path.Combine(_dir, "f"), option);
            Assert.That(File.ReadAllText(Path.Combine(_dir, "f")), Is.EqualTo(option));
            var line = File.ReadLines(LogFile).Single(l => l.Contains(" fuse.transport ", StringComparison.Ordinal));
            Assert.That(line, Does.Contain(expected), $"fuse-transport={option}");
            int pid = DaemonPid();
            Assert.That(FuseTest.Run("umount", [_dir]).Exit, Is.Zero);
            FuseTest.Eventually(() => !FuseTest.ProcessAlive(pid), TimeSpan.FromSeconds(15), "the daemon exits after umount");
        }
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, "-o", "fuse-transport=carrier-pigeon", _dir]), "fuse-transport=carrier-pigeon: must be auto, dev or uring");
    }

    /// <summary>
    /// The mount's read-ahead window is Btrfs's 4 MiB unless -o readahead-kb says otherwise:
    /// the kernel's own 128 KiB would leave sequential readers waiting a round trip per window.
    /// </summary>
    [Test, CancelAfter(60_000)]
    public void TheReadaheadWindowFollowsTheOption()
    {
        foreach (var (extra, expected) in new[] { (Array.Empty<string>(), "4096"), (["-o", "readahead-kb=512"], "512") })
        {
            var r = Mount(extra);
            Assert.That(r.Exit, Is.Zero, r.Err);
            Assert.That(File.ReadAllText(BackingDeviceEntry(_dir, "read_ahead_kb")).Trim(), Is.EqualTo(expected), string.Join(' ', extra));
            Assert.That(FuseTest.Run("umount", [_dir]).Exit, Is.Zero);
            FuseTest.Eventually(() => !FuseTest.IsMounted(_dir), TimeSpan.FromSeconds(15), "unmounted");
        }
        AssertOneLineError(FuseTest.Run(FuseTest.MountProgram, ["--volfile", _volfile, "-o", "readahead-kb=lots", _dir]), "readahead-kb=lots: must be 0..1048576");
    }

    /// <summary>/sys/class/bdi/MAJOR:MINOR/NAME of the filesystem mounted on <paramref name="dir"/>.</summary>
    private static string BackingDeviceEntry(string dir, string name)
    {
        var fields = File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')).Last(f => f[4] == dir);
        return $"/sys/class/bdi/{fields[2]}/{name}";
    }
}
