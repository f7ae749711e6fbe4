using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Index;
using Brickfs.Translators.Graph;
using static Brickfs.Tests.Replicate.ReplicaBench;

namespace Brickfs.Tests.Replicate;

/// <summary>The brick-side pieces replicate relies on: features/index and the lock domains of features/locks.</summary>
public class BrickSideTests
{
    private static string BrickVolfile(string? indexDir) => $"""
        volume mem
            type storage/memory
        end-volume
        volume index
            type features/index
            {(indexDir is null ? "" : $"option index-directory {indexDir}")}
            subvolumes mem
        end-volume
        volume locks
            type features/locks
            subvolumes index
        end-volume
        """;

    private static Dictionary<string, long[]> Delta(long data) => new() { [Key(0)] = [data, 0, 0], [Key(1)] = [0, 0, 0] };

    [Test]
    public async Task TheIndexListsAnInodeWhileACounterIsNonZeroAndKeepsItAcrossARestart()
    {
        string dir = Path.Combine(Path.GetTempPath(), "brickfs-index-" + Guid.NewGuid().ToString("N"));
        try
        {
            var gfid = Gfid.NewRandom();
            await using (var g = GraphBuilder.BuildText(BrickVolfile(dir)))
            {
                await g.InitAsync(CancellationToken.None);
                Assert.That((await g.Top.MknodAsync(Ctx(), Gfid.Root, "f", ModeBits.Regular | 0x1A4, 0, gfid)).Ok, Is.True);
                Assert.That((await g.Top.XattropAsync(Ctx(), gfid, null, Delta(1))).Ok, Is.True);
                Assert.That(g.Find<IndexTranslator>().ListPending(), Is.EqualTo(new[] { gfid }));
                Assert.That(File.Exists(Path.Combine(dir, gfid.ToString())), Is.True);
            }
            await using (var g = GraphBuilder.BuildText(BrickVolfile(dir)))
            {
                await g.InitAsync(CancellationToken.None);
                Assert.That(g.Find<IndexTranslator>().ListPending(), Is.EqualTo(new[] { gfid }), "reloaded from the index directory");
            }
            await using (var g = GraphBuilder.BuildText(BrickVolfile(null)))
            {
                await g.InitAsync(CancellationToken.None);
                var other = Gfid.NewRandom();
                await g.Top.MknodAsync(Ctx(), Gfid.Root, "f", ModeBits.Regular | 0x1A4, 0, other);
                await g.Top.XattropAsync(Ctx(), other, null, Delta(2));
                await g.Top.XattropAsync(Ctx(), other, null, Delta(-1));
                Assert.That(g.Find<IndexTranslator>().IsPending(other), Is.True, "2 - 1 is still pending");
                await g.Top.XattropAsync(Ctx(), other, null, Delta(-1));
                Assert.That(g.Find<IndexTranslator>().ListPending(), Is.Empty, "back to zero");
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task OverStoragePosixTheIndexDefaultsToDotBrickfsIndicesXattropAndOverMemoryToMemory()
    {
        string export = Path.Combine(Path.GetTempPath(), "brickfs-index-posix-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(export);
        string volfile = $"""
            volume posix
                type storage/posix
                option directory {export}
            end-volume
            volume bitrot
                type features/bitrot
                subvolumes posix
            end-volume
            volume index
                type features/index
                subvolumes bitrot
            end-volume
            """;
        try
        {
            var gfid = Gfid.NewRandom();
            string indexDir = Path.Combine(export, ".brickfs", "indices", "xattrop");
            await using (var g = GraphBuilder.BuildText(volfile))
            {
                await g.InitAsync(CancellationToken.None);
                Assert.That(g.Find<IndexTranslator>().IndexDirectory, Is.EqualTo(indexDir), "found through bitrot down to storage/posix");
                Assert.That((await g.Top.MknodAsync(Ctx(), Gfid.Root, "f", ModeBits.Regular | 0x1A4, 0, gfid)).Ok, Is.True);
                Assert.That((await g.Top.XattropAsync(Ctx(), gfid, null, Delta(1))).Ok, Is.True);
                Assert.That(File.Exists(Path.Combine(indexDir, gfid.ToString())), Is.True);
            }
            await using (var g = GraphBuilder.BuildText(volfile))
            {
                await g.InitAsync(CancellationToken.None);
                Assert.That(g.Find<IndexTranslator>().ListPending(), Is.EqualTo(new[] { gfid }), "reloaded after a restart");
                Assert.That((await g.Top.XattropAsync(Ctx(), gfid, null, Delta(-1))).Ok, Is.True);
                Assert.That(Directory.EnumerateFiles(indexDir), Is.Empty);
                Assert.That((await g.Top.LookupAsync(Ctx(), Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.ENOENT), "still hidden from the graph's callers");
            }
            await using (var g = GraphBuilder.BuildText(BrickVolfile(null)))
            {
                await g.InitAsync(CancellationToken.None);
                Assert.That(g.Find<IndexTranslator>().IndexDirectory, Is.Null, "storage/memory: memory only");
            }
        }
        finally
        {
            Directory.Delete(export, recursive: true);
        }
    }

    [Test]
    public async Task InodeAndEntryLockDomainsAreSeparateNamespacesReleasedWithTheClient()
    {
        await using var g = GraphBuilder.BuildText(BrickVolfile(null));
        await g.InitAsync(CancellationToken.None);
        var locks = g.Find<Brickfs.Translators.Features.LocksTranslator>();
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await g.Top.CreateAsync(Ctx(), Gfid.Root, "f", 0x1A4, fd)).Ok, Is.True);
        FileLock Whole(ulong owner) => new() { Type = LockType.Write, Start = 0, End = long.MaxValue, Owner = owner };

        Assert.That((await g.Top.InodelkAsync(Ctx("c1"), "a", fd.Gfid, LockCommand.Set, Whole(1))).Ok, Is.True);
        Assert.That((await g.Top.InodelkAsync(Ctx("c2"), "a", fd.Gfid, LockCommand.Set, Whole(1))).Error, Is.EqualTo(Errno.EAGAIN), "same owner number, other client");
        Assert.That((await g.Top.InodelkAsync(Ctx("c2"), "b", fd.Gfid, LockCommand.Set, Whole(1))).Ok, Is.True, "another domain");
        Assert.That((await g.Top.LkAsync(Ctx("c2"), fd, LockCommand.Set, Whole(1) with { ClientId = "c2" })).Ok, Is.True, "application locks are apart");

        Assert.That((await g.Top.EntrylkAsync(Ctx("c1", 5), "a", Gfid.Root, "x", LockCommand.Set, LockType.Write)).Ok, Is.True);
        Assert.That((await g.Top.EntrylkAsync(Ctx("c2", 6), "a", Gfid.Root, "y", LockCommand.Set, LockType.Write)).Ok, Is.True, "another name");
        Assert.That((await g.Top.EntrylkAsync(Ctx("c2", 6), "a", Gfid.Root, "x", LockCommand.Set, LockType.Write)).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That((await g.Top.EntrylkAsync(Ctx("c2", 7), "a", Gfid.Root, null, LockCommand.Set, LockType.Write)).Error, Is.EqualTo(Errno.EAGAIN), "the whole directory conflicts with a name");

        var waiter = g.Top.EntrylkAsync(Ctx("c2", 6), "a", Gfid.Root, "x", LockCommand.SetWait, LockType.Write).AsTask();
        locks.ReleaseClient("c1");
        Assert.That((await waiter.WaitAsync(TimeSpan.FromSeconds(5))).Ok, Is.True, "c1's entry lock went with the client");
        Assert.That((await g.Top.InodelkAsync(Ctx("c2"), "a", fd.Gfid, LockCommand.Set, Whole(1))).Ok, Is.True, "and its inode lock");
    }
}
