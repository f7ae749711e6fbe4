using System.Collections.Concurrent;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Replicate;

public sealed partial class ReplicateTranslator
{
    private const int HealChunk = 1 << 20;

    /// <summary>Chunks of one data heal in flight at once: enough to keep the source's reads and the sinks' writes overlapping.</summary>
    private const int HealWindow = 8;

    /// <summary>
    /// Repairs one inode that some child blames, under its locks (an inodelk, and for a
    /// directory an entrylk on all its names): entries of a directory (missing names created
    /// with their GFIDs and healed whole, names the good copies removed removed), then data
    /// (copied from a good child to the blamed ones, sized to the source), then metadata (mode,
    /// owner, times, xattrs), then the pending counters of the children that took part are
    /// cleared. Counters that blame a child still down stay. Split-brain is refused and listed.
    /// </summary>
    public async Task<HealResult> HealAsync(Gfid gfid, CancellationToken cancellation = default)
    {
        var ctx = HealContext(cancellation);
        long generation = ReturnGeneration;
        return await UnderHealLocksAsync(ctx, gfid, async (attrs, locked) =>
        {
            var a = Assess(attrs);
            var st = a.State;
            if (st.Split != 0)
            {
                RecordSplitBrain(gfid, st.Split, "heal refused: every copy is blamed by another");
                return new HealResult(gfid, HealOutcome.SplitBrain, (SplitBrainKind)st.Split, [], "split-brain");
            }
            var healed = SplitBrainKind.None;
            var sinkNames = new HashSet<string>();
            int source = -1;

            int Sinks(int slot, int relevant)
            {
                int readable = st.Of(slot);
                if ((a.Fallback & (1 << slot)) != 0) readable = 1 << Lowest(readable); // no clean copy: one source for all
                return locked & relevant & ~readable;
            }

            if (st.IsDirectory && Sinks(EntrySlot, locked) is var entrySinks && entrySinks != 0)
            {
                source = Pick(gfid, st.Entry);
                if (source < 0) return new HealResult(gfid, HealOutcome.Unavailable, healed, [], "no good copy of the entries is up");
                await HealEntriesAsync(ctx, gfid, source, entrySinks);
                healed |= SplitBrainKind.Entry;
                foreach (int i in Bits(entrySinks)) sinkNames.Add(Children[i].Name);
            }
            if (st.IsRegular && Sinks(DataSlot, locked) is var dataSinks && dataSinks != 0)
            {
                source = (a.Fallback & DataBit) != 0 ? Lowest(st.Data) : Pick(gfid, st.Data);
                if (source < 0) return new HealResult(gfid, HealOutcome.Unavailable, healed, [], "no good copy of the data is up");
                var e = await HealDataAsync(ctx, gfid, source, attrs[source]!.Size, dataSinks);
                if (e != Errno.None) return new HealResult(gfid, HealOutcome.Unavailable, healed, [], $"data heal: {e}");
                healed |= SplitBrainKind.Data;
                foreach (int i in Bits(dataSinks)) sinkNames.Add(Children[i].Name);
            }
            int metaSinks = Sinks(MetadataSlot, locked);
            if (metaSinks != 0 || healed.HasFlag(SplitBrainKind.Data))
            {
                int metaSource = (a.Fallback & MetadataBit) != 0 ? Lowest(st.Metadata) : Pick(gfid, st.Metadata);
                if (metaSource < 0) metaSource = Lowest(st.Metadata);
                if (metaSource < 0) return new HealResult(gfid, HealOutcome.Unavailable, healed, [], "no good copy of the metadata is up");
                int targets = metaSinks | (healed.HasFlag(SplitBrainKind.Data) ? Sinks(DataSlot, locked) : 0);
                await HealMetadataAsync(ctx, gfid, attrs[metaSource]!, metaSource, targets & ~(1 << metaSource));
                if (metaSinks != 0) healed |= SplitBrainKind.Metadata;
                foreach (int i in Bits(metaSinks)) sinkNames.Add(Children[i].Name);
            }

            bool anyCounter = await ClearCountersAsync(ctx, gfid, attrs, locked, AllSlots);
            Remember(gfid, new InodeState(locked & DataMask | (st.Data & ~locked), locked | (st.Metadata & ~locked), locked | (st.Entry & ~locked), 0, st.Mode), generation);
            _splitBrain.TryRemove(gfid, out _);
            _entryHealHints.TryRemove(gfid, out _);
            return new HealResult(gfid, healed == SplitBrainKind.None && !anyCounter ? HealOutcome.Clean : HealOutcome.Healed, healed, [.. sinkNames]);
        });
    }

