using System.Collections.Concurrent;
using System.Diagnostics;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Protocol;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Protocol;

/// <summary>Throws from every stat: an exception in a fop must become EIO for that request only.</summary>
internal sealed class ThrowingStatTranslator : Translator
{
    public override ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd) =>
        throw new InvalidOperationException("deliberate failure in stat");
}

/// <summary>Answers every read with a data buffer it already gave back (a translator bug the server must survive).</summary>
internal sealed class ReleasedBufferReadTranslator : Translator
{
    public override ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        var released = DataBuffer.Rent(Math.Max(size, 1));
        released.Dispose();
        return ValueTask.FromResult<FopResult<DataBuffer>>(released);
    }
}

/// <summary>A brick (storage/memory) behind a protocol/server on a loopback TCP port.</summary>
internal sealed class TcpBrick : IAsyncDisposable
{
    public readonly CaptureWriter LogText = new();
    public readonly ProtocolLog Log;
    public readonly MemoryStorageTranslator Storage;
    public ProtocolServerTranslator Server { get; private set; } = null!;
    private readonly (string, string)[] _options;
    private readonly Translator _brick;

    private TcpBrick(MemoryStorageTranslator storage, Translator? between, (string, string)[] options)
    {
        Log = new ProtocolLog(LogText);
        Storage = storage;
        _options = options;
        between?.Attach(storage);
        _brick = between ?? storage;
    }

    public int Port => Server.ListenEndPoint!.Port;

    public static async Task<TcpBrick> StartAsync(params (string, string)[] options)
    {
        var b = new TcpBrick(Kit.Memory("b1"), null, options);
        await b.RestartServerAsync(0);
        return b;
    }

    /// <summary>A brick whose graph is <paramref name="between"/> (named b1) over storage/memory.</summary>
    public static async Task<TcpBrick> StartOverAsync(Translator between, params (string, string)[] options)
    {
        var b = new TcpBrick(Kit.Memory("b1-mem"), between, options);
        await b.RestartServerAsync(0);
        return b;
    }

    /// <summary>A new protocol/server over the same storage (its data survives), on <paramref name="port"/>.</summary>
    public async Task RestartServerAsync(int port)
    {
        Server = Kit.Server(_brick, Log, [("listen-host", "127.0.0.1"), ("listen-port", port.ToString()), .. _options]);
        await Server.InitAsync(CancellationToken.None);
    }

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

public class ProtocolBehaviourTests
{
    private static FopContext Ctx => Kit.Ctx();

    [Test]
    public async Task RepliesComeBackOutOfOrder()
    {
        var delay = new DelayGenTranslator(TranslatorOptions.From(DelayGenTranslator.OptionSpecs, ("enable", "stat"), ("delay-duration", "1000000")))
        { Name = "delay", TypeName = "debug/delay-gen" };
        await using var net = await MemoryNetwork.StartAsync(delay);
        var fd = await Kit.CreateAsync(net.Client, "f");

        var slow = net.Client.StatAsync(Ctx, fd.Gfid, null).AsTask();
        await Kit.Eventually(() => net.Saw(Fop.Stat), "the stat reached the brick");
        var fast = await net.Client.LookupAsync(Ctx, Gfid.Root, "f");

        Assert.That(fast.Value.Gfid, Is.EqualTo(fd.Gfid));
        Assert.That(slow.IsCompleted, Is.False, "the lookup sent after the stat was answered first");
        Assert.That((await slow.WaitAsync(Kit.Deadline)).Value.Gfid, Is.EqualTo(fd.Gfid));
    }

    [Test]
    public async Task AnExceptionInAFopAnswersEioAndTheConnectionCarriesOn()
    {
        await using var net = await MemoryNetwork.StartAsync(new ThrowingStatTranslator { Name = "thrower", TypeName = "test/throw" });
        var fd = await Kit.CreateAsync(net.Client, "f");
        Assert.That((await net.Client.StatAsync(Ctx, fd.Gfid, null)).Error, Is.EqualTo(Errno.EIO));
        Assert.That((await net.Client.LookupAsync(Ctx, Gfid.Root, "f")).Ok, Is.True);
        Assert.That(net.LogText.ToString(), Does.Contain("deliberate failure in stat"));
    }

    [Test]
    public async Task AReadAnsweredWithAReleasedBufferGetsEioInsteadOfNoAnswer()
    {
        await using var net = await MemoryNetwork.StartAsync(new ReleasedBufferReadTranslator { Name = "released", TypeName = "test/released" });
        var fd = await Kit.CreateAsync(net.Client, "f");
        var read = await net.Client.ReadAsync(Ctx, fd, 0, 4096).AsTask().WaitAsync(Kit.Deadline);
        Assert.That(read.Error, Is.EqualTo(Errno.EIO));
        Assert.That((await net.Client.LookupAsync(Ctx, Gfid.Root, "f")).Ok, Is.True, "the connection carries on");
        Assert.That(net.LogText.ToString(), Does.Contain("released data buffer"));
    }

