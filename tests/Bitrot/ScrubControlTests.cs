using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Bitrot;

/// <summary>
/// The scrubber's control path from a client graph: each brick's features/bitrot answers the
/// virtual root xattrs over the real wire codec (in-memory transport), and
/// <see cref="ScrubControl"/> asks every brick of a replicate volume.
/// </summary>
[CancelAfter(20_000)]
public class ScrubControlTests
{
    private readonly List<TranslatorGraph> _graphs = [];
    private readonly string _net = "mem-scrub-" + Guid.NewGuid().ToString("N")[..10];

    private static FopContext Root => new() { Uid = 0, Gid = 0, Pid = 1, ClientId = "admin" };

    private async Task<TranslatorGraph> StartAsync(string volfile)
    {
        var g = GraphBuilder.BuildText(volfile);
        await g.InitAsync(CancellationToken.None);
        _graphs.Add(g);
        return g;
    }

    private Task<TranslatorGraph> BrickAsync(int i, string bitrotOptions = "") => StartAsync($"""
        volume s{i}-mem
            type storage/memory
        end-volume
        volume s{i}-bitrot
            type features/bitrot
            option block-size 4KB
            {bitrotOptions}
            subvolumes s{i}-mem
        end-volume
        volume s{i}-index
            type features/index
            subvolumes s{i}-bitrot
        end-volume
        volume s{i}
            type features/locks
            subvolumes s{i}-index
        end-volume
        volume s{i}-server
            type protocol/server
            option transport-type memory
            option listen-host {_net}
            option listen-port {24200 + i}
            subvolumes s{i}
        end-volume
        """);

    private Task<TranslatorGraph> ClientAsync(int bricks) => StartAsync(string.Concat(Enumerable.Range(0, bricks).Select(i => $"""
        volume vol-client-{i}
            type protocol/client
            option transport-type memory
            option remote-host {_net}
            option remote-port {24200 + i}
            option remote-subvolume s{i}
        end-volume

        """)) + (bricks == 1 ? "" : $"""
        volume vol
            type cluster/replicate
            subvolumes {string.Join(' ', Enumerable.Range(0, bricks).Select(i => $"vol-client-{i}"))}
        end-volume
        """));

    [TearDown]
    public async Task StopGraphs()
    {
        for (int i = _graphs.Count - 1; i >= 0; i--) await _graphs[i].DisposeAsync();
        _graphs.Clear();
    }

    [Test]
    public async Task OnDemandScrubOfEveryBrickFindsACorruptionNobodyReadAndStatusReportsItWithItsPath()
    {
        var bricks = new[] { await BrickAsync(0), await BrickAsync(1) };
        var client = await ClientAsync(2);
        var data = new byte[3 * 4096 + 5];
        new Random(9).NextBytes(data);
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await client.Top.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Ok, Is.True);
        var dir = (await client.Top.LookupAsync(Root, Gfid.Root, "d")).Value.Gfid;
        Assert.That((await client.Top.CreateAsync(Root, dir, "cold", 0x1A4, fd)).Ok, Is.True);
        Assert.That((await client.Top.WriteAsync(Root, fd, 0, data)).Value, Is.EqualTo(data.Length));
        Assert.That((await client.Top.ReleaseAsync(Root, fd)).Ok, Is.True);

        var before = await ScrubControl.StatusAsync(client.Top);
        Assert.That(before.Select(b => (b.Brick, b.Error)), Is.EqualTo(new[] { ("vol-client-0", Errno.None), ("vol-client-1", Errno.None) }));
        Assert.That(before.Select(b => b.Status!.Passes), Is.EqualTo(new long[] { 0, 0 }));
        Assert.That(before[0].Status!.RateBytesPerSecond, Is.EqualTo(32L << 20), "the default throttle, normal");

        // Rot on brick 1, behind its bitrot's back.
        var mem = bricks[1]["s1-mem"];
        var raw = new FileHandle(fd.Gfid, OpenFlags.ReadWrite);
        Assert.That((await mem.OpenAsync(Root, raw)).Ok, Is.True);
        Assert.That((await mem.WriteAsync(Root, raw, 2 * 4096 + 1, new[] { (byte)(data[2 * 4096 + 1] ^ 1) })).Ok, Is.True);
        await mem.ReleaseAsync(Root, raw);

        var after = await ScrubControl.ScrubAndWaitAsync(client.Top, TimeSpan.FromMilliseconds(20));

        Assert.That(after.All(b => b.Error == Errno.None && b.Status is { Running: false, Passes: 1 }), Is.True);
        Assert.That(after[0].Status!.BadFiles, Is.Empty, "brick 0's copy is sound");
        Assert.That(after[0].Status!.FilesScrubbed, Is.EqualTo(1));
        Assert.That(after[0].Status!.BytesScrubbed, Is.EqualTo(data.Length));
        var bad = after[1].Status!.BadFiles.Single();
        Assert.That((bad.Gfid, bad.Path, bad.Block, bad.FoundBy), Is.EqualTo((fd.Gfid, (string?)"/d/cold", 2L, BitrotDetector.Scrubber)));
        Assert.That(after[1].Status!.LastRunEnd!.Value, Is.GreaterThanOrEqualTo(after[1].Status!.LastRunStart!.Value));
    }

    [Test]
    public async Task OnlyRootReachesTheControlXattrsAndABrickWithBitrotOffRefusesToScrub()
    {
        await BrickAsync(0, "option enable off");
        var client = await ClientAsync(1);
        var user = new FopContext { Uid = 1000, Gid = 1000, Pid = 1, ClientId = "user" };

        Assert.That((await client.Top.GetxattrAsync(user, Gfid.Root, BitrotTranslator.ScrubStatusXattr)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await client.Top.SetxattrAsync(user, Gfid.Root, BitrotTranslator.ScrubNowXattr, "1"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.EPERM));
        var names = await client.Top.ListxattrAsync(Root, Gfid.Root);
        Assert.That(names.Value, Has.None.StartWith("trusted.brickfs.bitrot."), "the control xattrs are not listed");

        var started = await ScrubControl.StartAsync(client.Top);
        Assert.That(started.Single().Error, Is.EqualTo(Errno.ENOTSUP), "bitrot is off on that brick");
        Assert.That((await ScrubControl.StatusAsync(client.Top)).Single().Status!.Passes, Is.Zero);
    }

    [Test]
    public void StatusSurvivesItsJsonForm()
    {
        var s = new BitrotStatus
        {
            Running = true, FilesScrubbed = 3, BytesScrubbed = 12345, BlocksSigned = 2, Passes = 7, RateBytesPerSecond = 1 << 20,
            LastRunStart = DateTimeOffset.Parse("2025-01-02T03:04:05.678+00:00"), LastRunEnd = null,
            BadFiles = [new BadFile(Gfid.NewRandom(), "/a/b", 4, BitrotDetector.Scrubber, DateTimeOffset.Parse("2025-01-02T03:04:06+00:00")),
                new BadFile(Gfid.NewRandom(), null, 0, BitrotDetector.Read, DateTimeOffset.Parse("2025-01-02T03:04:07+00:00"))],
        };
        var back = BitrotStatus.FromJson(s.ToJson());
        Assert.That(back, Is.Not.Null);
        Assert.That(back! with { BadFiles = [] }, Is.EqualTo(s with { BadFiles = [] }));
        Assert.That(back.BadFiles, Is.EqualTo(s.BadFiles));
        Assert.That(BitrotStatus.FromJson("{\"running\":true}"u8), Is.Null, "not a status");
        Assert.That(BitrotStatus.FromJson("not json"u8), Is.Null);
    }
}
