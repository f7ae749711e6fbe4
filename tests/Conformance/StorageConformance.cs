using System.Text;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Conformance;

/// <summary>
/// The POSIX contract of a storage translator (ext4 is the yardstick), written against
/// <see cref="Translator"/> only. Every storage stack runs it through a subclass.
/// </summary>
public abstract class StorageConformance
{
    protected Translator Storage = null!;

    protected static readonly FopContext Root = FopContext.Internal();
    protected static readonly FopContext User = new() { Uid = 1000, Gid = 1000 };
    protected static readonly FopContext OtherUser = new() { Uid = 1001, Gid = 1001 };

    protected abstract Task<Translator> CreateStorageAsync();

    [SetUp]
    public async Task SetUpStorage() => Storage = await CreateStorageAsync();

    [TearDown]
    public async Task TearDownStorage() => await Storage.DisposeAsync();

    // ---- helpers --------------------------------------------------------------------------

    protected async Task<Iatt> Mkdir(Gfid parent, string name, uint mode = 0x1FF, FopContext? ctx = null)
    {
        var r = await Storage.MkdirAsync(ctx ?? Root, parent, name, mode, Gfid.NewRandom());
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"mkdir {name}");
        return r.Value;
    }

    /// <summary>A world-writable directory for tests that act as an unprivileged user.</summary>
    protected async Task<Gfid> Playground() => (await Mkdir(Gfid.Root, "play", 0x1FF)).Gfid;

    protected async Task<(Iatt Attr, FileHandle Fd)> Create(Gfid parent, string name, uint mode = 0x1A4, int flags = OpenFlags.ReadWrite, FopContext? ctx = null)
    {
        var fd = new FileHandle(Gfid.NewRandom(), flags | OpenFlags.Create);
        var r = await Storage.CreateAsync(ctx ?? Root, parent, name, mode, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"create {name}");
        return (r.Value, fd);
    }

    protected async Task Write(FileHandle fd, long offset, string text, FopContext? ctx = null)
    {
        var r = await Storage.WriteAsync(ctx ?? Root, fd, offset, Encoding.UTF8.GetBytes(text));
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value, Is.EqualTo(Encoding.UTF8.GetByteCount(text)));
    }

    protected async Task<string> Read(FileHandle fd, long offset = 0, int size = 1 << 16)
    {
        var r = await Storage.ReadAsync(Root, fd, offset, size);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        using var buf = r.Value;
        return Encoding.UTF8.GetString(buf.Span);
    }

    protected async Task<FileHandle> Open(Gfid gfid, int flags, FopContext? ctx = null)
    {
        var fd = new FileHandle(gfid, flags);
        var r = await Storage.OpenAsync(ctx ?? Root, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        return fd;
    }

    protected async Task<Iatt> Stat(Gfid gfid)
    {
        var r = await Storage.StatAsync(Root, gfid, null);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        return r.Value;
    }

    protected async Task<Iatt> Lookup(Gfid parent, string name)
    {
        var r = await Storage.LookupAsync(Root, parent, name);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"lookup {name}");
        return r.Value;
    }

    /// <summary>Every entry of a directory, read in small batches resumed by cookie.</summary>
    protected async Task<List<DirEntry>> ListAll(Gfid dir, bool plus = false, int sizeHint = 512)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
        Assert.That((await Storage.OpendirAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        var all = new List<DirEntry>();
        long cookie = 0;
        for (int round = 0; round < 10_000; round++)
        {
            var r = plus ? await Storage.ReaddirplusAsync(Root, fd, cookie, sizeHint) : await Storage.ReaddirAsync(Root, fd, cookie, sizeHint);
            Assert.That(r.Error, Is.EqualTo(Errno.None));
            if (r.Value.Count == 0) break;
            all.AddRange(r.Value);
            cookie = r.Value[^1].NextOffset;
        }
        await Storage.ReleasedirAsync(Root, fd);
        return all;
    }

    protected static SetattrRequest Chmod(uint mode) => new() { Valid = SetattrValid.Mode, Mode = mode };

    // ---- files -----------------------------------------------------------------------------

    [Test]
    public async Task CreateWriteReadAndTruncate()
    {
        var (attr, fd) = await Create(Gfid.Root, "f");
        Assert.That(attr.IsRegular, Is.True);
        Assert.That(attr.Gfid, Is.EqualTo(fd.Gfid));
        Assert.That(attr.Mode & ModeBits.PermMask, Is.EqualTo(0x1A4u));
        await Write(fd, 0, "hello world");
        Assert.That(await Read(fd), Is.EqualTo("hello world"));
        Assert.That(await Read(fd, 6, 3), Is.EqualTo("wor"));
        Assert.That(await Read(fd, 100), Is.EqualTo(""));
        var t = await Storage.SetattrAsync(Root, fd.Gfid, null, new SetattrRequest { Valid = SetattrValid.Size, Size = 5 });
        Assert.That(t.Value.Size, Is.EqualTo(5));
        Assert.That(await Read(fd), Is.EqualTo("hello"));
        Assert.That((await Lookup(Gfid.Root, "f")).Gfid, Is.EqualTo(fd.Gfid));
        await Storage.ReleaseAsync(Root, fd);
    }

    [Test]
    public async Task CreateExclusiveFailsOnExistingNameAndPlainCreateOpensIt()
    {
        var (_, fd) = await Create(Gfid.Root, "f");
        await Write(fd, 0, "data");
        var excl = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        Assert.That((await Storage.CreateAsync(Root, Gfid.Root, "f", 0x1A4, excl)).Error, Is.EqualTo(Errno.EEXIST));
        var again = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Truncate);
        var r = await Storage.CreateAsync(Root, Gfid.Root, "f", 0x1A4, again);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value.Gfid, Is.EqualTo(fd.Gfid), "the existing file keeps its GFID");
        Assert.That(r.Value.Size, Is.EqualTo(0), "O_TRUNC truncated it");
    }

    [Test]
    public async Task OpenWithTruncateAndAppend()
    {
        var (_, fd) = await Create(Gfid.Root, "f");
        await Write(fd, 0, "0123456789");
        var app = await Open(fd.Gfid, OpenFlags.WriteOnly | OpenFlags.Append);
        await Write(app, 0, "ab");
        Assert.That(await Read(fd), Is.EqualTo("0123456789ab"));
        var trunc = await Open(fd.Gfid, OpenFlags.WriteOnly | OpenFlags.Truncate);
        Assert.That((await Stat(fd.Gfid)).Size, Is.EqualTo(0));
        await Storage.ReleaseAsync(Root, trunc);
        await Storage.ReleaseAsync(Root, app);
    }

    [Test]
    public async Task DirectIoWriteReadsBack()
    {
        var (_, fd) = await Create(Gfid.Root, "d", flags: OpenFlags.ReadWrite | OpenFlags.Direct);
        var block = new byte[4096];
        Array.Fill(block, (byte)'x');
        Assert.That((await Storage.WriteAsync(Root, fd, 4096, block)).Value, Is.EqualTo(4096));
        Assert.That((await Storage.WriteAsync(Root, fd, 3, "odd"u8.ToArray())).Value, Is.EqualTo(3), "unaligned writes work too");
        Assert.That((await Stat(fd.Gfid)).Size, Is.EqualTo(8192));
        Assert.That((await Read(fd, 4096, 4096)).All(c => c == 'x'), Is.True);
    }

    [Test]
    public async Task UnlinkWhileOpenStaysReadableAndWritable()
    {
        var (_, fd) = await Create(Gfid.Root, "gone");
        await Write(fd, 0, "still here");
        Assert.That((await Storage.UnlinkAsync(Root, Gfid.Root, "gone")).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.LookupAsync(Root, Gfid.Root, "gone")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That(await Read(fd), Is.EqualTo("still here"));
        await Write(fd, 0, "STILL");
        Assert.That(await Read(fd), Is.EqualTo("STILL here"));
        var st = await Storage.StatAsync(Root, fd.Gfid, fd);
        Assert.That(st.Value.Nlink, Is.EqualTo(0u));
        var sa = await Storage.SetattrAsync(Root, fd.Gfid, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = 2 });
        Assert.That(sa.Error, Is.EqualTo(Errno.None), "setattr through the handle works after unlink");
        Assert.That(await Read(fd), Is.EqualTo("ST"));
        await Storage.ReleaseAsync(Root, fd);
    }

    [Test]
    public async Task RenameWhileOpenKeepsTheHandle()
    {
        var dir = await Mkdir(Gfid.Root, "d");
        var (_, fd) = await Create(Gfid.Root, "a");
        await Write(fd, 0, "abc");
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", dir.Gfid, "b", RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        await Write(fd, 3, "def");
        Assert.That(await Read(fd), Is.EqualTo("abcdef"));
        Assert.That((await Lookup(dir.Gfid, "b")).Gfid, Is.EqualTo(fd.Gfid));
        var byGfid = await Open(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That(await Read(byGfid), Is.EqualTo("abcdef"));
    }

    [Test]
    public async Task FsyncAndFlushSucceed()
    {
        var (_, fd) = await Create(Gfid.Root, "f");
        await Write(fd, 0, "x");
        Assert.That((await Storage.FsyncAsync(Root, fd, false)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.FsyncAsync(Root, fd, true)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.FlushAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        var dir = new FileHandle(Gfid.Root, OpenFlags.ReadOnly, isDirectory: true);
        Assert.That((await Storage.OpendirAsync(Root, dir)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.FsyncdirAsync(Root, dir, false)).Error, Is.EqualTo(Errno.None));
    }

    [Test]
    public async Task FallocatePunchHoleZeroesAndKeepsSize()
    {
        var (_, fd) = await Create(Gfid.Root, "f");
        await Write(fd, 0, new string('a', 3 * 4096));
        var r = await Storage.FallocateAsync(Root, fd, FallocateMode.PunchHole | FallocateMode.KeepSize, 4096, 4096);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        var text = await Read(fd);
        Assert.That(text.Length, Is.EqualTo(3 * 4096));
        Assert.That(text[..4096].All(c => c == 'a') && text[4096..8192].All(c => c == '\0') && text[8192..].All(c => c == 'a'), Is.True);
        Assert.That((await Storage.FallocateAsync(Root, fd, 0, 0, 5 * 4096)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Stat(fd.Gfid)).Size, Is.EqualTo(5 * 4096), "plain allocation extends");
        Assert.That((await Storage.FallocateAsync(Root, fd, FallocateMode.KeepSize, 0, 9 * 4096)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Stat(fd.Gfid)).Size, Is.EqualTo(5 * 4096), "KEEP_SIZE does not");
    }

    [Test]
    public async Task SparseFileBeyond4GiB()
    {
        var (_, fd) = await Create(Gfid.Root, "sparse");
        const long at = 5L << 30;
        Assert.That((await Storage.WriteAsync(Root, fd, at, "z"u8.ToArray())).Value, Is.EqualTo(1));
        var st = await Stat(fd.Gfid);
        Assert.That(st.Size, Is.EqualTo(at + 1));
        Assert.That(st.Blocks, Is.LessThan(1024), "a hole takes no space");
        Assert.That(await Read(fd, at, 10), Is.EqualTo("z"));
        Assert.That(await Read(fd, at - 2, 2), Is.EqualTo("\0\0"));
        var data = await Storage.LseekAsync(Root, fd, 0, SeekWhence.Data);
        Assert.That(data.Value, Is.GreaterThan(0).And.LessThanOrEqualTo(at));
        Assert.That((await Storage.LseekAsync(Root, fd, at, SeekWhence.Hole)).Value, Is.EqualTo(at + 1));
        Assert.That((await Storage.LseekAsync(Root, fd, at + 1, SeekWhence.Data)).Error, Is.EqualTo(Errno.ENXIO));
    }

    [Test]
    public async Task StatfsReportsSpace()
    {
        var r = await Storage.StatfsAsync(Root, Gfid.Root);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        Assert.That(r.Value.Blocks, Is.GreaterThan(0));
        Assert.That(r.Value.BlocksFree, Is.LessThanOrEqualTo(r.Value.Blocks));
        Assert.That(r.Value.NameMax, Is.EqualTo(255u));
    }

    // ---- names and directories ----------------------------------------------------------------

    [Test]
    public async Task NamesAreValidated()
    {
        Assert.That((await Storage.MkdirAsync(Root, Gfid.Root, new string('n', 256), 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.ENAMETOOLONG));
        Assert.That((await Storage.MkdirAsync(Root, Gfid.Root, new string('n', 255), 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.None));
        foreach (var bad in new[] { "", ".", "..", "a/b" })
            Assert.That((await Storage.LookupAsync(Root, Gfid.Root, bad)).Error, Is.EqualTo(Errno.EINVAL), bad);
        Assert.That((await Storage.LookupAsync(Root, Gfid.Root, "missing")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await Storage.StatAsync(Root, Gfid.NewRandom(), null)).Error, Is.EqualTo(Errno.ESTALE));
    }

    [Test]
    public async Task MkdirRmdir()
    {
        var d = await Mkdir(Gfid.Root, "d", 0x1ED);
        Assert.That(d.IsDirectory && (d.Mode & ModeBits.PermMask) == 0x1ED, Is.True);
        Assert.That((await Storage.MkdirAsync(Root, Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EEXIST));
        await Create(d.Gfid, "f");
        Assert.That((await Storage.RmdirAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.ENOTEMPTY));
        Assert.That((await Storage.UnlinkAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.EISDIR));
        Assert.That((await Storage.RmdirAsync(Root, d.Gfid, "f")).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await Storage.UnlinkAsync(Root, d.Gfid, "f")).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.RmdirAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.LookupAsync(Root, Gfid.Root, "d")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await Storage.StatAsync(Root, d.Gfid, null)).Error, Is.EqualTo(Errno.ESTALE));
    }

    [Test]
    public async Task ReaddirListsDotsFirstAndResumesByCookie()
    {
        var d = await Mkdir(Gfid.Root, "d");
        var names = Enumerable.Range(0, 60).Select(i => $"entry-{i:D3}").ToList();
        foreach (var n in names) await Create(d.Gfid, n);
        var all = await ListAll(d.Gfid, sizeHint: 256);
        Assert.That(all.Take(2).Select(e => e.Name), Is.EqualTo(new[] { ".", ".." }));
        Assert.That(all.Skip(2).Select(e => e.Name).Order(StringComparer.Ordinal), Is.EqualTo(names));
        Assert.That(all.Skip(2).All(e => e.Type == 8), Is.True);

        // Resuming from any entry's cookie yields exactly the entries after it.
        var fd = new FileHandle(d.Gfid, OpenFlags.ReadOnly, isDirectory: true);
        await Storage.OpendirAsync(Root, fd);
        var tail = (await Storage.ReaddirAsync(Root, fd, all[30].NextOffset, 1 << 20)).Value;
        Assert.That(tail.Select(e => e.Name), Is.EqualTo(all.Skip(31).Select(e => e.Name)));
        var dotsOnly = (await Storage.ReaddirAsync(Root, fd, all[0].NextOffset, 1 << 20)).Value;
        Assert.That(dotsOnly[0].Name, Is.EqualTo(".."));
        Assert.That((await Storage.ReaddirAsync(Root, fd, all[^1].NextOffset, 1 << 20)).Value, Is.Empty);
    }

    [Test]
    public async Task ReaddirplusFillsGfidAndAttributes()
    {
        var d = await Mkdir(Gfid.Root, "d");
        var (f, _) = await Create(d.Gfid, "file");
        var sub = await Mkdir(d.Gfid, "sub");
        var all = await ListAll(d.Gfid, plus: true);
        Assert.That(all.Take(2).All(e => e.Attr is null && e.Gfid is null), Is.True);
        var byName = all.Skip(2).ToDictionary(e => e.Name);
        Assert.That(byName["file"].Gfid, Is.EqualTo(f.Gfid));
        Assert.That(byName["file"].Attr!.IsRegular, Is.True);
        Assert.That(byName["sub"].Gfid, Is.EqualTo(sub.Gfid));
        Assert.That(byName["sub"].Attr!.IsDirectory, Is.True);
        Assert.That(byName["sub"].Type, Is.EqualTo(4));
    }

    [Test]
    public async Task DirectoryLinkCountStaysRightWhileFilesComeAndGoBetweenSubdirectoryChanges()
    {
        var d = await Mkdir(Gfid.Root, "d");
        await Mkdir(d.Gfid, "a");
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(3u));
        for (int i = 0; i < 5; i++)
        {
            var (_, fd) = await Create(d.Gfid, $"f{i}");
            await Storage.ReleaseAsync(Root, fd);
            Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(3u), $"after creating f{i}");
        }
        Assert.That((await Storage.SymlinkAsync(Root, d.Gfid, "s", "f0", Gfid.NewRandom())).Ok, Is.True);
        Assert.That((await Storage.UnlinkAsync(Root, d.Gfid, "f1")).Ok, Is.True);
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(3u), "after a symlink and an unlink");
        await Mkdir(d.Gfid, "b");
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(4u), "a new subdirectory still counts");
        var (_, g) = await Create(d.Gfid, "g");
        await Storage.ReleaseAsync(Root, g);
        await Storage.RmdirAsync(Root, d.Gfid, "a");
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(3u));
    }

    [Test]
    public async Task DirectoryLinkCountIsTwoPlusSubdirectories()
    {
        var d = await Mkdir(Gfid.Root, "d");
        Assert.That(d.Nlink, Is.EqualTo(2u));
        await Mkdir(d.Gfid, "a");
        await Mkdir(d.Gfid, "b");
        await Create(d.Gfid, "file");
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(4u));
        await Storage.RmdirAsync(Root, d.Gfid, "a");
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(3u));
        var other = await Mkdir(Gfid.Root, "other");
        await Storage.RenameAsync(Root, d.Gfid, "b", other.Gfid, "b", RenameFlags.None);
        Assert.That((await Stat(d.Gfid)).Nlink, Is.EqualTo(2u));
        Assert.That((await Stat(other.Gfid)).Nlink, Is.EqualTo(3u));
        Assert.That((await Stat(Gfid.Root)).Nlink, Is.EqualTo(4u), "root: itself, .., d and other");
    }

    // ---- rename ---------------------------------------------------------------------------------

    [Test]
    public async Task RenameOverAnExistingFileReplacesIt()
    {
        var (a, fa) = await Create(Gfid.Root, "a");
        var (b, fb) = await Create(Gfid.Root, "b");
        await Write(fa, 0, "A");
        await Write(fb, 0, "B");
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "b", RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Lookup(Gfid.Root, "b")).Gfid, Is.EqualTo(a.Gfid));
        Assert.That((await Storage.LookupAsync(Root, Gfid.Root, "a")).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await Storage.StatAsync(Root, b.Gfid, null)).Error, Is.EqualTo(Errno.ESTALE), "the replaced file is gone");
        Assert.That(await Read(fb), Is.EqualTo("B"), "an open handle of the replaced file still reads");
    }

    [Test]
    public async Task RenameDirectoryOverDirectory()
    {
        var a = await Mkdir(Gfid.Root, "a");
        await Create(a.Gfid, "inside");
        var empty = await Mkdir(Gfid.Root, "empty");
        var full = await Mkdir(Gfid.Root, "full");
        await Create(full.Gfid, "x");
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "full", RenameFlags.None)).Error, Is.EqualTo(Errno.ENOTEMPTY));
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "empty", RenameFlags.None)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Lookup(Gfid.Root, "empty")).Gfid, Is.EqualTo(a.Gfid));
        Assert.That((await Lookup(a.Gfid, "inside")).IsRegular, Is.True, "the moved directory resolves by GFID");
        Assert.That((await Storage.StatAsync(Root, empty.Gfid, null)).Error, Is.EqualTo(Errno.ESTALE));
        var (_, _) = await Create(Gfid.Root, "file");
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "file", Gfid.Root, "full", RenameFlags.None)).Error, Is.EqualTo(Errno.EISDIR));
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "full", Gfid.Root, "file", RenameFlags.None)).Error, Is.EqualTo(Errno.ENOTDIR));
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "full", full.Gfid, "sub", RenameFlags.None)).Error, Is.EqualTo(Errno.EINVAL), "into itself");
    }

    [Test]
    public async Task RenameFlagsNoReplaceAndExchange()
    {
        var (a, _) = await Create(Gfid.Root, "a");
        var d = await Mkdir(Gfid.Root, "d");
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "d", RenameFlags.NoReplace)).Error, Is.EqualTo(Errno.EEXIST));
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "none", RenameFlags.Exchange)).Error, Is.EqualTo(Errno.ENOENT));
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "d", RenameFlags.Exchange)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Lookup(Gfid.Root, "a")).Gfid, Is.EqualTo(d.Gfid));
        Assert.That((await Lookup(Gfid.Root, "d")).Gfid, Is.EqualTo(a.Gfid));
        await Create(d.Gfid, "child");
        Assert.That((await Lookup(d.Gfid, "child")).IsRegular, Is.True, "an exchanged directory still resolves by GFID");
        Assert.That((await Storage.RenameAsync(Root, Gfid.Root, "a", Gfid.Root, "fresh", RenameFlags.NoReplace)).Error, Is.EqualTo(Errno.None));
    }

    // ---- links, symlinks, special files ---------------------------------------------------------

    [Test]
    public async Task HardLinksShareGfidAndCountLinks()
    {
        var d = await Mkdir(Gfid.Root, "d");
        var (f, fd) = await Create(Gfid.Root, "f");
        Assert.That(f.Nlink, Is.EqualTo(1u));
        var l = await Storage.LinkAsync(Root, f.Gfid, d.Gfid, "g");
        Assert.That(l.Error, Is.EqualTo(Errno.None));
        Assert.That(l.Value.Nlink, Is.EqualTo(2u));
        Assert.That(l.Value.Gfid, Is.EqualTo(f.Gfid));
        Assert.That((await Lookup(d.Gfid, "g")).Gfid, Is.EqualTo(f.Gfid));
        Assert.That((await Lookup(d.Gfid, "g")).Ino, Is.EqualTo(f.Ino));
        await Write(fd, 0, "shared");
        Assert.That((await Lookup(d.Gfid, "g")).Size, Is.EqualTo(6));
        Assert.That((await Storage.LinkAsync(Root, f.Gfid, d.Gfid, "g")).Error, Is.EqualTo(Errno.EEXIST));
        Assert.That((await Storage.LinkAsync(Root, d.Gfid, Gfid.Root, "dirlink")).Error, Is.EqualTo(Errno.EPERM));
        await Storage.UnlinkAsync(Root, Gfid.Root, "f");
        Assert.That((await Stat(f.Gfid)).Nlink, Is.EqualTo(1u), "still reachable by GFID through the other name");
        var again = await Open(f.Gfid, OpenFlags.ReadOnly);
        Assert.That(await Read(again), Is.EqualTo("shared"));
    }

    [Test]
    public async Task SymlinkStoresTargetVerbatim()
    {
        var s = await Storage.SymlinkAsync(Root, Gfid.Root, "ln", "../some/where", Gfid.NewRandom());
        Assert.That(s.Error, Is.EqualTo(Errno.None));
        Assert.That(s.Value.IsSymlink, Is.True);
        Assert.That((await Storage.ReadlinkAsync(Root, s.Value.Gfid)).Value, Is.EqualTo("../some/where"));
        Assert.That((await Lookup(Gfid.Root, "ln")).Gfid, Is.EqualTo(s.Value.Gfid));
        var (f, _) = await Create(Gfid.Root, "f");
        Assert.That((await Storage.ReadlinkAsync(Root, f.Gfid)).Error, Is.EqualTo(Errno.EINVAL));
        Assert.That((await Storage.LinkAsync(Root, s.Value.Gfid, Gfid.Root, "ln2")).Value.IsSymlink, Is.True, "a hard link to a symlink is the symlink");
    }

    [Test]
    public async Task MknodFifo()
    {
        var r = await Storage.MknodAsync(Root, Gfid.Root, "fifo", ModeBits.Fifo | 0x1A4, 0, Gfid.NewRandom());
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        var st = await Lookup(Gfid.Root, "fifo");
        Assert.That(st.Mode & ModeBits.TypeMask, Is.EqualTo(ModeBits.Fifo));
        Assert.That(st.Gfid, Is.EqualTo(r.Value.Gfid));
        var all = await ListAll(Gfid.Root);
        Assert.That(all.Single(e => e.Name == "fifo").Type, Is.EqualTo(1));
    }

    // ---- xattrs and attributes --------------------------------------------------------------------

    [Test]
    public async Task XattrsHonourCreateAndReplaceFlags()
    {
        var (f, _) = await Create(Gfid.Root, "f");
        var v1 = "one"u8.ToArray();
        Assert.That((await Storage.SetxattrAsync(Root, f.Gfid, "user.k", v1, XattrFlags.Replace)).Error, Is.EqualTo(Errno.ENODATA));
        Assert.That((await Storage.SetxattrAsync(Root, f.Gfid, "user.k", v1, XattrFlags.Create)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.SetxattrAsync(Root, f.Gfid, "user.k", v1, XattrFlags.Create)).Error, Is.EqualTo(Errno.EEXIST));
        Assert.That((await Storage.SetxattrAsync(Root, f.Gfid, "user.k", "two"u8.ToArray(), XattrFlags.Replace)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.GetxattrAsync(Root, f.Gfid, "user.k")).Value, Is.EqualTo("two"u8.ToArray()));
        Assert.That((await Storage.ListxattrAsync(Root, f.Gfid)).Value, Does.Contain("user.k"));
        Assert.That((await Storage.RemovexattrAsync(Root, f.Gfid, "user.k")).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.GetxattrAsync(Root, f.Gfid, "user.k")).Error, Is.EqualTo(Errno.ENODATA));
        Assert.That((await Storage.RemovexattrAsync(Root, f.Gfid, "user.k")).Error, Is.EqualTo(Errno.ENODATA));
        var d = await Mkdir(Gfid.Root, "d");
        Assert.That((await Storage.SetxattrAsync(Root, d.Gfid, "user.dir", v1, 0)).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.GetxattrAsync(Root, d.Gfid, "user.dir")).Value, Is.EqualTo(v1));
    }

    [Test]
    public async Task SetattrChangesModeOwnerAndTimes()
    {
        var (f, _) = await Create(Gfid.Root, "f");
        var r = await Storage.SetattrAsync(Root, f.Gfid, null, new SetattrRequest
        {
            Valid = SetattrValid.Mode | SetattrValid.Uid | SetattrValid.Gid | SetattrValid.Atime | SetattrValid.Mtime,
            Mode = 0x180, Uid = 1000, Gid = 1000, Atime = new Timespec(1_000_000, 5), Mtime = new Timespec(2_000_000, 7),
        });
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        var st = await Stat(f.Gfid);
        Assert.That(st.Mode & ModeBits.PermMask, Is.EqualTo(0x180u));
        Assert.That((st.Uid, st.Gid), Is.EqualTo((1000u, 1000u)));
        Assert.That(st.Atime, Is.EqualTo(new Timespec(1_000_000, 5)));
        Assert.That(st.Mtime, Is.EqualTo(new Timespec(2_000_000, 7)));
        var now = await Storage.SetattrAsync(User, f.Gfid, null, new SetattrRequest { Valid = SetattrValid.Mtime | SetattrValid.MtimeNow });
        Assert.That(now.Error, Is.EqualTo(Errno.None), "the owner may touch");
        Assert.That(now.Value.Mtime.Sec, Is.GreaterThan(2_000_000));
    }

    // ---- permissions ------------------------------------------------------------------------------

    [Test]
    public async Task UnprivilegedWriteOpenOfRootFileIsDenied()
    {
        var play = await Playground();
        var (f, _) = await Create(play, "rootfile", 0x1A4);
        Assert.That((await Storage.OpenAsync(User, new FileHandle(f.Gfid, OpenFlags.WriteOnly))).Error, Is.EqualTo(Errno.EACCES));
        Assert.That((await Storage.OpenAsync(User, new FileHandle(f.Gfid, OpenFlags.ReadOnly))).Error, Is.EqualTo(Errno.None));
        Assert.That((await Storage.AccessAsync(User, f.Gfid, 2)).Error, Is.EqualTo(Errno.EACCES));
        Assert.That((await Storage.AccessAsync(User, f.Gfid, 4)).Error, Is.EqualTo(Errno.None));
    }

    [Test]
    public async Task ChmodOfSomeoneElsesFileIsDenied()
    {
        var play = await Playground();
        var (f, _) = await Create(play, "rootfile", 0x1A4);
        Assert.That((await Storage.SetattrAsync(User, f.Gfid, null, Chmod(0x1FF))).Error, Is.EqualTo(Errno.EPERM));
        Assert.That((await Storage.SetattrAsync(User, f.Gfid, null, new SetattrRequest { Valid = SetattrValid.Uid, Uid = 1000 })).Error, Is.EqualTo(Errno.EPERM));
    }

    [Test]
    public async Task CreateInRootOwnedDirectoryIsDenied()
    {
        var d = await Mkdir(Gfid.Root, "locked", 0x1ED);
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await Storage.CreateAsync(User, d.Gfid, "mine", 0x1A4, fd)).Error, Is.EqualTo(Errno.EACCES));
        Assert.That((await Storage.MkdirAsync(User, d.Gfid, "mine", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EACCES));
        await Create(d.Gfid, "theirs");
        Assert.That((await Storage.UnlinkAsync(User, d.Gfid, "theirs")).Error, Is.EqualTo(Errno.EACCES));
    }

    [Test]
    public async Task NewEntriesBelongToTheCaller()
    {
        var play = await Playground();
        var (f, fd) = await Create(play, "mine", 0x1A4, ctx: User);
        Assert.That((f.Uid, f.Gid), Is.EqualTo((1000u, 1000u)));
        Assert.That((await Storage.WriteAsync(User, fd, 0, "x"u8.ToArray())).Error, Is.EqualTo(Errno.None));
        var d = await Mkdir(play, "mydir", 0x1C0, User);
        Assert.That((d.Uid, d.Gid, d.Mode & ModeBits.PermMask), Is.EqualTo((1000u, 1000u, 0x1C0u)));
        Assert.That((await Storage.LookupAsync(OtherUser, d.Gfid, "anything")).Error, Is.EqualTo(Errno.EACCES), "0700 directory of another user");
    }

    [Test]
    public async Task SetgidDirectoryGivesItsGroupToNewEntries()
    {
        var sg = await Mkdir(Gfid.Root, "sg", 0x1FD);
        var r = await Storage.SetattrAsync(Root, sg.Gfid, null, new SetattrRequest { Valid = SetattrValid.Gid | SetattrValid.Mode, Gid = 2000, Mode = ModeBits.SetGid | 0x1FD });
        Assert.That(r.Value.Mode & ModeBits.SetGid, Is.Not.Zero);
        var member = new FopContext { Uid = 1000, Gid = 1000, Groups = [2000] };
        var (f, _) = await Create(sg.Gfid, "file", 0x1A4, ctx: member);
        Assert.That((f.Uid, f.Gid), Is.EqualTo((1000u, 2000u)));
        var sub = await Mkdir(sg.Gfid, "sub", 0x1ED, member);
        Assert.That(sub.Gid, Is.EqualTo(2000u));
        Assert.That(sub.Mode & ModeBits.SetGid, Is.Not.Zero, "subdirectories inherit setgid");
    }
}
