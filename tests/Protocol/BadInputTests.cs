using System.Net.Sockets;
using Brickfs.Translators.Core;
using Brickfs.Translators.Protocol;
using Brickfs.Translators.Protocol.Wire;
using Google.Protobuf;
using Fop = Brickfs.Translators.Core.Fop;
using Gfid = Brickfs.Translators.Core.Gfid;

namespace Brickfs.Tests.Protocol;

/// <summary>
/// Bad input over real TCP: each kind closes that one connection with a logged reason, while a
/// well-behaved client on the same brick keeps working.
/// </summary>
public class BadInputTests
{
    private static FopContext Ctx => Kit.Ctx();

    private static byte[] LookupFrame(ulong id) =>
        RawPeer.Frame(FrameKind.Request, (int)Fop.Lookup, id, new LookupRequest { Caller = new Caller(), Parent = Gfid.Root.ToWireForTests(), Name = "f" });

    public static IEnumerable<TestCaseData> Cases()
    {
        yield return new TestCaseData("garbage", false, (Func<RawPeer, Task>)(p => p.SendAsync(Enumerable.Repeat((byte)0x41, 200).ToArray())), "bad frame magic");
        yield return new TestCaseData("truncated frame then close", true, (Func<RawPeer, Task>)(async p =>
        {
            var frame = LookupFrame(1);
            await p.SendAsync(frame[..(frame.Length - 3)]);
            p.Socket.Shutdown(SocketShutdown.Send);
        }), "closed mid-frame");
        yield return new TestCaseData("frame over the maximum", true, (Func<RawPeer, Task>)(p =>
        {
            var head = new byte[FrameHeader.Size];
            new FrameHeader(FrameKind.Request, (int)Fop.Write, 1, 10, 100 << 20).Write(head);
            return p.SendAsync(head);
        }), "over frame-max");
        yield return new TestCaseData("unknown fop", true, (Func<RawPeer, Task>)(p =>
            p.SendAsync(RawPeer.Frame(FrameKind.Request, 999, 1, new LookupRequest()))), "unknown fop 999");
        yield return new TestCaseData("malformed protobuf", true, (Func<RawPeer, Task>)(p =>
        {
            var frame = LookupFrame(1);
            frame.AsSpan(FrameHeader.Size).Fill(0xFF);
            return p.SendAsync(frame);
        }), "malformed Lookup");
        yield return new TestCaseData("request before handshake", false, (Func<RawPeer, Task>)(p => p.SendAsync(LookupFrame(1))), "first frame must be a handshake");
        yield return new TestCaseData("bulk on a fop without bulk", true, (Func<RawPeer, Task>)(p =>
            p.SendAsync(RawPeer.Frame(FrameKind.Request, (int)Fop.Lookup, 1, new LookupRequest { Name = "f" }, new byte[100]))), "carries 100 bulk bytes");
    }

    [TestCaseSource(nameof(Cases))]
    public async Task BadInputClosesOnlyThatConnection(string what, bool handshakeFirst, Func<RawPeer, Task> send, string logged)
    {
        await using var brick = await TcpBrick.StartAsync(("frame-max", "1MB"));
        await using var good = await Kit.TcpClientAsync(brick.Log, brick.Port);
        await Kit.CreateAsync(good, "f");

        await using var bad = await RawPeer.ConnectAsync(brick.Port);
        if (handshakeFirst)
        {
            await bad.HandshakeAsync();
            var reply = await bad.ReadFrameAsync();
            Assert.That(reply?.Header.Kind, Is.EqualTo(FrameKind.HandshakeReply));
        }
        await send(bad);
        await bad.ExpectClosedAsync();

        await Kit.Eventually(() => brick.LogText.ToString().Contains(logged), $"the log names the reason for {what} ('{logged}')");
        Assert.That((await good.LookupAsync(Ctx, Gfid.Root, "f")).Ok, Is.True, "the other client carries on");
        Assert.That(good.Connects, Is.EqualTo(1), "the other client never lost its connection");
    }

