using System.Collections.Concurrent;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Storage;

// A pending counter may go down only once the data it guards is on disk. Buffered writes reach
// Btrfs's disk format when their writeback completes, which may be after the transaction that
// commits the counter's decrement; a power cut in between would leave this copy without the
// data and without the mark saying so, while the other copies have it: the copies differ and
// nothing records it. So before a decrement of a regular file's counter, when writes through
// this brick's handles are not yet synced, the brick makes the data go first:
// - on Btrfs it writes the file back and waits for its ordered extents (FIEMAP with
//   FIEMAP_FLAG_SYNC, which waits for them since Linux 6.1): the file extent items are then in
//   the running transaction, the decrement joins that one or a later one, and transactions
//   commit whole and in order (with a device flush before the superblock). No log tree write
//   and no flush of its own, unlike fdatasync;
// - elsewhere it fdatasyncs the file (AFR's ensure-durability fsyncs before its post-op).
// Files nobody wrote since their last fsync cost nothing: a SQLite database or journal is
// already synced when its batch ends.
public sealed partial class PosixTranslator
{
    /// <summary>Inodes with handles that wrote (entries live while such a handle is open).</summary>
    private readonly ConcurrentDictionary<Gfid, UnsyncedWrites> _unsynced = new();

    private long _clearSyncs;

    /// <summary>How many decrements had to write their file back first (tests).</summary>
    internal long ClearSyncs => Interlocked.Read(ref _clearSyncs);

    /// <summary>How many inodes are tracked (tests: none once the handles that wrote are closed).</summary>
    internal int UnsyncedInodes => _unsynced.Count;

    /// <summary>After a write through <paramref name="open"/> completed.</summary>
    private void NoteWrite(OpenFile open, Gfid gfid)
    {
        var u = open.Unsynced;
        while (u is null)
        {
            var candidate = _unsynced.GetOrAdd(gfid, static _ => new UnsyncedWrites());
            lock (candidate)
            {
                if (candidate.Handles < 0) continue; // its last handle just left: take a fresh one
                candidate.Handles++;
                open.Unsynced = u = candidate;
            }
        }
        Interlocked.Increment(ref u.Written);
    }

    /// <summary>At release: the inode's entry goes with the last handle that wrote.</summary>
    private void ForgetWrites(OpenFile open, Gfid gfid)
    {
        if (open.Unsynced is not { } u) return;
        open.Unsynced = null;
        lock (u)
        {
            if (--u.Handles > 0) return;
            u.Handles = -1;
            _unsynced.TryRemove(new KeyValuePair<Gfid, UnsyncedWrites>(gfid, u));
        }
    }

    /// <summary>fsync/fdatasync of <paramref name="fd"/> (the inode's unsynced writes up to its start are synced once it succeeds).</summary>
    private Errno SyncNoting(OpenFile open, bool dataOnly)
    {
        if (open.Unsynced is not { } u) return Sys.FSync(open.Fd.Fd, dataOnly);
        lock (u.SyncLock)
        {
            long upTo = Interlocked.Read(ref u.Written);
            var e = Sys.FSync(open.Fd.Fd, dataOnly);
            if (e == Errno.None) u.MarkSynced(upTo);
            return e;
        }
    }

    /// <summary>
    /// Before a decrement of <paramref name="gfid"/>'s counters: makes the file's data go first
    /// (see above) if writes through this brick completed since its last sync. A failure fails
    /// the decrement (the mark stays, which is always safe).
    /// </summary>
    private Errno SyncBeforeClear(Gfid gfid, OpenFile? open, string path, IReadOnlyDictionary<string, long[]> deltas, uint mode)
    {
        if (!ModeBits.IsRegular(mode) || !_unsynced.TryGetValue(gfid, out var u) || !deltas.Values.Any(d => d.Any(x => x < 0))) return Errno.None;
        if (Interlocked.Read(ref u.Written) <= Interlocked.Read(ref u.Synced)) return Errno.None;
        // An fsync of the file may be running (replicate sends its post-op beside the
        // application's fsync): wait for it rather than sync the same data a second time.
        lock (u.SyncLock)
        {
            long upTo = Interlocked.Read(ref u.Written);
            if (upTo <= Interlocked.Read(ref u.Synced)) return Errno.None;
            Interlocked.Increment(ref _clearSyncs);
            var e = SyncData(open, path);
            if (e == Errno.None) u.MarkSynced(upTo);
            return e;
        }
    }

    /// <summary>Orders the file's written data ahead of anything changed after this returns (see above).</summary>
    private Errno SyncData(OpenFile? open, string path)
    {
        if (open is not null) return DataFirst(open.Fd.Fd);
        var e = OpenForSync(path, ModeBits.Regular, out var file);
        if (e != Errno.None) return e;
        using (file) return DataFirst(file.Fd);
    }

    private Errno DataFirst(int fd) => _btrfs ? Sys.WriteBackAndWait(fd) : Sys.FSync(fd, dataOnly: true);
}
