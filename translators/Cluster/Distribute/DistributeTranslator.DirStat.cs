using System.Collections.Concurrent;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Cluster.Distribute;

// The stat of a directory: its copies on every child, merged, asking only the children whose
// copy may have changed since this translator last read it.
//
// A directory's attributes are the first copy's with the newest times of all copies (an entry
// made on one child changes only that copy's mtime and ctime). Asking every child on every stat
// made each new file cost one stat per child: the mount stats the parent right after each entry
// change (the kernel's next path walk needs it). Instead each child's copy is kept with the time
// it was read and an epoch; every change this translator makes in a directory (an entry made or
// removed on a child, setattr and xattrs on the directory, layout writes) drops the copies of the
// children it touched and moves their epoch on, so a read that started before the change is not
// kept. A stat asks the children whose copy is missing or older than dir-stat-cache (at least one,
// the first holder, when none is), and merges the fresh answers with the kept copies. What this
// client changed always shows at once; another client's entry made on a child this client did not
// ask shows within dir-stat-cache (its own chmod, chown, utimes reach every child, and the child
// asked answers them).
public sealed partial class DistributeTranslator
{
    /// <summary>One directory's copies as last read from each child, when, and the child's change epoch.</summary>
    private sealed class DirCopies(int children)
    {
        public readonly Lock Lock = new();
        public readonly Iatt?[] Attr = new Iatt?[children];
        public readonly long[] At = new long[children];
        public readonly long[] Epoch = new long[children];
    }

    /// <summary>How many directories' copies are kept at most.</summary>
    private const int MaxKeptDirectories = 65536;

    /// <summary>Directory GFID -> its copies per child (reused by <see cref="StatDirAsync"/> for dir-stat-cache).</summary>
    private readonly ConcurrentDictionary<Gfid, DirCopies> _dirCopies = new();

    /// <summary>
    /// This translator changed directory <paramref name="dir"/> on <paramref name="child"/> (-1:
    /// on every child): the copies kept for it are dropped and reads in flight are not kept.
    /// Call after the change.
    /// </summary>
    private void DirChanged(Gfid dir, int child = -1)
    {
        if (!_dirCopies.TryGetValue(dir, out var e)) return;
        lock (e.Lock)
        {
            for (int i = 0; i < e.Attr.Length; i++)
            {
                if (child >= 0 && i != child) continue;
                e.Attr[i] = null;
                e.Epoch[i]++;
            }
        }
    }

    /// <summary>A change on every child holding directory <paramref name="gfid"/> (<see cref="OnDirAllAsync"/>), then <see cref="DirChanged"/>.</summary>
    private async ValueTask<FopResult<T>> OnDirChangedAsync<T>(Gfid gfid, Func<Translator, ValueTask<FopResult<T>>> op)
    {
        var r = await OnDirAllAsync(op);
        DirChanged(gfid);
        return r;
    }

    /// <summary>A directory is gone (rmdir, renamed over): nothing of it is kept.</summary>
    private void DirGone(Gfid dir)
    {
        DirChanged(dir);
        _dirCopies.TryRemove(dir, out _);
    }

    private async ValueTask<FopResult<Iatt>> StatDirAsync(FopContext ctx, Gfid gfid)
    {
        if (_dirStatCacheMs > 0)
        {
            var kept = await StatDirKeptAsync(ctx, gfid);
            if (kept is { } k) return k;
        }
        var all = await OnChildrenAsync(AllChildren, c => c.StatAsync(ctx, gfid, null));
        var copies = all.Where(r => r.Ok && r.Value.IsDirectory).Select(r => r.Value).ToList();
        if (copies.Count > 0)
        {
            return MergeDirAttrs(copies);
        }
        _dirs.TryRemove(gfid, out _);
        _layouts.TryRemove(gfid, out _);
        _dirCopies.TryRemove(gfid, out _);
        var err = all.FirstOrDefault(r => !IsAbsent(r.Error), all[0]).Error;
        return err == Errno.None ? Errno.ESTALE : err;
    }

    /// <summary>
    /// The stat from kept copies plus fresh reads of the children whose copy is missing or old;
    /// null when no child asked holds the directory (removed, or an error): the caller asks every child.
    /// </summary>
    private async ValueTask<FopResult<Iatt>?> StatDirKeptAsync(FopContext ctx, Gfid gfid)
    {
        int n = Children.Count;
        // A cache, not a record: past its bound it starts over (the next stats ask every child).
        if (_dirCopies.Count >= MaxKeptDirectories && !_dirCopies.ContainsKey(gfid)) _dirCopies.Clear();
        var e = _dirCopies.GetOrAdd(gfid, _ => new DirCopies(n));
        if (e.Attr.Length != n)
        {
            // Made before children were appended: the caller's full read answers, the next stat starts over.
            _dirCopies.TryRemove(new KeyValuePair<Gfid, DirCopies>(gfid, e));
            return null;
        }
        long now = Environment.TickCount64;
        var ask = new List<int>(n);
        var epochs = new long[n];
        var copies = new Iatt?[n];
        lock (e.Lock)
        {
            Array.Copy(e.Epoch, epochs, n);
            for (int i = 0; i < n; i++)
            {
                if (e.Attr[i] is { } a && now - e.At[i] < _dirStatCacheMs) copies[i] = a;
                else ask.Add(i);
            }
        }
        if (ask.Count == 0)
        {
            // Always one fresh answer: the first holder's (its copy gives mode, owner and size).
            int first = Array.FindIndex(copies, c => c is not null);
            ask.Add(first);
            copies[first] = null;
        }
        var fresh = await OnChildrenAsync(ask, c => c.StatAsync(ctx, gfid, null));
        bool any = false;
        lock (e.Lock)
        {
            for (int k = 0; k < ask.Count; k++)
            {
                int i = ask[k];
                var r = fresh[k];
                if (!r.Ok && !IsAbsent(r.Error)) return null;
                if (r.Ok && r.Value.IsDirectory && r.Value.Gfid == gfid)
                {
                    any = true;
                    copies[i] = r.Value;
                    if (e.Epoch[i] == epochs[i]) (e.Attr[i], e.At[i]) = (r.Value, now);
                }
                else if (e.Epoch[i] == epochs[i]) e.Attr[i] = null;
            }
        }
        if (!any) return null;
        return MergeDirAttrs(copies.OfType<Iatt>());
    }
}
