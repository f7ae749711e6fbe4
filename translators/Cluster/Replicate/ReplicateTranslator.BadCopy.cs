using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;

namespace Brickfs.Translators.Cluster.Replicate;

// Copies that features/bitrot on their brick found corrupt. Bitrot answers EIO for every read of
// such a copy and marks it with BitrotTranslator.BadFileXattr (readable by any client), so an EIO
// with that mark means "this copy is bad", not "the file is bad": the read is served from another
// copy and the bad one is blamed, exactly as if it had missed writes, so self-heal rewrites it
// (and the rewrite from offset 0 clears the mark on the brick).
public sealed partial class ReplicateTranslator
{
    /// <summary>
    /// A read that skips copies found bad: on EIO from a child whose copy carries the bitrot bad
    /// mark, that child is blamed (<see cref="BlameBadCopyAsync"/>) and the read is retried on
    /// the remaining readable children. Callers may assume wrong bytes are never returned: when
    /// every reachable copy is bad the answer is EIO. An EIO without the mark is returned as is.
    /// </summary>
    private async ValueTask<FopResult<DataBuffer>> ReadAroundBadCopiesAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        int bad = 0;
        while (true)
        {
            int failed = -1;
            var r = await ReadFopAsync(ctx, fd.Gfid, fd, st => st.Data & ~bad, DataBit, needFd: true, async i =>
            {
                var read = await Children[i].ReadAsync(ctx, fd, offset, size);
                if (read.Error == Errno.EIO) failed = i;
                return read;
            });
            if (r.Error == Errno.ENOTCONN && bad != 0) return Errno.EIO; // the copies left are unreachable: the data cannot be served right
            if (r.Error != Errno.EIO || failed < 0) return r;
            if (!await IsMarkedBadAsync(ctx, failed, fd.Gfid)) return r;
            bad |= 1 << failed;
            await BlameBadCopyAsync(ctx, fd.Gfid, fd, failed);
        }
    }

    /// <summary>True when child <paramref name="i"/>'s copy of <paramref name="gfid"/> carries the bitrot bad mark.</summary>
    private async ValueTask<bool> IsMarkedBadAsync(FopContext ctx, int i, Gfid gfid)
    {
        var r = await Children[i].GetxattrAsync(InternalCtx(ctx, 0, CancellationToken.None), gfid, BitrotTranslator.BadFileXattr);
        Observe(i, r.Error);
        return r.Ok;
    }

    /// <summary>
    /// Raises child <paramref name="bad"/>'s data counter on every other child that answers (one
    /// xattrop each, naming every child's key so features/index lists the inode for heal) and
    /// stops reading from it. No lock is needed: the counter only goes up here, and a heal that
    /// read it earlier leaves the extra count for the next heal, which finds the copy good.
    /// </summary>
    private async ValueTask BlameBadCopyAsync(FopContext ctx, Gfid gfid, FileHandle fd, int bad)
    {
        var quiet = InternalCtx(ctx, NextLockOwner(), CancellationToken.None);
        await Task.WhenAll(Bits(AllMask & ~(1 << bad)).Select(async i =>
        {
            var deltas = new Dictionary<string, long[]>(N, StringComparer.Ordinal);
            for (int k = 0; k < N; k++) deltas[Keys[k]] = k == bad ? SlotVector(DataBit, 1) : SlotVector(DataBit, 0);
            Observe(i, (await Children[i].XattropAsync(quiet, gfid, FdFor(i, fd), deltas)).Error);
        }));
        Demote(gfid, DataBit, AllMask & ~(1 << bad));
        Interlocked.Increment(ref _badCopiesBlamed);
    }

    /// <summary>Copies found bad by their brick's bitrot and blamed by this translator since it started.</summary>
    public long BadCopiesBlamed => Interlocked.Read(ref _badCopiesBlamed);

    private long _badCopiesBlamed;
}
