using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Brickfs.ClientFuse.Host;
using Brickfs.ClientFuse.Interop;

namespace Brickfs.ClientFuse.Fuse;

/// <summary>How requests travel between the kernel and Brickfs (<c>-o fuse-transport=</c>).</summary>
public enum FuseTransport
{
    /// <summary>io_uring when the kernel offers it, /dev/fuse otherwise.</summary>
    Auto,
    /// <summary>read(2)/writev(2) on /dev/fuse only.</summary>
    Dev,
    /// <summary>io_uring or the mount fails.</summary>
    Uring,
}

/// <summary>
/// One registered ring entry: a pinned buffer holding the kernel's request header block
/// (struct fuse_uring_req_header, 288 bytes) at 0 and the payload at <see cref="PayloadOffset"/>.
/// The gap between them takes a copy of the in-header and the first argument so that header,
/// arguments and payload read as one contiguous /dev/fuse-style request without copying the
/// payload. Owned by the kernel while registered and waiting, by Brickfs from the completion
/// that delivers a request until the reply commits it.
/// </summary>
internal sealed class FuseUringEntry(FuseUringQueue queue, int index, int maxPayload)
{
    /// <summary>sizeof(struct fuse_uring_req_header): in_out[128], op_in[128], fuse_uring_ent_in_out (32).</summary>
    public const int HeaderBlock = 288;
    public const int OpInOffset = 128;
    public const int OpInSize = 128;
    /// <summary>fuse_uring_ent_in_out.payload_sz: 256 + flags(8) + commit_id(8).</summary>
    public const int PayloadSizeOffset = 272;
    /// <summary>Room before the payload for the in-header (40) and the largest first argument (128).</summary>
    public const int PayloadOffset = 512;

    public FuseUringQueue Queue { get; } = queue;
    public int Index { get; } = index;
    public byte[] Buffer { get; } = GC.AllocateUninitializedArray<byte>(PayloadOffset + maxPayload, pinned: true);
    public ulong CommitId;
}

/// <summary>
/// FUSE over io_uring (kernel 6.14+, Documentation/filesystems/fuse-io-uring.rst): one queue per
/// possible CPU, each served by one thread pinned to that CPU with its own ring. The kernel puts
/// a request on the queue of the CPU its caller runs on, so the wake-up of the serving thread and
/// the wake-up of the caller by the reply stay on one CPU (no cross-CPU IPI per round trip, the
/// cost that dominates a small-file create). INIT, INTERRUPT, FORGET and notifications still go
/// through /dev/fuse and its reader threads.
/// </summary>
internal sealed class FuseUringTransport : IDisposable
{
    private readonly FuseUringQueue[] _queues;

    private FuseUringTransport(FuseUringQueue[] queues) => _queues = queues;

    public int QueueCount => _queues.Length;

    /// <summary>
    /// Starts the queue threads and creates their rings (before INIT is answered: once the kernel
    /// hears FUSE_OVER_IO_URING it holds new requests until every queue has an entry, so Brickfs
    /// asks for it only when the rings exist). Null with <paramref name="why"/> when not possible.
    /// </summary>
    public static FuseUringTransport? TryPrepare(FuseSession session, int devFd, int maxPayload, Log log, out string why)
    {
        int cpus = PossibleCpus();
        var queues = new FuseUringQueue[cpus];
        for (int q = 0; q < cpus; q++) queues[q] = new FuseUringQueue(session, devFd, q, maxPayload, log);
        foreach (var q in queues) q.Start();
        why = "";
        foreach (var q in queues)
        {
            int e = q.WaitCreated(TimeSpan.FromSeconds(10));
            if (e != 0 && why.Length == 0) why = $"io_uring_setup on queue {q.Qid}: {Native.Describe(e)} (errno {e})";
        }
        if (why.Length == 0) return new FuseUringTransport(queues);
        foreach (var q in queues) q.Stop();
        foreach (var q in queues) q.Join(TimeSpan.FromSeconds(5));
        return null;
    }

    /// <summary>
    /// Registers every queue's entries (after INIT is answered: the kernel needs max_write first).
    /// 0 when all queues registered, else the first errno; a failed REGISTER makes the kernel
    /// turn io_uring off for the connection, so requests keep flowing through /dev/fuse.
    /// </summary>
    public int Register(TimeSpan timeout)
    {
        foreach (var q in _queues) q.Go();
        int first = 0;
        foreach (var q in _queues)
        {
            int e = q.WaitRegistered(timeout);
            if (e != 0 && first == 0) first = e;
        }
        return first;
    }

    /// <summary>Requests delivered through each queue's ring so far, by qid (diagnostics, tests).</summary>
    public long[] DeliveredByQueue => [.. _queues.Select(q => q.Delivered)];

