using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Bitrot;

/// <summary>
/// What features/bitrot promises over any storage: data written through it reads back exactly,
/// a block changed underneath it is never served (EIO, file marked bad), truncate and fallocate
/// never cause a false verdict, the scrubber finds what nobody reads, and checksums survive a
/// restart and a crash between data and checksum. Subclasses supply the storage and the way to
/// corrupt a file behind bitrot's back. Blocks are 4 KiB so a few KiB cover many blocks.
/// </summary>
public abstract class BitrotContract
{
    protected static readonly FopContext Ctx = FopContext.Internal();
    protected const int Block = 4096;

    protected TranslatorGraph Graph = null!;
    protected BitrotTranslator Bitrot = null!;
    protected Translator Storage = null!;

    /// <summary>The storage volume, named <c>store</c>, in volfile syntax.</summary>
    protected abstract string StorageVolfile { get; }

    /// <summary>Overwrites bytes of the file at <paramref name="path"/> (GFID <paramref name="gfid"/>) without bitrot seeing it.</summary>
    protected abstract Task CorruptAsync(Gfid gfid, string path, long offset, byte[] bytes);

    /// <summary>Starts a new bitrot over the same stored data, as after a brick restart; the old instance is abandoned, not disposed.</summary>
    protected abstract Task RestartAsync();

    protected string Volfile(string bitrotOptions = "") => StorageVolfile + $"""

        volume bitrot
            type features/bitrot
            option block-size 4KB
        {bitrotOptions}
            subvolumes store
        end-volume
        """;

    protected async Task StartAsync(string bitrotOptions = "")
    {
        Graph = GraphBuilder.BuildText(Volfile(bitrotOptions));
        await Graph.InitAsync(CancellationToken.None);
        Bitrot = (BitrotTranslator)Graph.Top;
        Storage = Graph["store"];
    }

    [SetUp]
    public Task SetUpGraph() => StartAsync();

    [TearDown]
    public async Task TearDownGraph()
    {
        if (Graph is not null) await Graph.DisposeAsync();
    }

    // ---- helpers -------------------------------------------------------------------------------

