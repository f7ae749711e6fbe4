using Brickfs.Tests.Support;
using System.Security.Cryptography;
using System.Text;
using Brickfs.Shd;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Features.Index;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Tests.Shd;

/// <summary>
/// A replicated volume over the real wire protocol on the in-memory transport: N brick graphs
/// (protocol/server → debug/error-gen ENOTCONN "b&lt;i&gt;" → features/locks → features/index →
/// storage/memory, as brickd stacks them, error-gen off until <see cref="Down"/>) and a client
/// graph (protocol/client per brick under cluster/replicate) that writes like a mount. The
/// self-heal daemon builds its own client graph from <see cref="ClientVolfile"/>, as the program
/// does, so everything it learns crosses the wire.
/// </summary>
internal sealed class ShdBench : IAsyncDisposable
{
    public const uint RegularMode = ModeBits.Regular | 0x1A4;

    private readonly List<TranslatorGraph> _extra = [];

    private ShdBench(TranslatorGraph[] bricks, TranslatorGraph mount, string clientVolfile, CaptureLog log)
    {
        Log = log;
        Bricks = bricks;
        Mount = mount;
        ClientVolfile = clientVolfile;
    }

    public TranslatorGraph[] Bricks { get; }
    public TranslatorGraph Mount { get; }
    public string ClientVolfile { get; }
    public int Count => Bricks.Length;
    public Translator Top => Mount.Top;
    public CaptureLog Log { get; }

    public static string ChildName(int i) => $"vol-client-{i}";

