using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;

namespace Brickfs.ClientFuse.Fuse;

/// <summary>
/// One request read from /dev/fuse or taken from an io_uring queue entry. It owns the bytes it
/// arrived in (header and arguments contiguous, as /dev/fuse delivers them) so a WRITE's data
/// can go down the graph in place without a copy: a /dev/fuse request until it is disposed
/// (after its reply); a ring request until its reply, which hands the entry back to the kernel
/// (the body reads as disposed from then on).
/// </summary>
public sealed class FuseRequest : IDisposable
{
    public const int HeaderSize = 40;

    private byte[]? _buffer;
    private readonly int _offset;
    private readonly int _length;
    private readonly BufferPool? _pool;
    private int _replied;

    internal FuseRequest(byte[] buffer, int length, BufferPool? pool)
        : this(buffer, 0, length, pool, entry: null)
    {
    }

    internal FuseRequest(byte[] buffer, int offset, int length, BufferPool? pool, FuseUringEntry? entry)
    {
        _buffer = buffer;
        _offset = offset;
        _length = length;
        _pool = pool;
        Entry = entry;
        Header = MemoryMarshal.Read<FuseInHeader>(buffer.AsSpan(offset));
    }

    /// <summary>The io_uring entry this request arrived in (its reply goes back through it); null for /dev/fuse.</summary>
    internal FuseUringEntry? Entry { get; }

    public FuseInHeader Header { get; }
    public FuseOpcode Opcode => Header.Opcode;
    public ulong Unique => Header.Unique;
    public ulong NodeId => Header.NodeId;

    /// <summary>The session that read this request and sends its reply.</summary>
    public FuseSession Session { get; internal set; } = null!;

    /// <summary>Triggered when the kernel sends FUSE_INTERRUPT for this request.</summary>
    public CancellationToken Cancellation { get; internal set; }

    internal CancellationTokenSource? Interrupt { get; set; }

    /// <summary>The request body after the header.</summary>
    public ReadOnlySpan<byte> Payload => Buffer.AsSpan(_offset + HeaderSize, _length - HeaderSize);

    /// <summary>A slice of the body as memory (WRITE data handed to the graph without copying).</summary>
    public ReadOnlyMemory<byte> PayloadMemory(int offset, int length) => Buffer.AsMemory(_offset + HeaderSize + offset, length);

    private byte[] Buffer => _buffer ?? throw new ObjectDisposedException(nameof(FuseRequest));

    /// <summary>The fixed-size argument at the start of the body; missing trailing bytes (older kernels) read as zero.</summary>
    public T Arg<T>() where T : unmanaged
    {
        var p = Payload;
        int size = Marshal.SizeOf<T>();
        if (p.Length >= size) return MemoryMarshal.Read<T>(p);
        Span<byte> tmp = stackalloc byte[size];
        tmp.Clear();
        p.CopyTo(tmp);
        return MemoryMarshal.Read<T>(tmp);
    }

    /// <summary>A NUL-terminated name at <paramref name="offset"/> in the body; <paramref name="next"/> is the offset after its NUL.</summary>
    public string Name(int offset, out int next)
    {
        var p = Payload[offset..];
        int end = p.IndexOf((byte)0);
        if (end < 0) end = p.Length;
        next = offset + end + 1;
        return Encoding.UTF8.GetString(p[..end]);
    }

    public string Name(int offset) => Name(offset, out _);

    /// <summary>True the first time only: a request is answered once.</summary>
    internal bool TryMarkReplied() => Interlocked.Exchange(ref _replied, 1) == 0;

    internal bool Replied => Volatile.Read(ref _replied) != 0;

    /// <summary>Gives up the body without returning it anywhere: a ring entry's buffer goes back to the kernel with the reply.</summary>
    internal void Detach() => Volatile.Write(ref _buffer, null);

    public void Dispose()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is null || Entry is not null) return;
        if (_pool is not null) _pool.Return(b);
        else ArrayPool<byte>.Shared.Return(b);
    }

    public override string ToString() => $"{Opcode}#{Unique} node={NodeId}";
}

/// <summary>
/// Fixed-size request buffers (max_write + 64 KiB), allocated pinned so reads need no pinning.
/// A small free list bounds what idle buffers cost; a burst beyond it allocates and the extra
/// buffers are dropped to the GC on return.
/// </summary>
internal sealed class BufferPool
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<byte[]> _free = new();
    private readonly int _keep;
    private int _count;

    public BufferPool(int size, int keep)
    {
        Size = size;
        _keep = keep;
    }

    public int Size { get; }

    public byte[] Rent()
    {
        if (_free.TryDequeue(out var b))
        {
            Interlocked.Decrement(ref _count);
            return b;
        }
        return GC.AllocateUninitializedArray<byte>(Size, pinned: true);
    }

    public void Return(byte[] b)
    {
        if (Interlocked.Increment(ref _count) > _keep)
        {
            Interlocked.Decrement(ref _count);
            return;
        }
        _free.Enqueue(b);
    }
}
