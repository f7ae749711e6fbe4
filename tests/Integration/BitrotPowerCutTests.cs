using System.Runtime.Versioning;
using Brickfs.Tests.Support;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Interop;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A brick on a Btrfs whose block device can be cut from power at any moment: an inner Btrfs image
/// loop-mounted from a file on an outer Btrfs. <c>cp --reflink=always</c> of the inner image is an
/// atomic point-in-time copy of that device (FICLONE writes back and locks the image file, and
/// every write the loop driver passes down is one write to it): what a power cut leaves, since
/// whatever the inner Btrfs keeps in its page cache or in an uncommitted transaction is not in it.
/// Mounting a copy replays its log tree as a reboot would. The inner Btrfs commits only every
/// 300 s, so a copy taken mid-run holds the last commit plus what fsyncs logged plus what
/// writeback put in place in nodatacow files, which is where a false verdict could come from.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class PowerCutBrick : IDisposable
{
    private readonly BtrfsImage _outer;
    private readonly List<string> _mounts = [];

    public string WorkDir { get; }
    public string InnerImage { get; }
    public string InnerMount { get; }

    /// <summary>The brick directory on the inner Btrfs: nodatacow (chattr +C), so the checksum store under it is too.</summary>
    public string Brick => Path.Combine(InnerMount, "brick");

    public PowerCutBrick()
    {
        _outer = new BtrfsImage("powercut-outer", 6L << 30);
        WorkDir = Path.Combine(_outer.MountPoint, "work");
        Directory.CreateDirectory(WorkDir);
        InnerImage = Path.Combine(_outer.MountPoint, "inner.img");
        InnerMount = Path.Combine(WorkDir, "inner");
        Shell.Must($"truncate -s 1G '{InnerImage}' && mkfs.btrfs -q -f '{InnerImage}'", TimeSpan.FromSeconds(60));
        MountImage(InnerImage, InnerMount, "commit=300");
        Directory.CreateDirectory(Brick);
        Shell.Must($"chattr +C '{Brick}'");
    }

    /// <summary>Loop-mounts <paramref name="image"/> (replaying its log) at <paramref name="at"/>.</summary>
    public void MountImage(string image, string at, string options = "")
    {
        Directory.CreateDirectory(at);
        Shell.Must($"mount -o loop{(options.Length > 0 ? "," + options : "")} '{image}' '{at}'", TimeSpan.FromSeconds(60));
        _mounts.Add(at);
    }

    public void Unmount(string at)
    {
        Shell.Must($"umount '{at}'", TimeSpan.FromSeconds(60));
        _mounts.Remove(at);
    }

    /// <summary>
    /// Starts writeback of the data of <paramref name="files"/> random files of the brick (the checksum
    /// store's included) without a commit or log (posix_fadvise DONTNEED through dd), so that
    /// in-place nodatacow writes reach the device ahead of the metadata that goes with them.
    /// </summary>
    public void PushWriteback(int files) =>
        Shell.Must($"cd '{Brick}' && find . -type f | shuf -n {files} | while read -r f; do dd if=\"$f\" iflag=nocache count=0 status=none; done",
            TimeSpan.FromSeconds(60));

    /// <summary>What a power cut now would leave on the inner device, as an image file of its own.</summary>
    public string PowerCut(string name)
    {
        var copy = Path.Combine(_outer.MountPoint, name + ".img");
        Shell.Must($"cp --reflink=always '{InnerImage}' '{copy}'", TimeSpan.FromSeconds(60));
        return copy;
    }

    public void Dispose()
    {
        for (int i = _mounts.Count - 1; i >= 0; i--) Shell.Sh($"umount '{_mounts[i]}' || umount -l '{_mounts[i]}'", TimeSpan.FromSeconds(60));
        _outer.Dispose();
    }
}

/// <summary>
/// Power cuts under a real brickd with features/bitrot and writers on nodatacow and COW files:
/// after every cut, every file reads whole through bitrot and a scrub agrees with every checksum,
/// i.e. each block either matches its checksum or lies in the dirty marker that survived the cut.
/// </summary>
[NonParallelizable]
[CancelAfter(900_000)]
[SupportedOSPlatform("linux")]
public sealed class BitrotPowerCutTests
{
    private const int Size = 2 << 20;
    private const int Cuts = 12;
    private static readonly string[] Files = ["n0", "n1", "n2", "n3", "cow/c0", "cow/c1"];

