using System.Diagnostics;
using Brickfs.Tests.Protocol;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features;
using Brickfs.Translators.Protocol;
using Brickfs.Translators.Protocol.Wire;
using Gfid = Brickfs.Translators.Core.Gfid;
using Brickfs.Translators.Storage;
using Google.Protobuf;
using CoreFileLock = Brickfs.Translators.Core.FileLock;
using WireCaller = Brickfs.Translators.Protocol.Wire.Caller;

namespace Brickfs.Tests.Locks;

/// <summary>
/// A brick as brickd builds it for locking (protocol/server over features/locks over an
/// in-memory store) on a loopback TCP port, with a short lease. Clients reach it directly or
/// through a <see cref="FreezableProxy"/> that cuts them off with their TCP connection open.
/// </summary>
internal sealed class LeaseBrick : IAsyncDisposable
{
    public readonly CaptureWriter LogText = new();
    public readonly ProtocolLog Log;
    public readonly MemoryStorageTranslator Storage = Kit.Memory("b1-posix");
    public readonly LocksTranslator Locks;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly TimeSpan _lease;

    public ProtocolServerTranslator Server { get; private set; } = null!;

    private LeaseBrick(TimeSpan lease)
    {
        Log = new ProtocolLog(LogText);
        _lease = lease;
        Locks = new LocksTranslator { Name = "b1", TypeName = "features/locks" };
        Locks.Attach(Storage);
    }

    public int Port => Server.ListenEndPoint!.Port;

    public static async Task<LeaseBrick> StartAsync(TimeSpan lease)
    {
        var b = new LeaseBrick(lease);
        await b.StartServerAsync(0);
        return b;
    }

    /// <summary>A new protocol/server over the same lock table and store, on <paramref name="port"/>.</summary>
    public async Task StartServerAsync(int port)
    {
        Server = Kit.Server(Locks, Log, ("listen-host", "127.0.0.1"), ("listen-port", port.ToString()),
            ("lease-timeout", _lease.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        await Server.InitAsync(CancellationToken.None);
    }

    /// <summary>A client with a long ping-timeout, so only the lease decides what a silent link costs.</summary>
    public async Task<ProtocolClientTranslator> ClientAsync(string id, int? port = null)
    {
        var c = await Kit.TcpClientAsync(Log, port ?? Port, ("ping-timeout", "60"), ("client-id", id));
        _owned.Add(c);
        await Kit.Eventually(() => c.IsConnected, $"client {id} connected");
        return c;
    }

    public FreezableProxy Proxy()
    {
        var p = new FreezableProxy(Port);
        _owned.Add(p);
        return p;
    }

    public async ValueTask DisposeAsync()
    {
        // Proxies first: a client reconnecting through a frozen one would wait out its handshake.
        foreach (var p in _owned.OfType<FreezableProxy>()) await p.DisposeAsync();
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            if (_owned[i] is not FreezableProxy) await _owned[i].DisposeAsync();
        }
        await Server.DisposeAsync();
    }
}

/// <summary>
/// Leases, epochs and fencing (translators/Features/Locks/LEASES.md) over the real wire
/// protocol: a cut-off client loses its locks once its lease expires and waiters get them; a
/// client that cannot renew fences its locked files first; the brick refuses requests that rely
/// on the locks of another lease; files without locks are never fenced.
/// </summary>
[CancelAfter(30_000)]
public class LeaseTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(1);

    private static FopContext Ctx(ulong owner = 0) => new() { Uid = 0, Gid = 0, Pid = 7, LockOwner = owner };

    private static CoreFileLock WholeFile(LockType type, ulong owner) =>
        new() { Type = type, Start = 0, End = long.MaxValue, Owner = owner, Pid = 7, Kind = LockKind.Posix };