    /// <summary>How long a lookup waits for the entry heal it started; the heal goes on after that.</summary>
    private static readonly TimeSpan LookupHealWait = TimeSpan.FromSeconds(2);

    private static readonly TimeSpan LookupHealRetry = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<Gfid, Task<HealResult>> _lookupHeals = new();

    /// <summary>
    /// Heals the entries of <paramref name="dir"/> because a lookup found a name there that an up
    /// child lacks. A stale data copy still takes every write, but a missing name takes none:
    /// a file made while a child was away (a SQLite journal) has fewer copies in its quorum, and
    /// once another child leaves it cannot be changed at all, though enough children are up. So
    /// the name is healed on the lookup's path, as AFR's client-side entry self-heal does, not
    /// left to the self-heal daemon. One heal per directory at a time (concurrent lookups wait
    /// for the same one), waited for at most <see cref="LookupHealWait"/>; after one that healed
    /// nothing, the next waits <see cref="LookupHealRetry"/>. True when it healed something in
    /// time, so the lookup is worth asking again.
    /// </summary>
    private async Task<bool> HealForLookupAsync(Gfid dir, CancellationToken cancellation)
    {
        var mine = new TaskCompletionSource<HealResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var heal = _lookupHeals.GetOrAdd(dir, mine.Task);
        if (heal == mine.Task) _ = Task.Run(() => RunLookupHealAsync(dir, mine)); // only the registered heal runs
        try
        {
            await heal.WaitAsync(LookupHealWait, cancellation);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            return false;
        }
        return heal.Result.Outcome == HealOutcome.Healed;
    }

    /// <summary>The heal <see cref="HealForLookupAsync"/> registered as <paramref name="done"/>'s task: runs it, answers it, then unregisters it.</summary>
    private async Task RunLookupHealAsync(Gfid dir, TaskCompletionSource<HealResult> done)
    {
        HealResult result;
        try
        {
            result = await HealAsync(dir);
        }
        catch (Exception e)
        {
            result = new HealResult(dir, HealOutcome.Unavailable, SplitBrainKind.None, [], e.Message);
        }
        done.SetResult(result);
        // A heal that found nothing to do (or could not run) is not retried by every lookup of
        // the directory: the next attempt waits a second.
        if (result.Outcome != HealOutcome.Healed) await Task.Delay(LookupHealRetry);
        _lookupHeals.TryRemove(new KeyValuePair<Gfid, Task<HealResult>>(dir, done.Task));
    }

    private const int AllSlots = DataBit | MetadataBit | EntryBit;

