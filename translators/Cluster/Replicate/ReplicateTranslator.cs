using System.Collections.Concurrent;
using System.Numerics;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Index;

namespace Brickfs.Translators.Cluster.Replicate;

/// <summary>
/// cluster/replicate: N copies (2..5 children) of every file, after GlusterFS's AFR.
/// </summary>
/// <remarks>
/// <para>Modifying fops are transactions: lock (inodelk on the inode, or entrylk on the
/// parent's name for namespace fops, domain <see cref="LockDomain"/>) on every up child in
/// child order; pre-op: an xattrop adds 1 to the pending counter of EVERY child on every locked
/// child (xattr <c>trusted.brickfs.pending.&lt;child&gt;</c>, vector [data, metadata, entry]);
/// the fop runs on all of them in parallel; post-op: each child that answered gets -1 on the
/// counters of the children that succeeded; unlock. So a child that failed or was down stays
/// blamed by the others, and a child that missed its own post-op accuses itself.</para>
/// <para>Quorum (quorum-type auto: more than half, or exactly half including the first child;
/// fixed: quorum-count; none: one) is checked before a transaction touches any child, after
/// locking, after pre-op and on the results. Below quorum the fop fails with ENOTCONN, not
/// EROFS: the cause is unreachable replicas, it is transient and retryable, and EROFS makes
/// programs such as SQLite reopen read-only or give up on the file for good.</para>
/// <para>Reads go to a readable child: one no child blames beyond what that child counts against
/// itself (so a self-accusing child's uniform marks accuse nobody, as in AFR), spread by GFID hash, never the arbiter. Readability is
/// cached per GFID from the pending xattrs that lookup/stat fetch with
/// <see cref="FopContext.XattrRequest"/>, and updated by our own transactions. An unlocked view
/// that shows a self-accusing child (a transaction in flight, or one cut short) is re-read under
/// a read inodelk. Each copy blaming the other is split-brain: reads fail with EIO and
/// <see cref="ListSplitBrain"/> lists it; only <see cref="ResolveSplitBrainAsync"/> picks a side.</para>
/// <para>arbiter-count 1: the last child stores names, attributes and xattrs but no data: writes,
/// truncation and fallocate skip it (it still votes, and keeps the pending counters); data fops
/// also need a data child to succeed. Its file sizes are meaningless, so nothing is read from it.</para>
/// <para>A child answering ENOTCONN is down until it answers again; lookup, the refresh of
/// readability and heal ask every child, so they bring it back.</para>
/// <para>By default transactions run in eager batches (GlusterFS's eager lock and delayed
/// post-op): the lock and the pre-op are kept across the fops of a file (a directory's entry fops
/// share a read lock and one pre-op), a child that misses a fop is blamed before the fop is
/// answered, and the post-op ends the batch when it idles, at fsync, close or unlock. See
/// ReplicateTranslator.Eager.cs and DESIGN.md. Not done yet: quorum reads.</para>
/// </remarks>
public sealed partial class ReplicateTranslator : Translator
{
    /// <summary>The inodelk/entrylk domain of replicate transactions and heals.</summary>
    public const string LockDomain = "replicate";

    /// <summary>Pending counter xattr of a child: this prefix and the child's volume name.</summary>
    public const string PendingPrefix = IndexTranslator.PendingPrefix;