    private static async Task<FileHandle> OpenAsync(Translator client, Gfid gfid)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
        Assert.That((await client.OpenAsync(Ctx(), fd)).Error, Is.EqualTo(Errno.None));
        return fd;
    }

    private static async Task<FopResult<int>> WriteAsync(Translator client, FileHandle fd, string text) =>
        await client.WriteAsync(Ctx(), fd, 0, System.Text.Encoding.UTF8.GetBytes(text)).AsTask().WaitAsync(Kit.Deadline);

    [Test]
    public async Task ACutOffClientLosesItsLocksWhenItsLeaseExpiresAndTheWaiterGetsThem()
    {
        await using var brick = await LeaseBrick.StartAsync(Lease);
        var proxy = brick.Proxy();
        var a = await brick.ClientAsync("A", proxy.Port);
        var b = await brick.ClientAsync("B");
        var fdA = await Kit.CreateAsync(a, "db");
        var fdB = await OpenAsync(b, fdA.Gfid);
        Assert.That((await a.LkAsync(Ctx(1), fdA, LockCommand.Set, WholeFile(LockType.Write, 1))).Ok, Is.True);

        var waiting = b.LkAsync(Ctx(2), fdB, LockCommand.SetWait, WholeFile(LockType.Write, 2)).AsTask();
        await Kit.Eventually(() => brick.Locks.Snapshot(fdA.Gfid).PosixWaiters == 1, "B waits behind A's lock");
        var cut = Stopwatch.StartNew();
        proxy.Frozen = true;

        var granted = await waiting.WaitAsync(Kit.Deadline);
        cut.Stop();
        TestContext.Out.WriteLine($"cut-off to takeover: {cut.Elapsed.TotalMilliseconds:0} ms (lease {Lease.TotalMilliseconds:0} ms)");
        Assert.That(granted.Ok, Is.True, "B gets the lock once A's lease expired");
        Assert.That(cut.Elapsed, Is.GreaterThanOrEqualTo(Lease * 0.9), "A kept its lock for its whole lease");
        Assert.That(brick.LogText.ToString(), Does.Contain("lease expired"));
        Assert.That(brick.Locks.Snapshot(fdA.Gfid).Posix.Select(l => l.ClientId), Is.EqualTo(new[] { "B" }));
    }

    [Test]
    public async Task PingsRenewTheLeaseOfAnIdleClientThatHoldsALock()
    {
        await using var brick = await LeaseBrick.StartAsync(TimeSpan.FromMilliseconds(500));
        var a = await brick.ClientAsync("A");
        var b = await brick.ClientAsync("B");
        var fdA = await Kit.CreateAsync(a, "db");
        var fdB = await OpenAsync(b, fdA.Gfid);
        Assert.That((await a.LkAsync(Ctx(1), fdA, LockCommand.Set, WholeFile(LockType.Write, 1))).Ok, Is.True);

        await Task.Delay(TimeSpan.FromSeconds(2)); // four leases with nothing but pings from A

        Assert.That((await b.LkAsync(Ctx(2), fdB, LockCommand.Set, WholeFile(LockType.Write, 2))).Error, Is.EqualTo(Errno.EAGAIN));
        Assert.That(a.Connects, Is.EqualTo(1), "A's connection never lapsed");
        Assert.That((await WriteAsync(a, fdA, "still mine")).Ok, Is.True);
    }

    [Test]
    public async Task AClientThatCannotRenewGivesItsLeaseUpAndFailsWritesToLockedFilesWithEio()
    {
        await using var brick = await LeaseBrick.StartAsync(TimeSpan.FromSeconds(2));
        var proxy = brick.Proxy();
        var a = await brick.ClientAsync("A", proxy.Port);
        var locked = await Kit.CreateAsync(a, "db");
        var unlocked = await Kit.CreateAsync(a, "other");
        Assert.That((await a.LkAsync(Ctx(1), locked, LockCommand.Set, WholeFile(LockType.Write, 1))).Ok, Is.True);

        proxy.Frozen = true;
        await Kit.Eventually(() => a.LastError?.Contains("giving the lease up") == true,
            "A gave its lease up itself (not the brick, not ping-timeout)");
        Assert.That((await WriteAsync(a, locked, "late")).Error, Is.EqualTo(ProtocolClientTranslator.FencedErrno));

        proxy.Frozen = false;
        await Kit.Eventually(() => a.IsConnected && a.Connects >= 2, "A reconnected");
        Assert.That((await WriteAsync(a, locked, "late")).Error, Is.EqualTo(ProtocolClientTranslator.FencedErrno), "fenced until closed, even with the brick back");
        Assert.That((await a.LkAsync(Ctx(1), locked, LockCommand.Set, WholeFile(LockType.Write, 1))).Error, Is.EqualTo(ProtocolClientTranslator.FencedErrno));
        Assert.That((await a.LkAsync(Ctx(1), locked, LockCommand.Set, WholeFile(LockType.Unlock, 1))).Ok, Is.True, "nothing is held, so unlocking is done");
        Assert.That((await WriteAsync(a, unlocked, "fine")).Value, Is.EqualTo(4), "a file without locks is re-opened and works");

        Assert.That((await a.ReleaseAsync(Ctx(), locked)).Ok, Is.True);
        var reopened = await OpenAsync(a, locked.Gfid);
        Assert.That((await WriteAsync(a, reopened, "new")).Value, Is.EqualTo(3), "a new open of the file starts clean");
        Assert.That(a.LockedFiles, Is.Zero);
    }

    [Test]
    public async Task AFileWhoseLocksWereAllReleasedIsNotFencedByAReconnect()
    {
        await using var brick = await LeaseBrick.StartAsync(Lease);
        var a = await brick.ClientAsync("A");
        var fd = await Kit.CreateAsync(a, "db");
        Assert.That((await a.LkAsync(Ctx(1), fd, LockCommand.Set, WholeFile(LockType.Read, 1))).Ok, Is.True);
        Assert.That(a.LockedFiles, Is.EqualTo(1));
        Assert.That((await a.LkAsync(Ctx(1), fd, LockCommand.Set, WholeFile(LockType.Unlock, 1))).Ok, Is.True);
        Assert.That(a.LockedFiles, Is.Zero, "a whole-file unlock ends tracking");

        int port = brick.Port;
        await brick.Server.DisposeAsync();
        await Kit.Eventually(() => !a.IsConnected, "A saw the brick go");
        await brick.StartServerAsync(port);
        await Kit.Eventually(() => a.IsConnected, "A reconnected");

        Assert.That((await WriteAsync(a, fd, "idle db")).Value, Is.EqualTo(7));
    }

    [Test]
    public async Task AfterABrickRestartTheHolderOfALockIsFencedNeverSilentlyUnlocked()
    {
        await using var brick = await LeaseBrick.StartAsync(Lease);
        var a = await brick.ClientAsync("A");
        var b = await brick.ClientAsync("B");
        var fdA = await Kit.CreateAsync(a, "db");
        var fdB = await OpenAsync(b, fdA.Gfid);
        Assert.That((await a.LkAsync(Ctx(1), fdA, LockCommand.Set, WholeFile(LockType.Write, 1))).Ok, Is.True);

        int port = brick.Port;
        await brick.Server.DisposeAsync();
        await brick.StartServerAsync(port);
        await Kit.Eventually(() => a.IsConnected && a.Connects >= 2 && b.IsConnected && b.Connects >= 2, "both reconnected");

        Assert.That((await b.LkAsync(Ctx(2), fdB, LockCommand.Set, WholeFile(LockType.Write, 2))).Ok, Is.True,
            "the restarted brick holds no locks");
        Assert.That((await WriteAsync(a, fdA, "stale")).Error, Is.EqualTo(ProtocolClientTranslator.FencedErrno), "A's lock is gone, so its handle fails");
        Assert.That((await WriteAsync(b, fdB, "fresh")).Value, Is.EqualTo(5));
        Assert.That(brick.LogText.ToString(), Does.Contain("lost the lease"));
    }

    [Test]
    public async Task TheBrickRefusesARequestStampedWithAnotherLeaseEpochWithEstale()
    {
        await using var brick = await LeaseBrick.StartAsync(TimeSpan.FromSeconds(10));
        await using var peer = await RawPeer.ConnectAsync(brick.Port);
        await peer.HandshakeAsync(clientId: "raw");
        var hs = HandshakeReply.Parser.ParseFrom((await peer.ReadFrameAsync())!.Value.Message);
        Assert.That(hs.LeaseEpoch, Is.Not.Zero);
        Assert.That(hs.LeaseTimeoutMs, Is.EqualTo(10_000));

        var gfid = Gfid.NewRandom();
        await peer.SendAsync(RawPeer.Frame(FrameKind.Request, (int)Fop.Create, 1, new CreateRequest
        {
            Caller = new WireCaller(), Parent = Gfid.Root.ToWire(), Name = "f", Mode = 0x1A4, Gfid = gfid.ToWire(), Flags = OpenFlags.ReadWrite | OpenFlags.Create,
        }));
        var created = CreateReply.Parser.ParseFrom((await peer.ReadFrameAsync())!.Value.Message);
        Assert.That(created.Errno, Is.Zero);

        async Task<int> WriteStampedAsync(ulong id, ulong epoch)
        {
            await peer.SendAsync(RawPeer.Frame(FrameKind.Request, (int)Fop.Write, id,
                new WriteRequest { Caller = new WireCaller { LockEpoch = epoch }, Handle = created.Handle, Offset = 0 }, [1, 2, 3]));
            return WriteReply.Parser.ParseFrom((await peer.ReadFrameAsync())!.Value.Message).Errno;
        }

        Assert.That(await WriteStampedAsync(2, hs.LeaseEpoch - 1), Is.EqualTo((int)Errno.ESTALE), "an earlier lease's locks are gone");
        Assert.That(await WriteStampedAsync(3, hs.LeaseEpoch), Is.Zero, "this lease's epoch passes");
        Assert.That(await WriteStampedAsync(4, 0), Is.Zero, "a request that relies on no lock passes");
        Assert.That(brick.LogText.ToString(), Does.Contain("refused with ESTALE"));
    }

    [Test]
    public async Task EachConnectionGetsANewEpochAndASilentOneIsClosedAfterItsLease()
    {
        await using var brick = await LeaseBrick.StartAsync(TimeSpan.FromMilliseconds(500));
        var epochs = new List<ulong>();
        for (int i = 0; i < 2; i++)
        {
            await using var peer = await RawPeer.ConnectAsync(brick.Port);
            await peer.HandshakeAsync(clientId: "raw");
            epochs.Add(HandshakeReply.Parser.ParseFrom((await peer.ReadFrameAsync())!.Value.Message).LeaseEpoch);
            await peer.ExpectClosedAsync(); // sends nothing: its lease runs out
        }
        Assert.That(epochs[1], Is.GreaterThan(epochs[0]));
        Assert.That(brick.LogText.ToString(), Does.Contain("lease expired"));
    }
}
