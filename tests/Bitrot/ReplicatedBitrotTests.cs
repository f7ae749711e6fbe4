using System.Text;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Features.Index;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Bitrot;

/// <summary>
/// cluster/replicate over N in-memory bricks that run features/bitrot, each brick
/// debug/error-gen (ENOTCONN, off until <see cref="Down"/>) → features/locks → features/index →
/// features/bitrot (4 KiB blocks) → storage/memory, as brickd stacks them. Corruption is a write
/// straight to a brick's storage/memory, behind bitrot's back.
/// </summary>
internal sealed class ReplicatedBitrot : IAsyncDisposable
{
    public const int Block = 4096;

    private ReplicatedBitrot(TranslatorGraph graph, int count)
    {
        Graph = graph;
        Count = count;
    }

    public TranslatorGraph Graph { get; }
    public int Count { get; }
    public Translator Top => Graph.Top;
    public ReplicateTranslator Replicate => Graph.Find<ReplicateTranslator>();

    public static async Task<ReplicatedBitrot> StartAsync(int count, params string[] replicateOptions)
    {
        var v = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            v.Append($"""
                volume b{i}-mem
                    type storage/memory
                end-volume
                volume b{i}-bitrot
                    type features/bitrot
                    option block-size 4KB
                    subvolumes b{i}-mem
                end-volume
                volume b{i}-index
                    type features/index
                    subvolumes b{i}-bitrot
                end-volume
                volume b{i}-locks
                    type features/locks
                    subvolumes b{i}-index
                end-volume
                volume b{i}
                    type debug/error-gen
                    option error-no ENOTCONN
                    subvolumes b{i}-locks
                end-volume

                """);
        }
        v.Append("volume vol\n    type cluster/replicate\n");
        foreach (var o in replicateOptions) v.Append($"    option {o}\n");
        v.Append($"    subvolumes {string.Join(' ', Enumerable.Range(0, count).Select(i => $"b{i}"))}\nend-volume\n");
        var graph = GraphBuilder.BuildText(v.ToString(), "replicated-bitrot.vol");
        await graph.InitAsync(CancellationToken.None);
        for (int i = 0; i < count; i++) ((ErrorGenTranslator)graph[$"b{i}"]).Active = false;
        return new ReplicatedBitrot(graph, count);
    }

    public static FopContext Ctx() => new() { Uid = 0, Gid = 0, Pid = 1, ClientId = "c1", LockOwner = 1 };

    public void Down(params int[] bricks) { foreach (var i in bricks) ((ErrorGenTranslator)Graph[$"b{i}"]).Active = true; }
    public void Up(params int[] bricks) { foreach (var i in bricks) ((ErrorGenTranslator)Graph[$"b{i}"]).Active = false; }

    /// <summary>Brick i as its server sees it (below the fault injector, above bitrot).</summary>
    public Translator Brick(int i) => Graph[$"b{i}-locks"];
    public BitrotTranslator Bitrot(int i) => (BitrotTranslator)Graph[$"b{i}-bitrot"];
    public IndexTranslator Index(int i) => (IndexTranslator)Graph[$"b{i}-index"];

    public async Task<FileHandle> CreateWithAsync(string name, byte[] data)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await Top.CreateAsync(Ctx(), Gfid.Root, name, 0x1A4, fd)).Error, Is.EqualTo(Errno.None), $"create {name}");
        var w = await Top.WriteAsync(Ctx(), fd, 0, data);
        Assert.That(w.Error, Is.EqualTo(Errno.None));
        return fd;
    }

    public static async Task<FopResult<byte[]>> ReadAllAsync(Translator via, FileHandle fd, int size)
    {
        var r = await via.ReadAsync(Ctx(), fd, 0, size);
        if (!r.Ok) return r.Error;
        using var b = r.Value;
        return b.Span.ToArray();
    }

    /// <summary>Flips one byte of brick i's stored copy without bitrot seeing it.</summary>
    public async Task CorruptAsync(int brick, Gfid gfid, long offset)
    {
        var mem = Graph[$"b{brick}-mem"];
        var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
        Assert.That((await mem.OpenAsync(Ctx(), fd)).Ok, Is.True);
        var old = await mem.ReadAsync(Ctx(), fd, offset, 1);
        byte b;
        using (var buf = old.Value) b = buf.Span[0];
        Assert.That((await mem.WriteAsync(Ctx(), fd, offset, new[] { (byte)(b ^ 0x5A) })).Ok, Is.True);
        await mem.ReleaseAsync(Ctx(), fd);
    }

    /// <summary>Brick i's copy read through its bitrot with a fresh descriptor, as a client of that brick alone would.</summary>
    public async Task<FopResult<byte[]>> ReadOnBrickAsync(int brick, Gfid gfid, int size)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadOnly);
        Assert.That((await Brick(brick).OpenAsync(Ctx(), fd)).Ok, Is.True);
        try
        {
            return await ReadAllAsync(Brick(brick), fd, size);
        }
        finally
        {
            await Brick(brick).ReleaseAsync(Ctx(), fd);
        }
    }

    public async Task<bool> MarkedBadAsync(int brick, Gfid gfid) =>
        (await Brick(brick).GetxattrAsync(Ctx(), gfid, BitrotTranslator.BadFileXattr)).Ok;

    /// <summary>Brick <paramref name="brick"/>'s data counter against <paramref name="child"/>.</summary>
    /// <summary>Brick <paramref name="brick"/>'s data counter against <paramref name="child"/> once the client's eager batches have ended.</summary>
    public async Task<long> DataPendingAsync(int brick, Gfid gfid, int child)
    {
        await Replicate.FlushEagerAsync();
        var r = await Brick(brick).GetxattrAsync(Ctx(), gfid, ReplicateTranslator.PendingPrefix + $"b{child}");
        if (r.Error == Errno.ENODATA) return 0;
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        var v = XattrCounters.Decode(r.Value);
        return v.Length > 0 ? v[0] : 0;
    }

    public async ValueTask DisposeAsync() => await Graph.DisposeAsync();
}