    public const int DataSlot = 0, MetadataSlot = 1, EntrySlot = 2;
    private const int DataBit = 1 << DataSlot, MetadataBit = 1 << MetadataSlot, EntryBit = 1 << EntrySlot;

    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("quorum-type", OptionType.Choice, "auto", "auto: more than half the children (half including the first when even); fixed: quorum-count; none: any one")
        {
            Choices = ["auto", "fixed", "none"],
        },
        new("quorum-count", OptionType.Int, "0", "children that must succeed with quorum-type fixed") { Min = 0, Max = 5 },
        new("arbiter-count", OptionType.Int, "0", "1: the last child is an arbiter (names and metadata, no data)") { Min = 0, Max = 1 },
        new("eager-lock", OptionType.Bool, "on", "keep a file's lock (and a directory's shared lock) and its pending marks across fops; the marks are cleared post-op-delay-secs after the last fop, or at fsync, close or unlock"),
        new("post-op-delay-secs", OptionType.Seconds, "1", "how long an idle eager lock and its pending marks are kept (0: post-op after every fop, no eager lock)") { Min = 0, Max = 20 },
        new("entry-self-heal", OptionType.Bool, "on", "a lookup that finds a name missing (or stale) on a child that is up, while the parent's counters say the name exists, heals the parent's entries there first (waiting at most 2 s), so the file keeps every copy it can have in its write quorum"),
        new("read-subvolume-index", OptionType.Int, "-1", "the child that serves reads whenever its copy is readable and up; -1: spread files over the children by GFID") { Min = -1, Max = 4 },
    ];

    public static TranslatorType Type { get; } = new("cluster/replicate", OptionSpecs, 2, 5,
        o => new ReplicateTranslator(o), "synchronous replication with quorum, pending-change markers and heal");

    /// <summary>The quorum rule, swapped whole by <see cref="Reconfigure"/> so a check never mixes an old type with a new count.</summary>
    private sealed record QuorumRule(string Type, int Count);

    private volatile QuorumRule _quorum;
    private readonly bool _arbiter;
    private readonly int _readChild;
    private readonly TimeSpan _postOpDelay;
    private readonly bool _entrySelfHeal;
    private int _downMask;
    private long _lockOwners = Random.Shared.NextInt64(1, 1L << 40) << 20;
    private string[]? _keys;

    /// <summary>Readability per GFID (see <see cref="InodeState"/>); bounded by <see cref="MaxCachedInodes"/>.</summary>
    private readonly ConcurrentDictionary<Gfid, InodeState> _inodes = new();
    private const int MaxCachedInodes = 200_000;

    private readonly ConcurrentDictionary<Gfid, SplitBrainRecord> _splitBrain = new();
    private readonly ConcurrentDictionary<(Gfid Parent, string Name), SplitBrainRecord> _entrySplitBrain = new();
    private readonly ConcurrentDictionary<Gfid, byte> _entryHealHints = new();

    public ReplicateTranslator(TranslatorOptions options)
    {
        _quorum = QuorumOf(options);
        _arbiter = options.GetInt("arbiter-count") == 1;
        _readChild = (int)options.GetInt("read-subvolume-index");
        _postOpDelay = options.GetBool("eager-lock") ? options.GetSeconds("post-op-delay-secs") : TimeSpan.Zero;
        _entrySelfHeal = options.GetBool("entry-self-heal");
    }

    private static QuorumRule QuorumOf(TranslatorOptions options)
    {
        var rule = new QuorumRule(options.GetString("quorum-type"), (int)options.GetInt("quorum-count"));
        if (rule.Type == "fixed" && rule.Count < 1) throw new ArgumentException("quorum-type fixed needs quorum-count 1..5");
        return rule;
    }

    /// <summary>The quorum changes live: the next transaction counts by the new rule. The children and the arbiter do not.</summary>
    public override string? CanReconfigure(IReadOnlyCollection<string> changed)
    {
        var other = changed.Where(o => o is not ("quorum-type" or "quorum-count")).ToList();
        return other.Count == 0 ? null : base.CanReconfigure(other);
    }

    public override void Reconfigure(TranslatorOptions options)
    {
        var rule = QuorumOf(options);
        if (rule.Count > Children.Count) throw new ArgumentException($"{this}: quorum-count {rule.Count} exceeds its {Children.Count} children");
        _quorum = rule;
    }

    public ReplicateTranslator() : this(TranslatorOptions.From(OptionSpecs)) { }

    public override ValueTask InitAsync(CancellationToken cancellation)
    {
        if (_quorum.Count > Children.Count) throw new InvalidOperationException($"{this}: quorum-count {_quorum.Count} exceeds its {Children.Count} children");
        if (_readChild >= Children.Count) throw new InvalidOperationException($"{this}: read-subvolume-index {_readChild} is not a child (it has {Children.Count})");
        if (_arbiter && Children.Count < 3) throw new InvalidOperationException($"{this}: an arbiter needs at least 3 children");
        // A brick that restarts between two fops of this client is reconnected before the next
        // one, which then finds it answering: without the lost notice, no ENOTCONN ever marks it
        // down, no return generation starts, and verdicts cached before it left still call its
        // copy readable though other clients' writes missed it meanwhile. The up notice takes it
        // back as soon as it is reachable (its files re-opened): without it, a file that stays
        // open (a database) went on writing without that copy until a fop asked every child.
        for (int i = 0; i < N; i++)
        {
            int child = i;
            foreach (var t in Children[i].ChainBelow())
            {
                t.ConnectionLost += () => Observe(child, Errno.ENOTCONN);
                t.ConnectionUp += () => Observe(child, Errno.None);
            }
        }
        return ValueTask.CompletedTask;
    }

    // ---- children, quorum ------------------------------------------------------------------

    private int N => Children.Count;
    private int AllMask => (1 << N) - 1;
    private int ArbiterMask => _arbiter ? 1 << (N - 1) : 0;

    /// <summary>Children that hold file data (all but the arbiter).</summary>
    private int DataMask => AllMask & ~ArbiterMask;

    private bool IsArbiter(int i) => _arbiter && i == N - 1;

    /// <summary>Pending counter xattr names, one per child, in child order.</summary>
    private string[] Keys => _keys ??= [.. Children.Select(c => PendingPrefix + c.Name)];

    /// <summary>Children not known to be down.</summary>
    public int UpMask => AllMask & ~Volatile.Read(ref _downMask);

    public bool IsChildUp(int child) => (UpMask & (1 << child)) != 0;

    /// <summary>
    /// Records what a child's answer says about its reachability. A child that answers again
    /// after being down starts a new <see cref="ReturnGeneration"/> first, so no read picks it by
    /// a readability verdict made before it left: while it was away other clients' writes may
    /// have made its copy stale, which only a fresh look at the counters shows.
    /// </summary>
    private void Observe(int i, Errno e)
    {
        if (e == Errno.ENOTCONN) Interlocked.Or(ref _downMask, 1 << i);
        else if ((Volatile.Read(ref _downMask) & (1 << i)) != 0)
        {
            Interlocked.Increment(ref _returnGeneration);
            if ((Interlocked.And(ref _downMask, ~(1 << i)) & (1 << i)) != 0 && !_owedUnlocks.IsEmpty) _ = PayOwedUnlocksAsync();
        }
    }

    private long _returnGeneration;

    /// <summary>Counts the returns of children seen down; a cached verdict made in an older generation is not trusted for reads.</summary>
    private long ReturnGeneration => Interlocked.Read(ref _returnGeneration);

    /// <summary>True when the children in <paramref name="mask"/> are enough to change the volume.</summary>
    public bool HasQuorum(int mask)
    {
        int count = BitOperations.PopCount((uint)(mask & AllMask));
        var rule = _quorum;
        return rule.Type switch
        {
            "none" => count >= 1,
            "fixed" => count >= rule.Count,
            // With an even count, exactly half is enough when it includes the first child, so a
            // symmetric partition leaves exactly one side writable.
            _ => 2 * count > N || (2 * count == N && (mask & 1) != 0),
        };
    }

    private static IEnumerable<int> Bits(int mask)
    {
        for (int i = 0; mask != 0; i++, mask >>= 1)
        {
            if ((mask & 1) != 0) yield return i;
        }
    }

    private static int Lowest(int mask) => mask == 0 ? -1 : BitOperations.TrailingZeroCount(mask);

    private long NextLockOwner() => Interlocked.Increment(ref _lockOwners);

    // ---- readability -----------------------------------------------------------------------

    /// <summary>
    /// What the pending counters said about one inode: per slot, the children that may serve
    /// it; <see cref="Split"/> has a bit per slot whose copies all blame each other.
    /// </summary>
    private sealed record InodeState(int Data, int Metadata, int Entry, int Split, uint Mode)
    {
        /// <summary>The <see cref="ReturnGeneration"/> in which the counters behind this verdict were read.</summary>
        public long Generation { get; init; }

        public bool IsRegular => ModeBits.IsRegular(Mode);
        public bool IsDirectory => ModeBits.IsDirectory(Mode);
        public int Of(int slot) => slot switch { DataSlot => Data, MetadataSlot => Metadata, _ => Entry };
    }

    /// <summary>Per slot: who accuses whom, seen from the children that answered.</summary>
    private readonly record struct Assessment(InodeState State, int Answered, int SelfAccusing, int Fallback);

    /// <summary>
    /// Readability from the pending xattrs of the children that answered (null = did not). A
    /// child is readable for a slot when no child blames it beyond what that child counts against
    /// itself, and it does not accuse itself. When every unblamed child accuses itself (a transaction cut short
    /// on all of them: any copy is as good as another) they are all readable, flagged in
    /// <see cref="Assessment.Fallback"/> so heal picks one source among them.
    /// </summary>
    private Assessment Assess(IReadOnlyList<Iatt?> attrs)
    {
        int answered = 0, selfAccusingAny = 0, fallback = 0, split = 0;
        Span<int> accused = stackalloc int[3];
        Span<int> self = stackalloc int[3];
        var pending = new long[N][][];
        uint mode = 0;
        for (int i = 0; i < N; i++)
        {
            if (attrs[i] is not { } a) continue;
            answered |= 1 << i;
            if (mode == 0) mode = a.Mode;
            pending[i] = new long[N][];
            for (int k = 0; k < N; k++)
            {
                pending[i][k] = a.Xattrs is { } x && x.TryGetValue(Keys[k], out var raw) ? XattrCounters.Decode(raw) : [];
            }
            for (int t = 0; t < 3; t++)
            {
                if (Counter(pending[i][i], t) > 0) self[t] |= 1 << i;
            }
        }
        // A child accuses another by as much as that child's counter exceeds its own: a pre-op
        // in flight (or an eager batch's uniform mark, or one cut short) adds the same to every
        // counter and accuses nobody, while a blame recorded on top of it still shows.
        for (int i = 0; i < N; i++)
        {
            if ((answered & (1 << i)) == 0) continue;
            for (int t = 0; t < 3; t++)
            {
                long own = Counter(pending[i][i], t);
                for (int k = 0; k < N; k++)
                {
                    if (k != i && Counter(pending[i][k], t) > own) accused[t] |= 1 << k;
                }
            }
        }
        Span<int> readable = stackalloc int[3];
        for (int t = 0; t < 3; t++)
        {
            int relevant = t == DataSlot ? answered & DataMask : answered;
            selfAccusingAny |= self[t];
            readable[t] = relevant & ~accused[t] & ~self[t];
            if (readable[t] == 0 && (relevant & ~accused[t]) != 0)
            {
                readable[t] = relevant & ~accused[t];
                fallback |= 1 << t;
            }
            bool applies = t == MetadataSlot || (t == DataSlot ? ModeBits.IsRegular(mode) : ModeBits.IsDirectory(mode));
            if (applies && readable[t] == 0 && relevant != 0) split |= 1 << t;
        }
        return new Assessment(new InodeState(readable[0], readable[1], readable[2], split, mode), answered, selfAccusingAny, fallback);
    }

    private static long Counter(long[] v, int slot) => slot < v.Length ? v[slot] : 0;

    /// <summary>
    /// Caches a verdict made from counters read in <paramref name="generation"/> (read it before
    /// asking the children: a child returning meanwhile must make the verdict outdated).
    /// </summary>
    private InodeState Remember(Gfid gfid, InodeState state, long generation)
    {
        if (_inodes.Count >= MaxCachedInodes) _inodes.Clear(); // a refresh rebuilds any entry on demand
        return _inodes[gfid] = state with { Generation = generation };
    }

    /// <summary>
    /// The cached verdict when no child has returned since it was made. An older one may name a
    /// child readable that missed other clients' changes while it was away: callers refresh.
    /// </summary>
    private bool TryCurrent(Gfid gfid, out InodeState state)
    {
        if (_inodes.TryGetValue(gfid, out var st) && st.Generation == ReturnGeneration)
        {
            state = st;
            return true;
        }
        state = null!;
        return false;
    }

    /// <summary>After a transaction: children outside <paramref name="consistent"/> are no longer readable for the changed slots.</summary>
    private void Demote(Gfid gfid, int slots, int consistent)
    {
        if (!_inodes.TryGetValue(gfid, out var st)) return;
        _ = Remember(gfid, st with
        {
            Data = (slots & DataBit) != 0 ? st.Data & consistent : st.Data,
            Metadata = (slots & MetadataBit) != 0 ? st.Metadata & consistent : st.Metadata,
            Entry = (slots & EntryBit) != 0 ? st.Entry & consistent : st.Entry,
        }, st.Generation);
    }

    // ---- per-fd state ------------------------------------------------------------------------

    /// <summary>Which children opened the handle, and which one serves its directory listing.</summary>
    private sealed class FdState
    {
        public int Opened;
        public int ReaddirChild = -1;
        /// <summary>The end of the file's batch that its close left under way (FlushAsync); RELEASE waits for it.</summary>
        public Task Ending = Task.CompletedTask;
    }

    private FdState StateOf(FileHandle fd)
    {
        if (fd.TryGetContext(this, out FdState s)) return s;
        var created = new FdState();
        fd.SetContext(this, created);
        return created;
    }

    private int Opened(FileHandle? fd) => fd is not null && fd.TryGetContext(this, out FdState s) ? Volatile.Read(ref s.Opened) : 0;

    /// <summary>The handle for child <paramref name="i"/> when it opened it, else null (by-GFID access).</summary>
    private FileHandle? FdFor(int i, FileHandle? fd) => (Opened(fd) & (1 << i)) != 0 ? fd : null;

    // ---- contexts ------------------------------------------------------------------------------

    /// <summary>The caller's context, also asking for every child's pending counters.</summary>
    private FopContext WithPendingKeys(FopContext ctx)
    {
        var keys = ctx.XattrRequest is null ? Keys : [.. ctx.XattrRequest.Union(Keys, StringComparer.Ordinal)];
        var c = new FopContext
        {
            Uid = ctx.Uid, Gid = ctx.Gid, Pid = ctx.Pid, Groups = ctx.Groups, LockOwner = ctx.LockOwner, ClientId = ctx.ClientId,
            RequestId = ctx.RequestId, Cancellation = ctx.Cancellation, XattrRequest = keys,
        };
        if (ctx.HasExtra)
        {
            foreach (var (k, v) in ctx.Extra) c.Extra[k] = v;
        }
        return c;
    }

    /// <summary>Attributes as the caller asked for them: our pending counters only if it named them.</summary>
    private static Iatt Present(Iatt a, FopContext caller)
    {
        if (caller.XattrRequest is not { } wanted) return a.Xattrs is null ? a : a with { Xattrs = null };
        var x = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (a.Xattrs is not null)
        {
            foreach (var k in wanted)
            {
                if (a.Xattrs.TryGetValue(k, out var v)) x[k] = v;
            }
        }
        return a with { Xattrs = x };
    }

    /// <summary>A context for lock, xattrop and unlock calls of a transaction: the caller's client, our owner.</summary>
    private static FopContext InternalCtx(FopContext ctx, long owner, CancellationToken cancellation) => new()
    {
        Uid = 0, Gid = 0, Pid = ctx.Pid, ClientId = ctx.ClientId, LockOwner = (ulong)owner, RequestId = ctx.RequestId,
        Cancellation = cancellation,
    };

    // ---- what this translator has seen ----------------------------------------------------

    /// <summary>Split-brain this translator has detected (files whose copies blame each other, names whose GFIDs differ).</summary>
    public IReadOnlyList<SplitBrainRecord> ListSplitBrain() => [.. _splitBrain.Values, .. _entrySplitBrain.Values];

    /// <summary>
    /// GFIDs this translator has seen needing heal: cached inodes with a blamed child, and
    /// directories where a lookup found a name on some children only. A hint; the bricks'
    /// indexes are the list self-heal works from.
    /// </summary>
    public IReadOnlyList<Gfid> ListSeenPending()
    {
        var seen = new HashSet<Gfid>(_entryHealHints.Keys);
        foreach (var (g, st) in _inodes)
        {
            int relevant = AllMask;
            if ((st.IsRegular && (st.Data | ArbiterMask) != AllMask) || st.Metadata != relevant || (st.IsDirectory && st.Entry != relevant)) seen.Add(g);
        }
        return [.. seen];
    }

    private void RecordSplitBrain(Gfid gfid, int slots, string detail)
    {
        _splitBrain[gfid] = new SplitBrainRecord(gfid, (SplitBrainKind)slots, null, null, detail);
    }
}

