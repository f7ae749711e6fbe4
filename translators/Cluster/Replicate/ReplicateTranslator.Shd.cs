using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Index;

namespace Brickfs.Translators.Cluster.Replicate;

/// <summary>What the self-heal daemon asks of a replica set from a client graph.</summary>
public sealed partial class ReplicateTranslator
{
    /// <summary>The pending counter xattr names of the children, in child order (for callers that read counters themselves, e.g. a full crawl).</summary>
    public IReadOnlyList<string> PendingKeys => Keys;

    /// <summary>
    /// Each child's pending-heal index (features/index on its brick, read through
    /// <see cref="IndexTranslator.PendingListXattr"/>, so it crosses protocol/client). Every
    /// child is asked, not only the ones believed up: the answer is also how a returning child
    /// is noticed. A child that cannot answer has its errno and an empty list.
    /// </summary>
    public async Task<IReadOnlyList<ChildPending>> ListPendingByChildAsync(CancellationToken cancellation = default)
    {
        var ctx = HealContext(cancellation);
        var result = new ChildPending[N];
        await Task.WhenAll(Enumerable.Range(0, N).Select(async i =>
        {
            var all = new List<Gfid>();
            string name = IndexTranslator.PendingListXattr;
            while (true)
            {
                var r = await Children[i].GetxattrAsync(ctx, Gfid.Root, name);
                Observe(i, r.Error);
                if (!r.Ok)
                {
                    result[i] = new ChildPending(Children[i].Name, r.Error, []);
                    return;
                }
                var page = IndexTranslator.DecodePendingPage(r.Value);
                if (page is null)
                {
                    result[i] = new ChildPending(Children[i].Name, Errno.EPROTO, []);
                    return;
                }
                if (page.Count == 0) break;
                all.AddRange(page);
                name = IndexTranslator.PendingListXattr + "." + page[^1];
            }
            result[i] = new ChildPending(Children[i].Name, Errno.None, all);
        }));
        return result;
    }

    /// <summary>The union of the children's pending-heal indexes (see <see cref="ListPendingByChildAsync"/>).</summary>
    public async Task<IReadOnlyList<Gfid>> ListPendingAsync(CancellationToken cancellation = default)
    {
        var merged = new HashSet<Gfid>();
        foreach (var c in await ListPendingByChildAsync(cancellation)) merged.UnionWith(c.Pending);
        return [.. merged.OrderBy(g => g.Hi).ThenBy(g => g.Lo)];
    }

    /// <summary>
    /// Reads the counters of <paramref name="gfid"/> from every child and says, without
    /// repairing anything, which copies are stale and whether the copies blame each other
    /// (split-brain, which is also recorded for <see cref="ListSplitBrain"/>).
    /// </summary>
    public async Task<HealStatus> InspectAsync(Gfid gfid, CancellationToken cancellation = default)
    {
        var (s, attrs) = await RefreshAsync(HealContext(cancellation), gfid, null);
        if (!s.Ok) return new HealStatus(gfid, s.Error, SplitBrainKind.None, [], false);
        var st = s.Value;
        int answered = attrs.Select((a, i) => a is null ? 0 : 1 << i).Sum();
        int stale = answered & ~st.Metadata;
        if (st.IsRegular) stale |= answered & DataMask & ~st.Data;
        if (st.IsDirectory) stale |= answered & ~st.Entry;
        return new HealStatus(gfid, Errno.None, (SplitBrainKind)st.Split, [.. Bits(stale).Select(i => Children[i].Name)], st.IsDirectory);
    }

    /// <summary>
    /// Inspects every GFID of the children's indexes (see <see cref="InspectAsync"/>) and returns
    /// those in split-brain, with the name-level split-brain this translator has seen.
    /// </summary>
    public async Task<IReadOnlyList<SplitBrainRecord>> ListSplitBrainAsync(CancellationToken cancellation = default)
    {
        foreach (var g in await ListPendingAsync(cancellation)) await InspectAsync(g, cancellation);
        return ListSplitBrain();
    }

    /// <summary>
    /// Conservative merge of directory <paramref name="dir"/>, for a full crawl: a name present on
    /// some locked children and missing on others, with no counter saying which side is right,
    /// is created where it is missing (with its GFID, healed whole from a child that has it).
    /// Nothing is removed: without a verdict from the counters a missing name is never taken as
    /// a deletion. Names whose GFIDs differ are left alone and listed as split-brain.
    /// </summary>
    public async Task<HealResult> MergeEntriesAsync(Gfid dir, CancellationToken cancellation = default)
    {
        var ctx = HealContext(cancellation);
        return await UnderHealLocksAsync(ctx, dir, async (attrs, locked) =>
        {
            if (!attrs[Lowest(locked)]!.IsDirectory) return new HealResult(dir, HealOutcome.Clean, SplitBrainKind.None, []);
            var lists = new Dictionary<string, DirEntry>?[N];
            foreach (int i in Bits(locked)) lists[i] = await ListAllAsync(ctx, i, dir);
            int listed = Enumerable.Range(0, N).Where(i => lists[i] is not null).Sum(i => 1 << i);
            var sinkNames = new HashSet<string>();
            var names = new SortedSet<string>(StringComparer.Ordinal);
            foreach (int i in Bits(listed)) names.UnionWith(lists[i]!.Keys);
            foreach (var name in names)
            {
                int have = 0;
                Gfid? gfid = null;
                bool conflict = false;
                foreach (int i in Bits(listed))
                {
                    if (!lists[i]!.TryGetValue(name, out var e)) continue;
                    have |= 1 << i;
                    if (gfid is null) gfid = e.Gfid;
                    else if (gfid != e.Gfid) conflict = true;
                }
                if (conflict)
                {
                    _entrySplitBrain[(dir, name)] = new SplitBrainRecord(gfid!.Value, SplitBrainKind.GfidMismatch, dir, name,
                        $"'{name}' has different GFIDs on {string.Join(", ", Bits(have).Select(i => Children[i].Name))}");
                    continue;
                }
                int source = Lowest(have & DataMask) is var d && d >= 0 ? d : Lowest(have);
                foreach (int sink in Bits(listed & ~have))
                {
                    await CreateFromSourceAsync(ctx, source, sink, dir, name, lists[source]![name]);
                    sinkNames.Add(Children[sink].Name);
                }
            }
            return sinkNames.Count == 0
                ? new HealResult(dir, HealOutcome.Clean, SplitBrainKind.None, [])
                : new HealResult(dir, HealOutcome.Healed, SplitBrainKind.Entry, [.. sinkNames], "conservative merge");
        });
    }
}

/// <summary>One child's pending-heal index: the GFIDs, or the errno that kept it from answering (and an empty list).</summary>
public sealed record ChildPending(string Child, Errno Error, IReadOnlyList<Gfid> Pending);

/// <summary>
/// What the counters of one inode say: <see cref="Stale"/> names the children some good copy
/// blames, <see cref="SplitBrain"/> the slots whose copies all blame each other.
/// <see cref="Error"/> is set when no child could answer (ENOENT/ESTALE: the inode is gone).
/// </summary>
public sealed record HealStatus(Gfid Gfid, Errno Error, SplitBrainKind SplitBrain, IReadOnlyList<string> Stale, bool IsDirectory);
