using System.Collections.Concurrent;
using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Protocol;
using Brickfs.Translators.Protocol.Wire;
using Brickfs.Translators.Storage;
using Fop = Brickfs.Translators.Core.Fop;
using Gfid = Brickfs.Translators.Core.Gfid;
using Timespec = Brickfs.Translators.Core.Timespec;

namespace Brickfs.Tests.Protocol;

/// <summary>Notes every fop that reaches the brick side, so a test can tell the call really crossed the wire.</summary>
internal sealed class FopRecorder : FopHookTranslator
{
    public readonly ConcurrentQueue<(Fop Fop, FopContext Ctx)> Seen = new();

    protected override ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx)
    {
        Seen.Enqueue((fop, ctx));
        return ValueTask.FromResult(Errno.None);
    }
}

/// <summary>Answers every lock request with the lock it got, pid + 1000, so lock fields can be seen round-tripping.</summary>
internal sealed class LockEchoTranslator : Translator
{
    public override ValueTask<FopResult<Brickfs.Translators.Core.FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, Brickfs.Translators.Core.FileLock lk) =>
        ValueTask.FromResult(FopResult<Brickfs.Translators.Core.FileLock>.Success(lk with { Pid = lk.Pid + 1000 }));

    public override ValueTask<FopResult<Brickfs.Translators.Core.FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, Brickfs.Translators.Core.FileLock lk) =>
        ValueTask.FromResult(FopResult<Brickfs.Translators.Core.FileLock>.Success(lk with { Pid = lk.Pid + (uint)domain.Length, Start = lk.Start + (long)(gfid.Lo & 0xFF) }));

    /// <summary>Refuses (EAGAIN) exactly the call whose fields all arrived as the test sent them.</summary>
    public override ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type) =>
        ValueTask.FromResult(domain == "dom" && parent == Gfid.Root && name == "busy" && command == LockCommand.Set && type == LockType.Write
            ? FopResult.Fail(Errno.EAGAIN)
            : name is null ? FopResult.Fail(Errno.ENOENT) : FopResult.Success);
}

/// <summary>client translator -> in-memory transport (the real codec) -> protocol/server -> storage/memory.</summary>
internal sealed class MemoryNetwork : IAsyncDisposable
{
    public readonly CaptureWriter LogText = new();
    public readonly MemoryStorageTranslator Storage = Kit.Memory("b1-mem");
    public readonly FopRecorder Recorder = new() { Name = "b1", TypeName = "test/recorder" };
    public readonly ProtocolServerTranslator Server;
    public readonly ProtocolClientTranslator Client;

    private MemoryNetwork(Translator? between, params (string, string)[] clientOptions)
    {
        var log = new ProtocolLog(LogText);
        var echo = new LockEchoTranslator { Name = "b1-echo", TypeName = "test/lock-echo" };
        echo.Attach(Storage);
        Translator below = echo;
        if (between is not null)
        {
            between.Attach(echo);
            below = between;
        }
        Recorder.Attach(below);
        Server = Kit.Server(Recorder, log, ("transport-type", "memory"), ("listen-host", $"mem-{Guid.NewGuid():N}"));
        Client = Kit.Client(log, [("remote-subvolume", "b1"), ("client-id", "client-A"), .. clientOptions]);
        Client.Connector = _ => ValueTask.FromResult(Server.ConnectInMemory());
    }

    public static async Task<MemoryNetwork> StartAsync(Translator? between = null, params (string, string)[] clientOptions)
    {
        var n = new MemoryNetwork(between, clientOptions);
        await n.Server.InitAsync(CancellationToken.None);
        await n.Client.InitAsync(CancellationToken.None);
        Assert.That(n.Client.IsConnected, Is.True, n.LogText.ToString());
        return n;
    }

    public bool Saw(Fop fop) => Recorder.Seen.Any(s => s.Fop == fop);

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await Server.DisposeAsync();
    }
}

public class FopRoundTripTests
{
    private static readonly byte[] Hello = Encoding.ASCII.GetBytes("hello");

    public static IEnumerable<Fop> AllFops => Enum.GetValues<Fop>();

    [Test]
    public void EveryFopHasWireMessages()
    {
        foreach (var fop in Enum.GetValues<Fop>())
        {
            Assert.That(WireTable.IsKnown((int)fop), Is.True, $"{fop} has no wire messages in WireTable");
            Assert.That(WireTable.RequestParser(fop).ParseFrom([]), Is.InstanceOf<IWireRequest>(), fop.ToString());
            Assert.That(WireTable.ReplyParser(fop).ParseFrom([]), Is.InstanceOf<IWireReply>(), fop.ToString());
        }
    }

