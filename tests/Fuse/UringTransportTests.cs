using System.Diagnostics;
using Brickfs.ClientFuse.Fuse;
using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Host;
using Brickfs.Translators.Core;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Fuse;

/// <summary>
/// The FUSE-over-io-uring transport: chosen when the fuse module offers it (install.sh sets
/// enable_uring=Y), one queue per CPU fed by the CPU the caller runs on, /dev/fuse on request,
/// and queues that grow instead of stalling when requests block.
/// </summary>
[NonParallelizable]
public class UringTransportTests
{
    private static readonly FuseSessionOptions Uring = new() { Transport = FuseTransport.Uring };

    private const string EnableUring = "/sys/module/fuse/parameters/enable_uring";

    private const string SetlkwScript = """
        import fcntl, sys
        f = open(sys.argv[1], "r+")
        fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
        print("ok")
        """;

    private static void AssertUringEnabled()
    {
        Assert.That(File.Exists(EnableUring), Is.True, $"{EnableUring} is missing: the kernel has no FUSE over io_uring (6.14+ needed)");
        Assert.That(File.ReadAllText(EnableUring).Trim(), Is.EqualTo("Y"), $"{EnableUring} must be Y (install.sh sets it)");
    }

    private static int[] OnlineCpus() =>
        [.. File.ReadAllText("/sys/devices/system/cpu/online").Trim().Split(',').SelectMany(r =>
        {
            var ends = r.Split('-').Select(int.Parse).ToArray();
            return Enumerable.Range(ends[0], ends[^1] - ends[0] + 1);
        })];

    private static void CreateWithoutDotnetLocks(string path) =>
        Assert.That(FuseTest.Run("/bin/sh", ["-c", "echo some data > \"$0\"", path]).Exit, Is.Zero);