    [Test]
    public async Task AClientThatStopsReadingIsClosedWithoutBlockingOthers()
    {
        await using var brick = await TcpBrick.StartAsync(("write-timeout", "1"));
        await using var good = await Kit.TcpClientAsync(brick.Log, brick.Port);
        var file = await Kit.CreateAsync(good, "big", new byte[1 << 20]);

        await using var lazy = await RawPeer.ConnectAsync(brick.Port);
        await lazy.HandshakeAsync();
        Assert.That((await lazy.ReadFrameAsync())?.Header.Kind, Is.EqualTo(FrameKind.HandshakeReply));
        await lazy.SendAsync(RawPeer.Frame(FrameKind.Request, (int)Fop.Open, 1, new OpenRequest { Caller = new Caller(), Gfid = file.Gfid.ToWireForTests() }));
        var open = await lazy.ReadFrameAsync();
        ulong handle = OpenReply.Parser.ParseFrom(open!.Value.Message).Handle;
        Assert.That(handle, Is.Not.Zero);

        // 64 reads of 1 MiB, never read back: the server's replies back up.
        for (ulong i = 0; i < 64; i++)
            await lazy.SendAsync(RawPeer.Frame(FrameKind.Request, (int)Fop.Read, 100 + i, new ReadRequest { Caller = new Caller(), Handle = handle, Size = 1 << 20 }));

        using (var d = (await good.ReadAsync(Ctx, file, 0, 4096).AsTask().WaitAsync(Kit.Deadline)).Value)
            Assert.That(d.Length, Is.EqualTo(4096), "others are served while one client's replies are stuck");
        await Kit.Eventually(() => brick.LogText.ToString().Contains("stopped reading"), "the stuck connection is closed for not reading");
        await lazy.ExpectClosedAsync();
        Assert.That((await good.StatAsync(Ctx, file.Gfid, file)).Ok, Is.True);
    }
}

/// <summary>Handshake checks: brick name, auth.secret, auth.allow.</summary>
public class HandshakeTests
{
    [TestCase("127.0.0.1", "s3cret", "b1", 0, "")]
    [TestCase("127.0.0.*", "s3cret", "b1", 0, "")]
    [TestCase("127.0.0.1", "wrong", "b1", (int)Errno.EACCES, "wrong auth.secret")]
    [TestCase("127.0.0.1", "s3cret", "b2", (int)Errno.EACCES, "brick 'b2' is not served here")]
    [TestCase("10.9.9.*", "s3cret", "b1", (int)Errno.EACCES, "address 127.0.0.1 is not in auth.allow")]
    public async Task TheServerChecksTheHandshake(string allow, string secret, string brickName, int errno, string reason)
    {
        await using var brick = await TcpBrick.StartAsync(("auth.allow", allow), ("auth.secret", "s3cret"));
        await using var peer = await RawPeer.ConnectAsync(brick.Port);
        await peer.HandshakeAsync(brickName, secret);
        var frame = await peer.ReadFrameAsync();
        Assert.That(frame?.Header.Kind, Is.EqualTo(FrameKind.HandshakeReply));
        var reply = HandshakeReply.Parser.ParseFrom(frame!.Value.Message);
        Assert.That(reply.Errno, Is.EqualTo(errno));
        if (errno == 0) return;
        Assert.That(reply.Reason, Does.Contain(reason));
        await peer.ExpectClosedAsync();
        await Kit.Eventually(() => brick.LogText.ToString().Contains(reason), "the refusal is logged with its reason");
    }

    [Test]
    public async Task AClientWithTheWrongSecretStaysDisconnectedAndOneWithTheRightSecretWorks()
    {
        await using var brick = await TcpBrick.StartAsync(("auth.secret", "s3cret"));
        await using var wrong = await Kit.TcpClientAsync(brick.Log, brick.Port, ("auth.secret", "guess"), ("ping-timeout", "1"));
        await using var right = await Kit.TcpClientAsync(brick.Log, brick.Port, ("auth.secret", "s3cret"));

        Assert.That((await wrong.StatAsync(Kit.Ctx(), Gfid.Root, null)).Error, Is.EqualTo(Errno.ENOTCONN));
        Assert.That(wrong.LastError, Does.Contain("wrong auth.secret"));
        Assert.That((await right.StatAsync(Kit.Ctx(), Gfid.Root, null)).Value.IsDirectory, Is.True);
    }
}

internal static class WireTestExtensions
{
    public static Brickfs.Translators.Protocol.Wire.Gfid ToWireForTests(this Gfid g) => new() { Hi = g.Hi, Lo = g.Lo };
}