    public void Dispose()
    {
        foreach (var q in _queues) q.Stop();
        foreach (var q in _queues) q.Join(TimeSpan.FromSeconds(5));
        foreach (var q in _queues) q.Dispose();
    }

    /// <summary>The kernel makes one queue per possible CPU (num_possible_cpus()); qid = CPU number.</summary>
    internal static int PossibleCpus()
    {
        try
        {
            return ParseCpuList(File.ReadAllText("/sys/devices/system/cpu/possible").Trim());
        }
        catch (IOException)
        {
            return Environment.ProcessorCount;
        }
    }

    /// <summary>Highest CPU number + 1 in a kernel CPU list such as "0-3,5".</summary>
    internal static int ParseCpuList(string list)
    {
        int max = -1;
        foreach (var part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string last = part.Contains('-') ? part[(part.IndexOf('-') + 1)..] : part;
            if (int.TryParse(last, out int n)) max = Math.Max(max, n);
        }
        return max + 1 > 0 ? max + 1 : Environment.ProcessorCount;
    }
}

/// <summary>
/// One CPU's queue: its thread owns the ring (single issuer), registers entries, takes requests
/// from completions and runs the handler inline like a /dev/fuse reader. Replies made on this
/// thread go straight onto its submission queue and leave with its next io_uring_enter; replies
/// from other threads (handlers that awaited) are handed over through a queue and an eventfd.
/// </summary>
internal sealed class FuseUringQueue : IDisposable
{
    private const uint CmdRegister = 1;           // FUSE_IO_URING_CMD_REGISTER
    private const uint CmdCommitAndFetch = 2;     // FUSE_IO_URING_CMD_COMMIT_AND_FETCH
    private const ulong WakeTag = ulong.MaxValue;

    /// <summary>Entries registered at start.</summary>
    private const int InitialDepth = 8;
    /// <summary>
    /// Entries kept free in the kernel: a request that finds none waits for a commit, and an entry
    /// registered later does not pick up waiting requests; so the queue grows before it runs out
    /// (requests that block, like F_SETLKW, hold their entry until answered).
    /// </summary>
    private const int Spare = 4;
    private const int MaxDepth = 256;

    private readonly FuseSession _session;
    private readonly Action<FuseRequest> _dispatch;
    private readonly int _devFd;
    private readonly int _maxPayload;
    private readonly Log _log;
    private readonly List<FuseUringEntry> _entries = [];
    private readonly ConcurrentQueue<FuseUringEntry> _commits = new();
    private readonly TaskCompletionSource<int> _created = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _registered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ManualResetEventSlim _go = new();
    private readonly byte[] _wakeBuffer = GC.AllocateArray<byte>(8, pinned: true);
    private readonly byte[] _cmd = new byte[24];
    private Thread? _thread;
    private IoUring? _ring;
    private int _eventFd = -1;
    private int _sleeping;
    private volatile bool _stopping;
    private volatile bool _exited;
    private bool _ended;
    private int _live;
    private int _held;
    private long _delivered;
    private long _handedOver;

    public FuseUringQueue(FuseSession session, int devFd, int qid, int maxPayload, Log log)
    {
        _session = session;
        _dispatch = session.DispatchRequest;
        _devFd = devFd;
        Qid = qid;
        _maxPayload = maxPayload;
        _log = log;
    }

    public int Qid { get; }