    [Test, CancelAfter(60_000)]
    public async Task WithEnableUringTheMountServesThroughOneQueuePerCpu()
    {
        AssertUringEnabled();
        await using var m = await InProcessMount.StartAsync(session: Uring);
        var session = m.Mount.Session;
        Assert.That(session.TransportInUse, Is.EqualTo(FuseTransport.Uring));
        Assert.That(session.Negotiated!.Has(FuseConst.OverIoUring), Is.True);
        Assert.That(session.RingRequestsByQueue, Has.Length.EqualTo(FuseUringTransport.PossibleCpus()));

        foreach (int cpu in OnlineCpus())
        {
            long before = session.RingRequestsByQueue[cpu];
            string file = m[$"cpu{cpu}"];
            var r = FuseTest.Run("taskset", ["-c", cpu.ToString(), "/bin/sh", "-c", "echo data-$1 > \"$0\" && cat \"$0\" && stat -c %s \"$0\"", file, cpu.ToString()]);
            Assert.That(r.Exit, Is.Zero, r.Err);
            Assert.That(r.Out, Is.EqualTo($"data-{cpu}\n{6 + cpu.ToString().Length}\n"));
            Assert.That(session.RingRequestsByQueue[cpu], Is.GreaterThan(before), $"requests made on CPU {cpu} arrive on queue {cpu}");
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task TheDevTransportStillServesWhenAskedFor()
    {
        await using var m = await InProcessMount.StartAsync(session: new FuseSessionOptions { Transport = FuseTransport.Dev });
        var session = m.Mount.Session;
        Assert.That(session.TransportInUse, Is.EqualTo(FuseTransport.Dev));
        Assert.That(session.Negotiated!.Has(FuseConst.OverIoUring), Is.False);
        var data = new byte[3 << 20];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(m["big"], data);
        Assert.That(File.ReadAllBytes(m["big"]), Is.EqualTo(data));
        Assert.That(session.RingRequestsByQueue, Is.Empty);
    }

    [Test, CancelAfter(60_000)]
    public async Task LargeWritesAndReadsKeepTheirBytesThroughTheRing()
    {
        AssertUringEnabled();
        await using var m = await InProcessMount.StartAsync(session: Uring);
        Assert.That(m.Mount.Session.TransportInUse, Is.EqualTo(FuseTransport.Uring));
        var data = new byte[5 << 20];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(m["big"], data);
        Assert.That(m.Recorder.WriteSizes.Max(), Is.EqualTo(1 << 20), "a 1 MiB WRITE fills a whole ring payload buffer");
        Assert.That(File.ReadAllBytes(m["big"]), Is.EqualTo(data));
        using (var f = new FileStream(m["big"], FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            f.Position = 12345;
            f.Write(data.AsSpan(0, 777));
        }
        data.AsSpan(0, 777).CopyTo(data.AsSpan(12345));
        Assert.That(File.ReadAllBytes(m["big"]), Is.EqualTo(data));
    }

    /// <summary>
    /// A blocked F_SETLKW holds its ring entry until answered. Twenty of them on one CPU (more
    /// than the queue's initial entries) must not stop that CPU's other requests: the queue
    /// registers more entries before it runs out. Killing the waiters interrupts them.
    /// </summary>
    [Test, CancelAfter(120_000)]
    public async Task MoreBlockedLocksThanTheInitialQueueDepthDoNotStallTheQueue()
    {
        AssertUringEnabled();
        await using var m = await InProcessMount.StartAsync(delayFops: "lk", session: Uring);
        Assert.That(m.Mount.Session.TransportInUse, Is.EqualTo(FuseTransport.Uring));
        CreateWithoutDotnetLocks(m["f"]);
        const int waiters = 20;
        var procs = new List<Process>();
        try
        {
            for (int i = 0; i < waiters; i++) procs.Add(FuseTest.Start("taskset", "-c", "0", "python3", "-c", SetlkwScript, m["f"]));
            FuseTest.Eventually(() => m.Recorder.LocksStarted >= waiters, TimeSpan.FromSeconds(60), $"{waiters} SETLKW reach the graph");
            var r = FuseTest.Run("taskset", ["-c", "0", "stat", "-c", "%s", m["f"]]);
            Assert.That(r.Exit, Is.Zero, r.Err);
            Assert.That(r.Out.Trim(), Is.EqualTo("10"));
            Assert.That(m.Recorder.Finished.Any(f => f.Fop == Fop.Lk), Is.False, "the stat was answered while every lock was still held");
            foreach (var p in procs) p.Kill();
            foreach (var p in procs) Assert.That(p.WaitForExit(10_000), Is.True, "a killed waiter returns without waiting out its delay");
            FuseTest.Eventually(() => m.Recorder.Finished.Count(f => f.Fop == Fop.Lk) >= waiters, TimeSpan.FromSeconds(10), "every lock fop returns");
            Assert.That(m.Recorder.Finished.Where(f => f.Fop == Fop.Lk).Select(f => (f.Cancelled, f.Error)),
                Is.All.EqualTo((true, Errno.EINTR)), "each waiter was interrupted through /dev/fuse while its request sat in a ring entry");
        }
        finally
        {
            foreach (var p in procs)
            {
                if (!p.HasExited) p.Kill();
                p.Dispose();
            }
        }
    }

    /// <summary>Passes every fop on from a thread-pool thread, so every reply reaches its queue from another thread.</summary>
    private sealed class RepliesFromOtherThreads : Brickfs.Translators.Debug.FopHookTranslator
    {
        protected override async ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx)
        {
            await Task.Yield();
            return Errno.None;
        }
    }

    private const string CreateStatUnlinkScript = """
        import os, sys
        d, n = sys.argv[1], int(sys.argv[2])
        for i in range(n):
            p = f"{d}/f{i}"
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"x" * 100)
            os.close(fd)
            os.stat(p)
            os.unlink(p)
        print("done")
        """;

    /// <summary>
    /// A reply made on another thread is handed to the queue thread, which may be about to
    /// sleep in io_uring_enter: it must always be woken (a lost wake-up left a create waiting
    /// until some other request happened to arrive on that CPU). Two busy callers, one per CPU,
    /// and tens of thousands of handed-over replies; a lost one stalls its caller for good.
    /// </summary>
    [Test, CancelAfter(240_000)]
    public async Task RepliesHandedOverFromOtherThreadsAreNeverLeftWaiting()
    {
        AssertUringEnabled();
        var memory = new MemoryStorageTranslator();
        var hop = new RepliesFromOtherThreads();
        hop.Attach(memory);
        string dir = FuseTest.TempDir("uring-handover");
        var mount = await FuseMount.StartAsync(hop, dir, Uring, new FuseBridgeOptions(), Log.Null);
        var procs = new List<Process>();
        try
        {
            Assert.That(mount.Session.TransportInUse, Is.EqualTo(FuseTransport.Uring));
            var cpus = OnlineCpus();
            for (int w = 0; w < 2; w++)
            {
                Directory.CreateDirectory(Path.Combine(dir, $"w{w}"));
                procs.Add(FuseTest.Start("taskset", "-c", cpus[w % cpus.Length].ToString(), "python3", "-c", CreateStatUnlinkScript, Path.Combine(dir, $"w{w}"), "25000"));
            }
            foreach (var p in procs)
            {
                // About 7 requests per round: 175,000 per caller. Without the fix one stalled within ~10,000.
                Assert.That(p.WaitForExit(180_000), Is.True, "a caller is still waiting for a reply after 3 minutes");
                Assert.That(p.ExitCode, Is.Zero, p.StandardError.ReadToEnd());
            }
        }
        finally
        {
            foreach (var p in procs)
            {
                if (!p.HasExited) p.Kill();
                p.Dispose();
            }
            await mount.UnmountAsync();
            await mount.DisposeAsync();
            FuseTest.ForceUnmount(dir);
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// With the storage in this process a read blocks its thread on the disk. Two big reads made
    /// on one CPU land on that CPU's queue; each waits (as on a disk) until the other has
    /// started too. Served inline on the queue thread the second would wait behind the first.
    /// </summary>
    [Test, CancelAfter(60_000)]
    public async Task BigReadsOfInProcessStorageAreServedSideBySide()
    {
        AssertUringEnabled();
        await using var m = await InProcessMount.StartAsync(session: Uring with { StorageInProcess = true });
        var data = new byte[4 << 20];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(m["big"], data);
        using var bothStarted = new CountdownEvent(2);
        int metTheOther = 0;
        m.Recorder.BeforeRead = size =>
        {
            if (size < 1 << 20) return;
            bothStarted.Signal();
            if (bothStarted.Wait(TimeSpan.FromSeconds(10))) Interlocked.Increment(ref metTheOther);
        };
        int cpu = OnlineCpus()[0];
        var readers = new[] { 0, 2 }.Select(mib => Task.Run(() => FuseTest.Run("taskset",
            ["-c", cpu.ToString(), "dd", $"if={m["big"]}", "of=/dev/null", "bs=1M", "count=1", $"skip={mib}", "iflag=direct", "status=none"]))).ToArray();
        var results = await Task.WhenAll(readers);
        m.Recorder.BeforeRead = null;
        foreach (var r in results) Assert.That(r.Exit, Is.Zero, r.Err);
        Assert.That(metTheOther, Is.EqualTo(2), "each 1 MiB read found the other one started while it waited");
    }
}
