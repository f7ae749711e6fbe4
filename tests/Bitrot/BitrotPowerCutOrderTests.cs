using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Bitrot;

/// <summary>
/// The order in which bitrot's changes reach storage, checked against the rules that make a
/// power cut harmless (DESIGN.md, Crash semantics): nothing a marker covers is issued before an
/// fsync of the file made the marker stable, and a marker is removed only after the file and
/// the record were fsynced since their last change. storage/memory below a recorder, so every
/// fop is seen in order; BitrotPowerCutTests shows the same end to end with real power cuts.
/// </summary>
public sealed class BitrotPowerCutOrderTests
{
    private static readonly FopContext Ctx = FopContext.Internal();
    private const int Block = 4096;

    /// <summary>Notes the fops that matter for durability, in the order they reach storage.</summary>
    private sealed class Recorder : Translator
    {
        public readonly List<(string Op, Gfid Gfid, bool Internal)> Ops = [];

        private void Note(string op, Gfid gfid, FopContext ctx)
        {
            lock (Ops) Ops.Add((op, gfid, ctx.BrickInternal));
        }

        public override ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
        {
            if (name == BitrotTranslator.DirtyXattr) Note("mark", gfid, ctx);
            return base.SetxattrAsync(ctx, gfid, name, value, flags);
        }

        public override ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
        {
            if (name == BitrotTranslator.DirtyXattr) Note("clear", gfid, ctx);
            return base.RemovexattrAsync(ctx, gfid, name);
        }

        public override ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly)
        {
            Note(dataOnly ? "fdatasync" : "fsync", fd.Gfid, ctx);
            return base.FsyncAsync(ctx, fd, dataOnly);
        }

        public override ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
        {
            // The record's header (offset 0, made with the record) holds no checksum.
            if (!(ctx.BrickInternal && offset == 0 && data.Length == ChecksumHeader)) Note("write", fd.Gfid, ctx);
            return base.WriteAsync(ctx, fd, offset, data);
        }