/// <summary>
/// Replicate with bitrot bricks: a copy its brick found corrupt is never served; the read goes to
/// another copy, the bad copy is blamed so self-heal rewrites it, and the rewrite clears the mark.
/// </summary>
[CancelAfter(20_000)]
public class ReplicatedBitrotTests
{
    private static FopContext Ctx() => ReplicatedBitrot.Ctx();

    private static byte[] RandomData(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Test]
    public async Task ACorruptCopyIsNotServedTheReadComesFromAnotherCopyAndTheBadCopyIsBlamed()
    {
        await using var v = await ReplicatedBitrot.StartAsync(3, "read-subvolume-index 0");
        var data = RandomData(1, 3 * ReplicatedBitrot.Block + 100);
        var fd = await v.CreateWithAsync("f", data);
        await v.CorruptAsync(0, fd.Gfid, ReplicatedBitrot.Block + 7);

        var read = await ReplicatedBitrot.ReadAllAsync(v.Top, fd, data.Length);

        Assert.That(read.Error, Is.EqualTo(Errno.None));
        Assert.That(read.Value, Is.EqualTo(data), "the right bytes, from a good copy");
        Assert.That(await v.MarkedBadAsync(0, fd.Gfid), Is.True, "b0's bitrot marked its copy");
        Assert.That(await v.MarkedBadAsync(1, fd.Gfid) || await v.MarkedBadAsync(2, fd.Gfid), Is.False);
        for (int i = 1; i < 3; i++)
        {
            Assert.That(await v.DataPendingAsync(i, fd.Gfid, 0), Is.EqualTo(1), $"b{i} blames b0's data");
            Assert.That(v.Index(i).ListPending(), Does.Contain(fd.Gfid), $"b{i}'s index lists it for self-heal");
        }
        Assert.That(v.Replicate.BadCopiesBlamed, Is.EqualTo(1));
        Assert.That((await v.Replicate.InspectAsync(fd.Gfid)).Stale, Is.EqualTo(new[] { "b0" }));

        var again = await ReplicatedBitrot.ReadAllAsync(v.Top, fd, data.Length);
        Assert.That(again.Value, Is.EqualTo(data));
        Assert.That(v.Replicate.BadCopiesBlamed, Is.EqualTo(1), "later reads go to good copies straight away");
        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Brick(0), fd, data.Length)).Error, Is.EqualTo(Errno.EIO),
            "b0 itself keeps refusing its copy");
    }

    [Test]
    public async Task HealRewritesTheBadCopyWhichThenLosesItsMarkAndVerifiesClean()
    {
        await using var v = await ReplicatedBitrot.StartAsync(3, "read-subvolume-index 0");
        var data = RandomData(2, 5 * ReplicatedBitrot.Block + 1);
        var fd = await v.CreateWithAsync("f", data);
        await v.CorruptAsync(0, fd.Gfid, 4 * ReplicatedBitrot.Block);
        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Top, fd, data.Length)).Value, Is.EqualTo(data));

        var healed = await v.Replicate.HealAsync(fd.Gfid);

        Assert.That(healed.Outcome, Is.EqualTo(HealOutcome.Healed));
        Assert.That(healed.Healed.HasFlag(SplitBrainKind.Data), Is.True);
        Assert.That(healed.Sinks, Is.EqualTo(new[] { "b0" }));
        Assert.That(await v.MarkedBadAsync(0, fd.Gfid), Is.False, "rewriting the copy from offset 0 cleared the mark");
        Assert.That(v.Bitrot(0).Status.BadFiles, Is.Empty, "and bitrot's list of bad files");
        var onB0 = await v.ReadOnBrickAsync(0, fd.Gfid, data.Length);
        Assert.That(onB0.Error, Is.EqualTo(Errno.None), "b0 verifies its rewritten copy");
        Assert.That(onB0.Value, Is.EqualTo(data));
        for (int i = 0; i < 3; i++)
        {
            for (int k = 0; k < 3; k++) Assert.That(await v.DataPendingAsync(i, fd.Gfid, k), Is.Zero, $"b{i} against b{k}");
            Assert.That(v.Index(i).ListPending(), Is.Empty, $"index of b{i}");
        }
        Assert.That((await v.Bitrot(0).ScrubNowAsync()).BadFiles, Is.Empty, "the scrubber agrees with every rewritten checksum");

        await using var reader = await OpenFile.OpenAsync(v.Top, fd.Gfid);
        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Top, reader.Fd, data.Length)).Value, Is.EqualTo(data),
            "b0, the preferred reader, serves the file again");
        Assert.That(v.Replicate.BadCopiesBlamed, Is.EqualTo(1));
    }

    [Test]
    public async Task ACopyTheScrubberMarkedIsBlamedByTheFirstReadThatReachesIt()
    {
        await using var v = await ReplicatedBitrot.StartAsync(3, "read-subvolume-index 1");
        var data = RandomData(3, 2 * ReplicatedBitrot.Block);
        var fd = await v.CreateWithAsync("cold", data);
        await v.Top.ReleaseAsync(Ctx(), fd);
        await v.CorruptAsync(1, fd.Gfid, 10);
        var status = await v.Bitrot(1).ScrubNowAsync();
        Assert.That(status.BadFiles.Select(b => (b.Gfid, b.Path)), Is.EqualTo(new[] { (fd.Gfid, (string?)"/cold") }));

        await using var reader = await OpenFile.OpenAsync(v.Top, fd.Gfid);
        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Top, reader.Fd, data.Length)).Value, Is.EqualTo(data));
        Assert.That(await v.DataPendingAsync(0, fd.Gfid, 1), Is.EqualTo(1));
        Assert.That(await v.DataPendingAsync(2, fd.Gfid, 1), Is.EqualTo(1));
        Assert.That((await v.Replicate.HealAsync(fd.Gfid)).Sinks, Is.EqualTo(new[] { "b1" }));
        Assert.That((await v.ReadOnBrickAsync(1, fd.Gfid, data.Length)).Value, Is.EqualTo(data));
    }

    [Test]
    public async Task WhenEveryReachableCopyIsBadTheReadFailsWithEioNeverWrongBytes()
    {
        await using var v = await ReplicatedBitrot.StartAsync(3, "read-subvolume-index 0");
        var data = RandomData(4, ReplicatedBitrot.Block);
        var fd = await v.CreateWithAsync("f", data);
        await v.CorruptAsync(0, fd.Gfid, 1);
        v.Down(1, 2);

        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Top, fd, data.Length)).Error, Is.EqualTo(Errno.EIO),
            "the only reachable copy is bad");

        v.Up(1, 2);
        await v.CorruptAsync(1, fd.Gfid, 2);
        await v.CorruptAsync(2, fd.Gfid, 3);
        await using var reader = await OpenFile.OpenAsync(v.Top, fd.Gfid);
        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Top, reader.Fd, data.Length)).Error, Is.EqualTo(Errno.EIO), "every copy is bad");
        for (int i = 0; i < 3; i++) Assert.That(await v.MarkedBadAsync(i, fd.Gfid), Is.True, $"b{i} marked its copy");
    }

    [Test]
    public async Task ReadSubvolumeIndexPicksTheReaderAndMustNameAChild()
    {
        await using var v = await ReplicatedBitrot.StartAsync(3, "read-subvolume-index 2");
        var data = RandomData(5, 100);
        var fd = await v.CreateWithAsync("f", data);
        await v.CorruptAsync(2, fd.Gfid, 0);
        Assert.That((await ReplicatedBitrot.ReadAllAsync(v.Top, fd, data.Length)).Value, Is.EqualTo(data));
        Assert.That(await v.MarkedBadAsync(2, fd.Gfid), Is.True, "the read went to b2 first");
        Assert.That(await v.MarkedBadAsync(0, fd.Gfid) || await v.MarkedBadAsync(1, fd.Gfid), Is.False);

        await using var plain = GraphBuilder.BuildText("""
            volume m0
                type storage/memory
            end-volume
            volume m1
                type storage/memory
            end-volume
            volume vol
                type cluster/replicate
                option read-subvolume-index 2
                subvolumes m0 m1
            end-volume
            """);
        var e = Assert.ThrowsAsync<InvalidOperationException>(async () => await plain.InitAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("read-subvolume-index 2"));
    }

    /// <summary>A descriptor opened through a translator and released on dispose.</summary>
    private sealed class OpenFile : IAsyncDisposable
    {
        private readonly Translator _via;

        private OpenFile(Translator via, FileHandle fd)
        {
            _via = via;
            Fd = fd;
        }

        public FileHandle Fd { get; }

        public static async Task<OpenFile> OpenAsync(Translator via, Gfid gfid)
        {
            var fd = new FileHandle(gfid, OpenFlags.ReadOnly);
            Assert.That((await via.OpenAsync(Ctx(), fd)).Error, Is.EqualTo(Errno.None), "open");
            return new OpenFile(via, fd);
        }

        public async ValueTask DisposeAsync() => await _via.ReleaseAsync(Ctx(), Fd);
    }
}
