using System.Diagnostics;
using Brickfs.Tests.Support;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Interop;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A network volume whose bricks run features/bitrot as brickd stacks it (storage/posix →
/// features/bitrot → features/index → features/locks → protocol/server), one brickd per brick on
/// subvolumes of one loop-mounted Btrfs, mounted with mount.brickfs. With three bricks the client
/// graph is cluster/replicate reading from brick 0 first (read-subvolume-index 0), so a test knows
/// which copy a read meets first.
/// </summary>
public sealed class BitrotVolume : MountedVolume
{
    public IReadOnlyList<BrickProcess> Bricks { get; }
    public string ClientVolfile { get; }

    public BitrotVolume(int bricks, string bitrotOptions = "") : base("bitrot")
    {
        var image = Own(new BtrfsImage("bitrot-bricks", 4L << 30));
        var list = new List<BrickProcess>();
        for (int i = 0; i < bricks; i++)
        {
            string name = $"b{i}", dir = image.Subvolume(name);
            list.Add(Own(new BrickProcess(WorkDir, name, dir, brickGraph: $"""
                volume {name}-posix
                    type storage/posix
                    option directory {dir}
                end-volume
                volume {name}-bitrot
                    type features/bitrot
                    {bitrotOptions}
                    subvolumes {name}-posix
                end-volume
                volume {name}-index
                    type features/index
                    subvolumes {name}-bitrot
                end-volume
                volume {name}
                    type features/locks
                    subvolumes {name}-index
                end-volume
                """)));
        }
        Bricks = list;
        var clients = string.Concat(list.Select((b, i) => $"""
            volume vol-client-{i}
                type protocol/client
                option remote-host 127.0.0.1
                option remote-port {b.Port}
                option remote-subvolume {b.Name}
                option ping-timeout 10
            end-volume

            """));
        var text = bricks == 1 ? clients : clients + $"""
            volume vol-replicate-0
                type cluster/replicate
                option read-subvolume-index 0
                subvolumes {string.Join(' ', Enumerable.Range(0, bricks).Select(i => $"vol-client-{i}"))}
            end-volume
            """;
        Mount(text);
        ClientVolfile = Path.Combine(WorkDir, "client.vol");
    }

    /// <summary>The file's copy on brick <paramref name="brick"/>, read straight from the brick directory.</summary>
    public string OnBrick(int brick, string relative) => Path.Combine(Bricks[brick].Directory, relative);

    /// <summary>Flips bits of the brick's copy in place on disk (Brickfs sees nothing), then drops every page cache, the mount's included.</summary>
    public void Rot(int brick, string relative, long offset)
    {
        using (var f = new FileStream(OnBrick(brick, relative), FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = offset;
            int b = f.ReadByte();
            f.Position = offset;
            f.WriteByte((byte)(b ^ 0xA5));
        }
        DropCaches();
    }

    public static void DropCaches() => Shell.Must("sync && echo 3 > /proc/sys/vm/drop_caches");

    public bool MarkedBad(int brick, string relative) =>
        Sys.GetXattr(OnBrick(brick, relative), BitrotTranslator.BadFileXattr, follow: false, out _) == Brickfs.Translators.Core.Errno.None;

    /// <summary>A client graph of this volume in the test process, as a management tool builds one (disposed by the caller).</summary>
    public async Task<TranslatorGraph> ClientGraphAsync()
    {
        var g = GraphBuilder.BuildFile(ClientVolfile);
        await g.InitAsync(CancellationToken.None);
        return g;
    }
}

/// <summary>
/// Bitrot end to end: rot injected into a brick's backing file under the mount's feet is never
/// served; replicate serves a good copy and blames the bad one, brickfs-shd rewrites it, the
/// scrubber finds rot nobody reads at its byte rate, and a lone brick answers EIO.
/// </summary>
[NonParallelizable]
[CancelAfter(180_000)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BitrotVolumeTests
{
    private static byte[] RandomData(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Test]
    public void ACopyRottedOnDiskIsServedFromAReplicaMarkedBadAndHealedByTheSelfHealDaemon()
    {
        using var v = new BitrotVolume(3);
        var data = RandomData(1, 3 << 20);
        File.WriteAllBytes(v.PathOf("f"), data);
        BitrotVolume.DropCaches();
        for (int i = 0; i < 3; i++) Assert.That(File.ReadAllBytes(v.OnBrick(i, "f")), Is.EqualTo(data), $"b{i} holds the file");

        v.Rot(0, "f", (1 << 20) + 12345);

        Assert.That(File.ReadAllBytes(v.PathOf("f")), Is.EqualTo(data), "the mount serves the right bytes from another copy");
        Assert.That(v.MarkedBad(0, "f"), Is.True, "b0's bitrot marked its copy bad");
        Assert.That(v.MarkedBad(1, "f") || v.MarkedBad(2, "f"), Is.False);
        Assert.That(File.ReadAllText(v.Bricks[0].LogFile), Does.Contain("does not match its checksum"), "the event is in b0's log");

        var shd = Shell.Run(Programs.Find("brickfs-shd"), ["--volfile", v.ClientVolfile, "--once"], TimeSpan.FromSeconds(60));
        Assert.That(shd.Ok, Is.True, shd.ToString());

        Assert.That(v.MarkedBad(0, "f"), Is.False, "the heal rewrote b0's copy, which clears the mark");
        for (int i = 0; i < 3; i++) Assert.That(File.ReadAllBytes(v.OnBrick(i, "f")), Is.EqualTo(data), $"b{i} is byte-identical to the data");
        BitrotVolume.DropCaches();
        Assert.That(File.ReadAllBytes(v.PathOf("f")), Is.EqualTo(data), "and reads (from b0 first) verify clean");
        Assert.That(v.MarkedBad(0, "f"), Is.False);
    }

    [Test]
    public async Task TheScrubberFindsRotInAFileNobodyReadsAtItsByteRateAndReportsItWithItsPath()
    {
        const long rate = 1 << 20;
        using var v = new BitrotVolume(3, $"option scrub-throttle {rate}");
        Directory.CreateDirectory(v.PathOf("d"));
        var cold = RandomData(2, 3 << 20);
        File.WriteAllBytes(v.PathOf("d/cold"), cold);
        File.WriteAllBytes(v.PathOf("warm"), RandomData(3, 1 << 20));
        v.Rot(1, "d/cold", 2 << 20);

        await using var client = await v.ClientGraphAsync();
        var started = await ScrubControl.StartAsync(client.Top);
        Assert.That(started.Select(b => b.Error), Is.All.EqualTo(Brickfs.Translators.Core.Errno.None));

        // While the pass runs, no brick has read more than its budget: one second of burst, the
        // rate since its pass started, and the 1 MiB step it reads before taking from the budget.
        var clock = Stopwatch.StartNew();
        IReadOnlyList<BrickScrub> status;
        do
        {
            var asked = DateTimeOffset.UtcNow;
            status = await ScrubControl.StatusAsync(client.Top);
            foreach (var b in status)
            {
                Assert.That(b.Error, Is.EqualTo(Brickfs.Translators.Core.Errno.None), b.Brick);
                var s = b.Status!;
                Assert.That(s.RateBytesPerSecond, Is.EqualTo(rate));
                if (!s.Running) continue;
                double seconds = (asked - s.LastRunStart!.Value).TotalSeconds + 0.05;
                Assert.That(s.BytesScrubbed, Is.LessThanOrEqualTo(rate + rate * Math.Max(seconds, 0) + (1 << 20)),
                    $"{b.Brick} read {s.BytesScrubbed} bytes {seconds:0.00} s into its pass");
            }
            await Task.Delay(200);
        }
        while (status.Any(b => b.Status!.Passes == 0) && clock.Elapsed < TimeSpan.FromSeconds(60));

        Assert.That(status.Select(b => b.Status!.Passes), Is.All.EqualTo(1), "every brick finished its pass");
        Assert.That(status.Select(b => b.Status!.BytesScrubbed), Is.All.EqualTo(4L << 20), "each read both files whole");
        var bad = status[1].Status!.BadFiles.Single();
        Assert.That((bad.Path, bad.Block, bad.FoundBy), Is.EqualTo(("/d/cold", (2L << 20) / (64 << 10), BitrotDetector.Scrubber)));
        Assert.That(status[0].Status!.BadFiles, Is.Empty);
        Assert.That(status[2].Status!.BadFiles, Is.Empty);
        Assert.That(v.MarkedBad(1, "d/cold"), Is.True);
    }

    [Test]
    public async Task OnASingleBrickVolumeARottedBlockGivesEioThroughTheMountNeverWrongBytes()
    {
        using var v = new BitrotVolume(1);
        var data = RandomData(4, 1 << 20);
        File.WriteAllBytes(v.PathOf("only"), data);
        File.WriteAllText(v.PathOf("other"), "untouched\n");
        v.Rot(0, "only", 700_000);

        var got = 0;
        var seen = new byte[data.Length];
        Assert.Throws<IOException>(() =>
        {
            using var f = new FileStream(v.PathOf("only"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            while (got < seen.Length)
            {
                int n = f.Read(seen, got, seen.Length - got);
                if (n == 0) break;
                got += n;
            }
        }, "reading the whole file fails");
        long rotten = 700_000 / (64 << 10) * (64 << 10);
        Assert.That(got, Is.LessThanOrEqualTo(rotten), "nothing from the rotted block on was returned");
        Assert.That(seen[..got], Is.EqualTo(data[..got]), "what came before it was right");
        var cat = Shell.Run("/bin/cat", [v.PathOf("only")], TimeSpan.FromSeconds(30));
        Assert.That(cat.Ok, Is.False);
        Assert.That(cat.Stderr, Does.Contain("Input/output error"), "cat says why");
        BitrotVolume.DropCaches();
        var first = Shell.Sh($"dd if='{v.PathOf("only")}' bs=4096 count=1 status=none | wc -c");
        Assert.That(first.Stdout.Trim(), Is.EqualTo("0"), "once found bad, the whole copy is refused, even blocks that did not rot");
        Assert.That(File.ReadAllText(v.PathOf("other")), Is.EqualTo("untouched\n"), "other files are served");

        await using var client = await v.ClientGraphAsync();
        var status = (await ScrubControl.StatusAsync(client.Top)).Single();
        var bad = status.Status!.BadFiles.Single();
        Assert.That((bad.Block, bad.FoundBy), Is.EqualTo((700_000L / (64 << 10), BitrotDetector.Read)));
        Assert.That(v.MarkedBad(0, "only"), Is.True);
    }

    [Test]
    public async Task KillingBrickdInTheMiddleOfHeavyWritesGivesNoFalsePositiveAfterRestart()
    {
        using var v = new BitrotVolume(1);
        const int Files = 4;
        const int Size = 8 << 20;
        for (int i = 0; i < Files; i++) File.WriteAllBytes(v.PathOf($"w{i}"), RandomData(10 + i, Size));

        // Writers overwrite random ranges (unaligned, 1 byte to 300 KiB), several writes in flight
        // per file, through a client graph (no kernel cache between them and the brick, so nothing
        // is written back late), and fsync now and then, until the brick dies under them.
        var ctx = Brickfs.Translators.Core.FopContext.Internal();
        await using var writerGraph = await v.ClientGraphAsync();
        long written = 0;
        var writers = Enumerable.Range(0, Files * 3).Select(w => Task.Run(async () =>
        {
            var rng = new Random(100 + w);
            var l = await writerGraph.Top.LookupAsync(ctx, Brickfs.Translators.Core.Gfid.Root, $"w{w % Files}");
            Assert.That(l.Ok, Is.True);
            var fd = new Brickfs.Translators.Core.FileHandle(l.Value.Gfid, Brickfs.Translators.Core.OpenFlags.ReadWrite);
            Assert.That((await writerGraph.Top.OpenAsync(ctx, fd)).Ok, Is.True);
            for (int n = 0; ; n++)
            {
                var chunk = new byte[rng.Next(1, 300 << 10)];
                rng.NextBytes(chunk);
                var r = await writerGraph.Top.WriteAsync(ctx, fd, rng.Next(0, Size - chunk.Length), chunk);
                if (!r.Ok) return;
                Interlocked.Add(ref written, chunk.Length);
                if (n % 16 == 15 && !(await writerGraph.Top.FsyncAsync(ctx, fd, false)).Ok) return;
            }
        })).ToList();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => Interlocked.Read(ref written) > 48L << 20, "the writers are well under way");
        v.Bricks[0].Kill(); // SIGKILL, mid-stream
        Assert.That(await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60)).ContinueWith(t => t.IsCompletedSuccessfully), Is.True,
            "every writer stops with an error once the brick is gone");
        int marked = Enumerable.Range(0, Files).Count(i =>
            Sys.GetXattr(v.OnBrick(0, $"w{i}"), BitrotTranslator.DirtyXattr, follow: false, out _) == Brickfs.Translators.Core.Errno.None);
        Assert.That(marked, Is.GreaterThan(0), "the kill left files with writes in progress (dirty markers on disk)");

        v.Bricks[0].Start();
        await using var client = await v.ClientGraphAsync();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => client.All.OfType<Brickfs.Translators.Protocol.ProtocolClientTranslator>().All(c => c.IsConnected), "the client reaches the restarted brick");
        for (int i = 0; i < Files; i++)
        {
            var (error, data) = await GraphFiles.ReadAllAsync(client.Top, $"w{i}");
            Assert.That(error, Is.EqualTo(Brickfs.Translators.Core.Errno.None), $"w{i} reads after the restart: no false verdict");
            Assert.That(data, Is.EqualTo(File.ReadAllBytes(v.OnBrick(0, $"w{i}"))), $"w{i} reads as the brick holds it");
            Assert.That(v.MarkedBad(0, $"w{i}"), Is.False, $"w{i} is not marked bad");
        }
        var scrub = (await ScrubControl.ScrubAndWaitAsync(client.Top, TimeSpan.FromMilliseconds(200))).Single();
        Assert.That(scrub.Error, Is.EqualTo(Brickfs.Translators.Core.Errno.None));
        Assert.That(scrub.Status!.BadFiles, Is.Empty, "a full scrub agrees with every checksum");
        Assert.That(scrub.Status.FilesScrubbed, Is.EqualTo(Files));
        Assert.That(File.ReadAllText(v.Bricks[0].LogFile), Does.Not.Contain("does not match its checksum"));
    }

    [Test]
    public async Task ChecksumsStayRightThroughASqliteWorkload()
    {
        using var v = new BitrotVolume(1);
        var script = new System.Text.StringBuilder("""
            PRAGMA journal_mode=DELETE;
            PRAGMA synchronous=FULL;
            PRAGMA page_size=4096;
            CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
            CREATE INDEX tk ON t(k);

            """);
        var rng = new Random(5);
        for (int tx = 0; tx < 60; tx++)
        {
            script.AppendLine("BEGIN;");
            for (int i = 0; i < 40; i++) script.AppendLine($"INSERT INTO t(k, v) VALUES({rng.Next(100000)}, hex(randomblob({rng.Next(10, 700)})));");
            script.AppendLine($"UPDATE t SET v = hex(randomblob({rng.Next(10, 300)})) WHERE k % 7 = {tx % 7};");
            if (tx % 5 == 4) script.AppendLine($"DELETE FROM t WHERE k % 11 = {tx % 11};");
            script.AppendLine("COMMIT;");
        }
        script.AppendLine("PRAGMA journal_mode=TRUNCATE;");
        script.AppendLine("DELETE FROM t WHERE id % 3 = 0;");
        script.AppendLine("VACUUM;");
        script.AppendLine("PRAGMA journal_mode=PERSIST;");
        script.AppendLine("UPDATE t SET k = k + 1;");
        script.AppendLine("PRAGMA integrity_check;");
        var (stdout, stderr) = SqliteProcess.Run(v.PathOf("db.sqlite"), script.ToString(), TimeSpan.FromMinutes(3));
        Assert.That(stderr, Is.Empty);
        Assert.That(stdout.Trim().Split('\n').Last(), Is.EqualTo("ok"), stdout);

        BitrotVolume.DropCaches();
        var again = SqliteProcess.Run(v.PathOf("db.sqlite"), "PRAGMA integrity_check;\nSELECT count(*) > 0 FROM t;\n", TimeSpan.FromMinutes(1));
        Assert.That(again.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { "ok", "1" }), again.Err);

        await using var client = await v.ClientGraphAsync();
        var scrub = (await ScrubControl.ScrubAndWaitAsync(client.Top, TimeSpan.FromMilliseconds(200))).Single();
        Assert.That(scrub.Status!.BadFiles, Is.Empty, "a full scrub after the workload finds nothing bad");
        Assert.That(scrub.Status.FilesScrubbed, Is.GreaterThanOrEqualTo(1));
        Assert.That(v.MarkedBad(0, "db.sqlite"), Is.False);
    }

    [Test]
    public async Task AScrubPassCutShortByKillingBrickdResumesAfterTheRestart()
    {
        using var v = new BitrotVolume(1, "option scrub-files-per-second 8");
        const int Files = 60;
        for (int i = 0; i < Files; i++) File.WriteAllBytes(v.PathOf($"s{i:D2}"), RandomData(200 + i, 70_000));
        var before = File.ReadAllBytes(v.OnBrick(0, "s00"));

        await using (var client = await v.ClientGraphAsync())
        {
            Assert.That((await ScrubControl.StartAsync(client.Top)).Single().Error, Is.EqualTo(Brickfs.Translators.Core.Errno.None));
            // 8 files/s: well past the first second, the position has been saved at least once.
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), async () =>
                (await ScrubControl.StatusAsync(client.Top)).Single().Status is { FilesScrubbed: >= 24 }, "the pass is under way");
        }
        v.Bricks[0].Kill();
        v.Bricks[0].Start();

        await using var again = await v.ClientGraphAsync();
        BitrotStatus? done = null;
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), async () =>
        {
            var s = (await ScrubControl.StatusAsync(again.Top)).Single().Status;
            done = s;
            return s is { Running: false, Passes: >= 1 };
        }, "the resumed pass finishes on its own");
        Assert.That(done!.Passes, Is.EqualTo(1));
        Assert.That(done.ResumedFrom, Is.Not.Null.And.Not.EqualTo("/s59"), "the restarted brick resumed the cut-short pass");
        Assert.That(string.CompareOrdinal(done.ResumedFrom, "/s10"), Is.GreaterThan(0), "after files it had scrubbed, not from the start");
        Assert.That(done.FilesScrubbed, Is.EqualTo(Files), "its counts go on from the saved position");
        Assert.That(done.FilesPerSecond, Is.EqualTo(8));
        Assert.That(File.ReadAllBytes(v.OnBrick(0, "s00")), Is.EqualTo(before));
    }

    /// <summary>
    /// fsx-style through the real mount: random writes, truncates (up and down), punched holes,
    /// zeroed ranges and preallocations (util-linux fallocate on the mounted file) against a model
    /// byte array, with reads checked along the way; then the file reads back whole, every block
    /// verifies after the brick restarts, and a full scrub finds nothing bad.
    /// </summary>
    [Test]
    public async Task AnFsxSequenceThroughTheMountKeepsEveryChecksumRight()
    {
        using var v = new BitrotVolume(1);
        string path = v.PathOf("fsx");
        var rng = new Random(77);
        var model = Array.Empty<byte>();
        const int MaxSize = 3 << 20;
        File.WriteAllBytes(path, []);
        for (int step = 0; step < 160; step++)
        {
            int op = rng.Next(100);
            string what;
            if (op < 45)
            {
                long off = rng.Next(0, MaxSize);
                var data = new byte[rng.Next(1, 200_000)];
                rng.NextBytes(data);
                what = $"write {data.Length} at {off}";
                using (var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1))
                {
                    f.Position = off;
                    f.Write(data);
                }
                if (off + data.Length > model.Length) Array.Resize(ref model, (int)(off + data.Length));
                data.CopyTo(model, off);
            }
            else if (op < 55)
            {
                long size = rng.Next(0, MaxSize);
                what = $"truncate to {size}";
                using (var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1)) f.SetLength(size);
                Array.Resize(ref model, (int)size);
            }
            else if (op < 80)
            {
                long off = rng.Next(0, MaxSize), len = rng.Next(1, 300_000);
                string mode = op < 65 ? "--punch-hole" : op < 72 ? "--zero-range" : "";
                bool keep = mode == "--punch-hole" || (mode == "--zero-range" && rng.Next(2) == 0);
                what = $"fallocate {mode}{(keep ? " --keep-size" : "")} {len} at {off}";
                var args = new List<string>();
                if (mode.Length > 0) args.Add(mode);
                if (keep && mode != "--punch-hole") args.Add("--keep-size");
                args.AddRange(["--offset", off.ToString(), "--length", len.ToString(), path]);
                var r = Shell.Run("fallocate", args, TimeSpan.FromSeconds(30));
                Assert.That(r.Ok, Is.True, $"step {step}: {what}: {r}");
                long end = off + len;
                if (!keep && end > model.Length) Array.Resize(ref model, (int)end);
                if (mode.Length > 0) Array.Clear(model, (int)Math.Min(off, model.Length), (int)Math.Clamp(Math.Min(end, model.Length) - off, 0, model.Length));
            }
            else
            {
                long off = model.Length == 0 ? 0 : rng.Next(0, model.Length);
                int len = rng.Next(1, 300_000);
                what = $"read {len} at {off}";
                var got = new byte[len];
                int n;
                using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1))
                {
                    f.Position = off;
                    n = f.ReadAtLeast(got, len, throwOnEndOfStream: false);
                }
                Assert.That(got[..n], Is.EqualTo(model.AsSpan((int)off, (int)Math.Clamp(model.Length - off, 0, len)).ToArray()), $"step {step}: {what}");
            }
            TestContext.Out.WriteLine($"step {step}: {what}");
        }
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(model), "the whole file through the mount");
        Assert.That(File.ReadAllBytes(v.OnBrick(0, "fsx")), Is.EqualTo(model), "and on the brick");

        v.Bricks[0].Kill();
        v.Bricks[0].Start();
        await using var client = await v.ClientGraphAsync();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => client.All.OfType<Brickfs.Translators.Protocol.ProtocolClientTranslator>().All(c => c.IsConnected), "the client reaches the restarted brick");
        var (error, read) = await GraphFiles.ReadAllAsync(client.Top, "fsx");
        Assert.That(error, Is.EqualTo(Brickfs.Translators.Core.Errno.None), "every block verifies after a restart");
        Assert.That(read, Is.EqualTo(model));
        var scrub = (await ScrubControl.ScrubAndWaitAsync(client.Top, TimeSpan.FromMilliseconds(200))).Single();
        Assert.That(scrub.Status!.BadFiles, Is.Empty, "a full scrub agrees with every checksum");
        Assert.That(v.MarkedBad(0, "fsx"), Is.False);
    }
}
