using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Protocol;
using Fop = Brickfs.Translators.Core.Fop;
using Gfid = Brickfs.Translators.Core.Gfid;

namespace Brickfs.Tests.Protocol;

/// <summary>Holds every fsync on its thread (a synchronous wait, as a slow disk would) until the test opens the gate.</summary>
internal sealed class FsyncGateTranslator : Translator
{
    public readonly ManualResetEventSlim Entered = new();
    public readonly ManualResetEventSlim Gate = new();

    public override ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly)
    {
        Entered.Set();
        if (!Gate.Wait(Kit.Deadline * 2)) return ValueTask.FromResult(FopResult.Fail(Errno.ETIMEDOUT));
        return Child.FsyncAsync(ctx, fd, dataOnly);
    }
}

/// <summary>
/// The socket path's threading: each connection's frames are read by a thread of its own, quick
/// fops run on the brick's reader thread and replies continue callers on the client's reader
/// thread. These tests hold what that must not break: out-of-order replies over TCP, a brick
/// fop that blocks its thread, many requests in flight; and the flush a client answers itself.
/// </summary>
public class NetworkPathTests
{
    private static FopContext Ctx => Kit.Ctx();

    [Test]
    public async Task RepliesComeBackOutOfOrderOverTcp()
    {
        var delay = new DelayGenTranslator(TranslatorOptions.From(DelayGenTranslator.OptionSpecs, ("enable", "stat"), ("delay-duration", "1000000")))
        { Name = "b1", TypeName = "debug/delay-gen" };
        await using var brick = await TcpBrick.StartOverAsync(delay);
        await using var client = await Kit.TcpClientAsync(brick.Log, brick.Port);
        var fd = await Kit.CreateAsync(client, "f");

        // The stat runs on the brick's reader thread up to its (asynchronous) delay; the reader
        // must go on reading and answer the lookup behind it first.
        var slow = client.StatAsync(Ctx, fd.Gfid, null).AsTask();
        var fast = await client.LookupAsync(Ctx, Gfid.Root, "f").AsTask().WaitAsync(Kit.Deadline);
        Assert.That(fast.Value.Gfid, Is.EqualTo(fd.Gfid));
        Assert.That(slow.IsCompleted, Is.False, "the lookup sent after the stat was answered first");
        Assert.That((await slow.WaitAsync(Kit.Deadline)).Value.Gfid, Is.EqualTo(fd.Gfid));
    }

    [Test]
    public async Task ABrickFopThatBlocksItsThreadDoesNotHoldUpTheConnection()
    {
        var gate = new FsyncGateTranslator { Name = "b1", TypeName = "test/fsync-gate" };
        await using var brick = await TcpBrick.StartOverAsync(gate);
        await using var client = await Kit.TcpClientAsync(brick.Log, brick.Port);
        var fd = await Kit.CreateAsync(client, "f", "hello"u8.ToArray());
        try
        {
            var fsync = client.FsyncAsync(Ctx, fd, false).AsTask();
            Assert.That(gate.Entered.Wait(Kit.Deadline), Is.True, "the fsync reached the brick");

            using (var data = (await client.ReadAsync(Ctx, fd, 0, 5).AsTask().WaitAsync(Kit.Deadline)).Value)
                Assert.That(Encoding.ASCII.GetString(data.Span), Is.EqualTo("hello"), "a read behind the blocked fsync is answered");
            Assert.That((await client.LookupAsync(Ctx, Gfid.Root, "f").AsTask().WaitAsync(Kit.Deadline)).Ok, Is.True);
            Assert.That(fsync.IsCompleted, Is.False);

            gate.Gate.Set();
            Assert.That((await fsync.WaitAsync(Kit.Deadline)).Ok, Is.True);
        }
        finally
        {
            gate.Gate.Set();
        }
    }

    [Test]
    public async Task ManyRequestsInFlightOverTcpEachGetTheirOwnReply()
    {
        await using var brick = await TcpBrick.StartAsync();
        await using var client = await Kit.TcpClientAsync(brick.Log, brick.Port);
        const int files = 32;
        var fds = new FileHandle[files];
        for (int i = 0; i < files; i++) fds[i] = await Kit.CreateAsync(client, $"f{i}", Encoding.ASCII.GetBytes($"file {i} "));

        // Reads, writes and lookups of every file at once, several rounds: each answer must be its own.
        for (int round = 0; round < 5; round++)
        {
            var work = Enumerable.Range(0, files).Select(async i =>
            {
                var fd = fds[i];
                string tail = $"round {round}";
                Assert.That((await client.WriteAsync(Ctx, fd, 20, Encoding.ASCII.GetBytes(tail))).Value, Is.EqualTo(tail.Length));
                using (var data = (await client.ReadAsync(Ctx, fd, 0, 100)).Value)
                    Assert.That(Encoding.ASCII.GetString(data.Span).TrimEnd('\0'), Does.StartWith($"file {i} ").And.EndWith(tail), $"f{i}");
                Assert.That((await client.LookupAsync(Ctx, Gfid.Root, $"f{i}")).Value.Gfid, Is.EqualTo(fd.Gfid));
            });
            await Task.WhenAll(work).WaitAsync(Kit.Deadline);
        }
    }

    [Test]
    public async Task AFlushWithoutLocksIsAnsweredByTheClient()
    {
        await using var net = await MemoryNetwork.StartAsync();
        var fd = await Kit.CreateAsync(net.Client, "f");
        Assert.That((await net.Client.FlushAsync(Ctx, fd)).Ok, Is.True);
        Assert.That(net.Saw(Fop.Flush), Is.False, "no lock on the file: nothing for the brick to drop");

        // A flock (what .NET takes on every FileStream open) goes with the release, not at close.
        var flock = new FileLock { Type = LockType.Read, Start = 0, End = long.MaxValue, Pid = 42, Owner = 7, Kind = LockKind.Flock };
        Assert.That((await net.Client.LkAsync(Ctx, fd, LockCommand.Set, flock)).Ok, Is.True);
        Assert.That((await net.Client.FlushAsync(Ctx, fd)).Ok, Is.True);
        Assert.That(net.Saw(Fop.Flush), Is.False, "a flock alone leaves the brick nothing to drop at close");
        Assert.That((await net.Client.LkAsync(Ctx, fd, LockCommand.Set, flock with { Type = LockType.Unlock })).Ok, Is.True);

        var lk = new FileLock { Type = LockType.Read, Start = 0, End = 9, Pid = 42, Owner = 0, Kind = LockKind.Posix };
        Assert.That((await net.Client.LkAsync(Ctx, fd, LockCommand.Set, lk)).Ok, Is.True);
        Assert.That(net.Client.LockedFiles, Is.EqualTo(1));
        Assert.That((await net.Client.FlushAsync(Ctx, fd)).Ok, Is.True);
        Assert.That(net.Saw(Fop.Flush), Is.True, "with a lock held the flush goes to the brick, which drops it");
        Assert.That(net.Client.LockedFiles, Is.Zero, "the flush ended tracking of the caller's POSIX locks");

        int flushes = net.Recorder.Seen.Count(s => s.Fop == Fop.Flush);
        Assert.That((await net.Client.FlushAsync(Ctx, fd)).Ok, Is.True);
        Assert.That(net.Recorder.Seen.Count(s => s.Fop == Fop.Flush), Is.EqualTo(flushes), "nothing held any more");

        Assert.That((await net.Client.ReleaseAsync(Ctx, fd)).Ok, Is.True);
        Assert.That((await net.Client.FlushAsync(Ctx, fd)).Error, Is.EqualTo(Errno.EBADF), "a released handle still fails");
    }
}
