using System.Diagnostics;
using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Fuse;

/// <summary>
/// Mounts served by this test process over a recording translator, so each test can check
/// what reached the graph through the real kernel.
/// </summary>
[NonParallelizable]
public class BridgeMountTests
{
    private const string LockScript = """
        import fcntl, os, struct, sys
        f = open(sys.argv[1], "r+")
        cmd = sys.argv[2]
        try:
            if cmd == "getlk":
                res = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
                t, w, start, length, pid = struct.unpack("hhqqi4x", res)
                print(t, start, length, pid)
            elif cmd == "setlk":
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
            elif cmd == "setlkw":
                fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
            print("ok")
        except OSError as e:
            print("errno", e.errno)
        """;

    /// <summary>.NET's FileStream takes a flock on open; files for lock tests are made by the shell instead.</summary>
    private static void CreateWithoutDotnetLocks(string path) =>
        Assert.That(FuseTest.Run("/bin/sh", ["-c", "echo some data > \"$0\"", path]).Exit, Is.Zero);

    private static FuseTest.Result Python(string script, params string[] args) =>
        FuseTest.Run("python3", ["-c", script, .. args]);

    [Test, CancelAfter(30_000)]
    public async Task InitNegotiatesOneMegabyteWritesAndTheChosenFlags()
    {
        await using var m = await InProcessMount.StartAsync();
        var n = m.Mount.Session.Negotiated!;
        Assert.Multiple(() =>
        {
            Assert.That(n.Minor, Is.EqualTo(38));
            Assert.That(n.MaxWrite, Is.EqualTo(1 << 20));
            Assert.That(n.MaxPages, Is.EqualTo(256));
            Assert.That(n.Flags & ~FuseConst.OverIoUring, Is.EqualTo(FuseSession.WantedFlags & n.KernelFlags));
            Assert.That(n.Has(FuseConst.OverIoUring), Is.EqualTo(m.Mount.Session.TransportInUse == FuseTransport.Uring));
            Assert.That(n.Has(FuseConst.WritebackCache), Is.False);
            Assert.That(n.Has(FuseConst.DoReaddirplus) && n.Has(FuseConst.PosixLocks) && n.Has(FuseConst.FlockLocks), Is.True);
        });
    }

