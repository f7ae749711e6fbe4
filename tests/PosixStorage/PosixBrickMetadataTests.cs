using System.Runtime.Versioning;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Tests.PosixStorage;

/// <summary>
/// What storage/posix gives the cluster and brick-side translators: xattrop counters, xattrs
/// with lookup/stat/readdirplus, the reserved-name rules (<see cref="BrickXattrs"/>) and
/// brick-internal access to <c>.brickfs/</c>.
/// </summary>
[SupportedOSPlatform("linux")]
public class PosixBrickMetadataTests
{
    private static readonly FopContext Root = FopContext.Internal();
    private static readonly FopContext User = new() { Uid = 1000, Gid = 1000 };
    private static readonly FopContext Brick = FopContext.Brick();
    private const string Pending = "trusted.brickfs.pending.vol-client-0";
    private string _brick = "";
    private PosixTranslator _t = null!;

    [SetUp]
    public async Task StartBrick()
    {
        _brick = Path.Combine(Path.GetTempPath(), "brickfs-posix-meta-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_brick, (UnixFileMode)0x1ED);
        _t = await StartAsync();
    }

    private async Task<PosixTranslator> StartAsync()
    {
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", _brick)));
        await t.InitAsync(CancellationToken.None);
        return t;
    }

    [TearDown]
    public async Task RemoveBrick()
    {
        await _t.DisposeAsync();
        Directory.Delete(_brick, recursive: true);
    }

    private async Task<(Iatt Attr, FileHandle Fd)> Create(Gfid parent, string name, FopContext? ctx = null, uint mode = 0x1A4)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await _t.CreateAsync(ctx ?? Root, parent, name, mode, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), name);
        return (r.Value, fd);
    }

    private async Task<long[]> Xattrop(Gfid g, long[] delta, FileHandle? fd = null, string key = Pending)
    {
        var r = await _t.XattropAsync(Root, g, fd, new Dictionary<string, long[]> { [key] = delta });
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        return r.Value[key];
    }

    private long[] OnDisk(string relPath, string key = Pending) =>
        Sys.GetXattr(Path.Combine(_brick, relPath), key, follow: false, out var v) == Errno.None ? XattrCounters.Decode(v) : [];

    // ---- xattrop ---------------------------------------------------------------------------------

    [Test]
    public async Task XattropAddsToCountersThatStartAtZeroAndKeepsThemBigEndianOnDisk()
    {
        var (f, _) = await Create(Gfid.Root, "f");
        Assert.That(await Xattrop(f.Gfid, [1, 0, 2]), Is.EqualTo(new long[] { 1, 0, 2 }), "a missing xattr counts as zeros");
        Assert.That(await Xattrop(f.Gfid, [1, 1]), Is.EqualTo(new long[] { 2, 1, 2 }), "a shorter delta leaves the other slots");
        Assert.That(await Xattrop(f.Gfid, [-2, -1, -2, 0]), Is.EqualTo(new long[] { 0, 0, 0, 0 }));
        Assert.That(OnDisk("f"), Is.EqualTo(new long[] { 0, 0, 0, 0 }));
        Assert.That(Sys.GetXattr(Path.Combine(_brick, "f"), Pending, follow: false, out var raw), Is.EqualTo(Errno.None));
        Assert.That(raw, Has.Length.EqualTo(32));
    }

    [Test]
    public async Task XattropChangesEveryKeyOfOneCallAndAnswersTheNewValues()
    {
        var dir = (await _t.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Value;
        var r = await _t.XattropAsync(Root, dir.Gfid, null, new Dictionary<string, long[]>
        {
            ["trusted.brickfs.pending.a"] = [0, 0, 1],
            ["trusted.brickfs.pending.b"] = [0, 0, 0],
        });
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value["trusted.brickfs.pending.a"], Is.EqualTo(new long[] { 0, 0, 1 }));
        Assert.That(r.Value["trusted.brickfs.pending.b"], Is.EqualTo(new long[] { 0, 0, 0 }));
        Assert.That(OnDisk("d", "trusted.brickfs.pending.a"), Is.EqualTo(new long[] { 0, 0, 1 }));
    }

    [Test]
    public async Task ConcurrentXattropsOnOneInodeLoseNoIncrement()
    {
        var (f, _) = await Create(Gfid.Root, "f");
        await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(async () =>
        {
            var r = await _t.XattropAsync(Root, f.Gfid, null, new Dictionary<string, long[]>
            {
                ["trusted.brickfs.pending.a"] = [1, 0, 0],
                ["trusted.brickfs.pending.b"] = [0, i % 2 == 0 ? 1 : -1, 0],
            });
            Assert.That(r.Error, Is.EqualTo(Errno.None));
        })));
        Assert.That(OnDisk("f", "trusted.brickfs.pending.a"), Is.EqualTo(new long[] { 200, 0, 0 }));
        Assert.That(OnDisk("f", "trusted.brickfs.pending.b"), Is.EqualTo(new long[] { 0, 0, 0 }));
    }

    [Test]
    public async Task XattropThroughAnOpenHandleWorksAfterUnlink()
    {
        var (f, fd) = await Create(Gfid.Root, "f");
        Assert.That((await _t.UnlinkAsync(Root, Gfid.Root, "f")).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.XattropAsync(Root, f.Gfid, null, new Dictionary<string, long[]> { [Pending] = [1] })).Error, Is.EqualTo(Errno.ESTALE), "by GFID it is gone");
        Assert.That(await Xattrop(f.Gfid, [1, 0, 0], fd), Is.EqualTo(new long[] { 1, 0, 0 }));
        Assert.That(await Xattrop(f.Gfid, [-1, 0, 0], fd), Is.EqualTo(new long[] { 0, 0, 0 }));
        await _t.ReleaseAsync(Root, fd);
    }

    [Test]
    public async Task XattropWorksOnSymlinksAndSpecialFiles()
    {
        var link = (await _t.SymlinkAsync(Root, Gfid.Root, "l", "target", Gfid.NewRandom())).Value;
        var fifo = (await _t.MknodAsync(Root, Gfid.Root, "p", ModeBits.Fifo | 0x1A4, 0, Gfid.NewRandom())).Value;
        Assert.That(await Xattrop(link.Gfid, [0, 1, 0]), Is.EqualTo(new long[] { 0, 1, 0 }));
        Assert.That(await Xattrop(fifo.Gfid, [0, 1, 0]), Is.EqualTo(new long[] { 0, 1, 0 }));
        Assert.That(OnDisk("l"), Is.EqualTo(new long[] { 0, 1, 0 }), "on the symlink itself");
    }

    [Test]
    public async Task XattropRefusesUserDataAndBrickPrivateNamesFromOutside()
    {
        var (f, _) = await Create(Gfid.Root, "f");
        Task<Errno> Op(FopContext ctx, string key) =>
            _t.XattropAsync(ctx, f.Gfid, null, new Dictionary<string, long[]> { [key] = [1] }).AsTask().ContinueWith(r => r.Result.Error);
        Assert.That(await Op(Root, "user.counter"), Is.EqualTo(Errno.EPERM), "counters are never user data");
        Assert.That(await Op(Root, BrickXattrs.BitrotDirty), Is.EqualTo(Errno.EPERM));
        Assert.That(await Op(Root, BrickXattrs.Gfid), Is.EqualTo(Errno.EPERM));
        Assert.That(await Op(User, "trusted.other"), Is.EqualTo(Errno.EPERM));
        Assert.That(await Op(User, Pending), Is.EqualTo(Errno.None), "cluster metadata: every authenticated client is trusted");
        Assert.That(await Op(Brick, BrickXattrs.BitrotDirty), Is.EqualTo(Errno.None));
        Assert.That((await _t.XattropAsync(Root, Gfid.NewRandom(), null, new Dictionary<string, long[]> { [Pending] = [1] })).Error, Is.EqualTo(Errno.ESTALE));
    }

    [Test]
    public async Task CountersSurviveARestart()
    {
        var (f, fd) = await Create(Gfid.Root, "f");
        await Xattrop(f.Gfid, [3, 0, 0], fd);
        await _t.ReleaseAsync(Root, fd);
        await _t.DisposeAsync();
        _t = await StartAsync();
        Assert.That(await Xattrop(f.Gfid, [0, 0, 0]), Is.EqualTo(new long[] { 3, 0, 0 }));
    }

    // ---- xattrs with lookup, stat, readdirplus ---------------------------------------------------------

    [Test]
    public async Task LookupStatAndReaddirplusReturnTheRequestedXattrsThatExist()
    {
        var (f, fd) = await Create(Gfid.Root, "f");
        await Xattrop(f.Gfid, [1, 0, 0]);
        Assert.That((await _t.SetxattrAsync(Root, f.Gfid, "user.tag", "blue"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        var ask = new FopContext { XattrRequest = [Pending, "user.tag", "user.missing"] };

        void Check(Iatt a, string how)
        {
            Assert.That(a.Xattrs, Is.Not.Null, how);
            Assert.That(a.Xattrs!.Keys, Is.EquivalentTo(new[] { Pending, "user.tag" }), how);
            Assert.That(XattrCounters.Decode(a.Xattrs[Pending]), Is.EqualTo(new long[] { 1, 0, 0 }), how);
            Assert.That(a.Xattrs["user.tag"], Is.EqualTo("blue"u8.ToArray()), how);
        }

        Check((await _t.LookupAsync(ask, Gfid.Root, "f")).Value, "lookup");
        Check((await _t.StatAsync(ask, f.Gfid, null)).Value, "stat by GFID");
        Check((await _t.StatAsync(ask, f.Gfid, fd)).Value, "stat by handle");
        var dir = new FileHandle(Gfid.Root, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        Assert.That((await _t.OpendirAsync(Root, dir)).Error, Is.EqualTo(Errno.None));
        var list = await _t.ReaddirplusAsync(ask, dir, 0, 1 << 16);
        Check(list.Value.Single(e => e.Name == "f").Attr!, "readdirplus");
        await _t.ReleasedirAsync(Root, dir);
        await _t.ReleaseAsync(Root, fd);

        Assert.That((await _t.LookupAsync(Root, Gfid.Root, "f")).Value.Xattrs, Is.Null, "nothing asked, nothing returned");
        Assert.That((await _t.LookupAsync(new FopContext { XattrRequest = [] }, Gfid.Root, "f")).Value.Xattrs, Is.Empty);
    }

    [Test]
    public async Task XattrRequestGivesEachCallerOnlyWhatItMayRead()
    {
        var (f, fd) = await Create(Gfid.Root, "secret", mode: 0x180);
        await _t.ReleaseAsync(Root, fd);
        Assert.That((await _t.SetxattrAsync(Root, f.Gfid, "user.tag", "x"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.SetxattrAsync(Root, f.Gfid, "trusted.app", "x"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.SetxattrAsync(Brick, f.Gfid, BrickXattrs.BitrotDirty, "x"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        await Xattrop(f.Gfid, [0, 1, 0]);
        string[] names = [Pending, BrickXattrs.Gfid, BrickXattrs.BitrotDirty, "user.tag", "trusted.app"];

        var user = (await _t.StatAsync(new FopContext { Uid = 1000, Gid = 1000, XattrRequest = names }, f.Gfid, null)).Value;
        Assert.That(user.Xattrs!.Keys, Is.EquivalentTo(new[] { Pending, BrickXattrs.Gfid }),
            "cluster metadata and the GFID for any client; user.* needs read permission (0600 root file); trusted.* needs root; brick-private never");
        var root = (await _t.StatAsync(new FopContext { XattrRequest = names }, f.Gfid, null)).Value;
        Assert.That(root.Xattrs!.Keys, Is.EquivalentTo(new[] { Pending, BrickXattrs.Gfid, "user.tag", "trusted.app" }));
        var brick = (await _t.StatAsync(new FopContext { BrickInternal = true, XattrRequest = names }, f.Gfid, null)).Value;
        Assert.That(brick.Xattrs!.Keys, Is.EquivalentTo(names));
    }

    // ---- reserved names -------------------------------------------------------------------------------

    [Test]
    public async Task ClusterMetadataIsSettableByAnyClientAndBrickStateOnlyByTheBrick()
    {
        var (f, _) = await Create(Gfid.Root, "f");
        foreach (var name in new[] { BrickXattrs.Layout, BrickXattrs.Linkto, Pending })
        {
            Assert.That((await _t.SetxattrAsync(User, f.Gfid, name, "v"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None), name);
            Assert.That((await _t.GetxattrAsync(User, f.Gfid, name)).Value, Is.EqualTo("v"u8.ToArray()), name);
            Assert.That((await _t.RemovexattrAsync(User, f.Gfid, name)).Error, Is.EqualTo(Errno.None), name);
        }
        Assert.That((await _t.SetxattrAsync(Root, f.Gfid, BrickXattrs.BitrotBad, "1"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await _t.SetxattrAsync(Brick, f.Gfid, BrickXattrs.BitrotBad, "1"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.GetxattrAsync(User, f.Gfid, BrickXattrs.BitrotBad)).Value, Is.EqualTo("1"u8.ToArray()), "replicate sees a copy marked bad");
        Assert.That((await _t.RemovexattrAsync(Root, f.Gfid, BrickXattrs.BitrotBad)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await _t.SetxattrAsync(Brick, f.Gfid, BrickXattrs.BitrotDirty, "1"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.GetxattrAsync(Root, f.Gfid, BrickXattrs.BitrotDirty)).Error, Is.EqualTo(Errno.ENODATA));
        Assert.That((await _t.ListxattrAsync(Root, f.Gfid)).Value.Where(BrickXattrs.IsReserved), Is.Empty, "outside callers ask by name");
        Assert.That((await _t.ListxattrAsync(Brick, f.Gfid)).Value, Is.SupersetOf(new[] { BrickXattrs.Gfid, BrickXattrs.BitrotBad, BrickXattrs.BitrotDirty }));
        Assert.That((await _t.RemovexattrAsync(Brick, f.Gfid, BrickXattrs.BitrotBad)).Error, Is.EqualTo(Errno.None));
    }

    // ---- brick-internal access to .brickfs -----------------------------------------------------------

    [Test]
    public async Task BrickInternalCallersWorkBelowDotBrickfsAndNobodyElseFindsIt()
    {
        var hidden = await _t.LookupAsync(Brick, Gfid.Root, ".brickfs");
        Assert.That(hidden.Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.LookupAsync(Root, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That(hidden.Value.Gfid, Is.EqualTo((await _t.LookupAsync(Brick, Gfid.Root, ".brickfs")).Value.Gfid), "stable");

        var store = await _t.MkdirAsync(Brick, hidden.Value.Gfid, "bitrot", 0x1C0, Gfid.NewRandom());
        Assert.That(store.Error, Is.EqualTo(Errno.None));
        Assert.That(Directory.Exists(Path.Combine(_brick, ".brickfs", "bitrot")), Is.True);
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await _t.CreateAsync(Brick, store.Value.Gfid, "record", 0x180, fd)).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.WriteAsync(Brick, fd, 0, "sums"u8.ToArray())).Value, Is.EqualTo(4));
        await _t.ReleaseAsync(Brick, fd);
        Assert.That(File.ReadAllText(Path.Combine(_brick, ".brickfs", "bitrot", "record")), Is.EqualTo("sums"));

        Assert.That((await _t.LookupAsync(Brick, hidden.Value.Gfid, "gfid")).Error, Is.EqualTo(Errno.ENOENT), "the GFID index is off limits to everyone");
        Assert.That((await _t.MkdirAsync(Brick, hidden.Value.Gfid, "gfid", 0x1C0, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await _t.RenameAsync(Brick, Gfid.Root, ".brickfs", Gfid.Root, "moved", RenameFlags.None)).Error, Is.EqualTo(Errno.EPERM), ".brickfs itself stays");
        Assert.That((await _t.RmdirAsync(Brick, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.EPERM));

        var dir = new FileHandle(hidden.Value.Gfid, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        Assert.That((await _t.OpendirAsync(Brick, dir)).Error, Is.EqualTo(Errno.None));
        var names = (await _t.ReaddirAsync(Brick, dir, 0, 1 << 16)).Value.Select(e => e.Name);
        Assert.That(names, Is.EquivalentTo(new[] { ".", "..", "bitrot" }));
        await _t.ReleasedirAsync(Brick, dir);
        var root = new FileHandle(Gfid.Root, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        Assert.That((await _t.OpendirAsync(Brick, root)).Error, Is.EqualTo(Errno.None));
        Assert.That((await _t.ReaddirAsync(Brick, root, 0, 1 << 16)).Value.Select(e => e.Name), Does.Not.Contain(".brickfs"), "never listed");
        await _t.ReleasedirAsync(Brick, root);
    }

    [Test]
    public async Task DotBrickfsKeepsItsGfidAcrossRestarts()
    {
        var before = (await _t.LookupAsync(Brick, Gfid.Root, ".brickfs")).Value.Gfid;
        var store = (await _t.MkdirAsync(Brick, before, "indices", 0x1C0, Gfid.NewRandom())).Value;
        await _t.DisposeAsync();
        _t = await StartAsync();
        Assert.That((await _t.LookupAsync(Brick, Gfid.Root, ".brickfs")).Value.Gfid, Is.EqualTo(before));
        Assert.That((await _t.StatAsync(Brick, store.Gfid, null)).Error, Is.EqualTo(Errno.None), "entries below resolve by GFID");
        Assert.That(before, Is.Not.EqualTo(Gfid.Root));
    }
}