    /// <summary>
    /// Ends a split-brain by choosing the winning copy: the biggest file, the latest mtime, or
    /// the named child (<paramref name="sourceChild"/>, a child's volume name). Every other copy
    /// reachable is overwritten from it (data, metadata, and entries for a directory) and the
    /// counters are cleared. Nothing else ever picks a side.
    /// </summary>
    public async Task<HealResult> ResolveSplitBrainAsync(Gfid gfid, SplitBrainPolicy policy, string? sourceChild = null, CancellationToken cancellation = default)
    {
        var ctx = HealContext(cancellation);
        long generation = ReturnGeneration;
        return await UnderHealLocksAsync(ctx, gfid, async (attrs, locked) =>
        {
            int candidates = locked & DataMask;
            int source = -1;
            switch (policy)
            {
                case SplitBrainPolicy.SourceBrick:
                    for (int i = 0; i < N; i++)
                    {
                        if (Children[i].Name == sourceChild) source = i;
                    }
                    if (source < 0) return new HealResult(gfid, HealOutcome.Unavailable, SplitBrainKind.None, [], $"no child named '{sourceChild}'");
                    if ((candidates & (1 << source)) == 0) return new HealResult(gfid, HealOutcome.Unavailable, SplitBrainKind.None, [], $"{sourceChild} is not reachable or holds no data");
                    break;
                case SplitBrainPolicy.BiggerFile:
                    source = Bits(candidates).OrderByDescending(i => attrs[i]!.Size).ThenBy(i => i).First();
                    break;
                case SplitBrainPolicy.LatestMtime:
                    source = Bits(candidates).OrderByDescending(i => attrs[i]!.Mtime.Sec).ThenByDescending(i => attrs[i]!.Mtime.Nsec).ThenBy(i => i).First();
                    break;
            }
            int sinks = locked & ~(1 << source);
            var src = attrs[source]!;
            var healed = SplitBrainKind.Metadata;
            if (src.IsDirectory)
            {
                await HealEntriesAsync(ctx, gfid, source, sinks);
                healed |= SplitBrainKind.Entry;
            }
            if (src.IsRegular)
            {
                var e = await HealDataAsync(ctx, gfid, source, src.Size, sinks);
                if (e != Errno.None) return new HealResult(gfid, HealOutcome.Unavailable, SplitBrainKind.None, [], $"data heal: {e}");
                healed |= SplitBrainKind.Data;
            }
            await HealMetadataAsync(ctx, gfid, src, source, sinks);
            await ClearCountersAsync(ctx, gfid, attrs, locked, AllSlots);
            Remember(gfid, new InodeState(locked & DataMask, locked, locked, 0, src.Mode), generation);
            _splitBrain.TryRemove(gfid, out _);
            return new HealResult(gfid, HealOutcome.Healed, healed, [.. Bits(sinks).Select(i => Children[i].Name)], $"source {Children[source].Name}");
        });
    }

    private static FopContext HealContext(CancellationToken cancellation) => new()
    {
        Uid = 0, Gid = 0, Pid = 0, ClientId = "replicate-heal", Cancellation = cancellation,
    };

    /// <summary>Probes every child, locks the inode where it exists, re-reads the counters under the lock and runs <paramref name="heal"/>.</summary>
    private async Task<HealResult> UnderHealLocksAsync(FopContext ctx, Gfid gfid, Func<Iatt?[], int, Task<HealResult>> heal)
    {
        var (attrs, errors) = await StatAllAsync(ctx, gfid, null, AllMask);
        int present = 0, gone = 0;
        for (int i = 0; i < N; i++)
        {
            if (attrs[i] is not null) present |= 1 << i;
            else if (errors[i] == Errno.ESTALE || errors[i] == Errno.ENOENT) gone |= 1 << i;
        }
        if (present == 0)
        {
            if (gone == 0) return new HealResult(gfid, HealOutcome.Unavailable, SplitBrainKind.None, [], "no child reachable");
            // Lets each brick's index forget the inode: an xattrop on a missing inode fails with ESTALE there.
            await Task.WhenAll(Bits(gone).Select(i => Children[i].XattropAsync(ctx, gfid, null, new Dictionary<string, long[]>
            {
                [Keys[i]] = [0, 0, 0],
            }).AsTask()));
            _inodes.TryRemove(gfid, out _);
            return new HealResult(gfid, HealOutcome.Gone, SplitBrainKind.None, []);
        }

        await ReleaseEagerAsync(gfid, null); // this client's own eager lock would keep the heal waiting
        bool dir = attrs[Lowest(present)]!.IsDirectory;
        LockTarget[] targets = dir
            ? [new LockTarget(gfid, null, Entry: true), new LockTarget(gfid, null, Entry: false)]
            : [new LockTarget(gfid, null, Entry: false)];
        long owner = NextLockOwner();
        var (locked, e) = await LockAsync(ctx, owner, present, targets, LockType.Write);
        try
        {
            if (e != Errno.None) return new HealResult(gfid, HealOutcome.Unavailable, SplitBrainKind.None, [], $"lock: {e}");
            (attrs, _) = await StatAllAsync(ctx, gfid, null, locked);
            locked &= attrs.Select((x, i) => x is null ? 0 : 1 << i).Sum();
            if (locked == 0) return new HealResult(gfid, HealOutcome.Unavailable, SplitBrainKind.None, [], "no child locked");
            return await heal(attrs, locked);
        }
        finally
        {
            await UnlockAsync(InternalCtx(ctx, owner, CancellationToken.None), owner, locked, targets);
        }
    }

