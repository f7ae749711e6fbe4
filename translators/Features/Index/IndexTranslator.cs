using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Storage;

namespace Brickfs.Translators.Features.Index;

/// <summary>
/// features/index: the brick's list of inodes with pending changes, so self-heal visits only
/// those instead of crawling the brick. It watches <see cref="Translator.XattropAsync"/> on the
/// replicate translator's pending counters (<see cref="PendingPrefix"/>): when a counter of an
/// inode becomes non-zero the GFID enters the index, when every counter in an xattrop's answer
/// is zero it leaves. Every other fop passes through.
/// </summary>
/// <remarks>
/// Callers that change pending counters name every pending key of their replica set in each
/// xattrop (zero deltas for the ones they do not change), so the answer shows all counters of
/// the inode; cluster/replicate does. The index is a hint: the counters themselves are the
/// truth, and a full crawl finds anything the index lost. Each GFID is also an empty file in
/// the index directory, so the index survives a brick restart: <c>index-directory</c> when set,
/// else <c>&lt;export&gt;/.brickfs/indices/xattrop</c> when the storage below (through
/// single-child translators) is storage/posix. Over other storage (storage/memory, which does
/// not survive a restart either) the index lives in memory only. The files are made directly in
/// the brick's hidden directory, not through fops: they are a brick-local hint that needs no
/// GFID, index link or checksum, and storage/posix never shows <c>.brickfs</c> to clients.
/// Xattrops of one inode are serialised around the child call, so the index never lags behind
/// the counters' last change.
/// <para>Self-heal runs on a client graph, so the list travels over the existing wire fops:
/// a getxattr of <see cref="PendingListXattr"/> on the root answers it (see
/// <see cref="GetxattrAsync"/>); no other fop sees it and listxattr does not name it.</para>
/// </remarks>
public sealed class IndexTranslator : Translator
{
    public const string PendingPrefix = "trusted.brickfs.pending.";

    /// <summary>
    /// Virtual xattr of the root: the pending GFIDs, 16 bytes each (<see cref="Gfid.WriteBytes"/>),
    /// ascending, at most <see cref="PendingPageEntries"/> per answer. The name alone gives the
    /// first page; the name + "." + a GFID gives the GFIDs after that one. An empty answer ends
    /// the list. Paging by GFID rather than by position keeps the pages consistent while the
    /// index changes between them: a GFID added behind the cursor waits for the next listing.
    /// </summary>
    public const string PendingListXattr = "trusted.brickfs.index.pending";