    [Test]
    public void TheSharedEmptyBufferSurvivesBeingDisposedByEachHolder()
    {
        DataBuffer.Empty.Dispose();
        DataBuffer.Empty.Dispose();
        Assert.That(DataBuffer.Empty.Memory.Length, Is.Zero);
    }

    [TestCase("memory")]
    [TestCase("tcp")]
    public async Task OneMebibyteWritesAndReadsBackIdentical(string transport)
    {
        await using var tcp = transport == "tcp" ? await TcpBrick.StartAsync() : null;
        await using var mem = transport == "memory" ? await MemoryNetwork.StartAsync() : null;
        await using var client = tcp is not null ? await Kit.TcpClientAsync(tcp.Log, tcp.Port) : null;
        Translator c = client ?? mem!.Client;

        var data = new byte[1 << 20];
        new Random(7).NextBytes(data);
        var fd = await Kit.CreateAsync(c, "big");
        Assert.That((await c.WriteAsync(Ctx, fd, 0, data)).Value, Is.EqualTo(data.Length));

        using (var back = (await c.ReadAsync(Ctx, fd, 0, data.Length)).Value)
            Assert.That(back.Span.SequenceEqual(data), Is.True, "1 MiB read back byte-identical");
        using (var tail = (await c.ReadAsync(Ctx, fd, data.Length - 1000, data.Length)).Value)
            Assert.That(tail.Span.SequenceEqual(data.AsSpan(data.Length - 1000)), Is.True, "a read across EOF is short");

        // Many bulk requests in flight on one connection at once.
        var writes = Enumerable.Range(0, 8).Select(i => c.WriteAsync(Ctx, fd, i * 256 * 1024L, data.AsMemory(i * 1000, 256 * 1024)).AsTask());
        Assert.That((await Task.WhenAll(writes)).All(r => r.Value == 256 * 1024), Is.True);
        var reads = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => c.ReadAsync(Ctx, fd, i * 256 * 1024L, 256 * 1024).AsTask()));
        for (int i = 0; i < 8; i++)
        {
            using var r = reads[i].Value;
            Assert.That(r.Span.SequenceEqual(data.AsSpan(i * 1000, 256 * 1024)), Is.True, $"chunk {i}");
        }
    }

    [Test]
    public async Task AClientFailsWithEnotconnWithinPingTimeoutWhenTheLinkIsCut()
    {
        await using var brick = await TcpBrick.StartAsync();
        await using var proxy = new FreezableProxy(brick.Port);
        await using var client = await Kit.TcpClientAsync(brick.Log, proxy.Port, ("ping-timeout", "1"));
        var fd = await Kit.CreateAsync(client, "f", [1, 2, 3]);

        proxy.Frozen = true;
        var watch = Stopwatch.StartNew();
        var stat = await client.StatAsync(Ctx, fd.Gfid, fd).AsTask().WaitAsync(Kit.Deadline);
        watch.Stop();

        Assert.That(stat.Error, Is.EqualTo(Errno.ENOTCONN));
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1) + TimeSpan.FromSeconds(1)), "bounded by ping-timeout plus slack");
        Assert.That((await client.LookupAsync(Ctx, Gfid.Root, "f").AsTask().WaitAsync(Kit.Deadline)).Error, Is.EqualTo(Errno.ENOTCONN));
        Assert.That(client.LastError, Does.Contain("ping-timeout"));
    }

    [Test]
    public async Task AfterABrickRestartTheClientReconnectsAndOpenFilesKeepWorking()
    {
        await using var brick = await TcpBrick.StartAsync();
        int port = brick.Port;
        await using var client = await Kit.TcpClientAsync(brick.Log, port, ("ping-timeout", "2"));
        var fd = await Kit.CreateAsync(client, "f", "hello"u8.ToArray());
        var dir = new FileHandle(Gfid.Root, OpenFlags.Directory, isDirectory: true);
        Assert.That((await client.OpendirAsync(Ctx, dir)).Ok, Is.True);

        await brick.Server.DisposeAsync();
        await Kit.Eventually(() => !client.IsConnected, "the client noticed the brick went away");
        Assert.That((await client.ReadAsync(Ctx, fd, 0, 5)).Error, Is.EqualTo(Errno.ENOTCONN));

        await brick.RestartServerAsync(port);
        await Kit.Eventually(() => client.IsConnected && client.Connects == 2, "the client reconnected");

        using (var data = (await client.ReadAsync(Ctx, fd, 0, 100)).Value)
            Assert.That(data.Span.ToArray(), Is.EqualTo("hello"u8.ToArray()), "the fd opened before the restart reads");
        Assert.That((await client.WriteAsync(Ctx, fd, 5, " again"u8.ToArray())).Value, Is.EqualTo(6), "and writes");
        Assert.That((await client.ReaddirAsync(Ctx, dir, 0, 4096)).Value.Select(e => e.Name), Does.Contain("f"));
        Assert.That((await client.StatAsync(Ctx, fd.Gfid, null)).Value.Size, Is.EqualTo(11));
        Assert.That((await client.FlushAsync(Ctx, fd)).Ok, Is.True);
        // The creating open had O_CREAT (no O_EXCL here); the re-open must not have truncated.
        Assert.That((fd.Flags & OpenFlags.Create) != 0, Is.True);
    }

    [Test]
    public async Task TheClientAnnouncesALostConnectionBeforeReconnectingAndItsReturnOnceConnected()
    {
        await using var brick = await TcpBrick.StartAsync();
        int port = brick.Port;
        await using var client = await Kit.TcpClientAsync(brick.Log, port, ("ping-timeout", "2"));
        var fd = await Kit.CreateAsync(client, "f", "hello"u8.ToArray());
        var events = new ConcurrentQueue<string>();
        client.ConnectionLost += () => events.Enqueue(client.IsConnected ? "lost while connected" : "lost");
        client.ConnectionUp += () => events.Enqueue(client.IsConnected ? "up" : "up before connected");

        await brick.Server.DisposeAsync();
        await Kit.Eventually(() => !events.IsEmpty, "the loss is announced");
        await brick.RestartServerAsync(port);
        await Kit.Eventually(() => events.Count >= 2, "the return is announced");

        Assert.That(events, Is.EqualTo(new[] { "lost", "up" }));
        using var data = (await client.ReadAsync(Ctx, fd, 0, 100)).Value;
        Assert.That(data.Span.ToArray(), Is.EqualTo("hello"u8.ToArray()), "the file opened before is open again");
    }

    [Test]
    public async Task InitSucceedsWhileTheBrickIsDownAndConnectsWhenItComes()
    {
        int port = Kit.FreePort();
        var log = new ProtocolLog(new CaptureWriter());
        await using var client = await Kit.TcpClientAsync(log, port, ("ping-timeout", "1"));
        Assert.That(client.IsConnected, Is.False);
        Assert.That((await client.LookupAsync(Ctx, Gfid.Root, "x")).Error, Is.EqualTo(Errno.ENOTCONN));

        var storage = Kit.Memory("b1");
        await using var server = Kit.Server(storage, log, ("listen-host", "127.0.0.1"), ("listen-port", port.ToString()));
        await server.InitAsync(CancellationToken.None);
        await Kit.Eventually(() => client.IsConnected, "the client connected once the brick came up");
        Assert.That((await client.StatAsync(Ctx, Gfid.Root, null)).Value.IsDirectory, Is.True);
    }

    [Test]
    public async Task LatencyStatsLogEachFopsRoundTripsOnce()
    {
        await using var brick = await TcpBrick.StartAsync();
        var log = new CaptureWriter();
        var client = await Kit.TcpClientAsync(new ProtocolLog(log), brick.Port, ("latency-stats", "3600"));
        for (int n = 0; n < 3; n++) Assert.That((await client.StatAsync(Ctx, Gfid.Root, null)).Ok, Is.True);
        Assert.That((await client.LookupAsync(Ctx, Gfid.Root, "missing")).Error, Is.EqualTo(Errno.ENOENT));
        await client.DisposeAsync();

        var lines = log.ToString().Split('\n').Where(l => l.Contains(" latency ")).ToList();
        Assert.That(lines.Count(l => l.Contains(" latency Stat n=3 mean=")), Is.EqualTo(1), string.Join("\n", lines));
        Assert.That(lines.Count(l => l.Contains(" latency Lookup n=1 mean=")), Is.EqualTo(1), "failed calls count too");
        Assert.That(lines, Has.Count.EqualTo(2), "only fops that were called, each once");
    }

    [Test]
    public async Task DisconnectReleasesTheClientsHandlesAndNotifiesClientAwareTranslators()
    {
        var storage = Kit.Memory("b1-mem");
        var aware = new ClientAwareProbe { Name = "b1", TypeName = "test/aware" };
        aware.Attach(storage);
        var log = new ProtocolLog(new CaptureWriter());
        await using var server = Kit.Server(aware, log, ("listen-host", "127.0.0.1"), ("listen-port", "0"));
        await server.InitAsync(CancellationToken.None);
        var client = await Kit.TcpClientAsync(log, server.ListenEndPoint!.Port, ("client-id", "mount-7"));
        await Kit.CreateAsync(client, "f");
        await client.DisposeAsync();

        await Kit.Eventually(() => aware.Released.Contains("mount-7"), "ReleaseClient(mount-7) on the brick graph");
        Assert.That(aware.ReleasedFds, Is.EqualTo(1), "the open file was released on the brick");
    }
}

internal sealed class ClientAwareProbe : Translator, IClientAware
{
    public readonly System.Collections.Concurrent.ConcurrentBag<string> Released = [];
    public int ReleasedFds;

    public void ReleaseClient(string clientId) => Released.Add(clientId);

    public override ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        Interlocked.Increment(ref ReleasedFds);
        return base.ReleaseAsync(ctx, fd);
    }
}