    /// <summary>
    /// Sets every counter among the children in <paramref name="locked"/> to zero on each of
    /// them (by subtracting what it read under the lock). Returns whether any was non-zero.
    /// </summary>
    private async ValueTask<bool> ClearCountersAsync(FopContext ctx, Gfid gfid, Iatt?[] attrs, int locked, int slots)
    {
        bool any = false;
        await Task.WhenAll(Bits(locked).Select(async i =>
        {
            var deltas = new Dictionary<string, long[]>(N, StringComparer.Ordinal);
            bool nonZero = false;
            for (int k = 0; k < N; k++)
            {
                var cur = attrs[i]!.Xattrs is { } x && x.TryGetValue(Keys[k], out var raw) ? XattrCounters.Decode(raw) : [];
                var d = new long[3];
                if ((locked & (1 << k)) != 0)
                {
                    for (int t = 0; t < 3; t++)
                    {
                        if ((slots & (1 << t)) != 0 && Counter(cur, t) != 0)
                        {
                            d[t] = -Counter(cur, t);
                            nonZero = true;
                        }
                    }
                }
                deltas[Keys[k]] = d;
            }
            if (nonZero) any = true;
            Observe(i, (await Children[i].XattropAsync(ctx, gfid, null, deltas)).Error);
        }));
        return any;
    }