/// <summary>What is in split-brain: bits follow the pending counter slots, plus a GFID mismatch of a name.</summary>
[Flags]
public enum SplitBrainKind
{
    None = 0,
    Data = 1,
    Metadata = 2,
    Entry = 4,
    GfidMismatch = 8,
}

/// <summary>One split-brain: an inode (<see cref="Gfid"/>), or a name whose copies have different GFIDs (<see cref="Parent"/>/<see cref="Name"/>).</summary>
public sealed record SplitBrainRecord(Gfid Gfid, SplitBrainKind Kind, Gfid? Parent, string? Name, string Detail);

/// <summary>How <see cref="ReplicateTranslator.ResolveSplitBrainAsync"/> picks the copy that wins.</summary>
public enum SplitBrainPolicy
{
    BiggerFile,
    LatestMtime,
    SourceBrick,
}

public enum HealOutcome
{
    /// <summary>Nothing was pending among the reachable children.</summary>
    Clean,
    Healed,
    /// <summary>Refused: the copies blame each other; see <see cref="ReplicateTranslator.ResolveSplitBrainAsync"/>.</summary>
    SplitBrain,
    /// <summary>Too few children reachable to heal (no source, or no sink up).</summary>
    Unavailable,
    /// <summary>The inode no longer exists on any reachable child.</summary>
    Gone,
}

/// <summary>The result of one heal: what was repaired (slot bits as <see cref="SplitBrainKind"/>) and on which children.</summary>
public sealed record HealResult(Gfid Gfid, HealOutcome Outcome, SplitBrainKind Healed, IReadOnlyList<string> Sinks, string? Detail = null);
