using System.Runtime.Versioning;
using Brickfs.Tests.Support;
using Brickfs.Translators.Core;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.PosixStorage;

/// <summary>
/// When storage/posix fsyncs a pending counter's change from zero (PosixTranslator.XattropAsync):
/// never for copy-on-write regular files on Btrfs (the filesystem orders the xattr before the
/// data it guards), always for directories, nodatacow files and other filesystems.
/// </summary>
[SupportedOSPlatform("linux")]
[NonParallelizable]
public class PosixMarkSyncTests
{
    private static readonly FopContext Root = FopContext.Internal();
    private const string Pending = "trusted.brickfs.pending.vol-client-0";

    private static async Task<PosixTranslator> StartAsync(string dir)
    {
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", dir)));
        await t.InitAsync(CancellationToken.None);
        return t;
    }

    private static async Task<long> SyncsOfFirstMark(PosixTranslator t, Gfid g, FileHandle? fd)
    {
        long before = t.MarkSyncs;
        var up = await t.XattropAsync(Root, g, fd, new Dictionary<string, long[]> { [Pending] = [1, 0, 0] });
        Assert.That(up.Error, Is.EqualTo(Errno.None));
        var again = await t.XattropAsync(Root, g, fd, new Dictionary<string, long[]> { [Pending] = [1, 0, 0] });
        Assert.That(again.Value[Pending], Is.EqualTo(new long[] { 2, 0, 0 }));
        Assert.That((await t.XattropAsync(Root, g, fd, new Dictionary<string, long[]> { [Pending] = [-2, 0, 0] })).Error, Is.EqualTo(Errno.None));
        return t.MarkSyncs - before;
    }

    private static async Task<(Gfid Gfid, FileHandle Fd)> CreateAsync(PosixTranslator t, string name)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite);
        var r = await t.CreateAsync(Root, Gfid.Root, name, 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), name);
        return (fd.Gfid, fd);
    }

    [Test]
    public async Task OnBtrfsOnlyDirectoriesAndNodatacowFilesSyncTheirFirstMark()
    {
        using var image = new BtrfsImage("marksync", 1L << 30);
        var brick = image.Subvolume("b");
        var t = await StartAsync(brick);
        try
        {
            var (cow, cowFd) = await CreateAsync(t, "cow");
            Assert.That(await SyncsOfFirstMark(t, cow, cowFd), Is.EqualTo(0), "a copy-on-write file through its handle");
            Assert.That(await SyncsOfFirstMark(t, cow, null), Is.EqualTo(0), "a copy-on-write file by GFID");

            var (nocow, nocowFd) = await CreateAsync(t, "nocow");
            Shell.Must($"chattr +C '{Path.Combine(brick, "nocow")}'");
            await t.ReleaseAsync(Root, nocowFd);
            var reopened = new FileHandle(nocow, OpenFlags.ReadWrite);
            Assert.That((await t.OpenAsync(Root, reopened)).Error, Is.EqualTo(Errno.None));
            Assert.That(await SyncsOfFirstMark(t, nocow, reopened), Is.EqualTo(1), "a nodatacow file is written in place: the mark must be on disk first");
            Assert.That(await SyncsOfFirstMark(t, nocow, null), Is.EqualTo(1), "the same by GFID");

            var dir = (await t.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Value;
            Assert.That(await SyncsOfFirstMark(t, dir.Gfid, null), Is.EqualTo(1), "a directory's entry mark");
            await t.ReleaseAsync(Root, cowFd);
            await t.ReleaseAsync(Root, reopened);
        }
        finally
        {
            await t.DisposeAsync();
        }
    }

    [Test]
    public async Task AMarkGoesDownOnlyAfterTheDataWrittenUnderItIsOnDisk()
    {
        using var image = new BtrfsImage("clearsync", 1L << 30);
        var t = await StartAsync(image.Subvolume("b"));
        try
        {
            var (f, fd) = await CreateAsync(t, "f");
            var up = new Dictionary<string, long[]> { [Pending] = [1, 0, 0] };
            var down = new Dictionary<string, long[]> { [Pending] = [-1, 0, 0] };
            async Task<long> SyncsOf(Dictionary<string, long[]> delta, FileHandle? through)
            {
                long before = t.ClearSyncs;
                Assert.That((await t.XattropAsync(Root, f, through, delta)).Error, Is.EqualTo(Errno.None));
                return t.ClearSyncs - before;
            }

            Assert.That(await SyncsOf(up, fd), Is.EqualTo(0));
            Assert.That(await SyncsOf(down, fd), Is.EqualTo(0), "nothing written: nothing to sync");

            Assert.That(await SyncsOf(up, fd), Is.EqualTo(0));
            Assert.That((await t.WriteAsync(Root, fd, 0, new byte[4096])).Error, Is.EqualTo(Errno.None));
            Assert.That(await SyncsOf(up, null), Is.EqualTo(0), "an increment never waits for data");
            Assert.That(await SyncsOf(down, null), Is.EqualTo(1), "unsynced data under the mark: synced first, also by GFID");
            Assert.That(await SyncsOf(down, fd), Is.EqualTo(0), "already synced by the decrement before");

            Assert.That(await SyncsOf(up, fd), Is.EqualTo(0));
            Assert.That((await t.WriteAsync(Root, fd, 4096, new byte[4096])).Error, Is.EqualTo(Errno.None));
            Assert.That((await t.FsyncAsync(Root, fd, dataOnly: true)).Error, Is.EqualTo(Errno.None));
            Assert.That(await SyncsOf(down, fd), Is.EqualTo(0), "the application's fdatasync already made it stable");

            var other = new FileHandle(f, OpenFlags.ReadWrite);
            Assert.That((await t.OpenAsync(Root, other)).Error, Is.EqualTo(Errno.None));
            Assert.That(await SyncsOf(up, fd), Is.EqualTo(0));
            Assert.That((await t.WriteAsync(Root, other, 0, new byte[10])).Error, Is.EqualTo(Errno.None));
            await t.ReleaseAsync(Root, fd);
            Assert.That(await SyncsOf(down, null), Is.EqualTo(1), "a write through another handle of the inode counts as well");
            await t.ReleaseAsync(Root, other);
            Assert.That(t.UnsyncedInodes, Is.EqualTo(0), "nothing is kept once the handles that wrote are closed");
        }
        finally
        {
            await t.DisposeAsync();
        }
    }

    [Test]
    public async Task OffBtrfsEveryFirstMarkIsSynced()
    {
        var brick = Path.Combine(Path.GetTempPath(), "brickfs-marksync-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(brick);
        Assert.That(Shell.Must($"stat -f -c %T '{brick}'").Trim(), Is.Not.EqualTo("btrfs"), "this test needs a temporary directory off Btrfs");
        var t = await StartAsync(brick);
        try
        {
            var (f, fd) = await CreateAsync(t, "f");
            Assert.That(await SyncsOfFirstMark(t, f, fd), Is.EqualTo(1));
            await t.ReleaseAsync(Root, fd);
        }
        finally
        {
            await t.DisposeAsync();
            Directory.Delete(brick, recursive: true);
        }
    }
}