    [TestCaseSource(nameof(AllFops))]
    public async Task FopRoundTripsThroughTheCodec(Fop fop)
    {
        if (!Scenarios.TryGetValue(fop, out var scenario)) Assert.Fail($"no round-trip scenario for {fop}: add one (and its wire messages)");
        await using var net = await MemoryNetwork.StartAsync();
        await scenario!(net.Client);
        Assert.That(net.Saw(fop), Is.True, $"{fop} never reached the brick");
        Assert.That(net.Recorder.Seen.Where(s => s.Fop == fop).All(s => s.Ctx.ClientId == "client-A"), Is.True, "brick-side ClientId is the handshake's");
    }

    private static FopContext Ctx(uint uid = 0) => Kit.Ctx(uid);

    private static readonly Dictionary<Fop, Func<Translator, Task>> Scenarios = new()
    {
        [Fop.Lookup] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            var r = await c.LookupAsync(Ctx(), Gfid.Root, "f");
            Assert.That(r.Value.Gfid, Is.EqualTo(fd.Gfid));
            Assert.That(r.Value.Size, Is.EqualTo(5));
            Assert.That((await c.LookupAsync(Ctx(), Gfid.Root, "nope")).Error, Is.EqualTo(Errno.ENOENT));
        },
        [Fop.Stat] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            Assert.That((await c.StatAsync(Ctx(), fd.Gfid, null)).Value.Size, Is.EqualTo(5));
            Assert.That((await c.StatAsync(Ctx(), fd.Gfid, fd)).Value.IsRegular, Is.True);
            Assert.That((await c.StatAsync(Ctx(), Gfid.NewRandom(), null)).Error, Is.EqualTo(Errno.ESTALE));
        },
        [Fop.Setattr] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            var mtime = new Timespec(1_000_000, 5);
            var r = await c.SetattrAsync(Ctx(), fd.Gfid, null, new Brickfs.Translators.Core.SetattrRequest
            {
                Valid = SetattrValid.Mode | SetattrValid.Mtime | SetattrValid.Size, Mode = 0x180, Mtime = mtime, Size = 2,
            });
            Assert.That(r.Value.Mode & ModeBits.PermMask, Is.EqualTo(0x180u));
            Assert.That(r.Value.Mtime, Is.EqualTo(mtime));
            Assert.That(r.Value.Size, Is.EqualTo(2));
        },
        [Fop.Readlink] = async c =>
        {
            var g = Gfid.NewRandom();
            Assert.That((await c.SymlinkAsync(Ctx(), Gfid.Root, "l", "some/target", g)).Ok, Is.True);
            Assert.That((await c.ReadlinkAsync(Ctx(), g)).Value, Is.EqualTo("some/target"));
        },
        [Fop.Mknod] = async c =>
        {
            var g = Gfid.NewRandom();
            var r = await c.MknodAsync(Ctx(), Gfid.Root, "fifo", ModeBits.Fifo | 0x1A4, 77, g);
            Assert.That(r.Value.Gfid, Is.EqualTo(g));
            Assert.That(r.Value.Mode & ModeBits.TypeMask, Is.EqualTo(ModeBits.Fifo));
            Assert.That(r.Value.Rdev, Is.EqualTo(77UL));
        },
        [Fop.Mkdir] = async c =>
        {
            var g = Gfid.NewRandom();
            var r = await c.MkdirAsync(Ctx(), Gfid.Root, "d", 0x1ED, g);
            Assert.That(r.Value.Gfid, Is.EqualTo(g));
            Assert.That(r.Value.IsDirectory, Is.True);
            Assert.That((await c.MkdirAsync(Ctx(), Gfid.Root, "d", 0x1ED, Gfid.NewRandom())).Error, Is.EqualTo(Errno.EEXIST));
        },
        [Fop.Unlink] = async c =>
        {
            await Kit.CreateAsync(c, "f");
            Assert.That((await c.UnlinkAsync(Ctx(), Gfid.Root, "f")).Ok, Is.True);
            Assert.That((await c.LookupAsync(Ctx(), Gfid.Root, "f")).Error, Is.EqualTo(Errno.ENOENT));
        },
        [Fop.Rmdir] = async c =>
        {
            await c.MkdirAsync(Ctx(), Gfid.Root, "d", 0x1ED, Gfid.NewRandom());
            Assert.That((await c.RmdirAsync(Ctx(), Gfid.Root, "d")).Ok, Is.True);
            Assert.That((await c.RmdirAsync(Ctx(), Gfid.Root, "d")).Error, Is.EqualTo(Errno.ENOENT));
        },
        [Fop.Symlink] = async c =>
        {
            var g = Gfid.NewRandom();
            var r = await c.SymlinkAsync(Ctx(), Gfid.Root, "l", "/abs/t", g);
            Assert.That(r.Value.IsSymlink, Is.True);
            Assert.That(r.Value.Gfid, Is.EqualTo(g));
        },
        [Fop.Rename] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "a");
            Assert.That((await c.RenameAsync(Ctx(), Gfid.Root, "a", Gfid.Root, "b", RenameFlags.None)).Ok, Is.True);
            Assert.That((await c.LookupAsync(Ctx(), Gfid.Root, "b")).Value.Gfid, Is.EqualTo(fd.Gfid));
            await Kit.CreateAsync(c, "c");
            Assert.That((await c.RenameAsync(Ctx(), Gfid.Root, "b", Gfid.Root, "c", RenameFlags.NoReplace)).Error, Is.EqualTo(Errno.EEXIST));
        },
        [Fop.Link] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "a");
            var r = await c.LinkAsync(Ctx(), fd.Gfid, Gfid.Root, "b");
            Assert.That(r.Value.Nlink, Is.EqualTo(2u));
        },
        [Fop.Open] = async c =>
        {
            var created = await Kit.CreateAsync(c, "f", Hello);
            await c.ReleaseAsync(Ctx(), created);
            var fd = new FileHandle(created.Gfid, OpenFlags.ReadOnly);
            Assert.That((await c.OpenAsync(Ctx(), fd)).Ok, Is.True);
            using var data = (await c.ReadAsync(Ctx(), fd, 0, 100)).Value;
            Assert.That(data.Span.ToArray(), Is.EqualTo(Hello));
            Assert.That((await c.OpenAsync(Ctx(), new FileHandle(Gfid.NewRandom(), 0))).Error, Is.EqualTo(Errno.ESTALE));
        },
        [Fop.Create] = async c =>
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
            var r = await c.CreateAsync(Ctx(), Gfid.Root, "f", 0x1A4, fd);
            Assert.That(r.Value.Gfid, Is.EqualTo(fd.Gfid));
            Assert.That(r.Value.Mode & ModeBits.PermMask, Is.EqualTo(0x1A4u));
            var again = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
            Assert.That((await c.CreateAsync(Ctx(), Gfid.Root, "f", 0x1A4, again)).Error, Is.EqualTo(Errno.EEXIST));
        },
        [Fop.Read] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            using (var d = (await c.ReadAsync(Ctx(), fd, 1, 3)).Value) Assert.That(Encoding.ASCII.GetString(d.Span), Is.EqualTo("ell"));
            using (var d = (await c.ReadAsync(Ctx(), fd, 3, 100)).Value) Assert.That(Encoding.ASCII.GetString(d.Span), Is.EqualTo("lo"), "short read at EOF");
            using (var d = (await c.ReadAsync(Ctx(), fd, 5, 3)).Value) Assert.That(d.Length, Is.Zero);
        },
        [Fop.Write] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            Assert.That((await c.WriteAsync(Ctx(), fd, 5, Encoding.ASCII.GetBytes(" world"))).Value, Is.EqualTo(6));
            using var d = (await c.ReadAsync(Ctx(), fd, 0, 100)).Value;
            Assert.That(Encoding.ASCII.GetString(d.Span), Is.EqualTo("hello world"));
        },
        [Fop.Statfs] = async c =>
        {
            var s = (await c.StatfsAsync(Ctx(), Gfid.Root)).Value;
            Assert.That(s.Blocks, Is.EqualTo((ulong)(1L << 30) / 4096));
            Assert.That(s.NameMax, Is.EqualTo(255u));
        },
        [Fop.Flush] = async c =>
        {
            // A flush crosses the wire only while the client may hold locks on the file
            // (ProtocolBehaviourTests.AFlushWithoutLocksIsAnsweredByTheClient).
            var fd = await Kit.CreateAsync(c, "f");
            var lk = new Brickfs.Translators.Core.FileLock { Type = LockType.Write, Start = 0, End = long.MaxValue, Pid = 42, Owner = 0, Kind = LockKind.Posix };
            Assert.That((await c.LkAsync(Ctx(), fd, LockCommand.Set, lk)).Ok, Is.True);
            Assert.That((await c.FlushAsync(Ctx(), fd)).Ok, Is.True);
        },
        [Fop.Release] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            Assert.That((await c.ReleaseAsync(Ctx(), fd)).Ok, Is.True);
            Assert.That((await c.ReadAsync(Ctx(), fd, 0, 1)).Error, Is.EqualTo(Errno.EBADF));
        },
        [Fop.Fsync] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            Assert.That((await c.FsyncAsync(Ctx(), fd, dataOnly: true)).Ok, Is.True);
        },
        [Fop.Setxattr] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            Assert.That((await c.SetxattrAsync(Ctx(), fd.Gfid, "user.a", new byte[] { 1, 2, 3 }, 0)).Ok, Is.True);
            Assert.That((await c.SetxattrAsync(Ctx(), fd.Gfid, "user.a", new byte[] { 9 }, XattrFlags.Create)).Error, Is.EqualTo(Errno.EEXIST));
        },
        [Fop.Getxattr] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            await c.SetxattrAsync(Ctx(), fd.Gfid, "user.a", new byte[] { 1, 2, 3 }, 0);
            Assert.That((await c.GetxattrAsync(Ctx(), fd.Gfid, "user.a")).Value, Is.EqualTo(new byte[] { 1, 2, 3 }));
            Assert.That((await c.GetxattrAsync(Ctx(), fd.Gfid, "user.b")).Error, Is.EqualTo(Errno.ENODATA));
        },
        [Fop.Listxattr] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            await c.SetxattrAsync(Ctx(), fd.Gfid, "user.a", new byte[] { 1 }, 0);
            await c.SetxattrAsync(Ctx(), fd.Gfid, "user.b", new byte[] { 2 }, 0);
            Assert.That((await c.ListxattrAsync(Ctx(), fd.Gfid)).Value, Is.EquivalentTo(new[] { "user.a", "user.b" }));
        },
        [Fop.Removexattr] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            await c.SetxattrAsync(Ctx(), fd.Gfid, "user.a", new byte[] { 1 }, 0);
            Assert.That((await c.RemovexattrAsync(Ctx(), fd.Gfid, "user.a")).Ok, Is.True);
            Assert.That((await c.RemovexattrAsync(Ctx(), fd.Gfid, "user.a")).Error, Is.EqualTo(Errno.ENODATA));
        },
        [Fop.Opendir] = async c =>
        {
            var fd = new FileHandle(Gfid.Root, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
            Assert.That((await c.OpendirAsync(Ctx(), fd)).Ok, Is.True);
            var file = await Kit.CreateAsync(c, "f");
            Assert.That((await c.OpendirAsync(Ctx(), new FileHandle(file.Gfid, 0, isDirectory: true))).Error, Is.EqualTo(Errno.ENOTDIR));
        },
        [Fop.Readdir] = async c =>
        {
            var f = await Kit.CreateAsync(c, "f");
            var dir = new FileHandle(Gfid.Root, OpenFlags.Directory, isDirectory: true);
            await c.OpendirAsync(Ctx(), dir);
            var entries = (await c.ReaddirAsync(Ctx(), dir, 0, 4096)).Value;
            Assert.That(entries.Select(e => e.Name), Is.EqualTo(new[] { ".", "..", "f" }));
            Assert.That(entries[2].Gfid, Is.EqualTo(f.Gfid));
            Assert.That(entries[0].Gfid, Is.Null);
            Assert.That((await c.ReaddirAsync(Ctx(), dir, entries[^1].NextOffset, 4096)).Value, Is.Empty);
        },
        [Fop.Readdirplus] = async c =>
        {
            await Kit.CreateAsync(c, "f", Hello);
            var dir = new FileHandle(Gfid.Root, OpenFlags.Directory, isDirectory: true);
            await c.OpendirAsync(Ctx(), dir);
            var entries = (await c.ReaddirplusAsync(Ctx(), dir, 2, 4096)).Value;
            Assert.That(entries.Single().Attr!.Size, Is.EqualTo(5));
        },
        [Fop.Releasedir] = async c =>
        {
            var dir = new FileHandle(Gfid.Root, OpenFlags.Directory, isDirectory: true);
            await c.OpendirAsync(Ctx(), dir);
            Assert.That((await c.ReleasedirAsync(Ctx(), dir)).Ok, Is.True);
            Assert.That((await c.ReaddirAsync(Ctx(), dir, 0, 4096)).Error, Is.EqualTo(Errno.EBADF));
        },
        [Fop.Fsyncdir] = async c =>
        {
            var dir = new FileHandle(Gfid.Root, OpenFlags.Directory, isDirectory: true);
            await c.OpendirAsync(Ctx(), dir);
            Assert.That((await c.FsyncdirAsync(Ctx(), dir, false)).Ok, Is.True);
        },
        [Fop.Lk] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            var lk = new Brickfs.Translators.Core.FileLock { Type = LockType.Write, Start = 10, End = 19, Pid = 7, Owner = 0xABCDEF, Kind = LockKind.Ofd, ClientId = "spoofed" };
            var r = (await c.LkAsync(Ctx(), fd, LockCommand.SetWait, lk)).Value;
            Assert.That(r with { Pid = 7, ClientId = "x" }, Is.EqualTo(lk with { ClientId = "x" }));
            Assert.That(r.Pid, Is.EqualTo(1007u));
            Assert.That(r.ClientId, Is.EqualTo("client-A"), "the brick scopes locks by the handshake's client id, not what the request claims");
        },
        [Fop.Access] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            await c.SetattrAsync(Ctx(), fd.Gfid, null, new Brickfs.Translators.Core.SetattrRequest { Valid = SetattrValid.Mode, Mode = 0x180 });
            Assert.That((await c.AccessAsync(Ctx(), fd.Gfid, 4)).Ok, Is.True);
            Assert.That((await c.AccessAsync(Ctx(uid: 1000), fd.Gfid, 4)).Error, Is.EqualTo(Errno.EACCES), "the caller's uid travels");
        },
        [Fop.Fallocate] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            Assert.That((await c.FallocateAsync(Ctx(), fd, 0, 0, 8192)).Ok, Is.True);
            Assert.That((await c.StatAsync(Ctx(), fd.Gfid, fd)).Value.Size, Is.EqualTo(8192));
            Assert.That((await c.FallocateAsync(Ctx(), fd, FallocateMode.CollapseRange, 0, 4096)).Error, Is.EqualTo(Errno.ENOTSUP));
        },
        [Fop.Lseek] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f", Hello);
            Assert.That((await c.LseekAsync(Ctx(), fd, 1, SeekWhence.Data)).Value, Is.EqualTo(1));
            Assert.That((await c.LseekAsync(Ctx(), fd, 1, SeekWhence.Hole)).Value, Is.EqualTo(5));
            Assert.That((await c.LseekAsync(Ctx(), fd, 9, SeekWhence.Data)).Error, Is.EqualTo(Errno.ENXIO));
        },
        [Fop.Xattrop] = async c =>
        {
            var fd = await Kit.CreateAsync(c, "f");
            var deltas = new Dictionary<string, long[]> { ["trusted.brickfs.pending.b1"] = [1, 0, -2] };
            Assert.That((await c.XattropAsync(Ctx(), fd.Gfid, null, deltas)).Value["trusted.brickfs.pending.b1"], Is.EqualTo(new long[] { 1, 0, -2 }));
            Assert.That((await c.XattropAsync(Ctx(), fd.Gfid, fd, deltas)).Value["trusted.brickfs.pending.b1"], Is.EqualTo(new long[] { 2, 0, -4 }));
            var looked = (await c.LookupAsync(new FopContext { XattrRequest = ["trusted.brickfs.pending.b1"] }, Gfid.Root, "f")).Value;
            Assert.That(XattrCounters.Decode(looked.Xattrs!["trusted.brickfs.pending.b1"]), Is.EqualTo(new long[] { 2, 0, -4 }),
                "xattrs asked for with a lookup come back with its attributes");
            Assert.That((await c.LookupAsync(Ctx(), Gfid.Root, "f")).Value.Xattrs, Is.Null);
        },
        [Fop.Inodelk] = async c =>
        {
            var g = new Gfid(0, 0x17);
            var lk = new Brickfs.Translators.Core.FileLock { Type = LockType.Write, Start = 100, End = 199, Pid = 3, Owner = 42, ClientId = "spoofed" };
            var r = (await c.InodelkAsync(Ctx(), "replicate", g, LockCommand.SetWait, lk)).Value;
            Assert.That(r.Pid, Is.EqualTo(3u + 9), "the domain travels");
            Assert.That(r.Start, Is.EqualTo(100 + 0x17), "the GFID travels");
            Assert.That((r.End, r.Owner, r.Type), Is.EqualTo((199L, 42UL, LockType.Write)));
            Assert.That(r.ClientId, Is.EqualTo("client-A"));
        },
        [Fop.Entrylk] = async c =>
        {
            Assert.That((await c.EntrylkAsync(Ctx(), "dom", Gfid.Root, "busy", LockCommand.Set, LockType.Write)).Error, Is.EqualTo(Errno.EAGAIN));
            Assert.That((await c.EntrylkAsync(Ctx(), "dom", Gfid.Root, "free", LockCommand.Set, LockType.Write)).Ok, Is.True);
            Assert.That((await c.EntrylkAsync(Ctx(), "dom", Gfid.Root, null, LockCommand.Set, LockType.Write)).Error, Is.EqualTo(Errno.ENOENT),
                "a null name (the whole directory) stays null");
        },
    };
}
