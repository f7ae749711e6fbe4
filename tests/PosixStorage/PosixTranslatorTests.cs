using System.Runtime.Versioning;
using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Tests.PosixStorage;

/// <summary>What storage/posix promises beyond the storage contract: the on-brick layout, the hidden .brickfs, and confinement to the export.</summary>
[SupportedOSPlatform("linux")]
public class PosixTranslatorTests
{
    private static readonly FopContext Root = FopContext.Internal();
    private static readonly FopContext User = new() { Uid = 1000, Gid = 1000 };
    private string _work = "";
    private string _brick = "";
    private string _outside = "";
    private readonly List<PosixTranslator> _open = [];

    [SetUp]
    public void MakeBrick()
    {
        _work = Path.Combine(Path.GetTempPath(), "brickfs-posix-test-" + Guid.NewGuid().ToString("N")[..12]);
        _brick = Path.Combine(_work, "brick");
        _outside = Path.Combine(_work, "outside");
        const UnixFileMode rwxr_xr_x = (UnixFileMode)0x1ED;
        Directory.CreateDirectory(_work, rwxr_xr_x);
        Directory.CreateDirectory(_brick, rwxr_xr_x);
        Directory.CreateDirectory(_outside, rwxr_xr_x);
        File.WriteAllText(Path.Combine(_outside, "secret"), "outside data");
        File.SetUnixFileMode(Path.Combine(_outside, "secret"), (UnixFileMode)0x1A4);
    }

    [TearDown]
    public async Task RemoveBrick()
    {
        foreach (var t in _open) await t.DisposeAsync();
        _open.Clear();
        Directory.Delete(_work, recursive: true);
    }

    private async Task<PosixTranslator> Start(string? dir = null)
    {
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", dir ?? _brick)));
        await t.InitAsync(CancellationToken.None);
        _open.Add(t);
        return t;
    }

    private static async Task<Iatt> Mkdir(Translator t, Gfid parent, string name)
    {
        var r = await t.MkdirAsync(Root, parent, name, 0x1ED, Gfid.NewRandom());
        Assert.That(r.Error, Is.EqualTo(Errno.None), name);
        return r.Value;
    }