    public long Delivered => Interlocked.Read(ref _delivered);

    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = $"fuse-uring-{Qid}" };
        _thread.Start();
    }

    public int WaitCreated(TimeSpan timeout) => _created.Task.Wait(timeout) ? _created.Task.Result : Native.EAGAIN;

    public void Go() => _go.Set();

    public int WaitRegistered(TimeSpan timeout) => _registered.Task.Wait(timeout) ? _registered.Task.Result : Native.EAGAIN;

    public void Stop()
    {
        _stopping = true;
        _go.Set();
        Wake();
    }

    public void Join(TimeSpan timeout) => _thread?.Join(timeout);

    public void Dispose()
    {
        if (_exited && _eventFd >= 0)
        {
            Native.Close(_eventFd);
            _eventFd = -1;
        }
    }

    private void Wake()
    {
        if (_eventFd >= 0 && !_exited) Native.EventFdSignal(_eventFd);
    }

    // ---- the queue thread -------------------------------------------------------------------

    private void Run()
    {
        try
        {
            int pin = Native.PinCurrentThread(Qid);
            if (pin != 0) _log.Warn("fuse.uring-unpinned", $"qid={Qid} errno={pin}");
            int e = IoUring.Create(2 * MaxDepth + 16, IoUring.SetupSqe128 | IoUring.SetupSingleIssuer | IoUring.SetupDeferTaskrun, MaxDepth, out _ring);
            if (e == 0)
            {
                _eventFd = Native.EventFd();
                if (_eventFd < 0) e = -_eventFd;
            }
            _created.TrySetResult(e);
            if (e != 0) return;
            _go.Wait();
            if (_stopping)
            {
                _registered.TrySetResult(Native.ECANCELED);
                return;
            }
            Serve();
        }
        catch (Exception e)
        {
            _log.Error("fuse.uring-crashed", $"qid={Qid} error=\"{e}\"");
            _created.TrySetResult(Native.EAGAIN);
            _registered.TrySetResult(Native.EAGAIN);
        }
        finally
        {
            _exited = true;
            _ring?.Dispose();
            if (Delivered > 0)
                _log.Info("fuse.uring-queue-stats", $"qid={Qid} requests={Delivered} replies-from-other-threads={Interlocked.Read(ref _handedOver)} entries={_entries.Count}");
        }
    }

    private void Serve()
    {
        var ring = _ring!;
        for (int i = 0; i < InitialDepth; i++) AddEntry();
        Arm();
        int e = ring.Enter(0);
        // A REGISTER the kernel refuses completes at once; a good one completes only when a request arrives.
        while (e == 0 && ring.TryReap(out ulong ud, out int res))
        {
            if (res < 0 && e == 0) e = -res;
            else Complete(ud, res);
        }
        _registered.TrySetResult(e);
        if (e != 0)
        {
            _log.Warn("fuse.uring-register-failed", $"qid={Qid} errno={e}");
            return;
        }
        while (!_stopping && _live > 0)
        {
            DrainCommits();
            // A full fence, not a release store: the check of _commits below must not be read
            // before other threads can see _sleeping = 1, or a commit enqueued in between finds
            // _sleeping = 0 (no wake) while this thread goes to sleep on an empty-looking queue
            // (the store-load reordering x86 allows). Commit's exchange is the other half.
            Interlocked.Exchange(ref _sleeping, 1);
            bool wait = _commits.IsEmpty && !_stopping;
            e = ring.Enter(wait ? 1u : 0u);
            Volatile.Write(ref _sleeping, 0);
            if (e != 0 && e != Native.EINTR && e != Native.EAGAIN)
            {
                _log.Error("fuse.uring-enter-failed", $"qid={Qid} errno={e}");
                break;
            }
            while (ring.TryReap(out ulong ud, out int res)) Complete(ud, res);
            while (_live - _held < Spare && _entries.Count < MaxDepth && !_stopping && !_ended) AddEntry();
        }
    }

    private void AddEntry()
    {
        var entry = new FuseUringEntry(this, _entries.Count, _maxPayload);
        _entries.Add(entry);
        WriteCmd(commitId: 0);
        while (!_ring!.PrepUringCmd(_devFd, CmdRegister, (ulong)entry.Index, _cmd, entry.Buffer, FuseUringEntry.HeaderBlock, FuseUringEntry.PayloadOffset, _maxPayload, entry.Index))
            Flush();
        _live++;
    }

    private void Arm()
    {
        while (!_ring!.PrepRead(_eventFd, _wakeBuffer, WakeTag)) Flush();
    }

    private void Flush()
    {
        int e = _ring!.Enter(0);
        if (e != 0 && e != Native.EINTR && e != Native.EAGAIN) throw new IOException($"io_uring_enter: errno {e}");
    }

    /// <summary>struct fuse_uring_cmd_req: flags (8), commit_id (8), qid (2), padding (6).</summary>
    private void WriteCmd(ulong commitId)
    {
        Array.Clear(_cmd);
        BinaryPrimitives.WriteUInt64LittleEndian(_cmd.AsSpan(8), commitId);
        BinaryPrimitives.WriteUInt16LittleEndian(_cmd.AsSpan(16), (ushort)Qid);
    }

    private void Complete(ulong userData, int res)
    {
        if (userData == WakeTag)
        {
            if (!_stopping) Arm();
            return;
        }
        var entry = _entries[(int)userData];
        if (res < 0)
        {
            // ENOTCONN/ECONNABORTED: the connection ended (unmount, abort); ECANCELED: the ring is going
            // away. Either way the queue only winds down from here: no entry is replaced. Any other
            // failure loses this entry only; the queue registers a new one when it runs short.
            _live--;
            if (res == -Native.ENOTCONN || res == -Native.ECONNABORTED || res == -Native.ECANCELED) _ended = true;
            else
                _log.Error("fuse.uring-entry-failed", $"qid={Qid} entry={entry.Index} errno={-res}");
            return;
        }
        _held++;
        Interlocked.Increment(ref _delivered);
        var request = Unpack(entry);
        if (request is null)
        {
            Commit(entry, BinaryPrimitives.ReadUInt64LittleEndian(entry.Buffer.AsSpan(8)), Native.EIO, default, default);
            return;
        }
        if (LeavesTheRing(request))
            ThreadPool.UnsafeQueueUserWorkItem(_dispatch, request, preferLocal: false);
        else
            _session.DispatchRequest(request);
    }

    /// <summary>Reads from this size up leave the ring thread (see <see cref="LeavesTheRing"/>).</summary>
    internal const int OffRingReadSize = 256 * 1024;

    /// <summary>
    /// Requests that may block their thread for long leave the ring thread for the pool; the rest
    /// run inline until their first await. An fsync of a local brick can take tens of
    /// milliseconds. A big read of a volume whose storage is in this process (storage/posix
    /// reads synchronously) waits on the disk: read-ahead sends a file's next windows to the
    /// same CPU's queue, and inline they would be read one after another instead of together
    /// (local volume, 1 GiB cold: 554-723 MiB/s inline, 923-1,215 MiB/s off the ring). A
    /// network volume's read awaits its brick at once, so there it stays inline.
    /// </summary>
    private bool LeavesTheRing(FuseRequest request) => request.Opcode switch
    {
        FuseOpcode.Fsync or FuseOpcode.Fsyncdir => true,
        FuseOpcode.Read => _session.Options.StorageInProcess && request.Arg<FuseReadIn>().Size >= OffRingReadSize,
        _ => false,
    };

    /// <summary>
    /// The kernel put the in-header in in_out, the first argument in op_in and the rest in the
    /// payload (fuse_uring_args_to_ring); header.len still counts all of it. Copies the header and
    /// the first argument in front of the payload so the request reads as /dev/fuse delivers it.
    /// </summary>
    private FuseRequest? Unpack(FuseUringEntry entry)
    {
        var buf = entry.Buffer;
        var header = MemoryMarshal.Read<FuseInHeader>(buf);
        int payload = (int)BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(FuseUringEntry.PayloadSizeOffset));
        int first = (int)header.Len - FuseRequest.HeaderSize - payload;
        if (first < 0 || first > FuseUringEntry.OpInSize || payload > _maxPayload)
        {
            _log.Error("fuse.uring-bad-request", $"qid={Qid} op={header.Opcode} unique={header.Unique} len={header.Len} payload={payload}");
            return null;
        }
        int start = FuseUringEntry.PayloadOffset - first - FuseRequest.HeaderSize;
        buf.AsSpan(0, FuseRequest.HeaderSize).CopyTo(buf.AsSpan(start));
        buf.AsSpan(FuseUringEntry.OpInOffset, first).CopyTo(buf.AsSpan(FuseUringEntry.PayloadOffset - first));
        return new FuseRequest(buf, start, FuseRequest.HeaderSize + first + payload, pool: null, entry);
    }

    /// <summary>
    /// Writes a reply into <paramref name="entry"/> (out-header into in_out, out arguments into the
    /// payload with payload_sz) and hands the entry back with COMMIT_AND_FETCH. Any thread: on the
    /// queue thread the command goes straight onto the ring, from others through the hand-over queue.
    /// </summary>
    public void Commit(FuseUringEntry entry, ulong unique, int errno, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var buf = entry.Buffer;
        int n = a.Length + b.Length;
        if (n > _maxPayload)
        {
            _log.Error("fuse.uring-reply-too-big", $"qid={Qid} unique={unique} bytes={n}");
            errno = Native.EIO;
            a = b = default;
            n = 0;
        }
        if (a.Length > 0) a.CopyTo(buf.AsSpan(FuseUringEntry.PayloadOffset));
        if (b.Length > 0) b.CopyTo(buf.AsSpan(FuseUringEntry.PayloadOffset + a.Length));
        var header = new FuseOutHeader { Len = (uint)(16 + n), Error = -errno, Unique = unique };
        MemoryMarshal.Write(buf.AsSpan(0, 16), in header);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(FuseUringEntry.PayloadSizeOffset), (uint)n);
        entry.CommitId = unique;
        if (Thread.CurrentThread == _thread)
        {
            PrepCommit(entry);
            return;
        }
        Interlocked.Increment(ref _handedOver);
        _commits.Enqueue(entry);
        if (Interlocked.Exchange(ref _sleeping, 0) == 1) Wake();
    }

    private void DrainCommits()
    {
        while (_commits.TryDequeue(out var entry)) PrepCommit(entry);
    }

    private void PrepCommit(FuseUringEntry entry)
    {
        _held--;
        if (_exited || _ring is null) return;
        WriteCmd(entry.CommitId);
        while (!_ring.PrepUringCmd(_devFd, CmdCommitAndFetch, (ulong)entry.Index, _cmd)) Flush();
    }
}
