using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>
/// The per-file checksum records, kept through the child so they live on the brick next to the
/// data and survive restarts. One sidecar file per GFID, <c>/.brickfs/bitrot/aa/&lt;gfid&gt;</c>
/// (aa = the first two hex digits): a 16-byte header (magic, version, block size) and then one
/// little-endian XXH3-64 per block, block i at byte 16 + 8 i. An entry of 0, or one past the end
/// of the sidecar, means "unsigned": the block has no checksum yet (it is never verified; the
/// scrubber signs it). A sidecar with another block size is deleted on load (the file is unsigned again).
/// </summary>
/// <remarks>
/// Every call uses a <see cref="FopContext.Brick"/> context: storage/posix lets only such
/// requests into <c>.brickfs/</c>. Over storage/memory the store is an ordinary directory that
/// bitrot hides from the graph above.
/// </remarks>
internal sealed class ChecksumStore
{
    public const string HiddenDir = ".brickfs";
    public const string DirName = "bitrot";
    public const string StorePath = HiddenDir + "/" + DirName;
    public const int HeaderSize = 16;
    private const ulong Magic = 0x544f525449425242; // "BRBITROT" little-endian
    private const uint Version = 1;

    private readonly Translator _child;
    private readonly int _blockSize;
    private readonly ConcurrentDictionary<int, Gfid> _buckets = new();
    private readonly SemaphoreSlim _mkdir = new(1, 1);
    private Gfid _dir;

    public ChecksumStore(Translator child, int blockSize)
    {
        _child = child;
        _blockSize = blockSize;
    }

    private static FopContext Ctx => FopContext.Brick();

    /// <summary>Finds or makes the store's directory, <see cref="StorePath"/> below the brick root.</summary>
    public async ValueTask<Errno> InitAsync()
    {
        var hidden = await LookupOrMkdirAsync(Gfid.Root, HiddenDir);
        if (!hidden.Ok) return hidden.Error;
        var r = await LookupOrMkdirAsync(hidden.Value, DirName);
        if (!r.Ok) return r.Error;
        _dir = r.Value;
        return Errno.None;
    }

    private async ValueTask<FopResult<Gfid>> LookupOrMkdirAsync(Gfid parent, string name)
    {
        var l = await _child.LookupAsync(Ctx, parent, name);
        if (l.Ok) return l.Value.IsDirectory ? l.Value.Gfid : Errno.ENOTDIR;
        if (l.Error != Errno.ENOENT) return l.Error;
        var m = await _child.MkdirAsync(Ctx, parent, name, 0x1C0 /* 0700 */, Gfid.NewRandom());
        if (m.Ok) return m.Value.Gfid;
        if (m.Error != Errno.EEXIST) return m.Error;
        l = await _child.LookupAsync(Ctx, parent, name);
        return l.Ok ? l.Value.Gfid : l.Error;
    }

    private static string NameOf(Gfid file) => file.ToString();

    private async ValueTask<FopResult<Gfid>> BucketAsync(Gfid file)
    {
        int key = (int)(file.Hi >> 56);
        if (_buckets.TryGetValue(key, out var g)) return g;
        await _mkdir.WaitAsync();
        try
        {
            if (_buckets.TryGetValue(key, out g)) return g;
            var r = await LookupOrMkdirAsync(_dir, key.ToString("x2"));
            if (r.Ok) _buckets[key] = r.Value;
            return r;
        }
        finally
        {
            _mkdir.Release();
        }
    }