    [Test, CancelAfter(30_000)]
    public async Task AOneMegabyteWriteArrivesAsOneWriteFop()
    {
        await using var m = await InProcessMount.StartAsync();
        var data = new byte[4 << 20];
        Random.Shared.NextBytes(data);
        using (var fs = new FileStream(m["big"], FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
        {
            fs.Write(data); // one write(2) of 4 MiB
        }
        Assert.That(m.Recorder.WriteSizes.ToArray(), Is.EqualTo(new[] { 1 << 20, 1 << 20, 1 << 20, 1 << 20 }));
        Assert.That(File.ReadAllBytes(m["big"]), Is.EqualTo(data));
    }

    [Test, CancelAfter(30_000)]
    public async Task FlockAndFcntlLocksReachTheGraphWithTheirOwnersAndKinds()
    {
        await using var m = await InProcessMount.StartAsync();
        CreateWithoutDotnetLocks(m["f"]);

        var flock = FuseTest.Run("flock", ["-n", m["f"], "true"]);
        Assert.That(flock.Exit, Is.Not.Zero, "storage/memory has no locks: flock fails");
        var seen = m.Recorder.Locks.ToArray();
        Assert.That(seen.Any(l => l.Lock.Kind == LockKind.Flock && l.Command == LockCommand.Set && l.Lock.Type == LockType.Write && l.Lock.Owner != 0), Is.True);

        while (m.Recorder.Locks.TryDequeue(out _)) { }
        var posix = Python(LockScript, m["f"], "setlk");
        Assert.That(posix.Out.Trim(), Is.EqualTo("errno 38"), "ENOSYS from the graph reaches the caller");
        var l = m.Recorder.Locks.Single(x => x.Lock.Kind == LockKind.Posix);
        Assert.Multiple(() =>
        {
            Assert.That(l.Command, Is.EqualTo(LockCommand.Set));
            Assert.That((l.Lock.Type, l.Lock.Start, l.Lock.End), Is.EqualTo((LockType.Write, 0L, 9L)));
            Assert.That(l.Lock.Owner, Is.Not.Zero);
            Assert.That(l.ContextOwner, Is.EqualTo(l.Lock.Owner));
        });
    }

    [Test, CancelAfter(30_000)]
    public async Task GetlkReportsTheConflictingLockTheGraphAnswers()
    {
        await using var m = await InProcessMount.StartAsync();
        CreateWithoutDotnetLocks(m["f"]);
        m.Recorder.GetLkAnswer = new FileLock { Type = LockType.Read, Start = 5, End = 99, Pid = (uint)Environment.ProcessId };
        var r = Python(LockScript, m["f"], "getlk");
        // F_RDLCK = 0, start 5, length 95, pid of the holder
        Assert.That(r.Out.Split('\n')[0].Trim(), Is.EqualTo($"0 5 95 {Environment.ProcessId}"));
        Assert.That(m.Recorder.Locks.Any(l => l.Command == LockCommand.Get && l.Lock.Kind == LockKind.Posix), Is.True);
    }

    [Test, CancelAfter(60_000)]
    public async Task ASignalInterruptsABlockedSetlkwAndTheGraphSeesTheCancellation()
    {
        await using var m = await InProcessMount.StartAsync(delayFops: "lk");
        CreateWithoutDotnetLocks(m["f"]);
        using var p = FuseTest.Start("python3", "-c", LockScript, m["f"], "setlkw");
        FuseTest.Eventually(() => m.Recorder.LocksStarted > 0, TimeSpan.FromSeconds(10), "the SETLKW reaches the graph");
        var sw = Stopwatch.StartNew();
        p.Kill(); // SIGKILL: the kernel sends INTERRUPT, delay-gen ends with EINTR
        Assert.That(p.WaitForExit(5_000), Is.True, "the killed process must not wait out the 10 s delay");
        FuseTest.Eventually(() => !m.Recorder.Finished.IsEmpty, TimeSpan.FromSeconds(5), "the lock fop returns");
        var (fop, cancelled, error) = m.Recorder.Finished.Single(f => f.Fop == Fop.Lk);
        Assert.That((fop, cancelled, error), Is.EqualTo((Fop.Lk, true, Errno.EINTR)));
        Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(9)));
    }

    /// <summary>
    /// Buffered read(2) goes through the kernel's asynchronous readahead (FUSE_ASYNC_READ): those
    /// READs are background requests that the kernel never interrupts, but the reader waits for
    /// its pages killably, so a killed reader still returns at once.
    /// </summary>
    [Test, CancelAfter(60_000)]
    public async Task AKilledReaderReturnsPromptlyWhileItsReadIsHeld()
    {
        await using var m = await InProcessMount.StartAsync(delayFops: "read");
        CreateWithoutDotnetLocks(m["f"]);
        using var p = FuseTest.Start("cat", m["f"]);
        FuseTest.Eventually(() => m.Recorder.ReadsStarted > 0, TimeSpan.FromSeconds(10), "the READ reaches the graph");
        p.Kill();
        Assert.That(p.WaitForExit(5_000), Is.True, "the killed reader must not wait out the 10 s delay");
    }

