using Brickfs.Tests.Support;
using System.Text;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Features;
using Brickfs.Translators.Features.Index;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Replicate;

/// <summary>
/// cluster/replicate over N in-memory bricks b0..bN-1, each brick the graph
/// debug/error-gen (ENOTCONN, off until <see cref="Down"/>) → features/locks → features/index →
/// storage/memory, as a brick daemon stacks them. Brick-side helpers read below error-gen.
/// </summary>
internal sealed class ReplicaBench : IAsyncDisposable
{
    public const uint FileMode = 0x1A4; // 0644

    private ReplicaBench(TranslatorGraph graph, int count)
    {
        Graph = graph;
        Count = count;
    }

    public TranslatorGraph Graph { get; }
    public int Count { get; }
    public ReplicateTranslator Replicate => Graph.Find<ReplicateTranslator>();
    public Translator Top => Graph.Top;

    public static string Volfile(int count, params string[] options)
    {
        var v = new StringBuilder();
        for (int i = 0; i < count; i++) v.Append(TestVolfiles.FaultableBrick(i, TestVolfiles.MemoryStorage));
        v.Append("volume vol\n    type cluster/replicate\n");
        foreach (var o in options) v.Append($"    option {o}\n");
        v.Append($"    subvolumes {string.Join(' ', Enumerable.Range(0, count).Select(i => $"b{i}"))}\nend-volume\n");
        return v.ToString();
    }

    public static async Task<ReplicaBench> StartAsync(int count = 3, params string[] options)
    {
        var graph = GraphBuilder.BuildText(Volfile(count, options), "replicate-test.vol");
        await graph.InitAsync(CancellationToken.None);
        for (int i = 0; i < count; i++) ((ErrorGenTranslator)graph[$"b{i}"]).Active = false;
        return new ReplicaBench(graph, count);
    }

    public static FopContext Ctx(string client = "c1", ulong lockOwner = 1) =>
        new() { Uid = 0, Gid = 0, Pid = 1, ClientId = client, LockOwner = lockOwner };

    public ErrorGenTranslator Fault(int i) => (ErrorGenTranslator)Graph[$"b{i}"];
    public void Down(params int[] bricks) { foreach (var i in bricks) Fault(i).Active = true; }
    public void Up(params int[] bricks) { foreach (var i in bricks) Fault(i).Active = false; }

    /// <summary>
    /// Another client of these bricks (another mount): its own cluster/replicate, named like the
    /// volume's, over each brick's fault injector, or over <paramref name="between"/>(i) put on
    /// top of brick i's injector and named like it (a translator between that client and the brick).
    /// </summary>
    public async Task<ReplicateTranslator> SecondClientAsync(Func<int, Translator>? between = null, params (string, string)[] options)
    {
        var children = Enumerable.Range(0, Count).Select(i =>
        {
            if (between is null) return Fault(i);
            var t = between(i);
            t.Attach(Fault(i));
            t.Name = $"b{i}";
            return t;
        }).ToArray();
        var client = new ReplicateTranslator(TranslatorOptions.From(ReplicateTranslator.OptionSpecs, options));
        client.Attach(children);
        client.Name = "vol";
        await client.InitAsync(CancellationToken.None);
        return client;
    }

    /// <summary>The brick below its fault injector: what the brick really holds.</summary>
    public Translator Brick(int i) => Graph[$"b{i}-locks"];
    public LocksTranslator Locks(int i) => (LocksTranslator)Graph[$"b{i}-locks"];
    public IndexTranslator Index(int i) => (IndexTranslator)Graph[$"b{i}-index"];

    public static string Key(int child) => ReplicateTranslator.PendingPrefix + $"b{child}";

    // ---- through the volume ----

    public async Task<FileHandle> CreateAsync(string name, Gfid? parent = null)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await Top.CreateAsync(Ctx(), parent ?? Gfid.Root, name, FileMode, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"create {name}");
        return fd;
    }

    public async Task<FileHandle> OpenAsync(Gfid gfid, Translator? via = null)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
        var r = await (via ?? Top).OpenAsync(Ctx(), fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), "open");
        return fd;
    }

    public ValueTask<FopResult<int>> WriteAsync(FileHandle fd, long offset, string text) =>
        Top.WriteAsync(Ctx(), fd, offset, Encoding.ASCII.GetBytes(text));

    public async Task MustWriteAsync(FileHandle fd, long offset, string text)
    {
        var r = await WriteAsync(fd, offset, text);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"write '{text}'");
    }

    public static async Task<FopResult<string>> ReadTextAsync(Translator via, FileHandle fd, int size = 1 << 16)
    {
        var r = await via.ReadAsync(Ctx(), fd, 0, size);
        if (!r.Ok) return r.Error;
        using var b = r.Value;
        return Encoding.ASCII.GetString(b.Span);
    }

    public Task<FopResult<string>> ReadTextAsync(FileHandle fd) => ReadTextAsync(Top, fd);

    // ---- on one brick ----

    /// <summary>The whole content of a file on one brick, read beneath the fault injector.</summary>
    public async Task<byte[]> ContentAsync(int brick, Gfid gfid)
    {
        var b = Brick(brick);
        var st = await b.StatAsync(Ctx(), gfid, null);
        Assert.That(st.Error, Is.EqualTo(Errno.None), $"stat on b{brick}");
        var fd = new FileHandle(gfid, OpenFlags.ReadOnly);
        Assert.That((await b.OpenAsync(Ctx(), fd)).Ok, Is.True);
        try
        {
            var r = await b.ReadAsync(Ctx(), fd, 0, (int)st.Value.Size);
            using var buf = r.Value;
            return buf.Span.ToArray();
        }
        finally
        {
            await b.ReleaseAsync(Ctx(), fd);
        }
    }

    public async Task<string> TextAsync(int brick, Gfid gfid) => Encoding.ASCII.GetString(await ContentAsync(brick, gfid));

    /// <summary>
    /// Brick <paramref name="brick"/>'s pending counters against <paramref name="child"/>:
    /// [data, metadata, entry], as they stand once the client's eager batches have ended (see
    /// <see cref="RawPendingAsync"/> for the counters as they are now).
    /// </summary>
    public async Task<long[]> PendingAsync(int brick, Gfid gfid, int child)
    {
        await Replicate.FlushEagerAsync();
        return await RawPendingAsync(brick, gfid, child);
    }

    /// <summary>Brick <paramref name="brick"/>'s pending counters against <paramref name="child"/> right now, an eager batch's marks included.</summary>
    public async Task<long[]> RawPendingAsync(int brick, Gfid gfid, int child)
    {
        var r = await Brick(brick).GetxattrAsync(Ctx(), gfid, Key(child));
        if (r.Error == Errno.ENODATA) return [0, 0, 0];
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"pending xattr on b{brick}");
        var v = XattrCounters.Decode(r.Value);
        return [.. Enumerable.Range(0, 3).Select(t => t < v.Length ? v[t] : 0)];
    }

    /// <summary>True when every counter on every brick of <paramref name="gfid"/> is zero.</summary>
    public async Task<bool> AllCountersZeroAsync(Gfid gfid)
    {
        await Replicate.FlushEagerAsync();
        for (int i = 0; i < Count; i++)
        {
            for (int k = 0; k < Count; k++)
            {
                if ((await PendingAsync(i, gfid, k)).Any(v => v != 0)) return false;
            }
        }
        return true;
    }

    public async Task<FopResult<Iatt>> LookupOnAsync(int brick, Gfid parent, string name) => await Brick(brick).LookupAsync(Ctx(), parent, name);

    public async ValueTask DisposeAsync() => await Graph.DisposeAsync();
}