        public override ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest request)
        {
            if (request.Has(SetattrValid.Size)) Note("truncate", gfid, ctx);
            return base.SetattrAsync(ctx, gfid, fd, request);
        }

        public override ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length)
        {
            Note("write", fd.Gfid, ctx);
            return base.FallocateAsync(ctx, fd, mode, offset, length);
        }
    }

    private const int ChecksumHeader = 16;

    /// <summary>
    /// Walks the recorded fops of data file <paramref name="file"/> (and of its record, whatever
    /// else bitrot wrote with a brick context) and returns the first breach of the rules, or null.
    /// </summary>
    private static string? FirstBreach(IReadOnlyList<(string Op, Gfid Gfid, bool Internal)> ops, Gfid file)
    {
        // fresh: the record was made in this period, after the data was synced (so nothing in it
        // can be ahead of the data, whatever part of it survives).
        bool marked = false, stable = false, dataSynced = true, recordSynced = true, fresh = false;
        var record = new HashSet<Gfid>();
        for (int i = 0; i < ops.Count; i++)
        {
            var (op, g, brick) = ops[i];
            bool isFile = g == file;
            if (!isFile && brick && op is "write" or "truncate" && record.Add(g)) fresh = dataSynced;
            bool isRecord = record.Contains(g);
            if (!isFile && !isRecord) continue;
            string at = $"op {i} ({op} of the {(isFile ? "file" : "record")}; before it: {string.Join(", ", ops.Skip(Math.Max(0, i - 6)).Take(Math.Min(i, 6)).Select(o => o.Op + (o.Gfid == file ? " file" : " other")))})";
            switch (op)
            {
                case "mark" when isFile:
                    marked = true;
                    stable = false;
                    break;
                case "fsync" when isFile:
                    stable |= marked;
                    dataSynced = true;
                    break;
                case "fsync":
                    recordSynced = true;
                    break;
                case "write" or "truncate" when isFile && !brick && !(marked && stable) && record.Count > 0:
                    return $"{at}: the file, which has a record, changes while its marker is {(marked ? "not yet stable" : "not set")}";
                case "write" or "truncate" when isFile:
                    dataSynced = false;
                    break;
                case "truncate":
                    // Fewer entries only make blocks unsigned; until it is synced the cut entries
                    // may come back, which the marker or an fsync must cover (rule 3).
                    recordSynced = false;
                    break;
                case "write":
                    if (!(marked && stable) && !dataSynced)
                        return $"{at}: checksums are written while the marker is {(marked ? "not yet stable" : "not set")} and the data they describe is not synced";
                    recordSynced = false;
                    break;
                case "clear":
                    if (!dataSynced) return $"{at}: the marker goes while the file's last change is not synced";
                    if (!recordSynced && !fresh) return $"{at}: the marker goes while the record's last change is not synced";
                    marked = stable = fresh = false;
                    break;
            }
        }
        return null;
    }

    private static async Task<(BitrotTranslator Bitrot, Recorder Recorder)> StackAsync()
    {
        var memory = new MemoryStorageTranslator();
        await memory.InitAsync(CancellationToken.None);
        var recorder = new Recorder();
        recorder.Attach(memory);
        var bitrot = new BitrotTranslator(TranslatorOptions.From(BitrotTranslator.OptionSpecs, ("block-size", "4KB")));
        bitrot.Attach(recorder);
        await bitrot.InitAsync(CancellationToken.None);
        return (bitrot, recorder);
    }

    private static async Task WriteAsync(Translator t, FileHandle fd, long offset, int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        var r = await t.WriteAsync(Ctx, fd, offset, data);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
    }

    [Test]
    public async Task EveryChangeWaitsForAStableMarkerAndTheMarkerGoesOnlyAfterFileAndRecordAreSynced()
    {
        var (bitrot, recorder) = await StackAsync();
        await using var _ = bitrot;
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await bitrot.CreateAsync(Ctx, Gfid.Root, "f", 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
        var file = fd.Gfid;

        // A first period: appends, an overwrite.
        await WriteAsync(bitrot, fd, 0, 3 * Block + 100, 1);
        await WriteAsync(bitrot, fd, 3 * Block, 2 * Block, 2);
        await WriteAsync(bitrot, fd, Block + 7, 50, 3);
        var rng = new Random(9);
        for (int i = 0; i < 40; i++) await WriteAsync(bitrot, fd, rng.Next(0, 8 * Block), rng.Next(1, 2 * Block), 100 + i);
        await bitrot.ReleaseAsync(Ctx, fd);

        // A second period starting high in the file and moving down (the marker widens), with a
        // truncate down, a write past the end and a punched hole.
        fd = new FileHandle(file, OpenFlags.ReadWrite);
        Assert.That((await bitrot.OpenAsync(Ctx, fd)).Error, Is.EqualTo(Errno.None));
        await WriteAsync(bitrot, fd, 4 * Block, 10, 4);
        await WriteAsync(bitrot, fd, 2 * Block, 10, 5);
        await WriteAsync(bitrot, fd, 0, 10, 6);
        Assert.That((await bitrot.SetattrAsync(Ctx, file, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = 2 * Block + 5 })).Error, Is.EqualTo(Errno.None));
        await WriteAsync(bitrot, fd, 6 * Block, Block, 7);
        Assert.That((await bitrot.FallocateAsync(Ctx, fd, FallocateMode.KeepSize | FallocateMode.PunchHole, Block, 2 * Block)).Error, Is.EqualTo(Errno.None));
        await bitrot.ReleaseAsync(Ctx, fd);

        // A third period through O_TRUNC.
        fd = new FileHandle(file, OpenFlags.ReadWrite | OpenFlags.Truncate);
        Assert.That((await bitrot.OpenAsync(Ctx, fd)).Error, Is.EqualTo(Errno.None));
        await WriteAsync(bitrot, fd, Block, Block, 8);
        await bitrot.ReleaseAsync(Ctx, fd);

        List<(string, Gfid, bool)> ops;
        lock (recorder.Ops) ops = [.. recorder.Ops];
        Assert.That(ops.Count(o => o.Item1 == "clear" && o.Item2 == file), Is.EqualTo(3), "each period ends with its marker cleared");
        Assert.That(FirstBreach(ops, file), Is.Null);
        int fsyncs = ops.Count(o => o.Item1 == "fsync" && o.Item3);
        // The new file's period: its data before its first record; then per period: marker set
        // (+2 widenings in the second), file and record at the end, the record after a load
        // trimmed entries past end of file.
        Assert.That(fsyncs, Is.InRange(3, 16), "a few fsyncs per period, not one per write (53 writes)");
    }
}