    protected async Task<FileHandle> CreateAsync(string name, Gfid? parent = null, Translator? via = null)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await (via ?? Bitrot).CreateAsync(Ctx, parent ?? Gfid.Root, name, 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"create {name}");
        return fd;
    }

    protected async Task<FileHandle> OpenAsync(Gfid gfid, int flags = OpenFlags.ReadWrite)
    {
        var fd = new FileHandle(gfid, flags);
        Assert.That((await Bitrot.OpenAsync(Ctx, fd)).Error, Is.EqualTo(Errno.None));
        return fd;
    }

    protected static async Task WriteAsync(Translator t, FileHandle fd, long offset, byte[] data)
    {
        var r = await t.WriteAsync(Ctx, fd, offset, data);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"write {data.Length} at {offset}");
        Assert.That(r.Value, Is.EqualTo(data.Length));
    }

    protected Task WriteAsync(FileHandle fd, long offset, byte[] data) => WriteAsync(Bitrot, fd, offset, data);

    protected async Task<FopResult<byte[]>> ReadAsync(FileHandle fd, long offset, int size)
    {
        var r = await Bitrot.ReadAsync(Ctx, fd, offset, size);
        if (!r.Ok) return r.Error;
        using var b = r.Value;
        return b.Span.ToArray();
    }

    protected async Task<byte[]> ReadOkAsync(FileHandle fd, long offset, int size)
    {
        var r = await ReadAsync(fd, offset, size);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"read {size} at {offset}");
        return r.Value;
    }

    protected static byte[] Random(Random rng, int n)
    {
        var b = new byte[n];
        rng.NextBytes(b);
        return b;
    }

    /// <summary>Writes into the reference model, growing it like a file.</summary>
    protected static void Apply(ref byte[] model, long offset, byte[] data)
    {
        if (offset + data.Length > model.Length) Array.Resize(ref model, (int)(offset + data.Length));
        data.CopyTo(model, (int)offset);
    }

    protected async Task<byte[]> ReadAllAsync(FileHandle fd, int size) => await ReadOkAsync(fd, 0, size + 1000);

    // ---- round trip -------------------------------------------------------------------------------

    [Test]
    public async Task EveryReadAtEndOfAnUnalignedFileReturnsABufferOfItsOwn()
    {
        var fd = await CreateAsync("eof");
        await WriteAsync(fd, 0, Random(new Random(3), Block + 100));
        for (int i = 0; i < 3; i++)
        {
            var r = await Bitrot.ReadAsync(Ctx, fd, Block + 100, Block);
            Assert.That(r.Error, Is.EqualTo(Errno.None));
            // The receiver owns and disposes it (protocol/server does after sending): a shared buffer would be dead for the next read.
            using var b = r.Value;
            Assert.That(b.Span.Length, Is.Zero, $"read {i} at end of file");
        }
    }

    [Test]
    public async Task UnalignedWritesAndReadsReturnWhatWasWritten()
    {
        var rng = new Random(7);
        var fd = await CreateAsync("f");
        var model = Array.Empty<byte>();
        for (int i = 0; i < 150; i++)
        {
            long off = rng.Next(0, 60_000);
            var data = Random(rng, rng.Next(1, 9000));
            await WriteAsync(fd, off, data);
            Apply(ref model, off, data);
            long roff = rng.Next(0, model.Length);
            int rlen = rng.Next(1, 12_000);
            var got = await ReadOkAsync(fd, roff, rlen);
            Assert.That(got, Is.EqualTo(model.AsSpan((int)roff, (int)Math.Min(rlen, model.Length - roff)).ToArray()), $"step {i}: read {rlen} at {roff}");
        }
        await Bitrot.ReleaseAsync(Ctx, fd);
        var again = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, model.Length), Is.EqualTo(model));
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty, "the scrubber agrees with every checksum");
    }

    [Test]
    public async Task WriteOnlyDescriptorsAndAppendKeepChecksumsRight()
    {
        var rng = new Random(3);
        var fd = await CreateAsync("log");
        await Bitrot.ReleaseAsync(Ctx, fd);
        var model = Array.Empty<byte>();
        var writer = await OpenAsync(fd.Gfid, OpenFlags.WriteOnly | OpenFlags.Append);
        for (int i = 0; i < 40; i++)
        {
            var data = Random(rng, rng.Next(1, 3000));
            await WriteAsync(writer, 0, data); // O_APPEND: the offset is ignored
            Apply(ref model, model.Length, data);
        }
        var reader = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(reader, model.Length), Is.EqualTo(model));
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty);
    }

    [Test]
    public async Task ConcurrentWritersToTheSameBlocksNeverCauseFalseVerdicts()
    {
        var fd = await CreateAsync("shared");
        await WriteAsync(fd, 0, new byte[4 * Block]);
        // Each writer owns every fourth 512-byte slot, so the final content is known while all share blocks.
        await Task.WhenAll(Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (int round = 0; round < 20; round++)
                for (int slot = w; slot < 4 * Block / 512; slot += 4)
                    await WriteAsync(fd, slot * 512, Enumerable.Repeat((byte)(w + 1), 512).ToArray());
        })));
        var got = await ReadOkAsync(fd, 0, 4 * Block);
        for (int slot = 0; slot < 4 * Block / 512; slot++)
            Assert.That(got.AsSpan(slot * 512, 512).ToArray(), Is.All.EqualTo((byte)(slot % 4 + 1)), $"slot {slot}");
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty);
    }

    // ---- corruption --------------------------------------------------------------------------------

    [Test]
    public async Task CorruptedBlockAnswersEioMarksTheFileBadAndSparesOtherFiles()
    {
        var rng = new Random(11);
        var a = await CreateAsync("a");
        var b = await CreateAsync("b");
        var aData = Random(rng, 5 * Block + 100);
        var bData = Random(rng, 3 * Block);
        await WriteAsync(a, 0, aData);
        await WriteAsync(b, 0, bData);

        Assert.That(await ReadOkAsync(a, 0, 100), Is.EqualTo(aData[..100]));
        await CorruptAsync(a.Gfid, "a", 2 * Block + 17, [(byte)(aData[2 * Block + 17] ^ 0x5A)]);

        Assert.That((await ReadAsync(a, Block, 10)).Ok, Is.True, "block 1 is intact");
        Assert.That((await ReadAsync(a, 2 * Block + 100, 10)).Error, Is.EqualTo(Errno.EIO), "a read touching the flipped block");
        Assert.That((await ReadAsync(a, 0, 10)).Error, Is.EqualTo(Errno.EIO), "once bad, every read of the file fails");
        Assert.That((await Bitrot.GetxattrAsync(Ctx, a.Gfid, BitrotTranslator.BadFileXattr)).Ok, Is.True, "the brick copy carries the bad mark");
        Assert.That(Bitrot.Status.BadFiles.Select(f => f.Gfid), Is.EqualTo(new[] { a.Gfid }));
        Assert.That(Bitrot.Status.BadFiles[0].Block, Is.EqualTo(2));
        Assert.That(await ReadOkAsync(b, 0, bData.Length), Is.EqualTo(bData));
    }

    [Test]
    public async Task RewritingABadFileFromScratchClearsTheMark()
    {
        var a = await CreateAsync("a");
        var data = Random(new Random(5), 3 * Block);
        await WriteAsync(a, 0, data);
        await CorruptAsync(a.Gfid, "a", 10, [(byte)(data[10] ^ 1)]);
        Assert.That((await ReadAsync(a, 0, 100)).Error, Is.EqualTo(Errno.EIO));

        var heal = new FileHandle(a.Gfid, OpenFlags.ReadWrite | OpenFlags.Truncate);
        Assert.That((await Bitrot.OpenAsync(Ctx, heal)).Ok, Is.True);
        await WriteAsync(heal, 0, data);
        Assert.That(await ReadOkAsync(heal, 0, data.Length), Is.EqualTo(data));
        Assert.That((await Bitrot.GetxattrAsync(Ctx, a.Gfid, BitrotTranslator.BadFileXattr)).Error, Is.EqualTo(Errno.ENODATA));
        Assert.That(Bitrot.Status.BadFiles, Is.Empty);
    }

    [Test]
    public async Task RootRemovingTheBadMarkIsHealSayingTheCopyIsGood()
    {
        var a = await CreateAsync("a");
        var data = Random(new Random(6), 2 * Block);
        await WriteAsync(a, 0, data);
        await CorruptAsync(a.Gfid, "a", Block + 1, [(byte)(data[Block + 1] ^ 1)]);
        Assert.That((await ReadAsync(a, Block, 10)).Error, Is.EqualTo(Errno.EIO));
        await WriteAsync(a, Block, data[Block..]); // heal rewrote the bad block
        Assert.That((await Bitrot.RemovexattrAsync(new FopContext { Uid = 1000 }, a.Gfid, BitrotTranslator.BadFileXattr)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await Bitrot.RemovexattrAsync(Ctx, a.Gfid, BitrotTranslator.BadFileXattr)).Ok, Is.True);
        Assert.That(await ReadOkAsync(a, 0, data.Length), Is.EqualTo(data));
    }

    // ---- truncate, fallocate --------------------------------------------------------------------------

    [Test]
    public async Task TruncateAndPunchHoleKeepChecksumsConsistent()
    {
        var rng = new Random(21);
        var fd = await CreateAsync("t");
        var model = Random(rng, 10 * Block + 300);
        await WriteAsync(fd, 0, model);

        async Task Truncate(long size)
        {
            var r = await Bitrot.SetattrAsync(Ctx, fd.Gfid, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = size });
            Assert.That(r.Error, Is.EqualTo(Errno.None), $"truncate {size}");
            Array.Resize(ref model, (int)size);
        }

        await Truncate(3 * Block + 1001);                 // shrink into the middle of a block
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model));
        await Truncate(7 * Block + 5);                    // grow: zeros, no false verdict
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model));
        var tail = Random(rng, 700);
        await WriteAsync(fd, 6 * Block - 200, tail);
        Apply(ref model, 6 * Block - 200, tail);

        // Punch a hole from inside block 1 to inside block 5 (blocks 2..4 become whole zero blocks).
        var punch = await Bitrot.FallocateAsync(Ctx, fd, FallocateMode.PunchHole | FallocateMode.KeepSize, Block + 100, 4 * Block);
        Assert.That(punch.Error, Is.EqualTo(Errno.None));
        Array.Clear(model, Block + 100, 4 * Block);
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model));

        var zero = await Bitrot.FallocateAsync(Ctx, fd, FallocateMode.ZeroRange, 6 * Block + 10, 2 * Block);
        Assert.That(zero.Error, Is.EqualTo(Errno.None));
        Array.Resize(ref model, 8 * Block + 10);
        Array.Clear(model, 6 * Block + 10, 2 * Block);
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model));

        await Truncate(0);
        await WriteAsync(fd, 5, [1, 2, 3]);
        model = [0, 0, 0, 0, 0, 1, 2, 3];
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model));
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty);
    }

    [Test]
    public async Task TruncateByGfidWithoutADescriptorKeepsChecksumsRight()
    {
        var fd = await CreateAsync("g");
        var model = Random(new Random(1), 4 * Block);
        await WriteAsync(fd, 0, model);
        await Bitrot.ReleaseAsync(Ctx, fd);
        var r = await Bitrot.SetattrAsync(Ctx, fd.Gfid, null, new SetattrRequest { Valid = SetattrValid.Size, Size = Block + 7 });
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        var again = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, Block + 7), Is.EqualTo(model[..(Block + 7)]));
    }

    // ---- scrubber -------------------------------------------------------------------------------------

    [Test]
    public async Task ScrubberFindsACorruptionInAFileNobodyReads()
    {
        var rng = new Random(31);
        var dir = await Bitrot.MkdirAsync(Ctx, Gfid.Root, "d", 0x1ED, Gfid.NewRandom());
        Assert.That(dir.Error, Is.EqualTo(Errno.None));
        var files = new List<(FileHandle Fd, byte[] Data)>();
        for (int i = 0; i < 4; i++)
        {
            var fd = await CreateAsync("f" + i, dir.Value.Gfid);
            var data = Random(rng, 2 * Block + i * 1000);
            await WriteAsync(fd, 0, data);
            await Bitrot.ReleaseAsync(Ctx, fd);
            files.Add((fd, data));
        }
        var victim = files[2];
        await CorruptAsync(victim.Fd.Gfid, "d/f2", Block + 3, [(byte)(victim.Data[Block + 3] ^ 0xFF)]);

        var status = await Bitrot.ScrubNowAsync();
        Assert.That(status.Running, Is.False);
        Assert.That(status.Passes, Is.EqualTo(1));
        Assert.That(status.LastRunEnd, Is.GreaterThanOrEqualTo(status.LastRunStart!.Value));
        Assert.That(status.BadFiles.Select(b => (b.Gfid, b.Path, b.FoundBy)),
            Is.EqualTo(new[] { (victim.Fd.Gfid, (string?)"/d/f2", BitrotDetector.Scrubber) }));
        Assert.That(status.FilesScrubbed, Is.EqualTo(3), "the three good files completed; the bad one stopped at its bad block");
        Assert.That(status.BytesScrubbed, Is.GreaterThanOrEqualTo(files.Where(f => f != victim).Sum(f => f.Data.Length)));
        var reopened = await OpenAsync(victim.Fd.Gfid, OpenFlags.ReadOnly);
        Assert.That((await ReadAsync(reopened, 0, 10)).Error, Is.EqualTo(Errno.EIO), "a file the scrubber marked is not served");
    }

    [Test]
    public async Task FilesWrittenWithoutBitrotAreSignedByTheScrubberNotFlagged()
    {
        var data = Random(new Random(41), 3 * Block + 50);
        var raw = await CreateAsync("old", via: Storage);
        await WriteAsync(Storage, raw, 0, data);
        await Storage.ReleaseAsync(Ctx, raw);

        var fd = await OpenAsync(raw.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(fd, data.Length), Is.EqualTo(data), "unsigned data is served");
        var status = await Bitrot.ScrubNowAsync();
        Assert.That(status.BadFiles, Is.Empty);
        Assert.That(status.BlocksSigned, Is.EqualTo(4));
        await Bitrot.ReleaseAsync(Ctx, fd);

        await CorruptAsync(raw.Gfid, "old", 5, [(byte)(data[5] ^ 1)]);
        var again = await OpenAsync(raw.Gfid, OpenFlags.ReadOnly);
        Assert.That((await ReadAsync(again, 0, 10)).Error, Is.EqualTo(Errno.EIO), "signed by the scrubber, so now verified");
    }

    [Test]
    public async Task ScrubberKeepsToItsByteRate()
    {
        await Graph.DisposeAsync();
        await StartAsync("    option scrub-throttle 64KB");
        var virtualNow = TimeSpan.Zero;
        Bitrot.ThrottleClock = () => virtualNow;
        Bitrot.ThrottleDelay = (d, _) =>
        {
            virtualNow += d;
            return Task.CompletedTask;
        };
        var rng = new Random(51);
        for (int i = 0; i < 8; i++)
        {
            var fd = await CreateAsync("r" + i);
            await WriteAsync(fd, 0, Random(rng, 100_000));
            await Bitrot.ReleaseAsync(Ctx, fd);
        }
        var status = await Bitrot.ScrubNowAsync();
        var throttle = Bitrot.LastThrottle!;
        Assert.That(status.BytesScrubbed, Is.EqualTo(800_000));
        Assert.That(throttle.Taken, Is.EqualTo(status.BytesScrubbed), "every byte read was paced");
        double rate = 64 * 1024;
        // One second of burst, then the rate: 800,000 bytes need at least (800,000 - 65,536) / 65,536 s.
        Assert.That(virtualNow.TotalSeconds, Is.GreaterThanOrEqualTo((throttle.Taken - rate) / rate - 1e-6));
        Assert.That(virtualNow.TotalSeconds, Is.LessThanOrEqualTo(throttle.Taken / rate + 1e-6), "and not slower than the rate");
    }

    // ---- the store is private ----------------------------------------------------------------------------

    [Test]
    public async Task TheChecksumStoreAndBitrotXattrsAreInvisibleFromAbove()
    {
        var fd = await CreateAsync("visible");
        await WriteAsync(fd, 0, [1, 2, 3]);
        var dir = new FileHandle(Gfid.Root, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        Assert.That((await Bitrot.OpendirAsync(Ctx, dir)).Ok, Is.True);
        var names = new List<string>();
        long cookie = 0;
        while (true)
        {
            var r = await Bitrot.ReaddirplusAsync(Ctx, dir, cookie, 4096);
            Assert.That(r.Ok, Is.True);
            if (r.Value.Count == 0) break;
            names.AddRange(r.Value.Select(e => e.Name));
            cookie = r.Value[^1].NextOffset;
        }
        Assert.That(names.Where(n => n is not "." and not ".."), Is.EqualTo(new[] { "visible" }));
        Assert.That((await Bitrot.LookupAsync(Ctx, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await Bitrot.MkdirAsync(Ctx, Gfid.Root, ".brickfs", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await Bitrot.LookupAsync(FopContext.Brick(), Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.None), "brick-side translators above bitrot get through");
        Assert.That((await Bitrot.SetxattrAsync(Ctx, fd.Gfid, BitrotTranslator.DirtyXattr, new byte[16], 0)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await Bitrot.SetxattrAsync(Ctx, fd.Gfid, BitrotTranslator.BadFileXattr, new byte[1], 0)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await Bitrot.GetxattrAsync(Ctx, fd.Gfid, BitrotTranslator.DirtyXattr)).Error, Is.EqualTo(Errno.ENODATA));
    }

    [Test]
    public async Task UnlinkingTheLastLinkRemovesTheRecord()
    {
        var fd = await CreateAsync("x");
        await WriteAsync(fd, 0, new byte[Block]);
        await Bitrot.ReleaseAsync(Ctx, fd);
        Assert.That((await Bitrot.LinkAsync(Ctx, fd.Gfid, Gfid.Root, "y")).Ok, Is.True);
        Assert.That((await Bitrot.UnlinkAsync(Ctx, Gfid.Root, "x")).Ok, Is.True);
        Assert.That(await RecordExistsAsync(fd.Gfid), Is.True, "a link is left");
        Assert.That((await Bitrot.UnlinkAsync(Ctx, Gfid.Root, "y")).Ok, Is.True);
        Assert.That(await RecordExistsAsync(fd.Gfid), Is.False);
    }

    private async Task<bool> RecordExistsAsync(Gfid file)
    {
        var brick = FopContext.Brick();
        var hidden = await Storage.LookupAsync(brick, Gfid.Root, ".brickfs");
        Assert.That(hidden.Ok, Is.True);
        var dir = await Storage.LookupAsync(brick, hidden.Value.Gfid, "bitrot");
        Assert.That(dir.Ok, Is.True);
        var bucket = await Storage.LookupAsync(brick, dir.Value.Gfid, file.ToString()[..2]);
        return bucket.Ok && (await Storage.LookupAsync(brick, bucket.Value.Gfid, file.ToString())).Ok;
    }

    // ---- restart and crash -------------------------------------------------------------------------------

    [Test]
    public async Task ChecksumsSurviveARestart()
    {
        var data = Random(new Random(61), 6 * Block);
        var fd = await CreateAsync("keep");
        await WriteAsync(fd, 0, data);
        await Bitrot.ReleaseAsync(Ctx, fd);

        await RestartAsync();
        var again = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, data.Length), Is.EqualTo(data));
        await CorruptAsync(fd.Gfid, "keep", 4 * Block, [(byte)(data[4 * Block] ^ 1)]);
        Assert.That((await ReadAsync(again, 4 * Block, 1)).Error, Is.EqualTo(Errno.EIO), "the new instance verifies with the stored checksums");
    }

    [Test]
    public async Task ACrashBetweenDataAndChecksumIsNoFalseVerdictAfterRestart()
    {
        var rng = new Random(71);
        var data = Random(rng, 4 * Block);
        var fd = await CreateAsync("crash");
        await WriteAsync(fd, 0, data);
        var update = Random(rng, 2 * Block);
        Bitrot.AfterDataWrite = _ => throw new IOException("simulated crash after the data write");
        Assert.ThrowsAsync<IOException>(async () => await Bitrot.WriteAsync(Ctx, fd, Block + 500, update));
        Apply(ref data, Block + 500, update);

        await RestartAsync();
        var again = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, data.Length), Is.EqualTo(data), "the blocks under the dirty marker were re-hashed, not judged");
        Assert.That(Bitrot.RecoveredBlocks, Is.GreaterThanOrEqualTo(3));
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty);
        await CorruptAsync(fd.Gfid, "crash", 0, [(byte)(data[0] ^ 1)]);
        Assert.That((await ReadAsync(again, 0, 1)).Error, Is.EqualTo(Errno.EIO), "blocks outside the dirty range kept their checksums");
    }

    // ---- batched record, concurrent writers, fsx ---------------------------------------------------------

    [Test]
    public async Task ACrashWithChecksumsNotYetInTheRecordIsNoFalseVerdict()
    {
        // Fewer updates than a record flush gathers: every checksum of this open period is only in memory.
        var rng = new Random(91);
        var model = Random(rng, 64 * Block);
        var fd = await CreateAsync("pending");
        await WriteAsync(fd, 0, model);
        await Bitrot.ReleaseAsync(Ctx, fd);
        fd = await OpenAsync(fd.Gfid);
        for (int i = 0; i < 40; i++)
        {
            long off = rng.Next(0, model.Length - 100);
            var data = Random(rng, rng.Next(1, 3 * Block));
            await WriteAsync(fd, off, data);
            Apply(ref model, off, data);
        }

        await RestartAsync();
        var again = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, model.Length), Is.EqualTo(model), "the marked blocks were re-hashed");
        Assert.That(Bitrot.RecoveredBlocks, Is.GreaterThan(0));
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty);
        await CorruptAsync(fd.Gfid, "pending", 5 * Block + 7, [(byte)(model[5 * Block + 7] ^ 0x40)]);
        Assert.That((await ReadAsync(again, 5 * Block, 10)).Error, Is.EqualTo(Errno.EIO), "and are verified again after recovery");
    }

    [Test]
    public async Task ConcurrentWritesOfOneFileKeepEveryChecksumRight()
    {
        var rng = new Random(93);
        var fd = await CreateAsync("many");
        // Disjoint 3-block slices written all at once, and a second round overlapping the first's edges.
        var model = Array.Empty<byte>();
        var first = Enumerable.Range(0, 16).Select(i => (Off: (long)i * 3 * Block, Data: Random(rng, 3 * Block))).ToList();
        await Task.WhenAll(first.Select(w => WriteAsync(fd, w.Off, w.Data)));
        foreach (var w in first) Apply(ref model, w.Off, w.Data);
        var second = Enumerable.Range(0, 16).Select(i => (Off: (long)i * 3 * Block + Block + 1000 + i, Data: Random(rng, Block + 500))).ToList();
        await Task.WhenAll(second.Select(w => WriteAsync(fd, w.Off, w.Data)));
        foreach (var w in second) Apply(ref model, w.Off, w.Data);
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model));
        await Bitrot.ReleaseAsync(Ctx, fd);

        await RestartAsync();
        var again = await OpenAsync(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, model.Length), Is.EqualTo(model));
        Assert.That(Bitrot.RecoveredBlocks, Is.EqualTo(0), "a clean release leaves nothing to recover");
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty);
    }

    /// <summary>
    /// fsx-style: a random sequence of writes, truncates, punched holes, zeroed ranges and
    /// preallocations, checked against a model byte array by reads along the way, with clean
    /// reopens and crashes (a restart that flushes nothing) in between; at the end every byte reads
    /// back right and a full scrub finds nothing bad.
    /// </summary>
    [TestCase(101)]
    [TestCase(202)]
    public async Task AnFsxSequenceNeverGivesAFalseVerdict(int seed)
    {
        var rng = new Random(seed);
        var fd = await CreateAsync("fsx");
        var gfid = fd.Gfid;
        var model = Array.Empty<byte>();
        const int MaxSize = 40 * Block;
        for (int step = 0; step < 300; step++)
        {
            int op = rng.Next(100);
            string what;
            if (op < 45)
            {
                long off = rng.Next(0, MaxSize);
                var data = Random(rng, rng.Next(1, 3 * Block));
                what = $"write {data.Length} at {off}";
                await WriteAsync(fd, off, data);
                Apply(ref model, off, data);
            }
            else if (op < 55)
            {
                long size = rng.Next(0, MaxSize);
                what = $"truncate to {size}";
                var r = await Bitrot.SetattrAsync(Ctx, gfid, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = size });
                Assert.That(r.Error, Is.EqualTo(Errno.None), what);
                Array.Resize(ref model, (int)size);
            }
            else if (op < 75)
            {
                bool zero = op >= 65;
                long off = rng.Next(0, MaxSize), len = rng.Next(1, 4 * Block);
                int mode = zero ? FallocateMode.ZeroRange | (rng.Next(2) == 0 ? FallocateMode.KeepSize : 0) : FallocateMode.PunchHole | FallocateMode.KeepSize;
                what = $"fallocate mode {mode:x} {len} at {off}";
                var r = await Bitrot.FallocateAsync(Ctx, fd, mode, off, len);
                Assert.That(r.Error, Is.EqualTo(Errno.None), what);
                long end = off + len;
                if ((mode & FallocateMode.KeepSize) == 0 && end > model.Length) Array.Resize(ref model, (int)end);
                for (long i = off; i < Math.Min(end, model.Length); i++) model[i] = 0;
            }
            else if (op < 82)
            {
                long off = rng.Next(0, MaxSize), len = rng.Next(1, 3 * Block);
                what = $"preallocate {len} at {off}";
                var r = await Bitrot.FallocateAsync(Ctx, fd, 0, off, len);
                Assert.That(r.Error, Is.EqualTo(Errno.None), what);
                if (off + len > model.Length) Array.Resize(ref model, (int)(off + len));
            }
            else if (op < 92)
            {
                long off = model.Length == 0 ? 0 : rng.Next(0, model.Length);
                int len = rng.Next(1, 3 * Block);
                what = $"read {len} at {off}";
                var got = await ReadOkAsync(fd, off, len);
                Assert.That(got, Is.EqualTo(model.AsSpan((int)off, (int)Math.Clamp(model.Length - off, 0, len)).ToArray()), $"step {step}: {what}");
            }
            else if (op < 96)
            {
                what = "release and reopen";
                await Bitrot.ReleaseAsync(Ctx, fd);
                fd = await OpenAsync(gfid);
            }
            else
            {
                what = "crash and restart";
                await RestartAsync();
                fd = await OpenAsync(gfid);
            }
            TestContext.Out.WriteLine($"step {step}: {what}");
        }
        Assert.That(await ReadAllAsync(fd, model.Length), Is.EqualTo(model), "every byte, at the end");
        await Bitrot.ReleaseAsync(Ctx, fd);
        Assert.That((await Bitrot.ScrubNowAsync()).BadFiles, Is.Empty, "the scrubber agrees with every checksum");
        var again = await OpenAsync(gfid, OpenFlags.ReadOnly);
        Assert.That(await ReadAllAsync(again, model.Length), Is.EqualTo(model), "and after the scrub signed what was unsigned");
    }
}