    /// <summary>Copies the data of <paramref name="source"/> to the data children of <paramref name="sinks"/>; holes stay holes.</summary>
    private async ValueTask<Errno> HealDataAsync(FopContext ctx, Gfid gfid, int source, long size, int sinks)
    {
        sinks &= DataMask;
        if (sinks == 0) return Errno.None;
        var fd = new FileHandle(gfid, OpenFlags.ReadWrite);
        int opened = 0;
        try
        {
            foreach (int i in Bits(sinks | (1 << source)))
            {
                var r = await Children[i].OpenAsync(ctx, fd);
                Observe(i, r.Error);
                if (!r.Ok)
                {
                    if (i == source) return r.Error;
                    continue;
                }
                opened |= 1 << i;
            }
            int targets = opened & sinks;
            // Empty the sinks, then give them the source's size: every byte not copied below is a hole, as on the source.
            foreach (var newSize in new[] { 0L, size })
            {
                await Task.WhenAll(Bits(targets).Select(async i =>
                    Observe(i, (await Children[i].SetattrAsync(ctx, gfid, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = newSize })).Error)));
            }
            return await CopyDataAsync(ctx, fd, source, size, targets);
        }
        finally
        {
            foreach (int i in Bits(opened)) await Children[i].ReleaseAsync(ctx, fd);
        }
    }

    /// <summary>
    /// Streams the data extents of the source (SEEK_DATA/SEEK_HOLE; the whole file where the
    /// source cannot tell) to the sinks in <see cref="HealChunk"/> pieces, up to
    /// <see cref="HealWindow"/> of them in flight; all-zero pieces are skipped, so holes stay
    /// holes on sinks that were emptied first. The first error ends the copy.
    /// </summary>
    private async ValueTask<Errno> CopyDataAsync(FopContext ctx, FileHandle fd, int source, long size, int targets)
    {
        var window = new SemaphoreSlim(HealWindow);
        var running = new List<Task<Errno>>();
        int failed = 0; // an Errno, set once
        long offset = 0;
        while (offset < size && Volatile.Read(ref failed) == 0)
        {
            var (start, end) = await NextExtentAsync(ctx, fd, source, offset, size);
            if (start >= end) break;
            for (long at = start; at < end && Volatile.Read(ref failed) == 0; at += HealChunk)
            {
                await window.WaitAsync(ctx.Cancellation);
                long chunkAt = at;
                int length = (int)Math.Min(HealChunk, end - at);
                running.Add(Task.Run(async () =>
                {
                    try
                    {
                        var e = await CopyChunkAsync(ctx, fd, source, chunkAt, length, targets);
                        if (e != Errno.None) Interlocked.CompareExchange(ref failed, (int)e, 0);
                        return e;
                    }
                    finally
                    {
                        window.Release();
                    }
                }));
                running.RemoveAll(t => t.IsCompleted);
            }
            offset = end;
        }
        await Task.WhenAll(running);
        return (Errno)failed;
    }

    /// <summary>The next data extent of the source at or after <paramref name="offset"/>, clipped to <paramref name="size"/>; the rest of the file when the source cannot seek holes.</summary>
    private async ValueTask<(long Start, long End)> NextExtentAsync(FopContext ctx, FileHandle fd, int source, long offset, long size)
    {
        var data = await Children[source].LseekAsync(ctx, fd, offset, SeekWhence.Data);
        if (!data.Ok) return data.Error == Errno.ENXIO ? (size, size) : (offset, size); // ENXIO: only a hole is left
        long start = Math.Min(data.Value, size);
        var hole = await Children[source].LseekAsync(ctx, fd, start, SeekWhence.Hole);
        return (start, hole.Ok ? Math.Min(hole.Value, size) : size);
    }

    private async Task<Errno> CopyChunkAsync(FopContext ctx, FileHandle fd, int source, long offset, int length, int targets)
    {
        var r = await Children[source].ReadAsync(ctx, fd, offset, length);
        if (!r.Ok) return r.Error;
        using var buf = r.Value;
        if (buf.Length == 0 || !buf.Span.ContainsAnyExcept((byte)0)) return Errno.None;
        var data = buf.Memory;
        var writes = await Task.WhenAll(Bits(targets).Select(async i => (await Children[i].WriteAsync(ctx, fd, offset, data)).Error));
        return writes.FirstOrDefault(w => w != Errno.None);
    }

    /// <summary>Owner, mode, times and xattrs (other than Brickfs's own) of <paramref name="src"/> onto the sinks.</summary>
    private async ValueTask HealMetadataAsync(FopContext ctx, Gfid gfid, Iatt src, int source, int sinks)
    {
        if (sinks == 0) return;
        var names = await Children[source].ListxattrAsync(ctx, gfid);
        var wanted = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (names.Ok)
        {
            foreach (var n in names.Value.Where(n => !n.StartsWith("trusted.brickfs.", StringComparison.Ordinal)))
            {
                var v = await Children[source].GetxattrAsync(ctx, gfid, n);
                if (v.Ok) wanted[n] = v.Value;
            }
        }
        await Task.WhenAll(Bits(sinks).Select(async i =>
        {
            var child = Children[i];
            // Owner first: chown drops setuid/setgid, which the mode then restores.
            Observe(i, (await child.SetattrAsync(ctx, gfid, null, new SetattrRequest { Valid = SetattrValid.Uid | SetattrValid.Gid, Uid = src.Uid, Gid = src.Gid })).Error);
            if (!src.IsSymlink)
            {
                await child.SetattrAsync(ctx, gfid, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = src.Mode & ModeBits.PermMask });
            }
            var have = await child.ListxattrAsync(ctx, gfid);
            if (have.Ok)
            {
                foreach (var n in have.Value.Where(n => !n.StartsWith("trusted.brickfs.", StringComparison.Ordinal) && !wanted.ContainsKey(n)))
                {
                    await child.RemovexattrAsync(ctx, gfid, n);
                }
            }
            foreach (var (n, v) in wanted) await child.SetxattrAsync(ctx, gfid, n, v, 0);
            // Times last: everything above moved them.
            await child.SetattrAsync(ctx, gfid, null, new SetattrRequest
            {
                Valid = SetattrValid.Atime | SetattrValid.Mtime, Atime = src.Atime, Mtime = src.Mtime,
            });
        }));
    }

    /// <summary>
    /// Makes the names of directory <paramref name="dir"/> on each sink those of the source:
    /// removes names the source lacks (or has with another GFID), creates the missing ones with
    /// the source's GFIDs (a hard link where the sink has the inode already) and heals each
    /// created inode whole from the source.
    /// </summary>
    private async ValueTask HealEntriesAsync(FopContext ctx, Gfid dir, int source, int sinks)
    {
        var want = await ListAllAsync(ctx, source, dir);
        if (want is null) return;
        foreach (int i in Bits(sinks))
        {
            var have = await ListAllAsync(ctx, i, dir);
            if (have is null) continue;
            foreach (var (name, e) in have)
            {
                if (want.TryGetValue(name, out var w) && w.Gfid == e.Gfid) continue;
                await RemoveTreeAsync(ctx, i, dir, name, e);
            }
            foreach (var (name, e) in want)
            {
                if (have.TryGetValue(name, out var h) && h.Gfid == e.Gfid) continue;
                await CreateFromSourceAsync(ctx, source, i, dir, name, e);
            }
        }
    }

    private async ValueTask<Dictionary<string, DirEntry>?> ListAllAsync(FopContext ctx, int child, Gfid dir)
    {
        var fd = new FileHandle(dir, OpenFlags.ReadOnly | OpenFlags.Directory, isDirectory: true);
        var r = await Children[child].OpendirAsync(ctx, fd);
        Observe(child, r.Error);
        if (!r.Ok) return null;
        try
        {
            var all = new Dictionary<string, DirEntry>(StringComparer.Ordinal);
            long offset = 0;
            while (true)
            {
                var page = await Children[child].ReaddirplusAsync(ctx, fd, offset, 64 * 1024);
                if (!page.Ok) return null;
                if (page.Value.Count == 0) return all;
                foreach (var e in page.Value)
                {
                    if (e.Name is not ("." or "..") && e.Gfid is not null && e.Attr is not null) all[e.Name] = e;
                }
                offset = page.Value[^1].NextOffset;
            }
        }
        finally
        {
            await Children[child].ReleasedirAsync(ctx, fd);
        }
    }

    private async ValueTask RemoveTreeAsync(FopContext ctx, int child, Gfid dir, string name, DirEntry e)
    {
        if (e.Attr!.IsDirectory)
        {
            var inner = await ListAllAsync(ctx, child, e.Gfid!.Value);
            if (inner is not null)
            {
                foreach (var (n, x) in inner) await RemoveTreeAsync(ctx, child, e.Gfid!.Value, n, x);
            }
            await Children[child].RmdirAsync(ctx, dir, name);
        }
        else
        {
            await Children[child].UnlinkAsync(ctx, dir, name);
        }
    }

    private async ValueTask CreateFromSourceAsync(FopContext ctx, int source, int sink, Gfid dir, string name, DirEntry e)
    {
        var attr = e.Attr!;
        var gfid = e.Gfid!.Value;
        var child = Children[sink];
        if (!attr.IsDirectory && (await child.StatAsync(ctx, gfid, null)).Ok)
        {
            await child.LinkAsync(ctx, gfid, dir, name); // another name of an inode the sink has
            return;
        }
        FopResult<Iatt> made;
        if (attr.IsDirectory) made = await child.MkdirAsync(ctx, dir, name, attr.Mode & ModeBits.PermMask, gfid);
        else if (attr.IsSymlink)
        {
            var target = await Children[source].ReadlinkAsync(ctx, gfid);
            if (!target.Ok) return;
            made = await child.SymlinkAsync(ctx, dir, name, target.Value, gfid);
        }
        else made = await child.MknodAsync(ctx, dir, name, attr.Mode, attr.Rdev, gfid);
        Observe(sink, made.Error);
        if (!made.Ok) return;

        if (attr.IsDirectory) await HealEntriesAsync(ctx, gfid, source, 1 << sink);
        if (attr.IsRegular) await HealDataAsync(ctx, gfid, source, attr.Size, 1 << sink);
        var fresh = await Children[source].StatAsync(ctx, gfid, null);
        await HealMetadataAsync(ctx, gfid, fresh.Ok ? fresh.Value : attr, source, 1 << sink);
    }
}
