using System.Runtime.Versioning;
using Brickfs.Tests.Support;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A replica's pending mark must not go away on disk before the data it guarded is there: a
/// brick that loses power right after a post-op would otherwise come back with old data and
/// clean counters while the other copies have the new data, and nothing would ever heal it.
/// The cut is taken right after a Btrfs transaction commit that does not write this brick's
/// delayed allocation (a snapshot of another subvolume commits without flushing ours), which is
/// what the periodic commit does to a file written a moment before.
/// </summary>
[SupportedOSPlatform("linux")]
[NonParallelizable]
public class PendingMarkPowerCutTests
{
    private static readonly FopContext Root = FopContext.Internal();
    private const string Pending = "trusted.brickfs.pending.vol-client-0";

    [Test]
    public async Task AfterAPowerCutACopyWithCleanCountersHoldsTheDataItsPostOpCovered()
    {
        using var disk = new PowerCutBrick();
        string brick = Path.Combine(disk.InnerMount, "cow-brick"); // copy-on-write, unlike disk.Brick
        Directory.CreateDirectory(brick);
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", brick)));
        await t.InitAsync(CancellationToken.None);
        var data = new byte[256 << 10];
        new Random(7).NextBytes(data);
        try
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite);
            Assert.That((await t.CreateAsync(Root, Gfid.Root, "f", 0x1A4, fd)).Error, Is.EqualTo(Errno.None));
            Shell.Must($"btrfs filesystem sync '{disk.InnerMount}'", TimeSpan.FromSeconds(60)); // the empty file is committed

            // One replicate batch on this copy: pre-op, the write, post-op. No fsync from the application.
            Assert.That((await t.XattropAsync(Root, fd.Gfid, fd, new Dictionary<string, long[]> { [Pending] = [1, 0, 0] })).Error, Is.EqualTo(Errno.None));
            Assert.That((await t.WriteAsync(Root, fd, 0, data)).Value, Is.EqualTo(data.Length));
            Assert.That((await t.XattropAsync(Root, fd.Gfid, fd, new Dictionary<string, long[]> { [Pending] = [-1, 0, 0] })).Error, Is.EqualTo(Errno.None));

            Shell.Must($"btrfs subvolume create '{disk.InnerMount}/other' >/dev/null && btrfs subvolume snapshot '{disk.InnerMount}/other' '{disk.InnerMount}/other-snap' >/dev/null",
                TimeSpan.FromSeconds(60));
            string cut = disk.PowerCut("after-post-op");
            string at = Path.Combine(disk.WorkDir, "after-post-op");
            disk.MountImage(cut, at);
            string file = Path.Combine(at, "cow-brick", "f");
            var e = Sys.GetXattr(file, Pending, follow: false, out var raw);
            bool clean = e == Errno.ENODATA || (e == Errno.None && XattrCounters.Decode(raw).All(c => c == 0));
            var onDisk = File.ReadAllBytes(file);
            Assert.That(clean && !onDisk.AsSpan().SequenceEqual(data), Is.False,
                $"the cut copy says nothing is pending (counters {(e == Errno.None ? string.Join(",", XattrCounters.Decode(raw)) : e.ToString())}) but holds {onDisk.Length} bytes, not the {data.Length} written under the mark");
            disk.Unmount(at);
            await t.ReleaseAsync(Root, fd);
        }
        finally
        {
            await t.DisposeAsync();
        }
    }
}
