using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Brickfs.Translators.Core;
using Brickfs.Translators.Interop;
using Brickfs.Translators.Storage.Posix;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// features/bitrot: per-block XXH3-64 checksums of every regular file on the brick, written with
/// the data and verified on every read, plus a rate-limited scrubber. It sits on the brick
/// between features/index (or locks) and storage/posix. Callers may assume:
/// <list type="bullet">
/// <item>A file is cut into blocks of <c>block-size</c> bytes; block i's checksum covers bytes
/// [i B, (i+1) B) with the part past end of file counted as zeros, so growing a file never changes
/// an existing checksum. Checksums live in a sidecar record per GFID that bitrot keeps through its
/// child (<see cref="ChecksumStore"/>), so they survive restarts; the record goes when the last
/// link does.</item>
/// <item>A write hashes each block it touches once (the untouched rest of an edge block is read
/// back from the child first). Writes to disjoint blocks of a file run side by side; writes to
/// the same blocks, truncates and fallocates wait for each other (<see cref="BlockLocks"/>); files
/// never wait for each other, and reads take no lock.</item>
/// <item>Order on disk, and why no crash of the process or the power gives a false verdict: a
/// dirty marker (<see cref="DirtyXattr"/>, blocks [lo, ∞)) is set on the file and fsynced before
/// data in that range changes, then data, then checksums to memory; the record gets them in
/// batches, and the marker is cleared when the last user of the file lets go, after the record
/// is up to date and both the file and the record were fsynced. Whoever loads a file that still
/// carries the marker (a crash between the steps, possibly leaving a torn block) re-hashes the
/// marked blocks instead of judging them. The range reaches past end of file and its start at
/// least halves when it moves, so a period costs one fsync when the marker is set, a few more
/// at most, and one of data and record at the end, never one per write (DESIGN.md, Crash semantics).</item>
/// <item>A read verifies every block it touches (a partial-block read reads the whole block
/// from the child). A mismatch is re-checked under the file lock, so a read racing a write is
/// never judged; a real mismatch marks the file bad (<see cref="BadFileXattr"/> on the brick
/// copy) and from then on every read of it answers EIO, so wrong bytes are never served.
/// Replicate reads another copy; heal clears the mark by rewriting the file from offset 0
/// (truncate to 0), by removing the xattr as root, or with <see cref="ClearBadAsync"/>.</item>
/// <item>Unsigned blocks (files written before bitrot was on, extended by truncate, or whose
/// record was lost) are served unverified and signed by the scrubber, never flagged.</item>
/// <item>With <c>enable off</c>, nothing is verified or signed and a modified file loses its
/// record (it is unsigned again), so switching back on never flags stale checksums.</item>
/// </list>
/// The store lives in <c>.brickfs/bitrot/</c> and the xattrs are <c>trusted.brickfs.bitrot.*</c>;
/// bitrot reaches both with <see cref="FopContext.Brick"/> contexts. To callers from outside the
/// brick (not <see cref="FopContext.BrickInternal"/>) they are invisible and untouchable, except
/// that the bad mark is readable, so replicate can see that a copy is bad, and root removing it
/// is heal saying the copy is good again. Bitrot enforces this itself (so it also holds over
/// storage/memory, where it hides <c>.brickfs</c> at the root); storage/posix enforces the same
/// (<see cref="BrickXattrs"/>).
/// </summary>
public sealed partial class BitrotTranslator : Translator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("block-size", OptionType.Size, "64KB", "bytes per checksummed block (a power of two)") { Min = 4096, Max = 1 << 20 },
        new("verify-reads", OptionType.Bool, "on", "verify the checksums of every block a read touches"),
        new("scrub-throttle", OptionType.String, "normal", "scrubber read rate: lazy (8 MiB/s), normal (32 MiB/s), aggressive (128 MiB/s) or bytes per second (e.g. 20MB)"),
        new("scrub-frequency", OptionType.String, "daily", "time between scrubber passes: hourly, daily, weekly, monthly or seconds"),
        new("scrub-files-per-second", OptionType.String, "0", "scrubber file rate: files started per second (e.g. 50 or 0.5); 0 = no cap"),
        new("enable", OptionType.Bool, "on", "keep and verify checksums; off passes everything through and drops the records of modified files"),
    ];

    public static TranslatorType Type { get; } = new("features/bitrot", OptionSpecs, 1, 1,
        o => new BitrotTranslator(o), "per-block xxHash checksums verified on read, and a scrubber");

    /// <summary>Set on a brick copy whose data failed verification (GlusterFS's trusted.bit-rot.bad-file).</summary>
    public const string BadFileXattr = BrickXattrs.BitrotBad;
    /// <summary>Blocks [lo, hi) that may be ahead of their checksums: two big-endian int64.</summary>
    public const string DirtyXattr = BrickXattrs.BitrotDirty;
    private const string XattrPrefix = "trusted.brickfs.bitrot.";

    /// <summary>
    /// Virtual xattr of the root: getxattr answers the scrubber's <see cref="Status"/> as JSON
    /// (<see cref="BitrotStatus.ToJson"/>). Root callers only. It crosses protocol/client, so a
    /// tool holding a client graph reaches every brick (<see cref="ScrubControl"/>).
    /// </summary>
    public const string ScrubStatusXattr = "trusted.brickfs.bitrot.scrub-status";

    /// <summary>
    /// Virtual xattr of the root: setxattr (any value) starts an on-demand scrub pass, or joins
    /// the one running, and returns at once; ENOTSUP when bitrot is off. Root callers only.
    /// </summary>
    public const string ScrubNowXattr = "trusted.brickfs.bitrot.scrub-now";

    /// <summary>Where bad-file events and clears are logged (brickd sets its log); null: not logged.</summary>
    public Protocol.ProtocolLog? Log { get; set; }

    private readonly int _blockShift;
    private readonly int _blockSize;
    private readonly bool _verify;
    private readonly bool _enabled;
    private readonly ulong _zeroSum;
    private readonly Dictionary<Gfid, FileState> _states = [];
    private readonly Lock _statesLock = new();
    private readonly Dictionary<Gfid, BadFile> _bad = [];
    private readonly Lock _badLock = new();
    private ChecksumStore? _store;

    private static FopContext Ctx => FopContext.Brick();

    public BitrotTranslator(TranslatorOptions options)
    {
        long bs = options.GetSize("block-size");
        if ((bs & (bs - 1)) != 0) throw new ArgumentException($"block-size {bs} is not a power of two");
        _blockSize = (int)bs;
        _blockShift = System.Numerics.BitOperations.Log2((uint)bs);
        _verify = options.GetBool("verify-reads");
        _enabled = options.GetBool("enable");
        ScrubRate = ParseThrottle(options.GetString("scrub-throttle"));
        ScrubInterval = ParseFrequency(options.GetString("scrub-frequency"));
        ScrubFileRate = ParseFileRate(options.GetString("scrub-files-per-second"));
        _zeroSum = Normalize(XxHash.Hash3(new byte[_blockSize]));
    }

    public int BlockSize => _blockSize;

    /// <summary>Scrubber read rate in bytes per second.</summary>
    public long ScrubRate { get; }

    public TimeSpan ScrubInterval { get; }

    /// <summary>Scrubber file rate in files per second; 0 = no cap.</summary>
    public double ScrubFileRate { get; }

    /// <summary>Whether <paramref name="raw"/> is a valid <c>scrub-throttle</c> (for the management plane's checks).</summary>
    public static bool IsValidThrottle(string raw) => TryRead(() => ParseThrottle(raw));

    /// <summary>Whether <paramref name="raw"/> is a valid <c>scrub-frequency</c>.</summary>
    public static bool IsValidFrequency(string raw) => TryRead(() => ParseFrequency(raw));

    /// <summary>Whether <paramref name="raw"/> is a valid <c>scrub-files-per-second</c>.</summary>
    public static bool IsValidFileRate(string raw) => TryRead(() => ParseFileRate(raw));

    private static bool TryRead<T>(Func<T> parse)
    {
        try
        {
            parse();
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static double ParseFileRate(string raw) =>
        double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0 && v < 1e9 ? v
            : throw new ArgumentException($"scrub-files-per-second '{raw}' is not a number of files per second (0 = no cap)");

    private static long ParseThrottle(string raw) => raw switch
    {
        "lazy" => 8L << 20,
        "normal" => 32L << 20,
        "aggressive" => 128L << 20,
        _ => TranslatorOptions.TryParseSize(raw, out long v) && v > 0 ? v
            : throw new ArgumentException($"scrub-throttle '{raw}' is not lazy, normal, aggressive or a byte rate"),
    };

    private static TimeSpan ParseFrequency(string raw) => raw switch
    {
        "hourly" => TimeSpan.FromHours(1),
        "daily" => TimeSpan.FromDays(1),
        "weekly" => TimeSpan.FromDays(7),
        "monthly" => TimeSpan.FromDays(30),
        _ => double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s > 0 && s < 1e9 ? TimeSpan.FromSeconds(s)
            : throw new ArgumentException($"scrub-frequency '{raw}' is not hourly, daily, weekly, monthly or seconds"),
    };

    private ChecksumStore Store => _store ?? throw new InvalidOperationException("features/bitrot used before InitAsync");

    public override async ValueTask InitAsync(CancellationToken cancellation)
    {
        _store = new ChecksumStore(Child, _blockSize);
        var e = await _store.InitAsync();
        if (e != Errno.None) throw new InvalidOperationException($"features/bitrot '{Name}': cannot make its checksum store /{ChecksumStore.StorePath}: {e}");
        if (_enabled)
        {
            await LoadScrubStateAsync();
            StartScrubber();
        }
    }

    public override async ValueTask DisposeAsync()
    {
        await StopScrubberAsync();
        List<FileState> open;
        lock (_statesLock) open = [.. _states.Values];
        foreach (var s in open)
        {
            using (await s.Blocks.LockAllAsync()) await CloseLockedAsync(s);
        }
        await base.DisposeAsync();
    }

    // ---- hashing ---------------------------------------------------------------------------

    /// <summary>0 marks an unsigned block, so a block whose hash is 0 is stored as 1.</summary>
    private static ulong Normalize(ulong h) => h == 0 ? 1 : h;

    /// <summary>The checksum of a block whose first <c>data.Length</c> bytes are given and the rest are zeros.</summary>
    private ulong BlockSum(ReadOnlySpan<byte> data)
    {
        if (data.Length == _blockSize) return Normalize(XxHash.Hash3(data));
        if (data.IsEmpty) return _zeroSum;
        var pad = ArrayPool<byte>.Shared.Rent(_blockSize);
        try
        {
            data.CopyTo(pad);
            pad.AsSpan(data.Length, _blockSize - data.Length).Clear();
            return Normalize(XxHash.Hash3(pad.AsSpan(0, _blockSize)));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(pad);
        }
    }

    private long BlocksOf(long size) => (size + _blockSize - 1) >> _blockShift;

    // ---- per-file state --------------------------------------------------------------------

    /// <summary>Per-descriptor slot: the file state, attached on first use so directories and idle opens cost nothing.</summary>
    private sealed class FdSlot
    {
        public FileState? State;
    }

    private FileState Acquire(Gfid gfid)
    {
        lock (_statesLock)
        {
            if (!_states.TryGetValue(gfid, out var s)) _states[gfid] = s = new FileState(gfid);
            s.Refs++;
            return s;
        }
    }

    private async ValueTask ReleaseStateAsync(FileState s)
    {
        lock (_statesLock)
        {
            if (--s.Refs > 0) return;
        }
        using (await s.Blocks.LockAllAsync())
        {
            lock (_statesLock)
            {
                if (s.Refs > 0) return; // taken again meanwhile; it stays loaded
            }
            await CloseLockedAsync(s);
            lock (_statesLock)
            {
                if (s.Refs == 0) _states.Remove(s.Gfid);
            }
        }
    }

    /// <summary>The state of an open file, loaded; ENOTSUP when it is not a regular file (bitrot ignores it).</summary>
    private async ValueTask<FopResult<FileState>> StateOfAsync(FileHandle fd)
    {
        FileState s;
        if (fd.TryGetContext<FdSlot>(this, out var slot))
        {
            lock (slot)
            {
                s = slot.State ??= Acquire(fd.Gfid);
            }
        }
        else return Errno.ENOTSUP; // opened before this translator saw it
        var e = await EnsureLoadedAsync(s, fd);
        return e == Errno.None ? s : e;
    }

    private async ValueTask<Errno> EnsureLoadedAsync(FileState s, FileHandle? fd)
    {
        if (s.Loaded) return Errno.None;
        using (await s.Blocks.LockAllAsync()) return s.Loaded ? Errno.None : await LoadLockedAsync(s, fd);
    }

    /// <summary>Reads the bad mark and the record, trims checksums past end of file and recovers a dirty range left by a crash.</summary>
    private async ValueTask<Errno> LoadLockedAsync(FileState s, FileHandle? fd)
    {
        var st = await Child.StatAsync(Ctx, s.Gfid, fd);
        if (!st.Ok) return st.Error;
        if (!st.Value.IsRegular) return Errno.ENOTSUP;
        long blocks = BlocksOf(st.Value.Size);
        s.Bad = (await Child.GetxattrAsync(Ctx, s.Gfid, BadFileXattr)).Ok;
        if (s.Bad) NoteBad(s.Gfid, null, -1, BitrotDetector.Read, onlyIfNew: true);

        var rec = await Store.OpenAsync(s.Gfid, create: false);
        if (!rec.Ok) return rec.Error;
        s.Record = rec.Value;
        s.Replace([]);
        s.TakePending();
        if (s.Record is { } record)
        {
            var loaded = await Store.LoadAsync(record, blocks);
            if (!loaded.Ok) return loaded.Error;
            if (!loaded.Value.Valid)
            {
                await Store.CloseAsync(record);
                await Store.RemoveAsync(s.Gfid);
                s.Record = null;
            }
            else
            {
                s.Replace(loaded.Value.Sums);
                // Entries past end of file (a crash mid-truncate) mean nothing; stably gone before
                // a truncate up could bring them back over zeros.
                if (loaded.Value.Longer && await Store.TruncateAsync(record, blocks) is var t
                    && (t != Errno.None || !(await Child.FsyncAsync(Ctx, record, false)).Ok))
                    return t != Errno.None ? t : Errno.EIO;
            }
        }

        s.DirtyLo = s.DirtyHi = 0;
        s.DirtyStable = false; // what a crash left is on disk, but after a kill -9 maybe only in the page cache
        var dirty = await Child.GetxattrAsync(Ctx, s.Gfid, DirtyXattr);
        if (dirty.Ok && dirty.Value.Length == 16)
        {
            long lo = BinaryPrimitives.ReadInt64BigEndian(dirty.Value), hi = BinaryPrimitives.ReadInt64BigEndian(dirty.Value.AsSpan(8));
            s.DirtyLo = lo;
            s.DirtyHi = hi;
            var e = await ResignLockedAsync(s, fd, Math.Max(lo, 0), Math.Min(hi, blocks));
            if (e != Errno.None) return e;
            RecoveredBlocks += Math.Max(0, Math.Min(hi, blocks) - Math.Max(lo, 0));
        }
        await ClearDirtyLockedAsync(s, fd);
        s.Loaded = true;
        return Errno.None;
    }

    /// <summary>Blocks re-hashed because a dirty marker was found on load (a crash interrupted a write).</summary>
    public long RecoveredBlocks { get; private set; }

    private async ValueTask CloseLockedAsync(FileState s)
    {
        if (!s.Loaded) return;
        await ClearDirtyLockedAsync(s, null);
        if (s.Record is { } r) await Store.CloseAsync(r);
        if (s.Reader is { } rd) await Child.ReleaseAsync(Ctx, rd);
        s.Record = null;
        s.Reader = null;
        s.Replace([]);
        s.Loaded = false;
    }

    /// <summary>
    /// Writes the pending checksums and, when nothing is left pending, clears the dirty marker,
    /// but only after the data file and the record are stable on disk (fsync of both): after a
    /// power cut a cleared marker must never meet a block whose data or checksum was still in the
    /// page cache when it was cleared (a COW commit carries the xattr removal without waiting for
    /// delayed data; a nodatacow data write lands whenever writeback takes it). A failed fsync
    /// keeps the marker: the worst it costs is a re-hash. Call holding every block.
    /// </summary>
    private async ValueTask ClearDirtyLockedAsync(FileState s, FileHandle? fd)
    {
        await FlushAsync(s, allLocked: true);
        bool fresh = s.FreshRecordSynced;
        s.FreshRecordSynced = false;
        if (s.RecordBehind || s.DirtyHi <= s.DirtyLo) return;
        if (!fresh)
        {
            if (!await SyncDataAsync(s, fd)) return;
            if (s.Record is { } rec && !(await Child.FsyncAsync(Ctx, rec, false)).Ok) return;
        }
        var r = await Child.RemovexattrAsync(Ctx, s.Gfid, DirtyXattr);
        if (r.Ok || r.Error == Errno.ENODATA || r.Error == Errno.ESTALE)
        {
            s.DirtyLo = s.DirtyHi = 0;
            s.DirtyStable = false;
        }
    }

    /// <summary>
    /// fsync of the data file (data, and its xattrs with it: Btrfs logs an inode's xattrs with
    /// it), through the caller's descriptor or the state's private reader. True when it is stable
    /// or gone (an unlinked file cannot be found after a crash).
    /// </summary>
    private async ValueTask<bool> SyncDataAsync(FileState s, FileHandle? fd)
    {
        var h = fd ?? await ReaderAsync(s, null);
        if (h is null) return false;
        var r = await Child.FsyncAsync(Ctx, h, false);
        return r.Ok || r.Error == Errno.ESTALE || r.Error == Errno.ENOENT;
    }

    /// <summary>
    /// Records on disk, stably, that blocks from <paramref name="lo"/> on may change before their checksums do; returns
    /// once an fsync of the file carries the marker, so no data or record write that follows can
    /// reach the disk before it, even on a nodatacow file whose writes land in place at any time.
    /// The marked range always reaches past end of file ([lo, ∞)), so appends and writes above it
    /// never widen it; a write below it halves its start at least, so a period costs one fsync
    /// when the marker is set and at most log2(blocks) more, never one per write. A file without a
    /// record on disk gets the marker without the fsync (no checksum on disk can contradict its
    /// data; the marker only serves a process crash, whose page cache survives) until its record is
    /// made mid-period (<see cref="FlushAsync"/>, <paramref name="force"/>).
    /// </summary>
    private async ValueTask<Errno> MarkDirtyLockedAsync(FileState s, FileHandle? fd, long lo, bool force = false)
    {
        bool stable = s.Record is not null || force;
        if (s.DirtyHi > s.DirtyLo && lo >= s.DirtyLo && s.DirtyHi == Unbounded && (s.DirtyStable || !stable)) return Errno.None;
        await s.MarkerLock.WaitAsync();
        try
        {
            stable = s.Record is not null || force;
            bool empty = s.DirtyHi <= s.DirtyLo, covered = !empty && lo >= s.DirtyLo && s.DirtyHi == Unbounded;
            if (covered && (s.DirtyStable || !stable)) return Errno.None;
            long nlo = covered ? s.DirtyLo : empty ? lo : Math.Max(0, Math.Min(lo, s.DirtyLo / 2));
            var r = FopResult.Success;
            if (!covered)
            {
                var raw = new byte[16];
                BinaryPrimitives.WriteInt64BigEndian(raw, nlo);
                BinaryPrimitives.WriteInt64BigEndian(raw.AsSpan(8), Unbounded);
                r = await Child.SetxattrAsync(Ctx, s.Gfid, DirtyXattr, raw, 0);
                // An unlinked file cannot be found again after a crash, so it needs no marker.
                if (!r.Ok && r.Error != Errno.ESTALE && r.Error != Errno.ENOENT) return r.Error;
                s.DirtyStable = false;
            }
            if (stable && r.Ok)
            {
                if (!await SyncDataAsync(s, fd)) return Errno.EIO;
                s.DirtyStable = true;
            }
            s.DirtyLo = nlo;
            s.DirtyHi = Unbounded;
            return Errno.None;
        }
        finally
        {
            s.MarkerLock.Release();
        }
    }

    /// <summary>The end of every marked range: past any end of file (recovery stops at end of file).</summary>
    private const long Unbounded = long.MaxValue / 2;

    /// <summary>Record updates gathered before one flush: a streaming writer writes the record once per 32 MiB (64 KiB blocks), a random writer once per 512 writes.</summary>
    private const int FlushEvery = 512;

    /// <summary>
    /// Notes that the checksums of blocks [first, first + count), already in the cache, must reach
    /// the record; writes the record when enough updates have gathered. Until they reach it the
    /// dirty marker stays (it covers every block written since it was set), so a crash costs a
    /// re-hash of the marked blocks, never a false verdict.
    /// </summary>
    private async ValueTask<Errno> PersistLockedAsync(FileState s, long first, long count)
    {
        s.AddPending(first, first + count);
        var (updates, pages) = s.Pending;
        return updates >= FlushEvery || pages >= 64 ? await FlushAsync(s, allLocked: false) : Errno.None;
    }

    /// <summary>
    /// Writes every pending checksum to the record (creating it). A failure keeps them pending, and
    /// so the dirty marker. A file's first record must not reach the disk ahead of the data it
    /// describes, which no marker covered (see <see cref="MarkDirtyLockedAsync"/>): holding every
    /// block (<paramref name="allLocked"/>: load, close), the data is fsynced first, so a small
    /// file written and closed costs one fsync; with writers in flight a stable marker over the
    /// whole file is set first.
    /// </summary>
    private async ValueTask<Errno> FlushAsync(FileState s, bool allLocked)
    {
        await s.RecordLock.WaitAsync();
        try
        {
            var runs = s.TakePending();
            if (runs.Count == 0) return Errno.None;
            Errno e = Errno.None;
            bool fresh = false;
            if (s.Record is null)
            {
                if (allLocked ? !await SyncDataAsync(s, null) : await MarkDirtyLockedAsync(s, null, 0, force: true) != Errno.None) e = Errno.EIO;
            }
            if (s.Record is null && e == Errno.None)
            {
                var rec = await Store.OpenAsync(s.Gfid, create: true);
                if (!rec.Ok || rec.Value is null) e = rec.Ok ? Errno.EIO : rec.Error;
                else
                {
                    s.Record = rec.Value;
                    fresh = allLocked;
                }
            }
            foreach (var (first, sums) in runs)
            {
                if (e == Errno.None) e = await Store.WriteAsync(s.Record!, first, sums);
                if (e != Errno.None) s.AddPending(first, first + sums.Length);
            }
            s.FreshRecordSynced = fresh && e == Errno.None;
            return e;
        }
        finally
        {
            s.RecordLock.Release();
        }
    }

    /// <summary>A readable descriptor of the file: the caller's when it can read, else the state's private one.</summary>
    private async ValueTask<FileHandle?> ReaderAsync(FileState s, FileHandle? fd)
    {
        if (fd is not null && fd.CanRead) return fd;
        if (s.Reader is { } have) return have;
        var mine = new FileHandle(s.Gfid, OpenFlags.ReadOnly);
        if (!(await Child.OpenAsync(Ctx, mine)).Ok) return null;
        if (Interlocked.CompareExchange(ref s.Reader, mine, null) is { } raced)
        {
            await Child.ReleaseAsync(Ctx, mine);
            return raced;
        }
        return mine;
    }

    /// <summary>
    /// Hashes blocks [lo, hi) from what is on disk now and stores the checksums, trusting the
    /// data (crash recovery, after truncate and fallocate, failed writes). Call under the lock.
    /// </summary>
    private async ValueTask<Errno> ResignLockedAsync(FileState s, FileHandle? fd, long lo, long hi)
    {
        if (hi <= lo) return Errno.None;
        var reader = await ReaderAsync(s, fd);
        if (reader is null)
        {
            // Nothing can read it (an unlinked file open write-only): forget the checksums instead.
            s.Set(lo, new ulong[hi - lo]);
            return await PersistLockedAsync(s, lo, hi - lo);
        }
        int chunk = Math.Max(1, (1 << 20) >> _blockShift);
        for (long b = lo; b < hi; b += chunk)
        {
            int n = (int)Math.Min(chunk, hi - b);
            var r = await Child.ReadAsync(Ctx, reader, b << _blockShift, n << _blockShift);
            if (!r.Ok) return r.Error;
            using var data = r.Value;
            var sums = new ulong[n];
            for (int i = 0; i < n; i++)
            {
                int from = Math.Min(i << _blockShift, data.Length), to = Math.Min((i + 1) << _blockShift, data.Length);
                sums[i] = BlockSum(data.Span[from..to]);
            }
            s.Set(b, sums);
            var e = await PersistLockedAsync(s, b, n);
            if (e != Errno.None) return e;
        }
        return Errno.None;
    }

    // ---- bad files -------------------------------------------------------------------------

    private void NoteBad(Gfid gfid, string? path, long block, BitrotDetector by, bool onlyIfNew = false)
    {
        lock (_badLock)
        {
            if (onlyIfNew && _bad.ContainsKey(gfid)) return;
            if (_bad.TryGetValue(gfid, out var old) && old.Path is not null && path is null) path = old.Path;
            _bad[gfid] = new BadFile(gfid, path, block, by, DateTimeOffset.UtcNow);
        }
    }

    private async ValueTask MarkBadLockedAsync(FileState s, string? path, long block, BitrotDetector by)
    {
        s.Bad = true;
        NoteBad(s.Gfid, path, block, by);
        var value = Encoding.ASCII.GetBytes($"block {block} by {by.ToString().ToLowerInvariant()} at {DateTimeOffset.UtcNow:O}");
        var r = await Child.SetxattrAsync(Ctx, s.Gfid, BadFileXattr, value, 0);
        Log?.Write('E', Name, $"bitrot: {s.Gfid} ({path ?? "path not known to a read"}) block {block} does not match its checksum (found by {by.ToString().ToLowerInvariant()}); "
            + $"this copy is bad and answers EIO until it is rewritten{(r.Ok ? "" : $"; marking it on disk failed: {r.Error}")}");
    }

    /// <summary>
    /// Clears the bad mark of a file after heal rewrote it; blocks still not matching their
    /// checksums are caught again by the next read or scrub.
    /// </summary>
    public async ValueTask<Errno> ClearBadAsync(Gfid gfid)
    {
        var s = Acquire(gfid);
        try
        {
            using (await s.Blocks.LockAllAsync()) return await ClearBadLockedAsync(s);
        }
        finally
        {
            await ReleaseStateAsync(s);
        }
    }

    private async ValueTask<Errno> ClearBadLockedAsync(FileState s)
    {
        var r = await Child.RemovexattrAsync(Ctx, s.Gfid, BadFileXattr);
        if (!r.Ok && r.Error != Errno.ENODATA) return r.Error;
        if (s.Bad) Log?.Write('I', Name, $"bitrot: {s.Gfid} rewritten or cleared; its bad mark is gone");
        s.Bad = false;
        lock (_badLock) _bad.Remove(s.Gfid);
        return Errno.None;
    }

    // ---- open files ------------------------------------------------------------------------

    public override async ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        var r = await Child.OpenAsync(ctx, fd);
        if (!r.Ok || fd.IsDirectory) return r;
        fd.SetContext(this, new FdSlot());
        if ((fd.Flags & OpenFlags.Truncate) != 0 && fd.CanWrite) await TruncatedToZeroAsync(fd);
        return r;
    }

    public override async ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd)
    {
        if (IsHidden(ctx, parent, name)) return Errno.EPERM;
        var r = await Child.CreateAsync(ctx, parent, name, mode, fd);
        if (!r.Ok) return r;
        fd.SetContext(this, new FdSlot());
        // A new file gets fd.Gfid; another GFID means an existing file was opened (and maybe truncated).
        if ((fd.Flags & OpenFlags.Truncate) != 0 && r.Value.Gfid != fd.Gfid) await TruncatedToZeroAsync(fd);
        return r;
    }

    /// <summary>O_TRUNC emptied the file: no checksums, and nothing left to be bad.</summary>
    private async ValueTask TruncatedToZeroAsync(FileHandle fd)
    {
        var st = await StateOfAsync(fd);
        if (!st.Ok) return;
        var s = st.Value;
        using (await s.Blocks.LockAllAsync())
        {
            // The record's own truncate may be lost in a power cut while the file regrows over it.
            if (s.Record is not null && await MarkDirtyLockedAsync(s, fd, 0) != Errno.None) return;
            s.Trim(0);
            if (s.Record is { } rec) await Store.TruncateAsync(rec, 0);
            if (s.Bad) await ClearBadLockedAsync(s);
        }
    }

    public override async ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        var r = await Child.ReleaseAsync(ctx, fd);
        if (fd.RemoveContext(this, out var o) && o is FdSlot { State: { } s }) await ReleaseStateAsync(s);
        return r;
    }

    public override async ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        if (!_enabled || !_verify || size <= 0 || offset < 0) return await Child.ReadAsync(ctx, fd, offset, size);
        var st = await StateOfAsync(fd);
        if (!st.Ok) return st.Error == Errno.ENOTSUP ? await Child.ReadAsync(ctx, fd, offset, size) : st.Error;
        var s = st.Value;
        if (s.Bad) return Errno.EIO;

        long first = offset >> _blockShift, last = (offset + size - 1) >> _blockShift;
        long alignedStart = first << _blockShift, alignedLen = (last - first + 1) << _blockShift;
        if (alignedLen > int.MaxValue) return Errno.EINVAL;
        var r = await Child.ReadAsync(ctx, fd, alignedStart, (int)alignedLen);
        if (!r.Ok) return r;
        var data = r.Value;
        if (FirstMismatch(s, first, data.Span) >= 0)
        {
            // Re-check under the lock: a write may have landed between our read and its checksum.
            data.Dispose();
            using (await s.Blocks.LockAsync(first, last + 1))
            {
                r = await Child.ReadAsync(ctx, fd, alignedStart, (int)alignedLen);
                if (!r.Ok) return r;
                data = r.Value;
                long bad = FirstMismatch(s, first, data.Span);
                if (bad >= 0)
                {
                    data.Dispose();
                    await MarkBadLockedAsync(s, null, bad, BitrotDetector.Read);
                    return Errno.EIO;
                }
            }
        }
        return Window(data, (int)(offset - alignedStart), size);
    }

    /// <summary>The first block of <paramref name="data"/> (starting at block <paramref name="first"/>) whose checksum is wrong; -1 if none.</summary>
    private long FirstMismatch(FileState s, long first, ReadOnlySpan<byte> data)
    {
        for (int at = 0, i = 0; at < data.Length; at += _blockSize, i++)
        {
            ulong want = s.Sum(first + i);
            if (want == 0) continue;
            if (BlockSum(data.Slice(at, Math.Min(_blockSize, data.Length - at))) != want) return first + i;
        }
        return -1;
    }

    /// <summary>The caller's part of an aligned read, without copying: disposing the window returns the child's buffer.</summary>
    private static DataBuffer Window(DataBuffer data, int skip, int size)
    {
        int len = Math.Clamp(data.Length - skip, 0, size);
        if (skip == 0 && len == data.Length) return data;
        if (len == 0)
        {
            // Not the shared DataBuffer.Empty: whoever receives it disposes it, and a disposed Empty
            // throws on every later use (protocol/server then never answered a read at end of file).
            data.Truncate(0);
            return data;
        }
        if (!MemoryMarshal.TryGetArray<byte>(data.Memory, out var seg))
        {
            var copy = DataBuffer.CopyOf(data.Span.Slice(skip, len));
            data.Dispose();
            return copy;
        }
        return DataBuffer.Wrap(seg.Array!, seg.Offset + skip, len, _ => data.Dispose());
    }

    /// <summary>Test hook: runs after the data of a write reached the child and before its checksums are stored (throw to simulate a crash there).</summary>
    internal Action<Gfid>? AfterDataWrite { get; set; }

    public override async ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
    {
        if (data.IsEmpty || offset < 0) return await Child.WriteAsync(ctx, fd, offset, data);
        var st = await StateOfAsync(fd);
        if (!st.Ok) return st.Error == Errno.ENOTSUP ? await Child.WriteAsync(ctx, fd, offset, data) : st.Error;
        var s = st.Value;
        if (!_enabled)
        {
            var d = await DropRecordAsync(s);
            return d != Errno.None ? d : await Child.WriteAsync(ctx, fd, offset, data);
        }
        // Writes to disjoint blocks go on side by side; an append does not know its blocks before
        // it holds the file's size still, so it takes them all.
        bool append = (fd.Flags & OpenFlags.Append) != 0;
        using (append ? await s.Blocks.LockAllAsync() : await s.Blocks.LockAsync(offset >> _blockShift, ((offset + data.Length - 1) >> _blockShift) + 1))
        {
            long at = offset;
            if (append)
            {
                var size = await Child.StatAsync(Ctx, fd.Gfid, fd);
                if (!size.Ok) return size.Error;
                at = size.Value.Size;
            }
            long end = at + data.Length;
            long first = at >> _blockShift, last = (end - 1) >> _blockShift;
            var sums = new ulong[last - first + 1];
            var e = await HashWriteLockedAsync(s, fd, at, data.Span.Length, first, last, sums, data);
            if (e != Errno.None) return e;

            e = await MarkDirtyLockedAsync(s, fd, first);
            if (e != Errno.None) return e;
            var w = await Child.WriteAsync(ctx, fd, offset, data);
            if (!w.Ok || w.Value != data.Length)
            {
                // Nothing or part of it reached the disk: checksums follow what is there.
                await ResignLockedAsync(s, fd, first, last + 1);
                return w;
            }
            AfterDataWrite?.Invoke(s.Gfid);
            s.Set(first, sums);
            await PersistLockedAsync(s, first, sums.Length);
            return w;
        }
    }

    /// <summary>
    /// Checksums of blocks first..last after writing <paramref name="data"/> at <paramref name="at"/>:
    /// whole blocks hash straight from the caller's data; edge blocks read their untouched part back.
    /// </summary>
    private async ValueTask<Errno> HashWriteLockedAsync(FileState s, FileHandle fd, long at, int length, long first, long last, ulong[] sums, ReadOnlyMemory<byte> data)
    {
        long end = at + length;
        for (long b = first; b <= last; b++)
        {
            long bStart = b << _blockShift, bEnd = bStart + _blockSize;
            if (at <= bStart && end >= bEnd)
            {
                sums[b - first] = BlockSum(data.Span.Slice((int)(bStart - at), _blockSize));
                continue;
            }
            var block = ArrayPool<byte>.Shared.Rent(_blockSize);
            try
            {
                int have = 0;
                var reader = await ReaderAsync(s, fd);
                if (reader is not null)
                {
                    var r = await Child.ReadAsync(Ctx, reader, bStart, _blockSize);
                    if (!r.Ok) return r.Error;
                    using var old = r.Value;
                    old.Span.CopyTo(block);
                    have = old.Length;
                }
                else
                {
                    // Cannot read the rest of the block: it becomes unsigned rather than wrong.
                    sums[b - first] = 0;
                    continue;
                }
                block.AsSpan(have, _blockSize - have).Clear();
                long from = Math.Max(at, bStart), to = Math.Min(end, bEnd);
                data.Span.Slice((int)(from - at), (int)(to - from)).CopyTo(block.AsSpan((int)(from - bStart)));
                sums[b - first] = BlockSum(block.AsSpan(0, _blockSize));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(block);
            }
        }
        return Errno.None;
    }

    /// <summary>With bitrot off, a modified file's checksums would go stale: drop them (it is unsigned again).</summary>
    private async ValueTask<Errno> DropRecordAsync(FileState s)
    {
        if (s.Count == 0 && s.Record is null) return Errno.None;
        using (await s.Blocks.LockAllAsync())
        {
            if (s.Count == 0 && s.Record is null) return Errno.None;
            s.Replace([]);
            s.TakePending();
            if (s.Record is { } rec)
            {
                // Emptied and synced before the unlink (whose own durability would need the
                // directory synced): a power cut must not bring back checksums of what the caller
                // writes next. Until that holds the caller's change is refused.
                var t = await Store.TruncateAsync(rec, 0);
                if (t == Errno.None && await Child.FsyncAsync(Ctx, rec, false) is { Ok: false } f) t = f.Error;
                if (t != Errno.None) return t;
                await Store.CloseAsync(rec);
            }
            s.Record = null;
            await Store.RemoveAsync(s.Gfid);
            return Errno.None;
        }
    }

    public override async ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest request)
    {
        if (!request.Has(SetattrValid.Size)) return await Child.SetattrAsync(ctx, gfid, fd, request);
        FileState s;
        bool temp = false;
        if (fd is not null && fd.TryGetContext<FdSlot>(this, out _))
        {
            var st = await StateOfAsync(fd);
            if (!st.Ok) return st.Error == Errno.ENOTSUP ? await Child.SetattrAsync(ctx, gfid, fd, request) : st.Error;
            s = st.Value;
        }
        else
        {
            s = Acquire(gfid);
            temp = true;
            var e = await EnsureLoadedAsync(s, fd);
            if (e != Errno.None)
            {
                await ReleaseStateAsync(s);
                return e == Errno.ENOTSUP || e == Errno.ESTALE ? await Child.SetattrAsync(ctx, gfid, fd, request) : e;
            }
        }
        try
        {
            if (!_enabled)
            {
                var d = await DropRecordAsync(s);
                return d != Errno.None ? d : await Child.SetattrAsync(ctx, gfid, fd, request);
            }
            using (await s.Blocks.LockAllAsync()) return await TruncateLockedAsync(ctx, s, gfid, fd, request);
        }
        finally
        {
            if (temp) await ReleaseStateAsync(s);
        }
    }

    private async ValueTask<FopResult<Iatt>> TruncateLockedAsync(FopContext ctx, FileState s, Gfid gfid, FileHandle? fd, SetattrRequest request)
    {
        var before = await Child.StatAsync(Ctx, gfid, fd);
        if (!before.Ok) return before.Error;
        long oldSize = before.Value.Size, newSize = request.Size;
        bool partialTail = newSize < oldSize && (newSize & (_blockSize - 1)) != 0;
        long tail = newSize >> _blockShift;
        if (newSize < oldSize)
        {
            // Past the new end the record keeps stale checksums until its own truncate is on disk;
            // a later truncate up would meet them over zeros, so those blocks are marked too.
            var e = await MarkDirtyLockedAsync(s, fd, tail);
            if (e != Errno.None) return e;
        }
        var r = await Child.SetattrAsync(ctx, gfid, fd, request);
        if (!r.Ok) return r;
        if (newSize < oldSize)
        {
            long blocks = BlocksOf(newSize);
            s.Trim(blocks);
            if (s.Record is { } rec) await Store.TruncateAsync(rec, blocks);
            if (partialTail) await ResignLockedAsync(s, fd, tail, tail + 1);
        }
        if (newSize == 0 && s.Bad) await ClearBadLockedAsync(s);
        return r;
    }

    public override async ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length)
    {
        bool changesData = (mode & (FallocateMode.PunchHole | FallocateMode.ZeroRange | FallocateMode.CollapseRange | FallocateMode.InsertRange)) != 0;
        if (!changesData || offset < 0 || length <= 0) return await Child.FallocateAsync(ctx, fd, mode, offset, length);
        var st = await StateOfAsync(fd);
        if (!st.Ok) return st.Error == Errno.ENOTSUP ? await Child.FallocateAsync(ctx, fd, mode, offset, length) : st.Error;
        var s = st.Value;
        if (!_enabled)
        {
            var d = await DropRecordAsync(s);
            return d != Errno.None ? d : await Child.FallocateAsync(ctx, fd, mode, offset, length);
        }
        using (await s.Blocks.LockAllAsync())
        {
            bool shifts = (mode & (FallocateMode.CollapseRange | FallocateMode.InsertRange)) != 0;
            long first = offset >> _blockShift;
            long last = shifts ? long.MaxValue / 2 : (offset + length - 1) >> _blockShift;
            var e = await MarkDirtyLockedAsync(s, fd, first);
            if (e != Errno.None) return e;
            var r = await Child.FallocateAsync(ctx, fd, mode, offset, length);
            // Whatever the outcome, the checksums follow what is now on disk.
            var after = await Child.StatAsync(Ctx, fd.Gfid, fd);
            if (!after.Ok) return r.Ok ? after.Error : r;
            long blocks = BlocksOf(after.Value.Size);
            long hi = Math.Min(last + 1, blocks);
            if (!shifts && r.Ok)
            {
                // Whole blocks inside the range are zeros now: their checksum is known without reading.
                long zLo = (offset + _blockSize - 1) >> _blockShift, zHi = Math.Min((offset + length) >> _blockShift, hi);
                if (zHi > zLo)
                {
                    var zeros = new ulong[zHi - zLo];
                    Array.Fill(zeros, _zeroSum);
                    s.Set(zLo, zeros);
                    await PersistLockedAsync(s, zLo, zeros.Length);
                    await ResignLockedAsync(s, fd, first, zLo);
                    await ResignLockedAsync(s, fd, zHi, hi);
                }
                else await ResignLockedAsync(s, fd, first, hi);
            }
            else await ResignLockedAsync(s, fd, first, hi);
            if (blocks < s.Count)
            {
                s.Trim(blocks);
                if (s.Record is { } rec) await Store.TruncateAsync(rec, blocks);
            }
            return r;
        }
    }

    // ---- namespace: hide the store, drop records with the last link ---------------------------

    /// <summary><c>.brickfs</c> at the root, out of reach of every caller from outside the brick.</summary>
    private static bool IsHidden(FopContext ctx, Gfid parent, string name) =>
        parent == Gfid.Root && name == ChecksumStore.HiddenDir && !ctx.BrickInternal;

    public override ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name) =>
        IsHidden(ctx, parent, name) ? ValueTask.FromResult(FopResult<Iatt>.Fail(Errno.ENOENT)) : Child.LookupAsync(ctx, parent, name);

    public override ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid) =>
        IsHidden(ctx, parent, name) ? ValueTask.FromResult(FopResult<Iatt>.Fail(Errno.EPERM)) : Child.MknodAsync(ctx, parent, name, mode, rdev, newGfid);

    public override ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid) =>
        IsHidden(ctx, parent, name) ? ValueTask.FromResult(FopResult<Iatt>.Fail(Errno.EPERM)) : Child.MkdirAsync(ctx, parent, name, mode, newGfid);

    public override ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid) =>
        IsHidden(ctx, parent, name) ? ValueTask.FromResult(FopResult<Iatt>.Fail(Errno.EPERM)) : Child.SymlinkAsync(ctx, parent, name, target, newGfid);

    public override ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName) =>
        IsHidden(ctx, newParent, newName) ? ValueTask.FromResult(FopResult<Iatt>.Fail(Errno.EPERM)) : Child.LinkAsync(ctx, gfid, newParent, newName);

    public override ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name) =>
        IsHidden(ctx, parent, name) ? ValueTask.FromResult(FopResult.Fail(Errno.ENOENT)) : Child.RmdirAsync(ctx, parent, name);

    public override async ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name)
    {
        if (IsHidden(ctx, parent, name)) return Errno.ENOENT;
        var victim = await Child.LookupAsync(Ctx, parent, name);
        var r = await Child.UnlinkAsync(ctx, parent, name);
        if (r.Ok && victim.Ok) await DropIfLastLinkAsync(victim.Value);
        return r;
    }

    public override async ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags)
    {
        if (IsHidden(ctx, oldParent, oldName)) return Errno.ENOENT;
        if (IsHidden(ctx, newParent, newName)) return Errno.EPERM;
        FopResult<Iatt> victim = Errno.ENOENT;
        if ((flags & (RenameFlags.NoReplace | RenameFlags.Exchange)) == 0) victim = await Child.LookupAsync(Ctx, newParent, newName);
        var r = await Child.RenameAsync(ctx, oldParent, oldName, newParent, newName, flags);
        if (r.Ok && victim.Ok)
        {
            var moved = await Child.LookupAsync(Ctx, newParent, newName);
            if (!moved.Ok || moved.Value.Gfid != victim.Value.Gfid) await DropIfLastLinkAsync(victim.Value);
        }
        return r;
    }

    /// <summary>The record goes with the last link (open descriptors keep using their handle to it until release).</summary>
    private async ValueTask DropIfLastLinkAsync(Iatt victim)
    {
        if (!victim.IsRegular || victim.Nlink > 1) return;
        await Store.RemoveAsync(victim.Gfid);
        lock (_badLock) _bad.Remove(victim.Gfid);
    }

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        fd.Gfid == Gfid.Root ? ListRootAsync(offset, o => Child.ReaddirAsync(ctx, fd, o, sizeHint)) : Child.ReaddirAsync(ctx, fd, offset, sizeHint);

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        fd.Gfid == Gfid.Root ? ListRootAsync(offset, o => Child.ReaddirplusAsync(ctx, fd, o, sizeHint)) : Child.ReaddirplusAsync(ctx, fd, offset, sizeHint);

    /// <summary>
    /// A root listing without <c>.brickfs</c> (for every caller, as storage/posix lists it). The other entries keep their cookies, so resuming
    /// is unaffected; a batch holding only the store's entry is replaced by the next batch, since
    /// an empty list means end of directory.
    /// </summary>
    private static async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ListRootAsync(long offset,
        Func<long, ValueTask<FopResult<IReadOnlyList<DirEntry>>>> list)
    {
        while (true)
        {
            var r = await list(offset);
            if (!r.Ok) return r;
            int i = -1;
            for (int k = 0; k < r.Value.Count; k++) if (r.Value[k].Name == ChecksumStore.HiddenDir) i = k;
            if (i < 0) return r;
            if (r.Value.Count > 1)
            {
                var copy = new List<DirEntry>(r.Value);
                copy.RemoveAt(i);
                return copy;
            }
            offset = r.Value[0].NextOffset;
        }
    }

    // ---- xattrs: bitrot's own are reserved ------------------------------------------------------

    /// <summary>Bitrot's own xattrs, as callers from outside the brick see them: the bad mark readable, nothing else.</summary>
    private static bool IsOwnXattr(FopContext ctx, string name) =>
        !ctx.BrickInternal && name.StartsWith(XattrPrefix, StringComparison.Ordinal);

    public override async ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
    {
        if (gfid == Gfid.Root && name == ScrubNowXattr)
        {
            if (!ctx.IsRoot) return Errno.EPERM;
            if (!_enabled) return Errno.ENOTSUP;
            _ = StartPass();
            return FopResult.Success;
        }
        return IsOwnXattr(ctx, name) ? Errno.EPERM : await Child.SetxattrAsync(ctx, gfid, name, value, flags);
    }

    public override async ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (gfid == Gfid.Root && name == ScrubStatusXattr)
        {
            if (!ctx.IsRoot) return Errno.EPERM;
            return Status.ToJson();
        }
        return IsOwnXattr(ctx, name) && name != BadFileXattr ? Errno.ENODATA : await Child.GetxattrAsync(ctx, gfid, name);
    }

    public override async ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid)
    {
        var r = await Child.ListxattrAsync(ctx, gfid);
        if (!r.Ok || !r.Value.Any(n => IsOwnXattr(ctx, n) && n != BadFileXattr)) return r;
        return r.Value.Where(n => !IsOwnXattr(ctx, n) || n == BadFileXattr).ToList();
    }

    /// <summary>Root removing <see cref="BadFileXattr"/> is heal saying the copy is good again.</summary>
    public override async ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        if (!IsOwnXattr(ctx, name)) return await Child.RemovexattrAsync(ctx, gfid, name);
        if (name != BadFileXattr || !ctx.IsRoot) return Errno.EPERM;
        return await ClearBadAsync(gfid);
    }
}
