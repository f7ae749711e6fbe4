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
}
