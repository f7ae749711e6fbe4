using System.Runtime.Versioning;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Tests.Support;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Bitrot;

/// <summary>features/bitrot over storage/memory; corruption is a write straight to the storage translator.</summary>
public class BitrotOverMemory : BitrotContract
{
    private readonly List<BitrotTranslator> _restarted = [];

    protected override string StorageVolfile => """
        volume store
            type storage/memory
        end-volume
        """;

    protected override async Task CorruptAsync(Gfid gfid, string path, long offset, byte[] bytes)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
        Assert.That((await Storage.OpenAsync(Ctx, fd)).Ok, Is.True);
        await WriteAsync(Storage, fd, offset, bytes);
        await Storage.ReleaseAsync(Ctx, fd);
    }

    protected override async Task RestartAsync()
    {
        var b = new BitrotTranslator(TranslatorOptions.From(BitrotTranslator.OptionSpecs, ("block-size", "4KB")));
        b.Attach(Storage);
        await b.InitAsync(CancellationToken.None);
        _restarted.Add(b);
        Bitrot = b;
    }

    [TearDown]
    public async Task DisposeRestarted()
    {
        foreach (var b in _restarted) await b.DisposeAsync();
        _restarted.Clear();
    }
}

/// <summary>
/// features/bitrot over storage/posix on a temp directory; corruption is a write to the brick's
/// backing file on disk, and a restart is a new graph over the same directory.
/// </summary>
[SupportedOSPlatform("linux")]
public class BitrotOverPosix : BitrotContract
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "brickfs-bitrot-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly List<TranslatorGraph> _abandoned = [];

    protected override string StorageVolfile
    {
        get
        {
            Directory.CreateDirectory(_dir);
            return $"""
                volume store
                    type storage/posix
                    option directory {_dir}
                end-volume
                """;
        }
    }

    protected override Task CorruptAsync(Gfid gfid, string path, long offset, byte[] bytes)
    {
        using var f = new FileStream(Path.Combine(_dir, path), FileMode.Open, FileAccess.Write);
        f.Position = offset;
        f.Write(bytes);
        return Task.CompletedTask;
    }

    protected override async Task RestartAsync()
    {
        // The old bitrot is abandoned as a killed process would leave it: nothing it held is flushed.
        await Storage.DisposeAsync();
        _abandoned.Add(Graph);
        Graph = null!;
        await StartAsync();
    }

    [Test, CancelAfter(60_000)]
    public async Task AScrubPassCutShortByAStopResumesAfterItsLastFileOnTheNextStart()
    {
        await Graph.DisposeAsync();
        await StartAsync("    option scrub-files-per-second 1");
        var rng = new Random(83);
        var dir = await Bitrot.MkdirAsync(Ctx, Gfid.Root, "sub", 0x1ED, Gfid.NewRandom());
        Assert.That(dir.Ok, Is.True);
        int total = 0;
        foreach (var (parent, name) in Enumerable.Range(0, 6).Select(i => (Gfid.Root, $"a{i}")).Concat(Enumerable.Range(0, 6).Select(i => (dir.Value.Gfid, $"b{i}"))))
        {
            var fd = await CreateAsync(name, parent);
            await WriteAsync(fd, 0, Random(rng, 3 * Block));
            await Bitrot.ReleaseAsync(Ctx, fd);
            total++;
        }
        var virtualNow = TimeSpan.Zero;
        int waits = 0;
        Bitrot.ThrottleClock = () => virtualNow;
        Bitrot.ThrottleDelay = (d, ct) =>
        {
            // The fifth wait never ends: the pass is caught after five files.
            if (Interlocked.Increment(ref waits) >= 5) return Task.Delay(Timeout.Infinite, ct);
            virtualNow += d;
            return Task.CompletedTask;
        };
        _ = Bitrot.ScrubNowAsync();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), () => Volatile.Read(ref waits) >= 5, "the scrubber waits for its sixth file");
        Assert.That(Bitrot.Status.FilesScrubbed, Is.EqualTo(5), "one file of burst, then one per (virtual) second");
        Assert.That(virtualNow.TotalSeconds, Is.EqualTo(4).Within(1e-6), "files/s cap: four waits of a second each");

        await Graph.DisposeAsync(); // a clean stop keeps the position
        await StartAsync("    option scrub-files-per-second 1000");
        // The start resumes the pass at once; at 1000 files/s it may be over before a call here
        // could join it (a later ScrubNowAsync would start a new pass), so wait for its end.
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), () => Bitrot.Status is { Passes: 1, Running: false }, "the resumed pass ends");
        var status = Bitrot.Status;
        Assert.That(status.ResumedFrom, Is.Not.Null);
        Assert.That(status.Passes, Is.EqualTo(1));
        Assert.That(status.FilesScrubbed, Is.EqualTo(total), "the counts go on from where the pass stopped");
        Assert.That(Bitrot.LastThrottle!.FilesTaken, Is.EqualTo(total - 5), "the files before the position were not scrubbed again");
        Assert.That(status.BadFiles, Is.Empty);

        var next = await Bitrot.ScrubNowAsync();
        Assert.That(next.ResumedFrom, Is.Null, "a finished pass leaves no position: the next starts from the root");
        Assert.That(next.FilesScrubbed, Is.EqualTo(total));
        Assert.That(next.Passes, Is.EqualTo(2));
    }

    [TearDown]
    public void RemoveDirectory()
    {
        _abandoned.Clear();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Test]
    public async Task CorruptionOnDiskOfAFileWrittenBeforeARestartIsFoundByTheScrubber()
    {
        var rng = new Random(81);
        var data = new byte[5 * Block];
        rng.NextBytes(data);
        var fd = await CreateAsync("cold");
        await WriteAsync(fd, 0, data);
        await Bitrot.ReleaseAsync(Ctx, fd);
        await Graph.DisposeAsync();
        Graph = null!;

        await CorruptAsync(fd.Gfid, "cold", 3 * Block + 9, [(byte)(data[3 * Block + 9] ^ 0x80)]);
        await StartAsync();
        var status = await Bitrot.ScrubNowAsync();
        Assert.That(status.BadFiles.Select(b => (b.Gfid, b.Path, b.Block)), Is.EqualTo(new[] { (fd.Gfid, (string?)"/cold", 3L) }));
        var xattr = Path.Combine(_dir, "cold");
        Assert.That(Brickfs.Translators.Interop.Sys.GetXattr(xattr, BitrotTranslator.BadFileXattr, follow: false, out _), Is.EqualTo(Errno.None),
            "the mark is on the brick's copy itself");
    }

    [Test]
    public async Task TheStoreLivesInDotBrickfsAndTheMarksAreReservedBrickXattrs()
    {
        var data = new byte[2 * Block];
        new Random(7).NextBytes(data);
        var fd = await CreateAsync("f");
        await WriteAsync(fd, 0, data);
        Assert.That(Directory.Exists(Path.Combine(_dir, ".brickfs-bitrot")), Is.False, "nothing of bitrot's is visible in the export");
        Assert.That(Brickfs.Translators.Interop.Sys.GetXattr(Path.Combine(_dir, "f"), "trusted.brickfs.bitrot.dirty", follow: false, out _), Is.EqualTo(Errno.None),
            "the dirty range is marked while the file is open");
        var client = new FopContext { Uid = 1000, Gid = 1000 };
        Assert.That((await Storage.GetxattrAsync(client, fd.Gfid, BitrotTranslator.DirtyXattr)).Error, Is.EqualTo(Errno.ENODATA), "storage/posix hides it too");
        await Bitrot.ReleaseAsync(Ctx, fd);
        Assert.That(File.Exists(Path.Combine(_dir, ".brickfs", "bitrot", fd.Gfid.ToString()[..2], fd.Gfid.ToString())), Is.True,
            "the record is written by the release at the latest");

        await CorruptAsync(fd.Gfid, "f", 5, [(byte)(data[5] ^ 1)]);
        await RestartAsync();
        var reader = new FileHandle(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That((await Bitrot.OpenAsync(Ctx, reader)).Ok, Is.True);
        Assert.That((await Bitrot.ReadAsync(Ctx, reader, 0, Block)).Error, Is.EqualTo(Errno.EIO));
        await Bitrot.ReleaseAsync(Ctx, reader);
        Assert.That((await Storage.GetxattrAsync(client, fd.Gfid, BitrotTranslator.BadFileXattr)).Ok, Is.True,
            "any client (replicate) reads the bad mark from storage/posix");
        Assert.That((await Storage.RemovexattrAsync(Ctx, fd.Gfid, BitrotTranslator.BadFileXattr)).Error, Is.EqualTo(Errno.EPERM),
            "only through bitrot (which clears its state too)");
    }
}
