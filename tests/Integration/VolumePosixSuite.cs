using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// What a user expects of a local filesystem (ext4 is the yardstick), checked through a real
/// mount with ordinary programs. Every volume kind reruns this suite by subclassing it.
/// </summary>
[NonParallelizable]
[CancelAfter(120_000)]
public abstract class VolumePosixSuite
{
    protected MountedVolume Volume { get; private set; } = null!;

    protected abstract MountedVolume CreateVolume();

    [OneTimeSetUp]
    public void MountVolume() => Volume = CreateVolume();

    [OneTimeTearDown]
    public void UnmountVolume() => Volume?.Dispose();

    /// <summary>A fresh directory on the mount for one test, world-writable so other uids can use it.</summary>
    protected string TestDir()
    {
        var dir = Volume.PathOf($"{TestContext.CurrentContext.Test.MethodName}-{Guid.NewGuid():N}"[..^20]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string Sh(string script) => Shell.Must(script, TimeSpan.FromSeconds(100));

    private static ShellResult AsUser(uint uid, string script) =>
        Shell.Run("setpriv", [$"--reuid={uid}", $"--regid={uid}", "--clear-groups", "--", "/bin/sh", "-c", script], TimeSpan.FromSeconds(60));

    [Test]
    public void FilesKeepWhatIsWrittenToThem()
    {
        var dir = TestDir();
        var data = new byte[3 * 1024 * 1024 + 17];
        Random.Shared.NextBytes(data);
        var f = Path.Combine(dir, "data.bin");
        File.WriteAllBytes(f, data);
        Assert.That(new FileInfo(f).Length, Is.EqualTo(data.Length));
        Assert.That(File.ReadAllBytes(f), Is.EqualTo(data));
        Assert.That(Sh($"cmp '{f}' /dev/stdin < '{f}' && echo same").Trim(), Is.EqualTo("same"));
    }

    [Test]
    public void DirectoriesNestListAndCountLinks()
    {
        var dir = TestDir();
        Sh($"mkdir -p '{dir}/a/b/c' '{dir}/a/d' && touch '{dir}/a/file'");
        Assert.That(Sh($"stat -c %h '{dir}/a'").Trim(), Is.EqualTo("4"), "a directory counts 2 + its subdirectories");
        Assert.That(Sh($"ls '{dir}/a'").Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { "b", "d", "file" }));
        var rmdir = Shell.Sh($"rmdir '{dir}/a/b'");
        Assert.That(rmdir.Ok, Is.False);
        Assert.That(rmdir.Stderr, Does.Contain("Directory not empty"));
        Sh($"rmdir '{dir}/a/b/c' '{dir}/a/b'");
        Assert.That(Sh($"stat -c %h '{dir}/a'").Trim(), Is.EqualTo("3"));
    }

    [Test]
    public void HardLinksShareOneInodeAndSurviveEachOther()
    {
        var dir = TestDir();
        Sh($"echo hello > '{dir}/one' && ln '{dir}/one' '{dir}/two'");
        var ino = Sh($"stat -c '%i %h' '{dir}/one' '{dir}/two'").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(ino[0], Is.EqualTo(ino[1]), "both names report the same inode number and link count");
        Assert.That(ino[0].Split(' ')[1], Is.EqualTo("2"));
        Sh($"rm '{dir}/one'");
        Assert.That(Sh($"cat '{dir}/two'").Trim(), Is.EqualTo("hello"));
        Assert.That(Sh($"stat -c %h '{dir}/two'").Trim(), Is.EqualTo("1"));
    }

    [Test]
    public void SymlinksReadBackAndResolveOnTheClient()
    {
        var dir = TestDir();
        Sh($"mkdir '{dir}/real' && echo inside > '{dir}/real/f' && ln -s real '{dir}/rel' && ln -s /etc/hostname '{dir}/abs'");
        Assert.That(Sh($"readlink '{dir}/rel'").Trim(), Is.EqualTo("real"));
        Assert.That(Sh($"cat '{dir}/rel/f'").Trim(), Is.EqualTo("inside"));
        Assert.That(Sh($"readlink '{dir}/abs'").Trim(), Is.EqualTo("/etc/hostname"));
        Assert.That(Sh($"cat '{dir}/abs'"), Is.EqualTo(File.ReadAllText("/etc/hostname")), "an absolute link resolves on the client, like any local symlink");
    }

    [Test]
    public void RenameReplacesAnExistingFileAtomically()
    {
        var dir = TestDir();
        Sh($"echo new > '{dir}/a' && echo old > '{dir}/b' && ln '{dir}/b' '{dir}/b-link' && mv '{dir}/a' '{dir}/b'");
        Assert.That(File.Exists(Path.Combine(dir, "a")), Is.False);
        Assert.That(Sh($"cat '{dir}/b'").Trim(), Is.EqualTo("new"));
        Assert.That(Sh($"cat '{dir}/b-link'").Trim(), Is.EqualTo("old"), "the replaced file's other hard link keeps its data");
        Assert.That(Sh($"stat -c %h '{dir}/b-link'").Trim(), Is.EqualTo("1"));
    }

    [Test]
    public void RenameReplacesAnEmptyDirectoryButNotAFullOne()
    {
        var dir = TestDir();
        Sh($"mkdir -p '{dir}/src/sub' '{dir}/empty' '{dir}/full/x' && echo s > '{dir}/src/sub/f'");
        Sh($"mv -T '{dir}/src' '{dir}/empty'");
        Assert.That(Sh($"cat '{dir}/empty/sub/f'").Trim(), Is.EqualTo("s"));
        var r = Shell.Sh($"mv -T '{dir}/empty' '{dir}/full'");
        Assert.That(r.Ok, Is.False);
        Assert.That(r.Stderr, Does.Contain("not empty").IgnoreCase);
    }

    [Test]
    public void RootChangesModeOwnerAndTimes()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "f");
        Sh($"touch '{f}' && chmod 4751 '{f}' && chown 1234:5678 '{f}' && touch -m -d '2001-02-03 04:05:06 UTC' '{f}'");
        Assert.That(Sh($"stat -c '%a %u %g %Y' '{f}'").Trim(), Is.EqualTo("751 1234 5678 981173106"),
            "chown by root clears setuid on a regular file, as on ext4");
        Sh($"chmod 2755 '{f}'");
        Assert.That(Sh($"stat -c %a '{f}'").Trim(), Is.EqualTo("2755"));
    }

    [Test]
    public void FlockAndFcntlLocksConflictBetweenProcessesAndGoWithTheHolder()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "locked");
        Sh($"echo data > '{f}'");
        // The holder keeps its lock while the others try; each try is its own process.
        Assert.That(Sh($"flock -x '{f}' sh -c \"flock -n -x '{f}' true && echo free || echo held\"").Trim(), Is.EqualTo("held"), "flock");
        Assert.That(Sh($"flock -n -x '{f}' true && echo free").Trim(), Is.EqualTo("free"), "a flock goes with its holder");
        const string Fcntl = """
            import fcntl, subprocess, sys
            f = open(sys.argv[1], "r+")
            fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
            probe = "import fcntl, sys\nf = open(sys.argv[1], 'r+')\n" \
                    "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 5)\n    print('free')\n" \
                    "except OSError:\n    print('held')\n" \
                    "fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 20)\nprint('beyond')\n"
            print(subprocess.run([sys.executable, "-c", probe, sys.argv[1]], capture_output=True, text=True).stdout.strip().replace("\n", " "))
            """;
        var r = Shell.Run("python3", ["-c", Fcntl, f], TimeSpan.FromSeconds(60));
        Assert.That(r.Ok, Is.True, r.ToString());
        Assert.That(r.Stdout.Trim(), Is.EqualTo("held beyond"), "an overlapping fcntl range is held by another process; a disjoint one is free");
    }

    [Test]
    public void AnotherUsersWriteOrTruncateDropsSetuidAndSetgidAsOnExt4()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "f");
        foreach (var (how, script) in new[]
        {
            ("write", $"echo more >> '{f}'"),
            ("truncate", $"truncate -s 1 '{f}'"),
            ("open with O_TRUNC", $"echo new > '{f}'"),
        })
        {
            Sh($"rm -f '{f}' && echo data > '{f}' && chmod 6777 '{f}'");
            var r = AsUser(1000, script);
            Assert.That(r.Ok, Is.True, $"{how}: {r}");
            // stat -c %a asks for the mode only, which the kernel answers from its cache: the
            // cache must not keep the dropped bits.
            Assert.That(Sh($"stat -c %a '{f}'").Trim(), Is.EqualTo("777"), $"a {how} by a non-owner drops setuid and group-executable setgid");
            Assert.That(Sh($"cat '{f}' >/dev/null && stat -c %a '{f}'").Trim(), Is.EqualTo("777"), how);
        }

        Sh($"chmod 6777 '{f}' && echo root >> '{f}'");
        Assert.That(Sh($"stat -c %a '{f}'").Trim(), Is.EqualTo("6777"), "a writer with CAP_FSETID keeps the bits");

        Sh($"chown 0:1000 '{f}' && chmod 2767 '{f}'");
        Assert.That(AsUser(1000, $"echo in-group >> '{f}'").Ok, Is.True);
        Assert.That(Sh($"stat -c %a '{f}'").Trim(), Is.EqualTo("2767"), "setgid without group execute stays for a writer in the file's group");

        Sh($"chmod 1777 '{dir}'");
        var made = AsUser(1000, $"umask 022 && python3 -c \"import os; os.close(os.open('{dir}/made', os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o6755))\"");
        Assert.That(made.Ok, Is.True, made.ToString());
        Assert.That(Sh($"stat -c %a '{dir}/made'").Trim(), Is.EqualTo("6755"), "O_TRUNC truncates only a file the open did not create: new bits stay");
    }

    [Test]
    public void AnUnprivilegedUserIsDeniedWhereALocalFilesystemDeniesIt()
    {
        var dir = TestDir();
        Sh($"chmod 1777 '{dir}' && mkdir '{dir}/rootonly' && chmod 755 '{dir}/rootonly' && echo secret > '{dir}/rootfile' && chmod 644 '{dir}/rootfile'");

        var write = AsUser(1000, $"echo x >> '{dir}/rootfile'");
        Assert.That(write.Ok, Is.False);
        Assert.That(write.Stderr, Does.Contain("Permission denied"));

        var chmod = AsUser(1000, $"chmod 777 '{dir}/rootfile'");
        Assert.That(chmod.Stderr, Does.Contain("Operation not permitted"));

        var create = AsUser(1000, $"touch '{dir}/rootonly/mine'");
        Assert.That(create.Stderr, Does.Contain("Permission denied"));

        var times = AsUser(1000, $"touch -d '2001-01-01' '{dir}/rootfile'");
        Assert.That(times.Ok, Is.False, "only the owner sets explicit times");

        var own = AsUser(1000, $"echo mine > '{dir}/userfile' && chmod 600 '{dir}/userfile' && cat '{dir}/userfile'");
        Assert.That(own.Ok, Is.True, own.ToString());
        Assert.That(Sh($"stat -c '%u %g %a' '{dir}/userfile'").Trim(), Is.EqualTo("1000 1000 600"), "new entries belong to the caller");

        var other = AsUser(1001, $"cat '{dir}/userfile'");
        Assert.That(other.Stderr, Does.Contain("Permission denied"));
        var sticky = AsUser(1001, $"rm -f '{dir}/userfile'");
        Assert.That(sticky.Stderr, Does.Contain("Operation not permitted"), "the sticky bit protects other users' entries");
    }

    [Test]
    public void SetgidDirectoriesGiveTheirGroupToNewEntries()
    {
        var dir = TestDir();
        Sh($"mkdir '{dir}/shared' && chown 0:4242 '{dir}/shared' && chmod 2777 '{dir}/shared'");
        var r = AsUser(1000, $"umask 022 && touch '{dir}/shared/f' && mkdir '{dir}/shared/d'");
        Assert.That(r.Ok, Is.True, r.ToString());
        Assert.That(Sh($"stat -c '%u %g' '{dir}/shared/f'").Trim(), Is.EqualTo("1000 4242"));
        Assert.That(Sh($"stat -c '%g %A' '{dir}/shared/d'").Trim(), Is.EqualTo("4242 drwxr-sr-x"));
    }

    [Test]
    public void TruncateGrowsWithZerosAndShrinks()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "t");
        Sh($"printf abcdef > '{f}' && truncate -s 3 '{f}'");
        Assert.That(File.ReadAllText(f), Is.EqualTo("abc"));
        Sh($"truncate -s 10 '{f}'");
        Assert.That(File.ReadAllBytes(f), Is.EqualTo("abc"u8.ToArray().Concat(new byte[7]).ToArray()));
    }

    [Test]
    public void AppendWritesLandAtTheEnd()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "log");
        Sh($"echo one >> '{f}' && echo two >> '{f}' && (exec 3>>'{f}'; printf three >&3; exec 3>&-)");
        Assert.That(File.ReadAllText(f), Is.EqualTo("one\ntwo\nthree"));
    }

    [Test]
    public void ExclusiveCreateFailsWhenTheNameExists()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "x");
        using (new FileStream(f, FileMode.CreateNew)) { }
        var e = Assert.Throws<IOException>(() => new FileStream(f, FileMode.CreateNew).Dispose());
        Assert.That(e!.Message, Does.Contain("exists"));
    }

    [Test]
    public void UserXattrsAreStoredListedAndRemoved()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "x");
        Sh($"touch '{f}' && setfattr -n user.colour -v blue '{f}' && setfattr -n user.size -v 42 '{f}'");
        Assert.That(Sh($"getfattr --only-values -n user.colour '{f}'"), Is.EqualTo("blue"));
        var names = Sh($"getfattr -d '{f}'");
        Assert.That(names, Does.Contain("user.colour=\"blue\"").And.Contain("user.size=\"42\""));
        Sh($"setfattr -x user.colour '{f}'");
        var gone = Shell.Sh($"getfattr -n user.colour '{f}'");
        Assert.That(gone.Stderr, Does.Contain("No such attribute"));
    }

    [Test]
    public void SparseFilesBeyondFourGibibytes()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "sparse");
        const long fiveGiB = 5L << 30;
        Sh($"printf Z | dd of='{f}' bs=1 seek={fiveGiB} conv=notrunc status=none");
        Assert.That(new FileInfo(f).Length, Is.EqualTo(fiveGiB + 1));
        Assert.That(long.Parse(Sh($"stat -c %b '{f}'").Trim()), Is.LessThan(1024), "a hole takes no blocks");
        Assert.That(Sh($"dd if='{f}' bs=1 skip={fiveGiB} count=1 status=none"), Is.EqualTo("Z"));
        Assert.That(Sh($"dd if='{f}' bs=4096 skip={(4L << 30) / 4096} count=1 status=none | tr -d '\\0' | wc -c").Trim(), Is.EqualTo("0"));
    }

    [Test]
    public void ReaddirListsTenThousandEntries()
    {
        var dir = TestDir();
        Sh($"cd '{dir}' && seq -f 'entry-%05g' 1 10000 | xargs touch");
        Assert.That(Sh($"ls -1 '{dir}' | wc -l").Trim(), Is.EqualTo("10000"));
        var names = Directory.GetFiles(dir).Select(Path.GetFileName).ToHashSet();
        Assert.That(names, Has.Count.EqualTo(10000));
        Assert.That(names, Does.Contain("entry-00001").And.Contain("entry-10000"));
    }

    [Test]
    public void TheBrickInternalsAreNeverVisible()
    {
        Assert.That(Sh($"ls -a '{Volume.MountPoint}'"), Does.Not.Contain(".brickfs"));
        Assert.That(Shell.Sh($"stat '{Volume.MountPoint}/.brickfs'").Ok, Is.False);
        Assert.That(Shell.Sh($"mkdir '{Volume.MountPoint}/.brickfs'").Ok, Is.False);

        var dir = TestDir();
        Sh($"touch '{dir}/f'");
        Assert.That(Sh($"getfattr -d -m - '{dir}/f' 2>&1"), Does.Not.Contain("trusted.brickfs"), "Brickfs's own xattrs are not listed");
        Assert.That(Shell.Sh($"getfattr -n trusted.brickfs.gfid '{dir}/f'").Stderr, Does.Contain("No such attribute"));
        var set = Shell.Sh($"setfattr -n trusted.brickfs.layout -v 0x00 '{dir}/f'");
        Assert.That(set.Stderr, Does.Contain("Operation not permitted"), "applications cannot forge cluster metadata");
    }

    [Test]
    public void AnOpenFileKeepsWorkingAfterRenameAndUnlink()
    {
        var dir = TestDir();
        var f = Path.Combine(dir, "held");
        using var fs = new FileStream(f, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, 1);
        fs.Write("before"u8);
        fs.Flush();
        File.Move(f, Path.Combine(dir, "moved"));
        fs.Write("-renamed"u8);
        fs.Flush();
        File.Delete(Path.Combine(dir, "moved"));
        fs.Write("-unlinked"u8);
        fs.Flush();
        fs.Position = 0;
        var buf = new byte[64];
        int n = fs.Read(buf);
        Assert.That(System.Text.Encoding.ASCII.GetString(buf, 0, n), Is.EqualTo("before-renamed-unlinked"));
        Assert.That(Directory.GetFileSystemEntries(dir), Is.Empty);
    }

    [Test]
    public void FifosAndDeviceNodesCanBeMade()
    {
        var dir = TestDir();
        Sh($"mkfifo '{dir}/pipe' && mknod '{dir}/null' c 1 3");
        Assert.That(Sh($"stat -c %F '{dir}/pipe'").Trim(), Is.EqualTo("fifo"));
        Assert.That(Sh($"stat -c '%F %t %T' '{dir}/null'").Trim(), Is.EqualTo("character special file 1 3"));
        Assert.That(Sh($"(echo through-fifo > '{dir}/pipe' &) ; cat '{dir}/pipe'").Trim(), Is.EqualTo("through-fifo"));
    }

    [Test]
    public void StatfsReportsTheBrickSpace()
    {
        var total = long.Parse(Sh($"stat -f -c %b '{Volume.MountPoint}'").Trim());
        Assert.That(total, Is.GreaterThan(0));
        Assert.That(Sh($"df -P '{Volume.MountPoint}' | tail -1"), Does.Contain(Volume.MountPoint));
    }

    [Test]
    public void Sqlite3CommitsAThousandTransactionsIntact()
    {
        var dir = TestDir();
        var db = Path.Combine(dir, "t.db");
        var sql = new System.Text.StringBuilder("PRAGMA journal_mode=DELETE;\nPRAGMA synchronous=FULL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);\n");
        for (int i = 1; i <= 1000; i++) sql.Append($"INSERT INTO t(v) VALUES('row {i}');\n");
        var r = Shell.Run("sqlite3", [db], TimeSpan.FromSeconds(100), sql.ToString());
        Assert.That(r.Ok, Is.True, r.ToString());
        Assert.That(r.Stdout.Trim(), Is.EqualTo("delete"));
        Assert.That(Sh($"sqlite3 '{db}' 'PRAGMA integrity_check;'").Trim(), Is.EqualTo("ok"));
        Assert.That(Sh($"sqlite3 '{db}' 'SELECT count(*), sum(id) FROM t;'").Trim(), Is.EqualTo("1000|500500"));
        Assert.That(File.Exists(db + "-journal"), Is.False, "the rollback journal is deleted after each commit");
    }
}

public sealed class LocalVolumePosixTests : VolumePosixSuite
{
    protected override MountedVolume CreateVolume() => new LocalVolume();
}