    public const int PendingPageEntries = 4096;

    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("index-directory", OptionType.Path, null, "directory keeping one empty file per pending GFID; unset = <export>/.brickfs/indices/xattrop over storage/posix, memory only otherwise"),
    ];

    public static TranslatorType Type { get; } = new("features/index", OptionSpecs, 1, 1,
        o => new IndexTranslator(o), "lists inodes with pending replica changes for self-heal");

    private const int StripeCount = 64;

    /// <summary>Where the index lives below a storage/posix export.</summary>
    public const string PosixIndexPath = ".brickfs/indices/xattrop";

    private string? _directory;
    private readonly ConcurrentDictionary<Gfid, byte> _pending = new();
    private readonly SemaphoreSlim[] _stripes;

    public IndexTranslator(TranslatorOptions options)
    {
        _directory = options.GetRaw("index-directory");
        _stripes = new SemaphoreSlim[StripeCount];
        for (int i = 0; i < StripeCount; i++) _stripes[i] = new SemaphoreSlim(1, 1);
    }

    public IndexTranslator() : this(TranslatorOptions.From(OptionSpecs)) { }

    /// <summary>The directory holding the persistent index; null when the index is in memory only.</summary>
    public string? IndexDirectory => _directory;

    public override ValueTask InitAsync(CancellationToken cancellation)
    {
        if (_directory is null && Storage() is PosixTranslator posix)
        {
            // Below .brickfs (0711, root's): only the brick reads these, so 0700.
            var indices = Path.Combine(posix.Directory, Path.GetDirectoryName(PosixIndexPath)!);
            MakePrivateDirectory(indices);
            _directory = Path.Combine(posix.Directory, PosixIndexPath);
        }
        if (_directory is null) return ValueTask.CompletedTask;
        MakePrivateDirectory(_directory);
        foreach (var path in Directory.EnumerateFiles(_directory))
        {
            if (Gfid.TryParse(Path.GetFileName(path), out var gfid)) _pending.TryAdd(gfid, 0);
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>mkdir -p, 0700 for what it makes (the brick runs with umask 0, so the default would be 0777).</summary>
    private static void MakePrivateDirectory(string path)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(path);
        else Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>The storage translator at the bottom of this brick's chain of single-child translators.</summary>
    private Translator Storage()
    {
        Translator t = this;
        while (t.Children.Count == 1) t = t.Children[0];
        return t;
    }

    /// <summary>GFIDs of inodes that have (or had, at their last xattrop) a non-zero pending counter on this brick.</summary>
    public IReadOnlyList<Gfid> ListPending() => [.. _pending.Keys.OrderBy(g => g.Hi).ThenBy(g => g.Lo)];

    public bool IsPending(Gfid gfid) => _pending.ContainsKey(gfid);

    /// <summary>
    /// Answers <see cref="PendingListXattr"/> on the root (EPERM for a caller other than root, as
    /// trusted.* xattrs are); every other getxattr passes through.
    /// </summary>
    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (gfid != Gfid.Root || !name.StartsWith(PendingListXattr, StringComparison.Ordinal)) return Child.GetxattrAsync(ctx, gfid, name);
        Gfid after = Gfid.Null;
        if (name.Length > PendingListXattr.Length)
        {
            if (name[PendingListXattr.Length] != '.' || !Gfid.TryParse(name[(PendingListXattr.Length + 1)..], out after)) return Child.GetxattrAsync(ctx, gfid, name);
        }
        if (ctx.Uid != 0) return ValueTask.FromResult(FopResult<byte[]>.Fail(Errno.EPERM));
        var page = _pending.Keys
            .Where(g => g.Hi > after.Hi || (g.Hi == after.Hi && g.Lo > after.Lo))
            .OrderBy(g => g.Hi).ThenBy(g => g.Lo)
            .Take(PendingPageEntries)
            .ToList();
        var bytes = new byte[page.Count * Gfid.Size];
        for (int i = 0; i < page.Count; i++) page[i].WriteBytes(bytes.AsSpan(i * Gfid.Size));
        return ValueTask.FromResult(FopResult<byte[]>.Success(bytes));
    }

    /// <summary>Decodes one answer of <see cref="PendingListXattr"/>; null when its length is not a whole number of GFIDs.</summary>
    public static IReadOnlyList<Gfid>? DecodePendingPage(ReadOnlySpan<byte> value)
    {
        if (value.Length % Gfid.Size != 0) return null;
        var list = new Gfid[value.Length / Gfid.Size];
        for (int i = 0; i < list.Length; i++) list[i] = Gfid.FromBytes(value.Slice(i * Gfid.Size, Gfid.Size));
        return list;
    }

    public override async ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        if (!deltas.Keys.Any(k => k.StartsWith(PendingPrefix, StringComparison.Ordinal))) return await Child.XattropAsync(ctx, gfid, fd, deltas);
        var stripe = _stripes[(uint)gfid.GetHashCode() % StripeCount];
        try
        {
            await stripe.WaitAsync(ctx.Cancellation);
        }
        catch (OperationCanceledException)
        {
            return Errno.EINTR;
        }
        try
        {
            var r = await Child.XattropAsync(ctx, gfid, fd, deltas);
            if (r.Ok)
            {
                bool nonZero = r.Value.Any(p => p.Key.StartsWith(PendingPrefix, StringComparison.Ordinal) && p.Value.Any(v => v != 0));
                if (nonZero) Add(gfid);
                else Remove(gfid);
            }
            else if (r.Error == Errno.ESTALE)
            {
                Remove(gfid); // the inode is gone from this brick: nothing left to heal here
            }
            return r;
        }
        finally
        {
            stripe.Release();
        }
    }

    private void Add(Gfid gfid)
    {
        if (!_pending.TryAdd(gfid, 0) || _directory is null) return;
        using var _ = File.Create(Path.Combine(_directory, gfid.ToString()));
    }

    private void Remove(Gfid gfid)
    {
        if (!_pending.TryRemove(gfid, out _) || _directory is null) return;
        File.Delete(Path.Combine(_directory, gfid.ToString()));
    }

    public override ValueTask DisposeAsync()
    {
        foreach (var s in _stripes) s.Dispose();
        return base.DisposeAsync();
    }
}