    public static async Task<ShdBench> StartAsync(int count, params string[] replicateOptions)
    {
        string host = $"shd-{Guid.NewGuid():N}";
        var log = new CaptureLog();
        var bricks = new TranslatorGraph[count];
        for (int i = 0; i < count; i++)
        {
            bricks[i] = GraphBuilder.BuildText(TestVolfiles.FaultableBrick(i, TestVolfiles.MemoryStorage) + $"""
                volume b{i}-server
                    type protocol/server
                    option transport-type memory
                    option listen-host {host}
                    option listen-port {24100 + i}
                    subvolumes b{i}
                end-volume
                """, $"brick{i}.vol");
            ((ErrorGenTranslator)bricks[i][$"b{i}"]).Active = false;
            foreach (var s in bricks[i].All.OfType<ProtocolServerTranslator>()) s.Log = log.Protocol;
            await bricks[i].InitAsync(CancellationToken.None);
        }
        var v = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            v.Append($"""
                volume {ChildName(i)}
                    type protocol/client
                    option transport-type memory
                    option remote-host {host}
                    option remote-port {24100 + i}
                    option remote-subvolume b{i}
                end-volume

                """);
        }
        v.Append("volume vol\n    type cluster/replicate\n");
        foreach (var o in replicateOptions) v.Append($"    option {o}\n");
        v.Append($"    subvolumes {string.Join(' ', Enumerable.Range(0, count).Select(ChildName))}\nend-volume\n");
        var mount = await ClientGraphAsync(v.ToString(), log);
        return new ShdBench(bricks, mount, v.ToString(), log);
    }

    private static async Task<TranslatorGraph> ClientGraphAsync(string volfile, CaptureLog log)
    {
        var g = GraphBuilder.BuildText(volfile, "client.vol");
        foreach (var c in g.All.OfType<ProtocolClientTranslator>()) c.Log = log.Protocol;
        await g.InitAsync(CancellationToken.None);
        return g;
    }

    /// <summary>A self-heal daemon over its own client graph (disposed with the bench).</summary>
    public async Task<SelfHealDaemon> DaemonAsync(int parallel = 4, Func<ReplicateTranslator, Gfid, CancellationToken, Task<HealResult>>? heal = null,
        TimeSpan? probe = null)
    {
        var g = await ClientGraphAsync(ClientVolfile, Log);
        _extra.Add(g);
        var replicas = SelfHealDaemon.FindReplicas(g);
        return heal is null
            ? new SelfHealDaemon(replicas, parallel, Log.Protocol) { ProbePeriod = probe ?? TimeSpan.FromSeconds(5) }
            : new SelfHealDaemon(replicas, parallel, Log.Protocol) { Heal = heal, ProbePeriod = probe ?? TimeSpan.FromSeconds(5) };
    }

    /// <summary>The client volfile in a temp file, for the program's --volfile.</summary>
    public string VolfileFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"brickfs-shd-{Guid.NewGuid():N}.vol");
        File.WriteAllText(path, ClientVolfile);
        return path;
    }

    public ErrorGenTranslator Fault(int i) => (ErrorGenTranslator)Bricks[i][$"b{i}"];
    public void Down(params int[] bricks) { foreach (var i in bricks) Fault(i).Active = true; }
    public void Up(params int[] bricks) { foreach (var i in bricks) Fault(i).Active = false; }

    public IndexTranslator Index(int i) => Bricks[i].Find<IndexTranslator>();

    /// <summary>The brick's storage, below its index: what it really holds, and a way to change it behind the index's back.</summary>
    public Translator Storage(int i) => Bricks[i][$"b{i}-store"];

    public static FopContext Ctx() => new() { Uid = 0, Gid = 0, Pid = 1, ClientId = "test-mount", LockOwner = 1 };

    // ---- through the mount ----

    public async Task<Gfid> WriteFileAsync(string name, string content, Gfid? parent = null)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await Top.CreateAsync(Ctx(), parent ?? Gfid.Root, name, 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"create {name}");
        Assert.That((await Top.WriteAsync(Ctx(), fd, 0, Encoding.ASCII.GetBytes(content))).Error, Is.EqualTo(Errno.None), $"write {name}");
        await Top.ReleaseAsync(Ctx(), fd);
        await SettleAsync();
        return fd.Gfid;
    }

    /// <summary>
    /// Ends the mount's eager batches (as its idle timer would a moment later), so the bricks'
    /// counters and indexes show only what the changes left behind.
    /// </summary>
    public Task SettleAsync() => Mount.Find<ReplicateTranslator>().FlushEagerAsync();

    public async Task OverwriteAsync(Gfid gfid, string content)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
        Assert.That((await Top.OpenAsync(Ctx(), fd)).Error, Is.EqualTo(Errno.None), "open");
        Assert.That((await Top.WriteAsync(Ctx(), fd, 0, Encoding.ASCII.GetBytes(content))).Error, Is.EqualTo(Errno.None), "write");
        await Top.ReleaseAsync(Ctx(), fd);
        await SettleAsync();
    }

    public async Task<FopResult<string>> ReadAsync(Gfid gfid)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadOnly);
        var o = await Top.OpenAsync(Ctx(), fd);
        if (!o.Ok) return o.Error;
        try
        {
            var r = await Top.ReadAsync(Ctx(), fd, 0, 1 << 16);
            if (!r.Ok) return r.Error;
            using var b = r.Value;
            return Encoding.ASCII.GetString(b.Span);
        }
        finally
        {
            await Top.ReleaseAsync(Ctx(), fd);
        }
    }

    public async Task<Gfid> MkdirAsync(string name, Gfid? parent = null)
    {
        var gfid = Gfid.NewRandom();
        Assert.That((await Top.MkdirAsync(Ctx(), parent ?? Gfid.Root, name, 0x1ED, gfid)).Error, Is.EqualTo(Errno.None), $"mkdir {name}");
        await SettleAsync();
        return gfid;
    }

    // ---- on the bricks ----

    /// <summary>
    /// Everything a brick holds, one line per entry in path order: path, GFID, mode, owner,
    /// size, content hash and user xattrs (not times: each brick stamps its own when the
    /// volume writes, so even copies that never missed a write differ there). Equal snapshots = identical copies.
    /// </summary>
    public async Task<string> SnapshotAsync(int brick)
    {
        var lines = new List<string>();
        await WalkAsync(Storage(brick), Gfid.Root, "", lines);
        lines.Sort(StringComparer.Ordinal);
        return string.Join('\n', lines);
    }

    private static async Task WalkAsync(Translator t, Gfid dir, string path, List<string> lines)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        Assert.That((await t.OpendirAsync(Ctx(), fd)).Error, Is.EqualTo(Errno.None), $"opendir {path}/");
        var entries = new List<DirEntry>();
        long offset = 0;
        while (true)
        {
            var page = await t.ReaddirplusAsync(Ctx(), fd, offset, 1 << 16);
            Assert.That(page.Error, Is.EqualTo(Errno.None));
            if (page.Value.Count == 0) break;
            entries.AddRange(page.Value.Where(e => e.Name is not ("." or "..")));
            offset = page.Value[^1].NextOffset;
        }
        await t.ReleasedirAsync(Ctx(), fd);
        foreach (var e in entries)
        {
            var a = e.Attr!;
            string p = $"{path}/{e.Name}";
            string content = "";
            if (a.IsRegular)
            {
                var f = new FileHandle(a.Gfid, OpenFlags.ReadOnly);
                await t.OpenAsync(Ctx(), f);
                var r = await t.ReadAsync(Ctx(), f, 0, (int)Math.Max(a.Size, 1));
                using (var b = r.Value) content = Convert.ToHexString(SHA256.HashData(b.Span))[..16];
                await t.ReleaseAsync(Ctx(), f);
            }
            var names = await t.ListxattrAsync(Ctx(), a.Gfid);
            var user = new List<string>();
            foreach (var n in names.Value.Where(n => !n.StartsWith("trusted.brickfs.", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            {
                user.Add($"{n}={Convert.ToHexString((await t.GetxattrAsync(Ctx(), a.Gfid, n)).Value)}");
            }
            lines.Add($"{p} {a.Gfid} {a.Mode:x} {a.Uid}:{a.Gid} {(a.IsDirectory ? 0 : a.Size)} {content} [{string.Join(",", user)}]");
            if (a.IsDirectory) await WalkAsync(t, a.Gfid, p, lines);
        }
    }

    public async Task AssertCopiesIdenticalAsync()
    {
        string first = await SnapshotAsync(0);
        for (int i = 1; i < Count; i++) Assert.That(await SnapshotAsync(i), Is.EqualTo(first), $"brick {i} differs from brick 0");
    }

    /// <summary>True when no pending counter of <paramref name="gfid"/> is non-zero on any brick.</summary>
    public async Task<bool> CountersZeroAsync(Gfid gfid)
    {
        for (int i = 0; i < Count; i++)
        {
            for (int k = 0; k < Count; k++)
            {
                var r = await Storage(i).GetxattrAsync(Ctx(), gfid, ReplicateTranslator.PendingPrefix + ChildName(k));
                if (r.Ok && XattrCounters.Decode(r.Value).Any(v => v != 0)) return false;
            }
        }
        return true;
    }

    public bool IndexesEmpty => Enumerable.Range(0, Count).All(i => Index(i).ListPending().Count == 0);

    public async ValueTask DisposeAsync()
    {
        foreach (var g in _extra) await g.DisposeAsync();
        await Mount.DisposeAsync();
        foreach (var b in Bricks) await b.DisposeAsync();
    }
}

/// <summary>The log the bench's protocol translators and daemons write to, kept for failure messages.</summary>
internal sealed class CaptureLog
{
    public readonly Brickfs.Tests.Protocol.CaptureWriter Text = new();
    public ProtocolLog Protocol { get; }
    public CaptureLog() => Protocol = new ProtocolLog(Text);
}