    /// <summary>A synchronous READ (a page fault without readahead) is interrupted: the graph's token fires and the read ends with EINTR.</summary>
    [Test, CancelAfter(60_000)]
    public async Task ASignalInterruptsAHeldSynchronousReadAndTheGraphSeesTheCancellation()
    {
        const string faultScript = """
            import mmap, sys
            f = open(sys.argv[1], "rb")
            mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            mm.madvise(mmap.MADV_RANDOM)
            print(mm[0])
            """;
        await using var m = await InProcessMount.StartAsync(delayFops: "read");
        CreateWithoutDotnetLocks(m["f"]);
        using var p = FuseTest.Start("python3", "-c", faultScript, m["f"]);
        FuseTest.Eventually(() => m.Recorder.ReadsStarted > 0, TimeSpan.FromSeconds(10), "the READ reaches the graph");
        p.Kill();
        Assert.That(p.WaitForExit(5_000), Is.True, "the killed process must not wait out the 10 s delay");
        FuseTest.Eventually(() => m.Recorder.Finished.Any(f => f.Fop == Fop.Read), TimeSpan.FromSeconds(5), "the read fop returns");
        Assert.That(m.Recorder.Finished.First(f => f.Fop == Fop.Read), Is.EqualTo((Fop.Read, true, Errno.EINTR)));
    }

    [Test, CancelAfter(30_000)]
    public async Task ATranslatorExceptionBecomesEioAndTheMountKeepsServing()
    {
        await using var m = await InProcessMount.StartAsync();
        File.WriteAllText(m["f"], "x");
        var r = FuseTest.Run("getfattr", ["-n", RecordingTranslator.ThrowingXattr, m["f"]]);
        Assert.That(r.Exit, Is.Not.Zero);
        Assert.That(r.Err, Does.Contain("Input/output error"));
        Assert.That(File.ReadAllText(m["f"]), Is.EqualTo("x"));
    }

    [Test, CancelAfter(30_000)]
    public async Task ReaddirplusCountsLookupsAndForgetDropsThem()
    {
        await using var m = await InProcessMount.StartAsync();
        for (int i = 0; i < 20; i++) File.WriteAllText(m[$"f{i}"], "x");
        var ls = FuseTest.Run("ls", ["-l", m.Dir]);
        Assert.That(ls.Exit, Is.Zero);
        var ctx = FopContext.Internal();
        var gfid = (await m.Memory.LookupAsync(ctx, Gfid.Root, "f7")).Value.Gfid;
        Assert.That(m.Mount.Bridge.LookupCount(gfid), Is.GreaterThanOrEqualTo(1UL));
        FuseTest.Eventually(() =>
        {
            File.WriteAllText("/proc/sys/vm/drop_caches", "2");
            return m.Mount.Bridge.LookupCount(gfid) == 0;
        }, TimeSpan.FromSeconds(10), "the kernel forgets f7 after dropping its dentries and inodes");
    }

    [Test, CancelAfter(30_000)]
    public async Task InvalidationNotificationsDropTheKernelsCachedEntriesAndAttributes()
    {
        var longCache = new FuseBridgeOptions { AttributeTimeout = TimeSpan.FromMinutes(5), EntryTimeout = TimeSpan.FromMinutes(5) };
        await using var m = await InProcessMount.StartAsync(bridge: longCache);
        File.WriteAllText(m["old"], "12345");
        Assert.That(new FileInfo(m["old"]).Length, Is.EqualTo(5));

        // Change the graph behind the kernel's back, as another client would.
        var ctx = FopContext.Internal();
        var gfid = (await m.Memory.LookupAsync(ctx, Gfid.Root, "old")).Value.Gfid;
        await m.Memory.SetattrAsync(ctx, gfid, null, new SetattrRequest { Valid = SetattrValid.Size, Size = 2 });
        Assert.That(new FileInfo(m["old"]).Length, Is.EqualTo(5), "the attribute cache still holds the old size");
        Assert.That(m.Mount.Bridge.InvalidateInode(gfid), Is.True);
        Assert.That(new FileInfo(m["old"]).Length, Is.EqualTo(2));

        await m.Memory.RenameAsync(ctx, Gfid.Root, "old", Gfid.Root, "new", RenameFlags.None);
        Assert.That(File.Exists(m["old"]), Is.True, "the entry cache still holds the old name");
        Assert.That(m.Mount.Bridge.InvalidateEntry(Gfid.Root, "old"), Is.True);
        Assert.That(File.Exists(m["old"]), Is.False);
        Assert.That(File.Exists(m["new"]), Is.True);
    }
}
