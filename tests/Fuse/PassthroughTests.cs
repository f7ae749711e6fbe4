using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.ClientFuse.Host;
using Brickfs.Translators.Core;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Fuse;

/// <summary>
/// FUSE passthrough: where the graph says a file's reads and writes are plain reads and writes
/// of one local file, the kernel does them on that file itself and they never reach the graph;
/// wherever a translator sees data, they all do. Mounts served by this test process over
/// storage/posix in a temporary directory.
/// </summary>
[NonParallelizable]
public class PassthroughTests
{
    /// <summary>Counts the reads and writes that reach it; says whether it passes the passthrough question on.</summary>
    private sealed class DataCounter(bool seesNoData) : Translator
    {
        public int Reads, Writes;

        public override bool TryGetPassthroughFd(FileHandle fd, out int osFd)
        {
            osFd = -1;
            return seesNoData && Child.TryGetPassthroughFd(fd, out osFd);
        }

        public override ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
        {
            Interlocked.Increment(ref Reads);
            return base.ReadAsync(ctx, fd, offset, size);
        }

        public override ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
        {
            Interlocked.Increment(ref Writes);
            return base.WriteAsync(ctx, fd, offset, data);
        }
    }

    private sealed class Mounted(string work, FuseMount mount, DataCounter counter) : IAsyncDisposable
    {
        public FuseMount Mount { get; } = mount;
        public DataCounter Counter { get; } = counter;
        public string Brick => Path.Combine(work, "brick");
        public string this[string name] => Path.Combine(work, "mnt", name);

        public async ValueTask DisposeAsync()
        {
            try
            {
                await Mount.UnmountAsync();
                await Mount.DisposeAsync();
            }
            finally
            {
                FuseTest.ForceUnmount(Path.Combine(work, "mnt"));
                Directory.Delete(work, recursive: true);
            }
        }
    }

    private static async Task<Mounted> MountAsync(bool passthrough, bool counterSeesNoData)
    {
        string work = FuseTest.TempDir("passthrough");
        Directory.CreateDirectory(Path.Combine(work, "brick"));
        Directory.CreateDirectory(Path.Combine(work, "mnt"));
        var posix = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", Path.Combine(work, "brick"))));
        await posix.InitAsync(CancellationToken.None);
        var counter = new DataCounter(counterSeesNoData);
        counter.Attach(posix);
        var mount = await FuseMount.StartAsync(counter, Path.Combine(work, "mnt"),
            new FuseSessionOptions { Passthrough = passthrough, StorageInProcess = true },
            new FuseBridgeOptions { SoleClient = true }, Log.Null);
        return new Mounted(work, mount, counter);
    }

    /// <summary>Writes <paramref name="data"/> with one open and reads it back through a second open held at the same time.</summary>
    private static byte[] WriteAndReadBackThroughTwoOpens(Mounted m, string name, byte[] data)
    {
        using var writer = new FileStream(m[name], FileMode.Create, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
        using var reader = new FileStream(m[name], FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
        writer.Write(data);
        writer.Flush();
        var back = new byte[data.Length];
        reader.ReadExactly(back);
        return back;
    }

    [Test, CancelAfter(60_000)]
    public async Task FilesOfPlainLocalStorageAreReadAndWrittenByTheKernelItself()
    {
        await using var m = await MountAsync(passthrough: true, counterSeesNoData: true);
        Assert.That(m.Mount.Session.PassthroughEnabled, Is.True, "this kernel (6.9+) agrees to passthrough");
        var data = new byte[4 << 20];
        Random.Shared.NextBytes(data);

        var back = WriteAndReadBackThroughTwoOpens(m, "f", data);

        Assert.That(back, Is.EqualTo(data), "read back through a second open of the same file (one backing file per inode)");
        var stored = Directory.GetFiles(m.Brick).Single(p => Path.GetFileName(p) == "f");
        Assert.That(File.ReadAllBytes(stored), Is.EqualTo(data), "the brick's file holds what was written");
        Assert.That(new FileInfo(m["f"]).Length, Is.EqualTo(data.Length), "the mount's size follows the passthrough writes");
        Assert.That((m.Counter.Reads, m.Counter.Writes), Is.EqualTo((0, 0)), "no read or write reached the graph");
        FuseTest.Eventually(() => m.Mount.Bridge.PassthroughFiles == 0, TimeSpan.FromSeconds(10), "the backing id goes with the last RELEASE");
    }

    [Test, CancelAfter(60_000)]
    public async Task ATranslatorThatSeesDataKeepsEveryReadAndWriteInTheGraph()
    {
        await using var m = await MountAsync(passthrough: true, counterSeesNoData: false);
        var data = new byte[1 << 20];
        Random.Shared.NextBytes(data);

        var back = WriteAndReadBackThroughTwoOpens(m, "f", data);

        Assert.That(back, Is.EqualTo(data));
        Assert.That(m.Counter.Writes, Is.GreaterThan(0), "writes reach the graph");
        Assert.That(m.Counter.Reads, Is.GreaterThan(0), "reads reach the graph");
        Assert.That(m.Mount.Bridge.PassthroughFiles, Is.Zero);
    }

    [Test, CancelAfter(60_000)]
    public async Task PassthroughIsAskedForOnlyWhenWantedAndThenTheKernelDropsSetIdBitsItself()
    {
        await using (var off = await MountAsync(passthrough: false, counterSeesNoData: true))
        {
            var n = off.Mount.Session.Negotiated!;
            Assert.That(n.Has(FuseConst.Passthrough), Is.False);
            Assert.That(n.Has(FuseConst.HandleKillprivV2), Is.EqualTo((n.KernelFlags & FuseConst.HandleKillprivV2) != 0), "we drop set-id bits on WRITE");
            File.WriteAllBytes(off["f"], new byte[4096]);
            Assert.That(off.Counter.Writes, Is.GreaterThan(0), "without passthrough writes reach the graph");
        }
        await using var on = await MountAsync(passthrough: true, counterSeesNoData: true);
        var agreed = on.Mount.Session.Negotiated!;
        Assert.That(agreed.Has(FuseConst.Passthrough), Is.True);
        Assert.That(agreed.Has(FuseConst.HandleKillprivV2), Is.False, "passthrough writes never reach us, so the kernel must drop set-id bits");
    }
}