    private static async Task<(Iatt, FileHandle)> Create(Translator t, Gfid parent, string name)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await t.CreateAsync(Root, parent, name, 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), name);
        return (r.Value, fd);
    }

    private string IndexPath(Gfid g) => Path.Combine(_brick, ".brickfs", "gfid", GfidIndex.RelPath(g));

    private static Libc.Statx DiskStat(string path)
    {
        Assert.That(Sys.Stat(Libc.AT_FDCWD, path, out var st), Is.EqualTo(Errno.None), path);
        return st;
    }

    private static Gfid? DiskGfid(string path) =>
        Sys.GetXattr(path, GfidIndex.Xattr, follow: false, out var v) == Errno.None ? Gfid.FromBytes(v) : null;

    // ---- on-brick layout --------------------------------------------------------------------

    [Test]
    public async Task InitMarksTheRootAndCreatesTheIndex()
    {
        await Start();
        Assert.That(DiskGfid(_brick), Is.EqualTo(Gfid.Root));
        Assert.That(DiskStat(Path.Combine(_brick, ".brickfs")).Mode & ModeBits.PermMask, Is.EqualTo(0x1C9u));
        Assert.That(DiskStat(Path.Combine(_brick, ".brickfs", "gfid")).Mode & ModeBits.PermMask, Is.EqualTo(0x1C9u));
    }

    [Test]
    public void InitRefusesADirectoryOfAnotherVolume()
    {
        Span<byte> other = stackalloc byte[16];
        Gfid.NewRandom().WriteBytes(other);
        Assert.That(Sys.SetXattr(_brick, GfidIndex.Xattr, other, 0, follow: false), Is.EqualTo(Errno.None));
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", _brick)));
        var e = Assert.ThrowsAsync<InvalidOperationException>(async () => await t.InitAsync(CancellationToken.None))!;
        Assert.That(e.Message, Does.Contain("not the root GFID"));
    }

    [Test]
    public void InitFailsClearlyOnAMissingDirectory()
    {
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", _brick + "-missing")));
        var e = Assert.ThrowsAsync<InvalidOperationException>(async () => await t.InitAsync(CancellationToken.None))!;
        Assert.That(e.Message, Does.Contain("ENOENT"));
    }

    [Test]
    public async Task FilesCarryGfidXattrAndIndexHardLink()
    {
        var t = await Start();
        var (f, _) = await Create(t, Gfid.Root, "f");
        var disk = Path.Combine(_brick, "f");
        Assert.That(DiskGfid(disk), Is.EqualTo(f.Gfid));
        var st = DiskStat(disk);
        var idx = DiskStat(IndexPath(f.Gfid));
        Assert.That(idx.Ino, Is.EqualTo(st.Ino), "the index entry is a hard link");
        Assert.That(st.Nlink, Is.EqualTo(2u));
        Assert.That(f.Nlink, Is.EqualTo(1u), "the index link is not counted");
        Assert.That(DiskStat(Path.GetDirectoryName(IndexPath(f.Gfid))!).Mode & ModeBits.PermMask, Is.EqualTo(0x1C9u));
    }

    [Test]
    public async Task ACreateWithAGfidAnotherFileHasIsRefusedAndLeavesNoName()
    {
        var t = await Start();
        var (f, _) = await Create(t, Gfid.Root, "f");
        var fd = new FileHandle(f.Gfid, OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await t.CreateAsync(Root, Gfid.Root, "g", 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.EEXIST));
        Assert.That(File.Exists(Path.Combine(_brick, "g")), Is.False, "the name made for the attempt is gone");
        Assert.That(DiskStat(IndexPath(f.Gfid)).Ino, Is.EqualTo(DiskStat(Path.Combine(_brick, "f")).Ino), "the index still leads to f");
    }

    [Test]
    public async Task CreateWithoutExclusiveOpensAnExistingNameAndAnswersItsGfid()
    {
        var t = await Start();
        var (f, first) = await Create(t, Gfid.Root, "f");
        await t.WriteAsync(Root, first, 0, "abc"u8.ToArray());
        var again = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await t.CreateAsync(Root, Gfid.Root, "f", 0x1A4, again);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value.Gfid, Is.EqualTo(f.Gfid));
        Assert.That(r.Value.Size, Is.EqualTo(3UL), "opened, not truncated");
        var excl = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        Assert.That((await t.CreateAsync(Root, Gfid.Root, "f", 0x1A4, excl)).Error, Is.EqualTo(Errno.EEXIST));
        Assert.That((await t.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.None));
        var onDir = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await t.CreateAsync(Root, Gfid.Root, "d", 0x1A4, onDir)).Error, Is.AnyOf(Errno.EISDIR, Errno.EEXIST));
    }

    [Test]
    public async Task UnlinkOfTheLastNameRemovesTheIndexLink()
    {
        var t = await Start();
        var (f, fd) = await Create(t, Gfid.Root, "f");
        var l = await t.LinkAsync(Root, f.Gfid, Gfid.Root, "g");
        Assert.That(l.Value.Nlink, Is.EqualTo(2u));
        await t.UnlinkAsync(Root, Gfid.Root, "f");
        Assert.That(File.Exists(IndexPath(f.Gfid)), Is.True, "another name is left");
        await t.UnlinkAsync(Root, Gfid.Root, "g");
        Assert.That(File.Exists(IndexPath(f.Gfid)), Is.False);
        Assert.That((await t.WriteAsync(Root, fd, 0, "x"u8.ToArray())).Value, Is.EqualTo(1), "the open descriptor still works");
        await t.ReleaseAsync(Root, fd);
    }

    [Test]
    public async Task RenameOverAFileRemovesTheVictimsIndexLink()
    {
        var t = await Start();
        var (a, _) = await Create(t, Gfid.Root, "a");
        var (b, _) = await Create(t, Gfid.Root, "b");
        await t.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "b", RenameFlags.None);
        Assert.That(File.Exists(IndexPath(b.Gfid)), Is.False);
        Assert.That(File.Exists(IndexPath(a.Gfid)), Is.True);
    }

    [Test]
    public async Task DirectoriesAreIndexedByRelativeSymlinksThatFollowRenames()
    {
        var t = await Start();
        var a = await Mkdir(t, Gfid.Root, "a");
        var b = await Mkdir(t, a.Gfid, "b");
        Assert.That(new FileInfo(IndexPath(a.Gfid)).LinkTarget, Is.EqualTo("../../../../a"));
        Assert.That(new FileInfo(IndexPath(b.Gfid)).LinkTarget, Is.EqualTo($"../../{GfidIndex.RelPath(a.Gfid)}/b"));

        var c = await Mkdir(t, Gfid.Root, "c");
        Assert.That((await t.RenameAsync(Root, a.Gfid, "b", c.Gfid, "b2", RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That(new FileInfo(IndexPath(b.Gfid)).LinkTarget, Is.EqualTo($"../../{GfidIndex.RelPath(c.Gfid)}/b2"));

        // A fresh instance has no cached descriptors: it resolves through the index.
        var fresh = await Start();
        Assert.That((await fresh.StatAsync(Root, b.Gfid, null)).Value.Gfid, Is.EqualTo(b.Gfid));
        await Create(fresh, b.Gfid, "inside");
        Assert.That(File.Exists(Path.Combine(_brick, "c", "b2", "inside")), Is.True);
        await fresh.RmdirAsync(Root, Gfid.Root, "a");
        Assert.That(File.Exists(IndexPath(a.Gfid)) || Directory.Exists(IndexPath(a.Gfid)), Is.False, "rmdir removes the index symlink");
    }

    [Test]
    public async Task RestartedBrickResolvesFilesAndDeepDirectoriesByGfid()
    {
        var t = await Start();
        var parent = Gfid.Root;
        var chain = new List<Gfid>();
        for (int i = 0; i < 60; i++) // deeper than the kernel's 40 nested symlinks
        {
            parent = (await Mkdir(t, parent, "d" + i)).Gfid;
            chain.Add(parent);
        }
        var (f, fd) = await Create(t, parent, "leaf");
        await t.WriteAsync(Root, fd, 0, "deep"u8.ToArray());
        await t.ReleaseAsync(Root, fd);
        await t.DisposeAsync();
        _open.Remove(t);

        var again = await Start();
        var leafDir = await again.StatAsync(Root, chain[^1], null);
        Assert.That(leafDir.Error, Is.EqualTo(Errno.None));
        Assert.That((await again.StatAsync(Root, chain[20], null)).Value.IsDirectory, Is.True);
        Assert.That((await again.LookupAsync(Root, chain[^1], "leaf")).Value.Gfid, Is.EqualTo(f.Gfid));
        var reopened = new FileHandle(f.Gfid, OpenFlags.ReadOnly);
        Assert.That((await again.OpenAsync(Root, reopened)).Error, Is.EqualTo(Errno.None));
        using var data = (await again.ReadAsync(Root, reopened, 0, 100)).Value;
        Assert.That(Encoding.UTF8.GetString(data.Span), Is.EqualTo("deep"));
        await again.ReleaseAsync(Root, reopened);
    }

    [Test]
    public async Task ALookupRestoresALostIndexLinkAndTrustsAnIndexedHardLinkedFile()
    {
        var t = await Start();
        var (f, fd) = await Create(t, Gfid.Root, "f");
        await t.ReleaseAsync(Root, fd);
        Assert.That((await t.LinkAsync(Root, f.Gfid, Gfid.Root, "g")).Value.Nlink, Is.EqualTo(2u));
        var other = await Start();
        Assert.That((await other.LookupAsync(Root, Gfid.Root, "g")).Value.Gfid, Is.EqualTo(f.Gfid), "two links: indexed");

        File.Delete(Path.Combine(_brick, "g"));
        File.Delete(IndexPath(f.Gfid)); // lost behind the brick's back: one link left
        var fresh = await Start();
        Assert.That((await fresh.StatAsync(Root, f.Gfid, null)).Error, Is.EqualTo(Errno.ESTALE), "not indexed, not found by GFID");
        var found = await fresh.LookupAsync(Root, Gfid.Root, "f");
        Assert.That(found.Value.Gfid, Is.EqualTo(f.Gfid), "the GFID stays");
        Assert.That(found.Value.Nlink, Is.EqualTo(1u));
        Assert.That(DiskStat(IndexPath(f.Gfid)).Ino, Is.EqualTo(DiskStat(Path.Combine(_brick, "f")).Ino), "the index link is back");
        Assert.That((await fresh.StatAsync(Root, f.Gfid, null)).Value.Nlink, Is.EqualTo(1u));
    }

    [Test]
    public async Task EntriesMadeBehindTheBricksBackGetAGfidOnLookup()
    {
        var t = await Start();
        File.WriteAllText(Path.Combine(_brick, "foreign"), "x");
        Directory.CreateDirectory(Path.Combine(_brick, "foreigndir"));
        var f = await t.LookupAsync(Root, Gfid.Root, "foreign");
        var d = await t.LookupAsync(Root, Gfid.Root, "foreigndir");
        Assert.That(f.Value.Gfid.IsNull, Is.False);
        Assert.That(DiskGfid(Path.Combine(_brick, "foreign")), Is.EqualTo(f.Value.Gfid));
        Assert.That(f.Value.Nlink, Is.EqualTo(1u));
        Assert.That((await t.LookupAsync(Root, Gfid.Root, "foreign")).Value.Gfid, Is.EqualTo(f.Value.Gfid), "stable");
        var fresh = await Start();
        Assert.That((await fresh.StatAsync(Root, d.Value.Gfid, null)).Value.IsDirectory, Is.True);
        Assert.That((await fresh.StatAsync(Root, f.Value.Gfid, null)).Value.Size, Is.EqualTo(1));
    }

    /// <summary>
    /// Another client's lookup of a name being made (a SQLite reader probing the `-journal` a
    /// writer creates) must not give the new entry a GFID of its own: under replicate the copies
    /// would then disagree and the name is EIO for good. Every way of making an entry, each
    /// with a lookup of the same name running on another thread all along; the window between
    /// making the entry and setting its GFID is a few syscalls wide, so it takes many rounds.
    /// </summary>
    [TestCase("create")]
    [TestCase("mknod")]
    [TestCase("mkdir")]
    [TestCase("symlink")]
    public async Task ALookupRacingTheMakingOfANameNeverGivesItAnotherGfid(string how)
    {
        const int Rounds = 1000;
        var t = await Start();
        string current = "";
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var foreign = new List<string>();
        var prober = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var name = Volatile.Read(ref current);
                if (name.Length > 0) _ = t.LookupAsync(Root, Gfid.Root, name).AsTask().GetAwaiter().GetResult();
            }
        }, TaskCreationOptions.LongRunning);
        try
        {
            for (int i = 0; i < Rounds && !stop.IsCancellationRequested; i++)
            {
                var name = $"{how}-{i}";
                var want = Gfid.NewRandom();
                Volatile.Write(ref current, name);
                var r = how switch
                {
                    "create" => await t.CreateAsync(Root, Gfid.Root, name, 0x1A4, new FileHandle(want, OpenFlags.ReadWrite | OpenFlags.Create)),
                    "mknod" => await t.MknodAsync(Root, Gfid.Root, name, ModeBits.Regular | 0x1A4, 0, want),
                    "mkdir" => await t.MkdirAsync(Root, Gfid.Root, name, 0x1ED, want),
                    _ => await t.SymlinkAsync(Root, Gfid.Root, name, "target", want),
                };
                var onDisk = DiskGfid(Path.Combine(_brick, name));
                if (!r.Ok || r.Value.Gfid != want || onDisk != want)
                    foreign.Add($"{name}: {r.Error} answered {(r.Ok ? r.Value.Gfid : default)}, on disk {onDisk}, asked {want}");
            }
        }
        finally
        {
            await stop.CancelAsync();
            await prober;
        }
        Assert.That(foreign, Is.Empty, $"{foreign.Count} of {Rounds} entries did not get the GFID they were made with, first: {foreign.FirstOrDefault()}");
    }

    // ---- .brickfs is invisible and protected --------------------------------------------------------

    [Test]
    public async Task BrickfsDirectoryIsHiddenAndProtected()
    {
        var t = await Start();
        var (f, _) = await Create(t, Gfid.Root, "f");
        Assert.That((await t.LookupAsync(Root, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.ENOENT));
        var dir = new FileHandle(Gfid.Root, OpenFlags.ReadOnly, isDirectory: true);
        await t.OpendirAsync(Root, dir);
        var names = (await t.ReaddirplusAsync(Root, dir, 0, 1 << 20)).Value.Select(e => e.Name).ToList();
        Assert.That(names, Is.EqualTo(new[] { ".", "..", "f" }));
        await t.ReleasedirAsync(Root, dir);

        Assert.That((await t.MkdirAsync(Root, Gfid.Root, ".brickfs", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.CreateAsync(Root, Gfid.Root, ".brickfs", 0x1A4, new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create))).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.SymlinkAsync(Root, Gfid.Root, ".brickfs", "x", Gfid.NewRandom())).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.MknodAsync(Root, Gfid.Root, ".brickfs", ModeBits.Fifo | 0x1A4, 0, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.LinkAsync(Root, f.Gfid, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.RenameAsync(Root, Gfid.Root, "f", Gfid.Root, ".brickfs", RenameFlags.None)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.RenameAsync(Root, Gfid.Root, ".brickfs", Gfid.Root, "stolen", RenameFlags.None)).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await t.RmdirAsync(Root, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await t.UnlinkAsync(Root, Gfid.Root, ".brickfs")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That(Directory.Exists(Path.Combine(_brick, ".brickfs", "gfid")), Is.True);

        var sub = await Mkdir(t, Gfid.Root, "sub");
        Assert.That((await t.MkdirAsync(Root, sub.Gfid, ".brickfs", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.None), "only the root's is reserved");
    }

    [Test]
    public async Task BrickPrivateXattrsAreOutOfReachOfClients()
    {
        var t = await Start();
        var (f, _) = await Create(t, Gfid.Root, "f");
        var gfid = await t.GetxattrAsync(Root, f.Gfid, GfidIndex.Xattr);
        Assert.That(gfid.Error, Is.EqualTo(Errno.None), "the GFID is readable");
        Assert.That(Gfid.FromBytes(gfid.Value), Is.EqualTo(f.Gfid));
        Assert.That((await t.SetxattrAsync(Root, f.Gfid, GfidIndex.Xattr, new byte[16], 0)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.SetxattrAsync(Root, f.Gfid, "trusted.brickfs.other", new byte[1], 0)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.RemovexattrAsync(Root, f.Gfid, GfidIndex.Xattr)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.ListxattrAsync(Root, f.Gfid)).Value.Where(n => n.StartsWith("trusted.brickfs.")), Is.Empty);
        Assert.That((await t.SetxattrAsync(Root, f.Gfid, "trusted.app", "v"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.None), "root clients may use trusted.*");
        Assert.That((await t.GetxattrAsync(User, f.Gfid, "trusted.app")).Error, Is.EqualTo(Errno.ENODATA), "unprivileged callers do not see trusted.*");
        Assert.That((await t.SetxattrAsync(User, f.Gfid, "trusted.app", "v"u8.ToArray(), 0)).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await t.ListxattrAsync(User, f.Gfid)).Value, Does.Not.Contain("trusted.app"));
        Assert.That(DiskGfid(Path.Combine(_brick, "f")), Is.EqualTo(f.Gfid));
    }

    // ---- nothing leaves the export --------------------------------------------------------------------

    [TestCase("..")]
    [TestCase("../outside")]
    [TestCase("a/../../outside")]
    [TestCase("/etc")]
    public async Task DotDotAndSlashNamesAreRejected(string name)
    {
        var t = await Start();
        Assert.That((await t.LookupAsync(Root, Gfid.Root, name)).Error, Is.EqualTo(Errno.EINVAL));
        Assert.That((await t.MkdirAsync(Root, Gfid.Root, name, 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EINVAL));
        Assert.That((await t.UnlinkAsync(Root, Gfid.Root, name)).Error, Is.EqualTo(Errno.EINVAL));
        Assert.That((await t.RenameAsync(Root, Gfid.Root, name, Gfid.Root, "x", RenameFlags.None)).Error, Is.EqualTo(Errno.EINVAL));
    }

    [TestCase("/etc")]
    [TestCase("../../..")]
    [TestCase("OUTSIDE")]
    public async Task SymlinksAreStoredButNeverTraversed(string target)
    {
        target = target == "OUTSIDE" ? _outside : target;
        var t = await Start();
        var s = await t.SymlinkAsync(Root, Gfid.Root, "ln", target, Gfid.NewRandom());
        Assert.That(s.Error, Is.EqualTo(Errno.None));
        Assert.That((await t.ReadlinkAsync(Root, s.Value.Gfid)).Value, Is.EqualTo(target));
        var g = s.Value.Gfid;
        Assert.That((await t.LookupAsync(Root, g, "secret")).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await t.LookupAsync(Root, g, "passwd")).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await t.MkdirAsync(Root, g, "planted", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await t.CreateAsync(Root, g, "planted", 0x1A4, new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create))).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await t.OpendirAsync(Root, new FileHandle(g, OpenFlags.ReadOnly, isDirectory: true))).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await t.OpenAsync(Root, new FileHandle(g, OpenFlags.ReadOnly))).Error, Is.EqualTo(Errno.ELOOP));
        Assert.That((await t.StatAsync(Root, g, null)).Value.IsSymlink, Is.True);
        Assert.That((await t.SetattrAsync(Root, g, null, new SetattrRequest { Valid = SetattrValid.Uid, Uid = 4242 })).Error, Is.EqualTo(Errno.None));
        Assert.That((await t.SetattrAsync(Root, g, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = 0x1FF })).Error, Is.Not.EqualTo(Errno.None));
        Assert.That((await t.SetattrAsync(Root, g, null, new SetattrRequest { Valid = SetattrValid.Size, Size = 0 })).Error, Is.Not.EqualTo(Errno.None));
        Assert.That(Directory.EnumerateFileSystemEntries(_outside), Is.EqualTo(new[] { Path.Combine(_outside, "secret") }));
        var secret = DiskStat(Path.Combine(_outside, "secret"));
        Assert.That((secret.Uid, secret.Mode & ModeBits.PermMask, secret.Size), Is.EqualTo((0u, 0x1A4u, 12UL)), "the target outside is untouched");
    }

    [Test]
    public async Task SymlinkPlantedOnTheBrickDoesNotLeadOutside()
    {
        var t = await Start();
        File.CreateSymbolicLink(Path.Combine(_brick, "escape"), _outside);
        File.CreateSymbolicLink(Path.Combine(_brick, "up"), "../outside");
        foreach (var name in new[] { "escape", "up" })
        {
            var l = await t.LookupAsync(Root, Gfid.Root, name);
            Assert.That(l.Value.IsSymlink, Is.True);
            Assert.That((await t.LookupAsync(Root, l.Value.Gfid, "secret")).Error, Is.EqualTo(Errno.ENOTDIR));
            Assert.That((await t.UnlinkAsync(Root, l.Value.Gfid, "secret")).Error, Is.EqualTo(Errno.ENOTDIR));
        }
        Assert.That(File.Exists(Path.Combine(_outside, "secret")), Is.True);
    }

    [Test]
    public async Task TamperedIndexSymlinkCannotEscape()
    {
        var t = await Start();
        var d = await Mkdir(t, Gfid.Root, "d");
        // Someone rewrites the index symlink to point outside; a fresh brick must refuse to follow it.
        File.Delete(IndexPath(d.Gfid));
        File.CreateSymbolicLink(IndexPath(d.Gfid), "../../../../../outside");
        var fresh = await Start();
        Assert.That((await fresh.LookupAsync(Root, d.Gfid, "secret")).Error, Is.Not.EqualTo(Errno.None));
        File.Delete(IndexPath(d.Gfid));
        File.CreateSymbolicLink(IndexPath(d.Gfid), _outside);
        var fresh2 = await Start();
        Assert.That((await fresh2.LookupAsync(Root, d.Gfid, "secret")).Error, Is.Not.EqualTo(Errno.None));
        // Lookup by name repairs the index.
        Assert.That((await fresh2.LookupAsync(Root, Gfid.Root, "d")).Value.Gfid, Is.EqualTo(d.Gfid));
        Assert.That((await fresh2.StatAsync(Root, d.Gfid, null)).Value.IsDirectory, Is.True);
    }

    // ---- link counts and credentials --------------------------------------------------------------------

    [Test]
    public async Task UnprivilegedCallerCannotMakeDeviceNodes()
    {
        var t = await Start();
        var play = await t.MkdirAsync(Root, Gfid.Root, "play", 0x1FF, Gfid.NewRandom());
        Assert.That((await t.MknodAsync(User, play.Value.Gfid, "null", ModeBits.Char | 0x1B6, (1 << 8) | 3, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EPERM));
        var dev = await t.MknodAsync(Root, play.Value.Gfid, "null", ModeBits.Char | 0x1B6, (1 << 8) | 3, Gfid.NewRandom());
        Assert.That(dev.Error, Is.EqualTo(Errno.None));
        Assert.That(dev.Value.Rdev, Is.EqualTo((ulong)((1 << 8) | 3)));
        Assert.That((await t.OpenAsync(Root, new FileHandle(dev.Value.Gfid, OpenFlags.ReadWrite))).Error, Is.EqualTo(Errno.ENXIO), "the brick never opens device nodes");
        var sock = await t.MknodAsync(User, play.Value.Gfid, "sock", ModeBits.Socket | 0x1ED, 0, Gfid.NewRandom());
        Assert.That(sock.Value.Uid, Is.EqualTo(1000u));
    }

    [Test]
    public async Task WriteByNonOwnerDropsSetuid()
    {
        var t = await Start();
        var play = (await t.MkdirAsync(Root, Gfid.Root, "play", 0x1FF, Gfid.NewRandom())).Value.Gfid;
        var (f, fd) = await Create(t, play, "suid");
        await t.ReleaseAsync(Root, fd);
        await t.SetattrAsync(Root, f.Gfid, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = ModeBits.SetUid | 0x1FF });
        var w = new FileHandle(f.Gfid, OpenFlags.WriteOnly);
        Assert.That((await t.OpenAsync(User, w)).Error, Is.EqualTo(Errno.None));
        Assert.That((await t.WriteAsync(User, w, 0, "x"u8.ToArray())).Value, Is.EqualTo(1));
        Assert.That((await t.StatAsync(Root, f.Gfid, null)).Value.Mode & ModeBits.SetUid, Is.Zero);
        await t.ReleaseAsync(Root, w);
    }

    [Test]
    public async Task VolfileBuildsAPosixBrick()
    {
        var g = GraphBuilder.BuildText($"volume b-posix\n    type storage/posix\n    option directory {_brick}\nend-volume\n");
        await g.InitAsync(CancellationToken.None);
        Assert.That(g.Top, Is.InstanceOf<PosixTranslator>());
        Assert.That((await g.Top.StatAsync(Root, Gfid.Root, null)).Value.IsDirectory, Is.True);
        await g.DisposeAsync();
        Assert.That(() => GraphBuilder.BuildText("volume b\n type storage/posix\nend-volume\n"), Throws.TypeOf<VolfileException>().With.Message.Contains("needs option 'directory'"));
    }
}
