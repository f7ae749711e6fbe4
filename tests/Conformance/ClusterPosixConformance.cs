using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Tests.Support;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Features.Index;

namespace Brickfs.Tests.Conformance;

/// <summary>
/// Cluster stacks over real bricks: each brick is storage/posix on its own temp directory, so the
/// cluster translators' xattrs (pending counters, layouts, link-tos) go through the reserved-name
/// rules, xattrop and XattrRequest of storage/posix rather than storage/memory.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public abstract class ClusterOverPosixConformance : StorageConformance
{
    private readonly List<string> _dirs = [];
    private TranslatorGraph? _graph;

    protected TranslatorGraph Graph => _graph!;

    /// <summary>The export directory of brick <paramref name="i"/> (in the order the volfile made them).</summary>
    protected string BrickDirectory(int i) => _dirs[i];

    protected static long[] DiskCounters(string path, string key) =>
        Brickfs.Translators.Interop.Sys.GetXattr(path, key, follow: false, out var raw) == Errno.None ? XattrCounters.Decode(raw) : [];

    protected static byte[]? DiskXattr(string path, string key) =>
        Brickfs.Translators.Interop.Sys.GetXattr(path, key, follow: false, out var raw) == Errno.None ? raw : null;

    /// <summary>Where brick directories are made.</summary>
    protected virtual string BaseDirectory => Path.GetTempPath();

    protected string NewBrickDirectory()
    {
        var dir = Path.Combine(BaseDirectory, "brickfs-cluster-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir, (UnixFileMode)0x1ED);
        _dirs.Add(dir);
        return dir;
    }

    protected abstract string Volfile();

    protected override async Task<Translator> CreateStorageAsync()
    {
        _graph = GraphBuilder.BuildText(Volfile(), GetType().Name + ".vol");
        await _graph.InitAsync(CancellationToken.None);
        return _graph.Top;
    }

    [TearDown]
    public async Task RemoveBricks()
    {
        if (_graph is not null) await _graph.DisposeAsync();
        _graph = null;
        foreach (var d in _dirs) Directory.Delete(d, recursive: true);
        _dirs.Clear();
    }
}

/// <summary>
/// cluster/replicate over three bricks as brickd stacks them: features/locks, features/index,
/// storage/posix (with an idle debug/error-gen on top of each, to take a brick away).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class ReplicateOfThreePosixConformance : ClusterOverPosixConformance
{
    private ErrorGenTranslator Fault(int i) => (ErrorGenTranslator)Graph[$"b{i}"];

    protected override async Task<Translator> CreateStorageAsync()
    {
        var top = await base.CreateStorageAsync();
        for (int i = 0; i < 3; i++) Fault(i).Active = false;
        return top;
    }

    [Test]
    public async Task AWriteABrickMissedIsMarkedOnDiskIndexedAndHealed()
    {
        var (f, fd) = await Create(Gfid.Root, "f");
        await Write(fd, 0, "0123456789");
        await Graph.Find<ReplicateTranslator>().FlushEagerAsync(); // the eager batch's post-op, as its idle timer would
        for (int i = 0; i < 3; i++)
            Assert.That(DiskCounters(Path.Combine(BrickDirectory(i), "f"), "trusted.brickfs.pending.b2"), Is.EqualTo(new long[] { 0, 0, 0 }), "post-op cleared b" + i);

        Fault(2).Active = true;
        await Write(fd, 5, "abcdefghij");
        Fault(2).Active = false;
        await Graph.Find<ReplicateTranslator>().FlushEagerAsync();

        for (int i = 0; i < 2; i++)
        {
            var copy = Path.Combine(BrickDirectory(i), "f");
            Assert.That(DiskCounters(copy, "trusted.brickfs.pending.b2")[0], Is.GreaterThan(0), $"b{i}'s copy blames b2 for data");
            Assert.That(DiskCounters(copy, "trusted.brickfs.pending.b0"), Is.EqualTo(new long[] { 0, 0, 0 }));
            Assert.That(File.Exists(Path.Combine(BrickDirectory(i), IndexTranslator.PosixIndexPath, f.Gfid.ToString())), Is.True, $"b{i}'s persistent index");
        }
        Assert.That(File.ReadAllText(Path.Combine(BrickDirectory(2), "f")), Is.EqualTo("0123456789"), "b2 missed the write");

        var healed = await Graph.Find<ReplicateTranslator>().HealAsync(f.Gfid);

        Assert.That(healed.Outcome, Is.EqualTo(HealOutcome.Healed), healed.ToString());
        Assert.That(healed.Sinks, Is.EqualTo(new[] { "b2" }));
        for (int i = 0; i < 3; i++)
        {
            var copy = Path.Combine(BrickDirectory(i), "f");
            Assert.That(File.ReadAllText(copy), Is.EqualTo("01234abcdefghij"), $"b{i}");
            foreach (var blamed in new[] { "b0", "b1", "b2" })
                Assert.That(DiskCounters(copy, "trusted.brickfs.pending." + blamed).All(v => v == 0), Is.True, $"b{i} blames {blamed}");
            Assert.That(Directory.EnumerateFiles(Path.Combine(BrickDirectory(i), IndexTranslator.PosixIndexPath)), Is.Empty, $"b{i}'s index");
        }
        await Storage.ReleaseAsync(Root, fd);
    }

    protected override string Volfile()
    {
        var v = new StringBuilder();
        for (int i = 0; i < 3; i++) v.Append(TestVolfiles.FaultableBrick(i, TestVolfiles.PosixStorage(NewBrickDirectory())));
        v.Append("volume vol\n    type cluster/replicate\n    subvolumes b0 b1 b2\nend-volume\n");
        return v.ToString();
    }
}

/// <summary>
/// cluster/distribute over three storage/posix bricks on Btrfs, the bricks' filesystem. On ext4
/// the contract holds except that readdir cookies resume only on the directory handle that
/// produced them: ext4's 63-bit hash cookies do not fit beside distribute's child index (see
/// Cluster/Distribute/DirCookie.cs), while Btrfs's directory index numbers do.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
[Category("btrfs")]
[NonParallelizable]
public class DistributeOfThreePosixConformance : ClusterOverPosixConformance
{
    private BtrfsImage? _image;

    protected override string BaseDirectory => _image!.MountPoint;

    [Test]
    public async Task LayoutsAndLinkTosAreStoredOnTheBricks()
    {
        var d = await Mkdir(Gfid.Root, "d");
        for (int i = 0; i < 3; i++)
            Assert.That(DiskXattr(Path.Combine(BrickDirectory(i), "d"), DistributeTranslator.LayoutXattr), Has.Length.EqualTo(16), $"layout of d on brick {i}");

        // Rename until a new name hashes to another brick than the data: that needs a link-to.
        var (f, fd) = await Create(d.Gfid, "n0");
        await Write(fd, 0, "payload");
        await Storage.ReleaseAsync(Root, fd);
        string name = "n0";
        string? linkto = null;
        for (int k = 1; k < 40 && linkto is null; k++)
        {
            Assert.That((await Storage.RenameAsync(Root, d.Gfid, name, d.Gfid, "n" + k, RenameFlags.None)).Error, Is.EqualTo(Errno.None));
            name = "n" + k;
            linkto = Enumerable.Range(0, 3).Select(i => Path.Combine(BrickDirectory(i), "d", name))
                .FirstOrDefault(p => File.Exists(p) && DiskXattr(p, DistributeTranslator.LinktoXattr) is not null);
        }
        Assert.That(linkto, Is.Not.Null, "some rename left the data off the new name's hashed brick");
        Assert.That(new FileInfo(linkto!).Length, Is.Zero);
        var found = await Storage.LookupAsync(Root, d.Gfid, name);
        Assert.That(found.Value.Gfid, Is.EqualTo(f.Gfid));
        Assert.That(found.Value.Size, Is.EqualTo(7), "lookup follows the link-to to the data");
        var names = (await ListAll(d.Gfid)).Select(e => e.Name).Where(n => n is not "." and not "..");
        Assert.That(names, Is.EqualTo(new[] { name }), "the link-to is not listed");
    }

    [OneTimeSetUp]
    public void MountBtrfs() => _image = new BtrfsImage("dht-posix", 512L << 20);

    [OneTimeTearDown]
    public void UnmountBtrfs()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        _image?.Dispose();
    }

    protected override string Volfile()
    {
        var v = new StringBuilder();
        for (int i = 0; i < 3; i++)
            v.Append($"volume brick-{i}\n    type storage/posix\n    option directory {NewBrickDirectory()}\nend-volume\n");
        v.Append("volume dht\n    type cluster/distribute\n    subvolumes brick-0 brick-1 brick-2\nend-volume\n");
        return v.ToString();
    }
}
