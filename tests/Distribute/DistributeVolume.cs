using System.Text;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Distribute;

/// <summary>
/// A distribute volume over in-memory bricks for tests, with direct access to each brick so
/// tests can check where entries physically are.
/// </summary>
public sealed class DistributeVolume : IAsyncDisposable
{
    public static readonly FopContext Root = FopContext.Internal();

    private readonly TranslatorGraph? _graph;

    private DistributeVolume(TranslatorGraph? graph, DistributeTranslator top, IReadOnlyList<Translator> bricks)
    {
        _graph = graph;
        Dht = top;
        Bricks = bricks;
    }

    public DistributeTranslator Dht { get; }

    /// <summary>The children of distribute, in order (memory bricks, or error-gen over them).</summary>
    public IReadOnlyList<Translator> Bricks { get; }

    /// <summary>A volfile: <c>brick-i</c> storage/memory children, optionally each behind debug/error-gen <c>gen-i</c>.</summary>
    public static string Volfile(int bricks, bool errorGen = false, IReadOnlyList<string>? capacities = null, string dhtOptions = "", bool locks = false)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < bricks; i++)
        {
            sb.AppendLine($"volume {(locks ? "mem" : "brick")}-{i}\n    type storage/memory\n    option capacity {capacities?[i] ?? "1GB"}\nend-volume");
            if (locks) sb.AppendLine($"volume brick-{i}\n    type features/locks\n    subvolumes mem-{i}\nend-volume");
            if (errorGen) sb.AppendLine($"volume gen-{i}\n    type debug/error-gen\n    option enable lookup\n    subvolumes brick-{i}\nend-volume");
        }
        string children = string.Join(' ', Enumerable.Range(0, bricks).Select(i => errorGen ? $"gen-{i}" : $"brick-{i}"));
        sb.AppendLine($"volume dht\n    type cluster/distribute\n{dhtOptions}    subvolumes {children}\nend-volume");
        return sb.ToString();
    }

    /// <param name="capacities">each brick's size as statfs reports it (default 1GB each: even layouts).</param>
    /// <param name="dhtOptions">option lines for cluster/distribute.</param>
    /// <param name="locks">features/locks over each memory brick (inode locks: the migration guard).</param>
    public static async Task<DistributeVolume> StartAsync(int bricks, bool errorGen = false, IReadOnlyList<string>? capacities = null, string dhtOptions = "",
        bool locks = false)
    {
        var graph = GraphBuilder.BuildText(Volfile(bricks, errorGen, capacities, dhtOptions, locks));
        await graph.InitAsync(CancellationToken.None);
        var top = (DistributeTranslator)graph.Top;
        if (errorGen)
        {
            foreach (var gen in top.Children.OfType<Brickfs.Translators.Debug.ErrorGenTranslator>()) gen.Active = false;
        }
        return new DistributeVolume(graph, top, top.Children);
    }

    /// <summary>
    /// A new distribute translator (fresh caches, as a client mounting after add-brick) over the
    /// same bricks plus <paramref name="added"/> new empty memory bricks.
    /// </summary>
    public DistributeVolume Grow(int added)
    {
        var bricks = Bricks.ToList();
        for (int i = 0; i < added; i++)
        {
            var b = new MemoryStorageTranslator { Name = $"brick-{bricks.Count}", TypeName = "storage/memory" };
            bricks.Add(b);
        }
        var dht = new DistributeTranslator { Name = "dht", TypeName = "cluster/distribute" };
        dht.Attach([.. bricks]);
        return new DistributeVolume(null, dht, bricks);
    }

    /// <summary>A new distribute translator over the same bricks (another client, empty caches).</summary>
    public DistributeVolume Remount() => Grow(0);

    public ValueTask DisposeAsync() => _graph?.DisposeAsync() ?? ValueTask.CompletedTask;

    // ---- helpers over the top ----------------------------------------------------------------

    public async Task<Iatt> MkdirAsync(Gfid parent, string name)
    {
        var r = await Dht.MkdirAsync(Root, parent, name, 0x1ED, Gfid.NewRandom());
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"mkdir {name}");
        return r.Value;
    }

    public async Task<Iatt> CreateAsync(Gfid parent, string name, string content = "")
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        var r = await Dht.CreateAsync(Root, parent, name, 0x1A4, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"create {name}");
        if (content.Length > 0)
        {
            var w = await Dht.WriteAsync(Root, fd, 0, Encoding.UTF8.GetBytes(content));
            Assert.That(w.Error, Is.EqualTo(Errno.None));
        }
        Assert.That((await Dht.ReleaseAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        return r.Value;
    }

    public async Task<Iatt> LookupAsync(Gfid parent, string name)
    {
        var r = await Dht.LookupAsync(Root, parent, name);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"lookup {name}");
        return r.Value;
    }

    /// <summary>The whole content of a file, opened by GFID through distribute.</summary>
    public async Task<string> ReadAsync(Gfid gfid)
    {
        var fd = new FileHandle(gfid, OpenFlags.ReadOnly);
        Assert.That((await Dht.OpenAsync(Root, fd)).Error, Is.EqualTo(Errno.None), $"open {gfid}");
        var r = await Dht.ReadAsync(Root, fd, 0, 1 << 20);
        Assert.That(r.Error, Is.EqualTo(Errno.None));
        using var buf = r.Value;
        await Dht.ReleaseAsync(Root, fd);
        return Encoding.UTF8.GetString(buf.Span);
    }

    /// <summary>Every entry of a directory through distribute, read in batches of about <paramref name="sizeHint"/> bytes.</summary>
    public async Task<List<DirEntry>> ListAsync(Gfid dir, int sizeHint = 256, bool plus = false)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly, isDirectory: true);
        Assert.That((await Dht.OpendirAsync(Root, fd)).Error, Is.EqualTo(Errno.None));
        var all = new List<DirEntry>();
        long cookie = 0;
        for (int round = 0; round < 100_000; round++)
        {
            var r = plus ? await Dht.ReaddirplusAsync(Root, fd, cookie, sizeHint) : await Dht.ReaddirAsync(Root, fd, cookie, sizeHint);
            Assert.That(r.Error, Is.EqualTo(Errno.None));
            if (r.Value.Count == 0) break;
            all.AddRange(r.Value);
            cookie = r.Value[^1].NextOffset;
        }
        await Dht.ReleasedirAsync(Root, fd);
        return all;
    }

    // ---- what the bricks hold ------------------------------------------------------------------

    /// <summary>What brick <paramref name="brick"/> holds under a name: null, or its attributes and link-to target.</summary>
    public async Task<(Iatt Attr, string? LinktoTarget)?> OnBrickAsync(int brick, Gfid parent, string name)
    {
        var ctx = new FopContext { XattrRequest = [DistributeTranslator.LinktoXattr] };
        var r = await Bricks[brick].LookupAsync(ctx, parent, name);
        if (!r.Ok) return null;
        string? target = r.Value.Xattrs!.TryGetValue(DistributeTranslator.LinktoXattr, out var v) ? Encoding.UTF8.GetString(v) : null;
        return (r.Value, target);
    }

    /// <summary>The bricks holding a real (non-link-to) entry of that name.</summary>
    public async Task<List<int>> DataBricksAsync(Gfid parent, string name)
    {
        var found = new List<int>();
        for (int i = 0; i < Bricks.Count; i++)
        {
            if (await OnBrickAsync(i, parent, name) is { LinktoTarget: null }) found.Add(i);
        }
        return found;
    }

    /// <summary>The brick a name hashes to under the layout the bricks' copies of <paramref name="dir"/> hold.</summary>
    public async Task<int> HashedBrickAsync(Gfid dir, string name)
    {
        var layout = await LayoutOnBricksAsync(dir);
        Assert.That(layout.IsComplete, Is.True, $"layout of {dir}: {layout}");
        return layout.ChildFor(name);
    }

    /// <summary>The layout as stored in the bricks' xattrs (not the translator's cache).</summary>
    public Task<DirLayout> LayoutOnBricksAsync(Gfid dir) => LayoutOnBricksAsync(Bricks, dir);

    /// <summary>The layout of <paramref name="dir"/> as stored in the xattrs of <paramref name="bricks"/>.</summary>
    public static async Task<DirLayout> LayoutOnBricksAsync(IReadOnlyList<Translator> bricks, Gfid dir)
    {
        var ranges = new DirLayout.Range?[bricks.Count];
        uint commit = 0;
        for (int i = 0; i < bricks.Count; i++)
        {
            var x = await bricks[i].GetxattrAsync(Root, dir, DistributeTranslator.LayoutXattr);
            if (!x.Ok) continue;
            Assert.That(DirLayout.TryDecodeEntry(x.Value, out uint c, out var range), Is.True);
            ranges[i] = range;
            commit = Math.Max(commit, c);
        }
        return new DirLayout(commit, ranges);
    }
}