    /// <summary>How long one read of a file or one scrub pass of the small brick may take, however loaded the machine.</summary>
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(120);

    private static async Task<T> Within<T>(Task<T> step, string what, BrickProcess brick)
    {
        try
        {
            return await step.WaitAsync(Step);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"{what} did not finish within {Step.TotalSeconds} s; brickd's log:\n{brick.Tail()}");
            throw;
        }
    }

    private static string BrickGraph(string name, string dir) => $"""
        volume {name}-posix
            type storage/posix
            option directory {dir}
        end-volume
        volume {name}-bitrot
            type features/bitrot
            subvolumes {name}-posix
        end-volume
        volume {name}
            type features/locks
            subvolumes {name}-bitrot
        end-volume
        """;

    private static async Task<TranslatorGraph> ClientAsync(string workDir, BrickProcess brick)
    {
        var volfile = Path.Combine(workDir, brick.Name + "-client.vol");
        File.WriteAllText(volfile, $"""
            volume vol-client-0
                type protocol/client
                option remote-host 127.0.0.1
                option remote-port {brick.Port}
                option remote-subvolume {brick.Name}
                option ping-timeout 10
            end-volume
            """);
        var g = GraphBuilder.BuildFile(volfile);
        await g.InitAsync(CancellationToken.None);
        return g;
    }

    [Test]
    public async Task NoPowerCutInTheMiddleOfHeavyWritesLeavesAFalseVerdict()
    {
        using var disk = new PowerCutBrick();
        var ctx = FopContext.Internal();
        var cuts = new List<string>();
        var gfids = new Dictionary<string, Gfid>();
        using (var brick = new BrickProcess(disk.WorkDir, "pc", disk.Brick, brickGraph: BrickGraph("pc", disk.Brick)))
        {
            await using var client = await ClientAsync(disk.WorkDir, brick);
            var top = client.Top;
            var cow = await top.MkdirAsync(ctx, Gfid.Root, "cow", 0x1ED /* 0755 */, Gfid.NewRandom());
            Assert.That(cow.Ok, Is.True, $"mkdir cow: {cow.Error}");
            Shell.Must($"chattr -C '{Path.Combine(disk.Brick, "cow")}'");
            for (int i = 0; i < Files.Length; i++)
            {
                var parent = Files[i].StartsWith("cow/", StringComparison.Ordinal) ? cow.Value.Gfid : Gfid.Root;
                var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
                var c = await top.CreateAsync(ctx, parent, Path.GetFileName(Files[i]), 0x1A4 /* 0644 */, fd);
                Assert.That(c.Ok, Is.True, $"create {Files[i]}: {c.Error}");
                gfids[Files[i]] = c.Value.Gfid;
                var data = new byte[Size];
                new Random(i).NextBytes(data);
                for (int at = 0; at < Size; at += 1 << 20)
                    Assert.That((await top.WriteAsync(ctx, fd, at, data.AsMemory(at, 1 << 20))).Value, Is.EqualTo(1 << 20));
                await top.ReleaseAsync(ctx, fd);
            }
            Assert.That(Shell.Must($"lsattr -d '{Path.Combine(disk.Brick, "n0")}' '{Path.Combine(disk.Brick, "cow/c0")}'"),
                Does.Match(@"C\S*\s+\S*/n0\s+[^C\s]+\s+\S*/cow/c0"), "n* are nodatacow, cow/* are not");
            // Everything so far committed: the cuts below start from signed files with their records on disk.
            Shell.Must($"btrfs filesystem sync '{disk.InnerMount}'", TimeSpan.FromSeconds(120));

            // Writers: open-for-write periods of 1..40 writes (1 byte to 128 KiB at random offsets),
            // now and then a truncate down (later writes grow the file again over the cut part);
            // two writers per file, so periods overlap. The writers of n0 and cow/c0 also fsync
            // now and then; the others never do, so only bitrot's own ordering protects them.
            using var stop = new CancellationTokenSource();
            long writes = 0;
            var writers = Enumerable.Range(0, Files.Length * 2).Select(w => Task.Run(async () =>
            {
                var rng = new Random(1000 + w);
                var gfid = gfids[Files[w % Files.Length]];
                while (!stop.IsCancellationRequested)
                {
                    var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
                    var o = await top.OpenAsync(ctx, fd);
                    if (!o.Ok) return $"open {Files[w % Files.Length]}: {o.Error}";
                    try
                    {
                        for (int n = rng.Next(1, 40); n > 0 && !stop.IsCancellationRequested; n--)
                        {
                            int kind = rng.Next(40);
                            if (kind == 0)
                            {
                                var t = await top.SetattrAsync(ctx, gfid, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = rng.Next(Size / 2, Size) });
                                if (!t.Ok) return $"truncate: {t.Error}";
                                continue;
                            }
                            if (kind == 1 && w % Files.Length is 0 or 4 && await top.FsyncAsync(ctx, fd, false) is { Ok: false } f) return $"fsync: {f.Error}";
                            var chunk = new byte[rng.Next(1, 128 << 10)];
                            rng.NextBytes(chunk);
                            var r = await top.WriteAsync(ctx, fd, rng.Next(0, Size - chunk.Length), chunk);
                            if (!r.Ok || r.Value != chunk.Length) return $"write: {r.Error}";
                            Interlocked.Increment(ref writes);
                        }
                    }
                    finally
                    {
                        await top.ReleaseAsync(ctx, fd);
                    }
                }
                return null;
            })).ToList();

            // Cuts at random moments (the pauses pick moments; nothing waits on them), after pushing
            // the data of a few random files to the device as writeback would.
            var pick = new Random(7);
            for (int k = 0; k < Cuts; k++)
            {
                await Task.Delay(pick.Next(1000, 3500));
                Assert.That(writers.Where(t => t.IsCompleted).Select(t => t.Result).FirstOrDefault(), Is.Null, "a writer failed");
                disk.PushWriteback(pick.Next(1, 8));
                cuts.Add(disk.PowerCut($"cut{k}"));
            }
            stop.Cancel();
            var ends = await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.That(ends.Where(e => e is not null), Is.Empty, "every writer ran without an error");
            Assert.That(Interlocked.Read(ref writes), Is.GreaterThan(Cuts * 10), "the writers were busy across the cuts");
        }
        disk.Unmount(disk.InnerMount);

        // Each cut is booted on its own: log replay by the mount, a fresh brickd, every file read
        // whole through bitrot, then a full scrub.
        var verdicts = new List<string>();
        int marked = 0;
        for (int k = 0; k < cuts.Count; k++)
        {
            var at = Path.Combine(disk.WorkDir, $"cut{k}");
            disk.MountImage(cuts[k], at);
            var dir = Path.Combine(at, "brick");
            bool anyMarker = Files.Any(f => Sys.GetXattr(Path.Combine(dir, f), BitrotTranslator.DirtyXattr, follow: false, out _) == Errno.None);
            if (anyMarker) marked++;
            using (var brick = new BrickProcess(disk.WorkDir, $"cut{k}", dir, brickGraph: BrickGraph($"cut{k}", dir)))
            {
                await using var client = await ClientAsync(disk.WorkDir, brick);
                foreach (var f in Files)
                {
                    var (error, data) = await Within(GraphFiles.ReadAllAsync(client.Top, f), $"cut{k}: reading {f}", brick);
                    if (error != Errno.None) verdicts.Add($"cut{k}: reading {f} gives {error}");
                    else Assert.That(data, Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, f))), $"cut{k}: {f} reads as the brick holds it");
                }
                using var deadline = new CancellationTokenSource(Step);
                var scrub = (await ScrubControl.ScrubAndWaitAsync(client.Top, TimeSpan.FromMilliseconds(200), deadline.Token)).Single();
                Assert.That(scrub.Error, Is.EqualTo(Errno.None), $"cut{k}: scrub");
                foreach (var bad in scrub.Status!.BadFiles) verdicts.Add($"cut{k}: the scrubber judges {bad.Path ?? bad.Gfid.ToString()} bad at block {bad.Block}");
            }
            disk.Unmount(at);
            File.Delete(cuts[k]);
        }
        int falseCuts = verdicts.Select(v => v[..v.IndexOf(':')]).Distinct().Count();
        TestContext.Out.WriteLine($"{cuts.Count} power cuts, {marked} of them with a write period in flight, {falseCuts} with a false verdict");
        Assert.That(verdicts, Is.Empty, $"{falseCuts} of {cuts.Count} power cuts left a false verdict:\n{string.Join('\n', verdicts)}");
        Assert.That(marked, Is.GreaterThan(0), "some cut caught a write period in flight (a dirty marker on disk)");
    }
}