    /// <summary>Opens the record of <paramref name="file"/>; null when it has none and <paramref name="create"/> is false.</summary>
    public async ValueTask<FopResult<FileHandle?>> OpenAsync(Gfid file, bool create)
    {
        var b = await BucketAsync(file);
        if (!b.Ok) return b.Error;
        var l = await _child.LookupAsync(Ctx, b.Value, NameOf(file));
        if (l.Ok)
        {
            var fd = new FileHandle(l.Value.Gfid, OpenFlags.ReadWrite);
            var o = await _child.OpenAsync(Ctx, fd);
            return o.Ok ? fd : o.Error;
        }
        if (l.Error != Errno.ENOENT || !create) return l.Error == Errno.ENOENT ? FopResult<FileHandle?>.Success(null) : l.Error;
        var nfd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        var c = await _child.CreateAsync(Ctx, b.Value, NameOf(file), 0x180 /* 0600 */, nfd);
        if (!c.Ok) return c.Error;
        var header = new byte[HeaderSize];
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), (uint)_blockSize);
        var w = await _child.WriteAsync(Ctx, nfd, 0, header);
        if (!w.Ok || w.Value != HeaderSize)
        {
            await CloseAsync(nfd);
            return w.Ok ? Errno.EIO : w.Error;
        }
        return nfd;
    }

    /// <summary>
    /// The checksums in the record, at most <paramref name="maxBlocks"/> of them, and whether it
    /// holds more (entries past the end of the file, left by a crash mid-truncate). A record with a
    /// foreign header (another block size or version) reads as not valid.
    /// </summary>
    public async ValueTask<FopResult<(ulong[] Sums, bool Valid, bool Longer)>> LoadAsync(FileHandle record, long maxBlocks)
    {
        var st = await _child.StatAsync(Ctx, record.Gfid, record);
        if (!st.Ok) return st.Error;
        long entries = Math.Max(0, (st.Value.Size - HeaderSize) / 8);
        long want = Math.Min(entries, maxBlocks);
        if (HeaderSize + want * 8 > int.MaxValue) return Errno.EFBIG;
        using var buf = await ReadExactAsync(record, 0, HeaderSize + (int)want * 8);
        if (buf is null) return Errno.EIO;
        var span = buf.Span;
        if (span.Length < HeaderSize || BinaryPrimitives.ReadUInt64LittleEndian(span) != Magic
            || BinaryPrimitives.ReadUInt32LittleEndian(span[8..]) != Version
            || BinaryPrimitives.ReadUInt32LittleEndian(span[12..]) != (uint)_blockSize)
            return (Array.Empty<ulong>(), false, false);
        int n = (span.Length - HeaderSize) / 8;
        var sums = new ulong[n];
        for (int i = 0; i < n; i++) sums[i] = BinaryPrimitives.ReadUInt64LittleEndian(span[(HeaderSize + i * 8)..]);
        return (sums, true, entries > want);
    }

    private async ValueTask<DataBuffer?> ReadExactAsync(FileHandle fd, long offset, int size)
    {
        var r = await _child.ReadAsync(Ctx, fd, offset, size);
        return r.Ok ? r.Value : null;
    }

    /// <summary>Writes the checksums of blocks <paramref name="first"/>.. in one child write.</summary>
    public async ValueTask<Errno> WriteAsync(FileHandle record, long first, ReadOnlyMemory<ulong> sums)
    {
        int bytes = sums.Length * 8;
        var raw = ArrayPool<byte>.Shared.Rent(bytes);
        try
        {
            var s = sums.Span;
            for (int i = 0; i < s.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(i * 8), s[i]);
            var w = await _child.WriteAsync(Ctx, record, HeaderSize + first * 8, raw.AsMemory(0, bytes));
            return !w.Ok ? w.Error : w.Value == bytes ? Errno.None : Errno.EIO;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(raw);
        }
    }

    /// <summary>Cuts the record to <paramref name="blocks"/> entries (the file shrank).</summary>
    public async ValueTask<Errno> TruncateAsync(FileHandle record, long blocks)
    {
        var r = await _child.SetattrAsync(Ctx, record.Gfid, record, new SetattrRequest { Valid = SetattrValid.Size, Size = HeaderSize + blocks * 8 });
        return r.Error;
    }

    /// <summary>Deletes the record of <paramref name="file"/> (its last link is gone); a missing record is fine.</summary>
    public async ValueTask RemoveAsync(Gfid file)
    {
        var b = await BucketAsync(file);
        if (b.Ok) await _child.UnlinkAsync(Ctx, b.Value, NameOf(file));
    }

    /// <summary>The content of the store's own file <paramref name="name"/> (next to the buckets), null when it does not exist or cannot be read.</summary>
    public async ValueTask<byte[]?> ReadFileAsync(string name)
    {
        var l = await _child.LookupAsync(Ctx, _dir, name);
        if (!l.Ok) return null;
        var fd = new FileHandle(l.Value.Gfid, OpenFlags.ReadOnly);
        if (!(await _child.OpenAsync(Ctx, fd)).Ok) return null;
        try
        {
            var r = await _child.ReadAsync(Ctx, fd, 0, (int)Math.Min(l.Value.Size, 1 << 20));
            if (!r.Ok) return null;
            using var data = r.Value;
            return data.Span.ToArray();
        }
        finally
        {
            await CloseAsync(fd);
        }
    }

    /// <summary>
    /// Replaces the content of the store's own file <paramref name="name"/> (made if missing).
    /// Not atomic: a crash mid-way may leave a torn file, so readers must recognise a torn content.
    /// </summary>
    public async ValueTask<Errno> WriteFileAsync(string name, ReadOnlyMemory<byte> content)
    {
        var l = await _child.LookupAsync(Ctx, _dir, name);
        FileHandle fd;
        if (l.Ok)
        {
            fd = new FileHandle(l.Value.Gfid, OpenFlags.ReadWrite);
            var o = await _child.OpenAsync(Ctx, fd);
            if (!o.Ok) return o.Error;
        }
        else
        {
            if (l.Error != Errno.ENOENT) return l.Error;
            fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
            var c = await _child.CreateAsync(Ctx, _dir, name, 0x180 /* 0600 */, fd);
            if (!c.Ok) return c.Error;
        }
        try
        {
            var w = await _child.WriteAsync(Ctx, fd, 0, content);
            if (!w.Ok) return w.Error;
            var t = await _child.SetattrAsync(Ctx, fd.Gfid, fd, new SetattrRequest { Valid = SetattrValid.Size, Size = content.Length });
            return t.Error;
        }
        finally
        {
            await CloseAsync(fd);
        }
    }

    public ValueTask CloseAsync(FileHandle record) => IgnoreAsync(_child.ReleaseAsync(Ctx, record));

    private static async ValueTask IgnoreAsync(ValueTask<FopResult> t) => await t;
}
