using System.Collections.Concurrent;
using System.Text;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

/// <summary>
/// cluster/distribute: pools N children (bricks or replica sets) into one namespace, after
/// GlusterFS's DHT.
/// <list type="bullet">
/// <item>Every directory exists on every child with the same GFID. Each copy carries
/// <c>trusted.brickfs.layout</c>: the range of the 32-bit name-hash space that child owns
/// (<see cref="DirLayout"/>); the ranges cover the space exactly once. New directories split it
/// evenly; a lookup of a directory recreates it where missing and repairs a missing, hole-y or
/// overlapping layout. Layouts are cached per directory GFID and refreshed by every directory
/// lookup.</item>
/// <item>A file (any non-directory) lives on the child owning the hash of its name: the upper 32
/// bits of XXH3-64 of the UTF-8 name. When it sits elsewhere (renamed across children, hard
/// link, layout changed) its hashed child holds a link-to pointer: a file with the same GFID,
/// mode <c>---------T</c> and <c>trusted.brickfs.linkto</c> = the data child's volume name.
/// Lookup asks the hashed child, follows a link-to, and on a miss looks on every child
/// (lookup-unhashed), then creates the missing link-to so the next lookup takes one hop.</item>
/// <item>Rename of a file renames it on its data child and puts a link-to for the new name on
/// the new hashed child (atomically, through a temporary name renamed over the target); a
/// replaced target on a third child is unlinked afterwards. Directories rename on every
/// child. A hard link is made on the data child plus a link-to on the new name's hashed child.</item>
/// <item>Readdir walks children in order, skips link-to files, and lists directories (and "."
/// and "..") only from the first child; offsets encode (child, child cookie), see
/// <see cref="DirCookie"/>.</item>
/// <item>Fops on a GFID go to the child holding the file (cached GFID -> child, re-resolved on
/// every child after ESTALE/ENOENT); fops on a directory go to every child (setattr, xattrs)
/// or the first one holding it (reads); statfs sums the children.</item>
/// <item>Rebalance: <see cref="FixLayoutAsync"/> rewrites a directory's layout over all current
/// children; <see cref="MigrateFileAsync"/> moves a file to its hashed child, copying into the
/// link-to there (still a link-to while it fills) and then switching it to a real file.</item>
/// </list>
/// Consistency is per fop, not transactional: a crash between the steps of a rename, mkdir,
/// rmdir or migration leaves state that a later lookup repairs (missing directory, missing or
/// stale link-to). See DESIGN.md next to this file for the limits.
/// </summary>
public sealed partial class DistributeTranslator : Translator
{
    public const string LayoutXattr = "trusted.brickfs.layout";
    public const string LinktoXattr = "trusted.brickfs.linkto";

    /// <summary>
    /// The volume's commit, on the root directory of every child: a directory whose layout
    /// carries the same commit is complete (every name on its hashed child or behind a link-to
    /// there), so lookup-optimize may answer a miss on the hashed child as ENOENT. Rebalance
    /// changes it first and sets directories to it once it has made them complete. Outside the
    /// bricks' reserved <c>trusted.brickfs.</c> names (which a brick keeps to the cluster
    /// translators it knows), so this translator keeps callers from it itself: EPERM to set or
    /// remove, ENODATA to read, never listed.
    /// </summary>
    public const string CommitXattr = "trusted.brickfs-dht.commit";

    /// <summary>The volume commit of a volume nobody rebalanced: the commit mkdir and the first layouts carry.</summary>
    public const uint InitialCommit = 1;

