using System.Buffers;

namespace Brickfs.Translators.Core;

/// <summary>
/// Bulk data travelling up the graph (read results). It owns a pooled array; whoever ends the
/// journey (the FUSE bridge after writing the reply, the brick server after sending) disposes it,
/// which returns the array to the pool. Nothing between copies it.
/// </summary>
public sealed class DataBuffer : IDisposable
{
    private byte[]? _array;
    private readonly int _offset;
    private readonly Action<byte[]>? _return;

    public int Length { get; private set; }

    private DataBuffer(byte[] array, int offset, int length, Action<byte[]>? returnTo)
    {
        _array = array;
        _offset = offset;
        Length = length;
        _return = returnTo;
    }

    /// <summary>The shared empty buffer: any number of holders may dispose it, it stays usable.</summary>
    public static readonly DataBuffer Empty = new([], 0, 0, null);

    /// <summary>A buffer of <paramref name="capacity"/> bytes rented from the shared pool.</summary>
    public static DataBuffer Rent(int capacity) =>
        new(ArrayPool<byte>.Shared.Rent(Math.Max(capacity, 1)), 0, capacity, static a => ArrayPool<byte>.Shared.Return(a));

    /// <summary>Wraps a region of an array owned by someone else; <paramref name="onDispose"/> gives it back.</summary>
    public static DataBuffer Wrap(byte[] array, int offset, int length, Action<byte[]>? onDispose = null) =>
        new(array, offset, length, onDispose);

    public static DataBuffer CopyOf(ReadOnlySpan<byte> data)
    {
        var b = Rent(data.Length);
        data.CopyTo(b.Span);
        return b;
    }

    public Memory<byte> Memory => _array is null ? throw new ObjectDisposedException(nameof(DataBuffer)) : _array.AsMemory(_offset, Length);
    public Span<byte> Span => Memory.Span;

    /// <summary>Shortens the buffer to the bytes actually filled (e.g. a short read).</summary>
    public void Truncate(int length)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
    }

    public void Dispose()
    {
        if (ReferenceEquals(this, Empty)) return;
        var a = Interlocked.Exchange(ref _array, null);
        if (a is not null && a.Length > 0) _return?.Invoke(a);
    }
}