    /// <summary>Xattrs of other Brickfs translators and of this one, never copied by migration.</summary>
    private const string InternalXattrPrefix = "trusted.brickfs.";

    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("lookup-unhashed", OptionType.Bool, "on",
            "on a miss on the hashed child, look for the name on every child (needed while layouts change; off trusts the hashed child)"),
        new("weighted-rebalance", OptionType.Bool, "on",
            "new and fixed layouts give each child a hash range proportional to its size (statfs); off splits evenly"),
        new("min-free-disk", OptionType.Int, "10",
            "percent of a child's space that must stay free: a new file whose hashed child has less goes to the child with the most free space, behind a link-to")
        { Min = 0, Max = 99 },
        new("decommissioned-bricks", OptionType.List, "",
            "children being drained by remove-brick: new and fixed layouts give them no range and no new file lands on them"),
        new("statfs-interval", OptionType.Seconds, "5",
            "how long the children's sizes and free space (for weights and min-free-disk) are reused before statfs is asked again"),
        new("lookup-optimize", OptionType.Bool, "on",
            "a miss on the hashed child of a directory whose layout carries the volume commit (complete since the last rebalance) is ENOENT without asking the other children"),
        new("layout-refresh", OptionType.Seconds, "1",
            "how long a directory's layout and the volume commit are reused before they are read again (in the background up to twice this; rebalance waits three times this before changing layouts)"),
        new("dir-stat-cache", OptionType.Seconds, "1",
            "how long each child's copy of a directory's attributes is reused for its stat: a stat asks only the children whose copy changed through this client or is older (another client's new entry on another child shows within this); 0 asks every child every time"),
    ];

    public static TranslatorType Type { get; } = new("cluster/distribute", OptionSpecs, 1, DirCookie.MaxChildren,
        o => new DistributeTranslator(o), "hashes names over its children through per-directory layouts");

    private readonly bool _lookupUnhashed;
    private readonly bool _weighted;
    private readonly int _minFreePercent;
    private readonly long _statfsIntervalMs;
    private readonly bool _lookupOptimize;
    private readonly long _layoutRefreshMs;
    private readonly long _dirStatCacheMs;
    private volatile HashSet<string> _decommissionedLive;

    /// <summary>The volume commit as last read from the children's root directories (with the root's layout).</summary>
    private uint _volumeCommit = InitialCommit;

    /// <summary>Child index -> its last statfs and when (Environment.TickCount64) it was taken.</summary>
    private readonly ConcurrentDictionary<int, (StatfsInfo Info, long At)> _space = new();

    /// <summary>Directory GFID -> its layout over this translator's children and when (Environment.TickCount64) it was read.</summary>
    private readonly ConcurrentDictionary<Gfid, (DirLayout Layout, long At)> _layouts = new();

    /// <summary>Non-directory GFID -> the child holding its data (a hint: verified by the child's answer).</summary>
    private readonly ConcurrentDictionary<Gfid, int> _dataChild = new();

    /// <summary>GFIDs known to be directories.</summary>
    private readonly ConcurrentDictionary<Gfid, byte> _dirs = new();

    /// <summary>GFID -> open-for-write count through this translator; migration leaves such files alone.</summary>
    private readonly ConcurrentDictionary<Gfid, int> _writers = new();

    private static readonly string[] DhtXattrs = [LinktoXattr, LayoutXattr];

    /// <summary>What a name's lookup or a listing needs to tell a link-to apart; a directory's layout is read by <see cref="LookupDirAsync"/>.</summary>
    private static readonly string[] LinktoOnly = [LinktoXattr];
    private static readonly FopContext Internal = FopContext.Internal();
    private static readonly FopContext InternalWithXattrs = new() { ClientId = "internal", XattrRequest = DhtXattrs };
    private static readonly FopContext InternalWithRootXattrs = new() { ClientId = "internal", XattrRequest = [LayoutXattr, CommitXattr] };

    public DistributeTranslator(TranslatorOptions options)
    {
        _lookupUnhashed = options.GetBool("lookup-unhashed");
        _weighted = options.GetBool("weighted-rebalance");
        _minFreePercent = (int)options.GetInt("min-free-disk");
        _decommissionedLive = [.. options.GetList("decommissioned-bricks")];
        _statfsIntervalMs = (long)options.GetSeconds("statfs-interval").TotalMilliseconds;
        _lookupOptimize = options.GetBool("lookup-optimize");
        _layoutRefreshMs = (long)options.GetSeconds("layout-refresh").TotalMilliseconds;
        _dirStatCacheMs = (long)options.GetSeconds("dir-stat-cache").TotalMilliseconds;
    }

    public DistributeTranslator() : this(TranslatorOptions.From(OptionSpecs)) { }

    // ---- live changes: volume set, add-brick, remove-brick start ------------------------------

    /// <summary>decommissioned-bricks changes live (remove-brick start and stop reach mounted clients).</summary>
    public override string? CanReconfigure(IReadOnlyCollection<string> changed) =>
        changed.All(k => k == "decommissioned-bricks") ? null : base.CanReconfigure(changed);

    public override void Reconfigure(TranslatorOptions options) => _decommissionedLive = [.. options.GetList("decommissioned-bricks")];

    /// <summary>
    /// add-brick: children may be appended (a brick or a replica set each), never reordered, so
    /// every child index held by open files, open directories, cached locations and readdir
    /// offsets keeps meaning the same child. Removing children needs a new graph (remount).
    /// </summary>
    public override string? CanChangeSubvolumes(IReadOnlyList<string> before, IReadOnlyList<string> after)
    {
        if (after.Count <= before.Count || !after.Take(before.Count).SequenceEqual(before, StringComparer.Ordinal))
            return $"{this} takes new subvolumes only appended to the ones it has (removing or reordering needs a remount)";
        if (after.Count > DirCookie.MaxChildren) return $"{this} takes at most {DirCookie.MaxChildren} subvolumes";
        return null;
    }

    /// <summary>
    /// Appends the new children. Cached layouts stay valid (a new child owns no names until
    /// fix-layout, which clients see within layout-refresh); sizes are read again for weights.
    /// Directories appear on the new children as lookups heal them and as mkdir makes them.
    /// </summary>
    public override ValueTask ChangeSubvolumesAsync(IReadOnlyList<Translator> children)
    {
        if (CanChangeSubvolumes([.. Children.Select(c => c.Name)], [.. children.Select(c => c.Name)]) is { } why)
            throw new ArgumentException(why, nameof(children));
        Children = [.. children];
        _space.Clear();
        _layouts.Clear();
        _dirCopies.Clear();
        return ValueTask.CompletedTask;
    }

    // ---- small helpers ---------------------------------------------------------------------

    private int IndexOfChild(string name)
    {
        for (int i = 0; i < Children.Count; i++)
        {
            if (Children[i].Name == name) return i;
        }
        return -1;
    }

    /// <summary>The caller's context also asking for the xattrs <paramref name="keys"/> distribute needs.</summary>
    private static FopContext WithDhtXattrs(FopContext ctx, string[] keys)
    {
        var c = new FopContext
        {
            Uid = ctx.Uid, Gid = ctx.Gid, Pid = ctx.Pid, Groups = ctx.Groups, LockOwner = ctx.LockOwner,
            ClientId = ctx.ClientId, RequestId = ctx.RequestId, Cancellation = ctx.Cancellation,
            XattrRequest = ctx.XattrRequest is null ? keys : [.. ctx.XattrRequest.Union(keys)],
        };
        if (ctx.HasExtra)
        {
            foreach (var (k, v) in ctx.Extra) c.Extra[k] = v;
        }
        return c;
    }

    /// <summary>Attributes as the caller asked for them: only the xattrs it requested.</summary>
    private static Iatt ForCaller(FopContext ctx, Iatt a)
    {
        if (a.Xattrs is null) return a;
        if (ctx.XattrRequest is not { } keys) return a with { Xattrs = null };
        if (a.Xattrs.Keys.All(keys.Contains)) return a;
        return a with { Xattrs = a.Xattrs.Where(kv => keys.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal) };
    }

    private static bool HasLinktoMode(Iatt a) => a.IsRegular && (a.Mode & ModeBits.PermMask) == ModeBits.Sticky;

    private static bool IsAbsent(Errno e) => e is Errno.ENOENT or Errno.ESTALE;

    /// <summary>
    /// The child a link-to points at: its index, -1 for a link-to naming an unknown child, or
    /// null when <paramref name="a"/> is not a link-to. Uses the xattrs returned with the
    /// attributes, and asks the child only when it did not return any.
    /// </summary>
    private async ValueTask<int?> LinktoTargetAsync(int child, Iatt a)
    {
        if (!HasLinktoMode(a)) return null;
        byte[]? value;
        if (a.Xattrs is { } x) value = x.TryGetValue(LinktoXattr, out var v) ? v : null;
        else
        {
            var g = await Children[child].GetxattrAsync(Internal, a.Gfid, LinktoXattr);
            value = g.Ok ? g.Value : null;
        }
        if (value is null) return null;
        return IndexOfChild(Encoding.UTF8.GetString(value));
    }

    private async ValueTask<byte[]?> LayoutXattrOfAsync(int child, Iatt a)
    {
        if (a.Xattrs is { } x) return x.TryGetValue(LayoutXattr, out var v) ? v : null;
        var g = await Children[child].GetxattrAsync(Internal, a.Gfid, LayoutXattr);
        return g.Ok ? g.Value : null;
    }

    private static async Task<T[]> AllAsync<T>(IEnumerable<ValueTask<T>> calls) =>
        await Task.WhenAll(calls.Select(c => c.AsTask()));

    private Task<FopResult<TR>[]> OnChildrenAsync<TR>(IEnumerable<int> children, Func<Translator, ValueTask<FopResult<TR>>> op) =>
        AllAsync(children.Select(i => op(Children[i])));

    private IEnumerable<int> AllChildren => Enumerable.Range(0, Children.Count);

    /// <summary>
    /// The attributes of a directory from its copies: the first copy's, with the newest times
    /// (an entry created on one child updates only that copy's mtime).
    /// </summary>
    private static Iatt MergeDirAttrs(IEnumerable<Iatt> copies)
    {
        Iatt? merged = null;
        foreach (var c in copies)
        {
            if (merged is null)
            {
                merged = c;
                continue;
            }
            merged = merged with
            {
                Atime = Max(merged.Atime, c.Atime), Mtime = Max(merged.Mtime, c.Mtime), Ctime = Max(merged.Ctime, c.Ctime),
            };
        }
        return merged ?? throw new InvalidOperationException("no copies to merge");

        static Timespec Max(Timespec a, Timespec b) => (a.Sec, a.Nsec).CompareTo((b.Sec, b.Nsec)) >= 0 ? a : b;
    }

    // ---- layouts ---------------------------------------------------------------------------

    /// <summary>The layout of directory <paramref name="dir"/>, from the cache or read (and repaired) from every child.</summary>
    /// <remarks>
    /// A layout older than layout-refresh is still used while one background read refreshes it,
    /// up to twice layout-refresh; older, callers wait for that read. One read per directory at a
    /// time: a busy directory's lookups do not each re-read it when it ages.
    /// </remarks>
    internal async ValueTask<FopResult<DirLayout>> GetLayoutAsync(Gfid dir)
    {
        if (_layouts.TryGetValue(dir, out var cached))
        {
            long age = Environment.TickCount64 - cached.At;
            if (age < _layoutRefreshMs) return cached.Layout;
            if (age < 2 * _layoutRefreshMs)
            {
                _ = RefreshLayoutAsync(dir);
                return cached.Layout;
            }
        }
        return await RefreshLayoutAsync(dir);
    }

    /// <summary>Directory GFID -> the read of its layout in flight, shared by every caller meanwhile.</summary>
    private readonly ConcurrentDictionary<Gfid, Task<FopResult<DirLayout>>> _refreshing = new();

    private Task<FopResult<DirLayout>> RefreshLayoutAsync(Gfid dir)
    {
        if (_refreshing.TryGetValue(dir, out var running)) return running;
        var done = new TaskCompletionSource<FopResult<DirLayout>>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_refreshing.TryAdd(dir, done.Task)) return _refreshing.TryGetValue(dir, out var other) ? other : ReadLayoutAsync(dir).AsTask();
        _ = ReadAsync();
        return done.Task;

        async Task ReadAsync()
        {
            try
            {
                var r = await ReadLayoutAsync(dir);
                _refreshing.TryRemove(dir, out _);
                done.SetResult(r);
            }
            catch (Exception e)
            {
                _refreshing.TryRemove(dir, out _);
                done.SetException(e);
            }
        }
    }

    /// <summary>Reads the layout of <paramref name="dir"/> from every child (and the volume commit with the root's) and repairs it.</summary>
    private async ValueTask<FopResult<DirLayout>> ReadLayoutAsync(Gfid dir)
    {
        var holders = await ReadHoldersAsync(dir);
        return holders.Ok ? await SettleLayoutAsync(dir, holders.Value) : holders.Error;
    }

    /// <summary>
    /// The children holding directory <paramref name="dir"/>, in child order, each with its
    /// layout xattr (null: none); the volume commit is read with the root's. ESTALE when no child
    /// holds it.
    /// </summary>
    private async ValueTask<FopResult<List<(int Child, byte[]? Raw)>>> ReadHoldersAsync(Gfid dir)
    {
        bool root = dir == Gfid.Root;
        var stats = await OnChildrenAsync(AllChildren, c => c.StatAsync(root ? InternalWithRootXattrs : InternalWithXattrs, dir, null));
        var holders = new List<(int Child, byte[]? Raw)>();
        Errno firstError = Errno.None;
        uint volumeCommit = 0;
        for (int i = 0; i < stats.Length; i++)
        {
            if (!stats[i].Ok)
            {
                if (firstError == Errno.None || IsAbsent(firstError)) firstError = stats[i].Error;
                continue;
            }
            if (!stats[i].Value.IsDirectory) return Errno.ENOTDIR;
            holders.Add((i, await LayoutXattrOfAsync(i, stats[i].Value)));
            if (root && stats[i].Value.Xattrs is { } x && x.TryGetValue(CommitXattr, out var v) && v.Length == 4)
                volumeCommit = Math.Max(volumeCommit, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(v));
        }
        if (holders.Count == 0) return firstError == Errno.None ? Errno.ESTALE : firstError;
        if (root) _volumeCommit = volumeCommit == 0 ? InitialCommit : volumeCommit;
        _dirs[dir] = 0;
        return holders;
    }

    private void CacheLayout(Gfid dir, DirLayout layout) => _layouts[dir] = (layout, Environment.TickCount64);

    /// <summary>
    /// Whether a miss on the hashed child of a directory with <paramref name="layout"/> means the
    /// name exists nowhere (lookup-optimize): the layout is complete and carries the volume commit,
    /// read no longer ago than layout-refresh (the root's layout is refreshed for it).
    /// </summary>
    private async ValueTask<bool> TrustsHashedAsync(DirLayout layout)
    {
        if (!_lookupOptimize || !layout.IsComplete) return false;
        var root = await GetLayoutAsync(Gfid.Root);
        return root.Ok && layout.Commit == _volumeCommit;
    }

    /// <summary>The volume commit as the children's root directories carry it now (read afresh).</summary>
    internal async ValueTask<uint> ReadVolumeCommitAsync()
    {
        _layouts.TryRemove(Gfid.Root, out _);
        await GetLayoutAsync(Gfid.Root);
        return _volumeCommit;
    }

    /// <summary>
    /// Sets the volume commit on every child's root directory (rebalance start): from then on no
    /// directory layout carries it, so no client trusts a hashed child alone until rebalance has
    /// made a directory complete again and set its layout to the new commit.
    /// </summary>
    internal async ValueTask<FopResult> SetVolumeCommitAsync(uint commit)
    {
        var value = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(value, commit);
        var written = await OnChildrenAsync(AllChildren, c => Plain(c.SetxattrAsync(Internal, Gfid.Root, CommitXattr, value, 0)));
        _volumeCommit = commit;
        DirChanged(Gfid.Root);
        return written.FirstOrDefault(w => !w.Ok, true) is { Ok: false } bad ? bad.Error : FopResult.Success;
    }

    /// <summary>
    /// The inodelk domain of the layout lock. Every writer of a directory's layout (fix-layout, a
    /// lookup's repair or filling in of empty entries, rebalance's mark) holds it exclusively on
    /// the first child while it reads the layout afresh and writes it. A layout read without it
    /// may be another writer's half written (fix-layout writes the children one by one, so its
    /// old and new entries, with different commits, are briefly mixed); a repair of that would
    /// overwrite the new layout with one of its own.
    /// </summary>
    public const string LayoutDomain = "brickfs.dht.layout";

    /// <summary>How long a layout writer waits for the layout lock; its holder keeps it for one read and one write of the layout.</summary>
    private static readonly TimeSpan LayoutLockWait = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Runs <paramref name="write"/> holding the layout lock of <paramref name="dir"/> on the first
    /// child (every writer uses it, as for other directory inode locks; its brick need not hold
    /// the directory). Without the lock where the child has no inode locks (in-memory bricks
    /// without features/locks); the lock's error when it is not granted within
    /// <see cref="LayoutLockWait"/> (EINTR) or the child is unreachable, so no layout is rewritten
    /// while the first child cannot be asked.
    /// </summary>
    private async ValueTask<FopResult<T>> UnderLayoutLockAsync<T>(Gfid dir, Func<ValueTask<FopResult<T>>> write)
    {
        const int child = 0;
        ulong owner = NewLockOwner();
        using var wait = new CancellationTokenSource(LayoutLockWait);
        var ctx = new FopContext { ClientId = Internal.ClientId, Cancellation = wait.Token };
        var held = await InodeLockAsync(ctx, LayoutDomain, child, dir, owner, exclusive: true, wait: true);
        if (!held.Ok) return held.Error;
        try
        {
            return await write();
        }
        finally
        {
            if (held.Value) await InodeUnlockAsync(Internal, LayoutDomain, child, dir, owner);
        }
    }

    /// <summary>
    /// The layout of a directory from the xattrs of the children holding it (in child order), and
    /// the holders without an entry.
    /// </summary>
    private (DirLayout Layout, List<int> Missing) AssembleLayout(IReadOnlyList<(int Child, byte[]? Raw)> holders)
    {
        var ranges = new DirLayout.Range?[Children.Count];
        var missing = new List<int>();
        uint commit = 0;
        foreach (var (child, raw) in holders)
        {
            if (raw is not null && DirLayout.TryDecodeEntry(raw, out uint c, out var range))
            {
                ranges[child] = range;
                commit = Math.Max(commit, c);
            }
            else missing.Add(child);
        }
        return (new DirLayout(commit, ranges), missing);
    }

    /// <summary>
    /// Builds the layout from the xattrs of the children holding the directory (in child order)
    /// and caches it. A complete layout with an entry on every holder is used as read. Anything
    /// that needs writing (a holder without an entry, an incomplete layout) is decided again under
    /// the layout lock (<see cref="LayoutDomain"/>) from a fresh read, so what was read half way
    /// through another writer's fix-layout is never repaired over it: a complete layout is kept
    /// (children without an entry get an explicit empty one); an incomplete one is replaced by a
    /// new layout over the holders with a higher commit. A complete layout whose
    /// empty entries could not be written is still served; an incomplete one that could not be
    /// repaired answers the layout lock's error.
    /// </summary>
    private async ValueTask<FopResult<DirLayout>> SettleLayoutAsync(Gfid dir, IReadOnlyList<(int Child, byte[]? Raw)> holders)
    {
        var (layout, missing) = AssembleLayout(holders);
        if (!layout.IsComplete || missing.Count > 0)
        {
            var repaired = await UnderLayoutLockAsync<DirLayout>(dir, async () =>
            {
                var fresh = await ReadHoldersAsync(dir);
                return fresh.Ok ? await RepairLayoutAsync(dir, fresh.Value) : fresh.Error;
            });
            if (repaired.Ok || !layout.IsComplete) return repaired;
        }
        CacheLayout(dir, layout);
        return layout;
    }

    /// <summary>The repair of <see cref="SettleLayoutAsync"/>, from a read made under the layout lock.</summary>
    private async ValueTask<FopResult<DirLayout>> RepairLayoutAsync(Gfid dir, IReadOnlyList<(int Child, byte[]? Raw)> holders)
    {
        var (layout, missing) = AssembleLayout(holders);
        if (layout.IsComplete)
        {
            if (missing.Count > 0)
            {
                await AllAsync(missing.Select(i => Children[i].SetxattrAsync(Internal, dir, LayoutXattr, DirLayout.EncodeEntry(layout.Commit, null), 0)));
                DirChanged(dir);
            }
        }
        else
        {
            layout = await NewLayoutAsync([.. holders.Select(h => h.Child)], layout.Commit + 1);
            await WriteLayoutAsync(dir, layout, holders.Select(h => h.Child));
        }
        CacheLayout(dir, layout);
        return layout;
    }

    /// <summary>
    /// A fresh layout over <paramref name="holders"/>: decommissioned children get no range
    /// (unless nothing else holds the directory); with weighted-rebalance each range is
    /// proportional to the child's size in MiB, else (or while a holder's size is unknown) even;
    /// given the <paramref name="old"/> layout, ranges are placed to overlap it as much as possible.
    /// </summary>
    private async ValueTask<DirLayout> NewLayoutAsync(IReadOnlyList<int> holders, uint commit, DirLayout? old = null)
    {
        var usable = holders.Where(h => !IsDecommissioned(h)).ToList();
        if (usable.Count == 0) usable = [.. holders];
        ulong[]? weights = null;
        if (_weighted)
        {
            var space = await ChildSpaceAsync(refresh: false);
            if (usable.All(h => space[h] is not null))
                weights = [.. space.Select(x => x is { } f ? Math.Max(1UL, (ulong)((UInt128)f.Blocks * f.FragmentSize >> 20)) : 0UL)];
        }
        return DirLayout.KeepingOverlap(Children.Count, usable, weights, old, commit);
    }

    private bool IsDecommissioned(int child)
    {
        var d = _decommissionedLive;
        return d.Count > 0 && d.Contains(Children[child].Name);
    }

    // ---- space: weights and min-free-disk --------------------------------------------------------

    /// <summary>Each child's statfs (null where it did not answer), reused for statfs-interval unless <paramref name="refresh"/>.</summary>
    private async ValueTask<StatfsInfo?[]> ChildSpaceAsync(bool refresh)
    {
        long now = Environment.TickCount64;
        var result = new StatfsInfo?[Children.Count];
        var stale = new List<int>();
        for (int i = 0; i < result.Length; i++)
        {
            if (!refresh && _space.TryGetValue(i, out var s) && now - s.At < _statfsIntervalMs) result[i] = s.Info;
            else stale.Add(i);
        }
        if (stale.Count == 0) return result;
        var answers = await OnChildrenAsync(stale, c => c.StatfsAsync(Internal, Gfid.Root));
        for (int k = 0; k < stale.Count; k++)
        {
            if (!answers[k].Ok) continue;
            result[stale[k]] = answers[k].Value;
            _space[stale[k]] = (answers[k].Value, now);
        }
        return result;
    }

    private bool BelowMinFree(StatfsInfo s) =>
        s.Blocks > 0 && (UInt128)s.BlocksAvailable * 100 < (UInt128)s.Blocks * (ulong)_minFreePercent;

    private static ulong AvailableBytes(StatfsInfo s) => (ulong)UInt128.Min((UInt128)s.BlocksAvailable * s.FragmentSize, ulong.MaxValue);

    /// <summary>
    /// Where a new file named for <paramref name="hashed"/> goes: the hashed child itself, unless
    /// it is decommissioned, below min-free-disk or <paramref name="full"/> (it just answered
    /// ENOSPC); then the child with the most available space that is none of those. The hashed
    /// child when no child qualifies (the create then fails there with ENOSPC, as on one brick).
    /// </summary>
    private async ValueTask<int> PlaceNewFileAsync(int hashed, int full = -1)
    {
        bool unusable(int i, StatfsInfo? s) => i == full || IsDecommissioned(i) || (s is { } x && BelowMinFree(x));
        if (_minFreePercent == 0 && full < 0 && !IsDecommissioned(hashed)) return hashed;
        var space = await ChildSpaceAsync(refresh: full >= 0);
        if (!unusable(hashed, space[hashed])) return hashed;
        int best = hashed;
        ulong bestFree = 0;
        for (int i = 0; i < space.Length; i++)
        {
            if (i == hashed || space[i] is not { } s || unusable(i, s)) continue;
            if (AvailableBytes(s) > bestFree) (best, bestFree) = (i, AvailableBytes(s));
        }
        return best;
    }

    /// <summary>
    /// Creates a new non-directory entry with <paramref name="op"/>: on its hashed child, or
    /// (<see cref="PlaceNewFileAsync"/>) on another child behind a link-to on the hashed child.
    /// The link-to goes first, without replacing anything, so the hashed child still decides
    /// which of two racing creators gets the name. A child answering ENOSPC sends the file to
    /// another child once.
    /// </summary>
    private async ValueTask<FopResult<(Iatt Attr, int Child)>> CreateNewAsync(Gfid parent, string name, Gfid gfid, int hashed,
        Func<Translator, ValueTask<FopResult<Iatt>>> op)
    {
        int data = await PlaceNewFileAsync(hashed);
        for (int attempt = 0; ; attempt++)
        {
            FopResult<Iatt> r;
            if (data == hashed) r = await op(Children[hashed]);
            else
            {
                var put = await PutLinktoAsync(hashed, parent, name, gfid, data, replace: false);
                if (!put.Ok) return put.Error;
                r = await op(Children[data]);
                if (!r.Ok) await RemoveLinktoAsync(hashed, parent, name, gfid);
            }
            DirChanged(parent, data);
            if (r.Ok)
            {
                _dataChild[r.Value.Gfid] = data;
                return (r.Value, data);
            }
            if (r.Error != Errno.ENOSPC || attempt > 0) return r.Error;
            int other = await PlaceNewFileAsync(hashed, full: data);
            if (other == data) return r.Error;
            data = other;
        }
    }

    private async ValueTask WriteLayoutAsync(Gfid dir, DirLayout layout, IEnumerable<int> children)
    {
        await AllAsync(children.Select(i => Children[i].SetxattrAsync(Internal, dir, LayoutXattr, layout.Encode(i), 0)));
        DirChanged(dir);
    }

    // ---- lookup ----------------------------------------------------------------------------

    /// <summary>Where a name was found: its attributes, the child with the data (-1 for a directory) and the hashed child.</summary>
    private readonly record struct Located(Iatt Attr, int DataChild, int Hashed, bool LinktoOnHashed)
    {
        public bool IsDir => Attr.IsDirectory;
    }

    public override async ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name)
    {
        var r = await LocateAsync(ctx, parent, name);
        return r.Ok ? ForCaller(ctx, r.Value.Attr) : r.Error;
    }

    /// <summary>Finds <paramref name="name"/> (hashed child, link-to, then every child), repairing link-tos and directories on the way.</summary>
    private async ValueTask<FopResult<Located>> LocateAsync(FopContext ctx, Gfid parent, string name)
    {
        var lr = await GetLayoutAsync(parent);
        if (!lr.Ok) return lr.Error;
        int hashed = lr.Value.ChildFor(name);
        if (hashed < 0) return Errno.EIO;
        var lctx = WithDhtXattrs(ctx, LinktoOnly);
        var r = await Children[hashed].LookupAsync(lctx, parent, name);
        if (r.Ok)
        {
            var a = r.Value;
            if (a.IsDirectory) return await LookupDirAsync(lctx, parent, name, (hashed, a));
            var target = await LinktoTargetAsync(hashed, a);
            if (target is null)
            {
                _dataChild[a.Gfid] = hashed;
                return new Located(a, hashed, hashed, false);
            }
            if (target >= 0 && target != hashed)
            {
                var t = await Children[target.Value].LookupAsync(lctx, parent, name);
                if (t.Ok && t.Value.Gfid == a.Gfid && !t.Value.IsDirectory && await LinktoTargetAsync(target.Value, t.Value) is null)
                {
                    _dataChild[a.Gfid] = target.Value;
                    return new Located(t.Value, target.Value, hashed, true);
                }
            }
            return await LookupEverywhereAsync(lctx, parent, name, hashed, a);
        }
        if (r.Error == Errno.ENOENT && await TrustsHashedAsync(lr.Value)) return Errno.ENOENT;
        if (IsAbsent(r.Error) && (_lookupUnhashed || r.Error == Errno.ESTALE)) return await LookupEverywhereAsync(lctx, parent, name, hashed, null);
        return r.Error;
    }

    /// <summary>
    /// The hashed child missed or held a broken link-to: ask every other child. A data file found
    /// elsewhere gets a link-to on the hashed child; a link-to whose file exists nowhere is removed.
    /// </summary>
    private async ValueTask<FopResult<Located>> LookupEverywhereAsync(FopContext lctx, Gfid parent, string name, int hashed, Iatt? linktoOnHashed)
    {
        var others = AllChildren.Where(i => i != hashed).ToList();
        var results = await OnChildrenAsync(others, c => c.LookupAsync(lctx, parent, name));
        Errno firstError = Errno.None;
        (int Child, Iatt Attr)? data = null, dir = null;
        for (int k = 0; k < others.Count; k++)
        {
            var r = results[k];
            if (!r.Ok)
            {
                if (!IsAbsent(r.Error) && firstError == Errno.None) firstError = r.Error;
                continue;
            }
            if (r.Value.IsDirectory) dir ??= (others[k], r.Value);
            else if (data is null && await LinktoTargetAsync(others[k], r.Value) is null) data = (others[k], r.Value);
        }
        if (dir is { } d) return await LookupDirAsync(lctx, parent, name, d);
        if (data is { } f)
        {
            _dataChild[f.Attr.Gfid] = f.Child;
            bool replace = linktoOnHashed is not null;
            var put = await PutLinktoAsync(hashed, parent, name, f.Attr.Gfid, f.Child, replace);
            return new Located(f.Attr, f.Child, hashed, put.Ok);
        }
        if (linktoOnHashed is not null)
        {
            // Stale: the file it pointed at is gone from every child (unlinked or never finished).
            await RemoveLinktoAsync(hashed, parent, name, linktoOnHashed.Gfid);
        }
        return firstError != Errno.None ? firstError : Errno.ENOENT;
    }

    /// <summary>
    /// A directory was found (first on <paramref name="seen"/>): look it up on every child,
    /// recreate it where it is missing, refresh and repair its layout, and merge its attributes.
    /// </summary>
    private async ValueTask<FopResult<Located>> LookupDirAsync(FopContext lctx, Gfid parent, string name, (int Child, Iatt Attr) seen)
    {
        lctx = WithDhtXattrs(lctx, DhtXattrs);
        var gfid = seen.Attr.Gfid;
        var results = await OnChildrenAsync(AllChildren, c => c.LookupAsync(lctx, parent, name));
        var holders = new List<(int Child, byte[]? Raw)>();
        var copies = new List<Iatt>();
        var heal = new List<int>();
        for (int i = 0; i < results.Length; i++)
        {
            var r = results[i];
            if (r.Ok && r.Value.IsDirectory && r.Value.Gfid == gfid)
            {
                holders.Add((i, await LayoutXattrOfAsync(i, r.Value)));
                copies.Add(r.Value);
            }
            else if (r.Error == Errno.ENOENT) heal.Add(i);
        }
        if (copies.Count == 0) return Errno.ESTALE; // removed meanwhile
        var model = copies[0];
        foreach (int i in heal)
        {
            if (await HealDirectoryAsync(i, parent, name, model)) holders.Add((i, null));
        }
        holders.Sort((a, b) => a.Child.CompareTo(b.Child));
        _dirs[gfid] = 0;
        await SettleLayoutAsync(gfid, holders);
        var lr = await GetLayoutAsync(parent);
        int hashed = lr.Ok ? lr.Value.ChildFor(name) : seen.Child;
        return new Located(MergeDirAttrs(copies), -1, hashed, false);
    }

    /// <summary>Recreates a directory on a child that lacks it, with the same GFID, mode, owner and times.</summary>
    private async ValueTask<bool> HealDirectoryAsync(int child, Gfid parent, string name, Iatt model)
    {
        var c = Children[child];
        var m = await c.MkdirAsync(Internal, parent, name, model.Mode & ModeBits.PermMask, model.Gfid);
        DirChanged(parent, child);
        if (!m.Ok) return m.Error == Errno.EEXIST && (await c.StatAsync(Internal, model.Gfid, null)).Ok;
        await c.SetattrAsync(Internal, model.Gfid, null, new SetattrRequest
        {
            Valid = SetattrValid.Uid | SetattrValid.Gid | SetattrValid.Atime | SetattrValid.Mtime,
            Uid = model.Uid, Gid = model.Gid, Atime = model.Atime, Mtime = model.Mtime,
        });
        await c.SetattrAsync(Internal, model.Gfid, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = model.Mode & ModeBits.PermMask });
        DirChanged(model.Gfid, child);
        return true;
    }

    // ---- link-to files ---------------------------------------------------------------------

    /// <summary>
    /// Makes <paramref name="name"/> on <paramref name="child"/> a link-to for <paramref name="gfid"/>
    /// pointing at <paramref name="target"/>. It is built under a temporary name and renamed into
    /// place, so readers see either the old entry or the complete link-to; with
    /// <paramref name="replace"/> false an existing entry wins (EEXIST).
    /// </summary>
    private async ValueTask<FopResult> PutLinktoAsync(int child, Gfid parent, string name, Gfid gfid, int target, bool replace)
    {
        var c = Children[child];
        string tmp = $".brickfs-linkto-{Gfid.NewRandom()}";
        var value = Encoding.UTF8.GetBytes(Children[target].Name);
        var m = await c.MknodAsync(Internal, parent, tmp, ModeBits.Regular | ModeBits.Sticky, 0, gfid);
        if (m.Error == Errno.EEXIST)
        {
            // The child already holds this GFID: another name's link-to (hard links). Share the inode.
            var l = await c.LinkAsync(Internal, gfid, parent, tmp);
            if (!l.Ok) return l.Error;
            if (!HasLinktoMode(l.Value))
            {
                await c.UnlinkAsync(Internal, parent, tmp);
                return Errno.EEXIST;
            }
        }
        else if (!m.Ok) return m.Error;
        var x = await c.SetxattrAsync(Internal, gfid, LinktoXattr, value, 0);
        var r = x.Ok ? await c.RenameAsync(Internal, parent, tmp, parent, name, replace ? RenameFlags.None : RenameFlags.NoReplace) : x;
        if (!r.Ok) await c.UnlinkAsync(Internal, parent, tmp);
        DirChanged(parent, child);
        return r;
    }

    /// <summary>Unlinks <paramref name="name"/> on <paramref name="child"/> if it is still a link-to of <paramref name="gfid"/>.</summary>
    private async ValueTask RemoveLinktoAsync(int child, Gfid parent, string name, Gfid gfid)
    {
        var c = Children[child];
        var r = await c.LookupAsync(InternalWithXattrs, parent, name);
        if (r.Ok && r.Value.Gfid == gfid && await LinktoTargetAsync(child, r.Value) is not null)
        {
            await c.UnlinkAsync(Internal, parent, name);
            DirChanged(parent, child);
        }
    }

    // ---- GFID -> child ---------------------------------------------------------------------

    /// <summary>Where a GFID lives: a directory (every child) or the child with a file's data.</summary>
    private readonly record struct Place(bool IsDir, int Child, bool FromCache);

    private async ValueTask<FopResult<Place>> ResolveAsync(Gfid gfid, bool useCache = true)
    {
        if (useCache)
        {
            if (_dirs.ContainsKey(gfid)) return new Place(true, -1, true);
            if (_dataChild.TryGetValue(gfid, out int c)) return new Place(false, c, true);
        }
        var stats = await OnChildrenAsync(AllChildren, ch => ch.StatAsync(InternalWithXattrs, gfid, null));
        Errno firstError = Errno.None;
        for (int i = 0; i < stats.Length; i++)
        {
            if (!stats[i].Ok)
            {
                if (!IsAbsent(stats[i].Error) && firstError == Errno.None) firstError = stats[i].Error;
                continue;
            }
            if (stats[i].Value.IsDirectory)
            {
                _dirs[gfid] = 0;
                return new Place(true, -1, false);
            }
        }
        for (int i = 0; i < stats.Length; i++)
        {
            if (stats[i].Ok && await LinktoTargetAsync(i, stats[i].Value) is null)
            {
                _dataChild[gfid] = i;
                return new Place(false, i, false);
            }
        }
        _dataChild.TryRemove(gfid, out _);
        return firstError != Errno.None ? firstError : Errno.ESTALE;
    }

    /// <summary>
    /// Runs a fop on the child holding a file's data; a cached location that the child denies
    /// (the file moved: rename, migration) is looked up on every child and the fop retried once.
    /// Directories go to <paramref name="onDir"/>.
    /// </summary>
    private async ValueTask<FopResult<T>> OnGfidAsync<T>(Gfid gfid, Func<Translator, ValueTask<FopResult<T>>> onFile, Func<ValueTask<FopResult<T>>> onDir)
    {
        var p = await ResolveAsync(gfid);
        if (!p.Ok) return p.Error;
        if (p.Value.IsDir) return await onDir();
        var r = await onFile(Children[p.Value.Child]);
        if (!p.Value.FromCache || !IsAbsent(r.Error)) return r;
        p = await ResolveAsync(gfid, useCache: false);
        if (!p.Ok) return p.Error;
        return p.Value.IsDir ? await onDir() : await onFile(Children[p.Value.Child]);
    }

    /// <summary>A fop on every child holding a directory: the first holder's answer, failing if every holder failed.</summary>
    private async ValueTask<FopResult<T>> OnDirAllAsync<T>(Func<Translator, ValueTask<FopResult<T>>> op)
    {
        var results = await OnChildrenAsync(AllChildren, op);
        var first = results.FirstOrDefault(r => !IsAbsent(r.Error), results[0]);
        return first;
    }

    /// <summary>A fop on the first child holding a directory (reads of directory state).</summary>
    private async ValueTask<FopResult<T>> OnDirFirstAsync<T>(Func<Translator, ValueTask<FopResult<T>>> op)
    {
        FopResult<T> last = Errno.ESTALE;
        foreach (var c in Children)
        {
            last = await op(c);
            if (!IsAbsent(last.Error)) return last;
        }
        return last;
    }
}
