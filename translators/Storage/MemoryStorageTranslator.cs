using Brickfs.Translators.Core;

namespace Brickfs.Translators.Storage;

/// <summary>
/// storage/memory: a whole brick in process memory, for unit tests and the conformance suite.
/// It keeps POSIX semantics (GFIDs, hard links, open-after-unlink, permission bits checked for
/// the caller) but not durability. One lock serialises everything: it is a test double, not a
/// fast path.
/// </summary>
public sealed class MemoryStorageTranslator : Translator
{
    public static readonly IReadOnlyList<OptionSpec> OptionSpecs =
    [
        new("capacity", OptionType.Size, "1GB", "bytes reported by statfs as the brick's size"),
    ];

    public static TranslatorType Type { get; } = new("storage/memory", OptionSpecs, 0, 0,
        o => new MemoryStorageTranslator(o), "an in-memory brick for tests");

    private sealed class Node
    {
        public required Gfid Gfid;
        public uint Mode;
        public uint Uid, Gid;
        public ulong Rdev;
        public uint Links;
        public SparseData Data = new();
        public long Size;
        public string? Target;
        public Timespec Atime, Mtime, Ctime;
        public SortedDictionary<string, Gfid>? Entries;
        public Dictionary<string, byte[]> Xattrs = new(StringComparer.Ordinal);
        public bool IsDir => ModeBits.IsDirectory(Mode);
    }

    private readonly Dictionary<Gfid, Node> _nodes = new();
    private readonly Lock _lock = new();
    private readonly long _capacity;

    public MemoryStorageTranslator(TranslatorOptions options)
    {
        _capacity = options.GetSize("capacity");
        var now = Timespec.Now();
        _nodes[Gfid.Root] = new Node
        {
            Gfid = Gfid.Root, Mode = ModeBits.Directory | 0x1ED /* 0755 */, Links = 2, Entries = new(StringComparer.Ordinal),
            Atime = now, Mtime = now, Ctime = now,
        };
    }

    public MemoryStorageTranslator() : this(TranslatorOptions.From(OptionSpecs)) { }

    private static ValueTask<FopResult<T>> Done<T>(FopResult<T> r) => ValueTask.FromResult(r);
    private static ValueTask<FopResult> Done(FopResult r) => ValueTask.FromResult(r);

    private Iatt AttrOf(Node n)
    {
        uint nlink = n.IsDir ? 2u + (uint)n.Entries!.Values.Count(g => _nodes.TryGetValue(g, out var c) && c.IsDir) : n.Links;
        return new Iatt
        {
            Gfid = n.Gfid, Mode = n.Mode, Nlink = nlink, Uid = n.Uid, Gid = n.Gid, Rdev = n.Rdev,
            Size = n.IsDir ? 4096 : n.Target?.Length ?? n.Size, Blocks = n.Data.AllocatedBytes / 512,
            Atime = n.Atime, Mtime = n.Mtime, Ctime = n.Ctime,
        };
    }

    /// <summary>Attributes with the xattrs the caller asked for in <see cref="FopContext.XattrRequest"/>.</summary>
    private Iatt AttrOf(Node n, FopContext ctx)
    {
        var attr = AttrOf(n);
        if (ctx.XattrRequest is not { } keys) return attr;
        var found = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var k in keys) if (n.Xattrs.TryGetValue(k, out var v)) found[k] = v.ToArray();
        return attr with { Xattrs = found };
    }

    /// <summary>Owner/group/other permission check of the caller against a node (root passes r/w; x needs some x bit).</summary>
    private static bool Allowed(FopContext ctx, Node n, int mask)
    {
        if (ctx.Uid == 0) return (mask & 1) == 0 || n.IsDir || (n.Mode & 0x49) != 0;
        uint bits = ctx.Uid == n.Uid ? (n.Mode >> 6) & 7
            : ctx.Gid == n.Gid || ctx.Groups.Contains(n.Gid) ? (n.Mode >> 3) & 7
            : n.Mode & 7;
        return ((uint)mask & ~bits) == 0;
    }

    private static bool ValidName(string name) =>
        name.Length > 0 && name != "." && name != ".." && !name.Contains('/') && !name.Contains('\0')
        && System.Text.Encoding.UTF8.GetByteCount(name) <= 255;

    private Errno Dir(FopContext ctx, Gfid parent, string name, bool write, out Node dir)
    {
        if (!_nodes.TryGetValue(parent, out dir!)) return Errno.ESTALE;
        if (!dir.IsDir) return Errno.ENOTDIR;
        if (!ValidName(name)) return System.Text.Encoding.UTF8.GetByteCount(name) > 255 ? Errno.ENAMETOOLONG : Errno.EINVAL;
        if (!Allowed(ctx, dir, write ? 3 : 1)) return Errno.EACCES;
        return Errno.None;
    }

    /// <summary>Sticky directories let only the entry's owner, the directory's owner or root remove or rename it.</summary>
    private static bool StickyDenies(FopContext ctx, Node dir, Node victim) =>
        (dir.Mode & ModeBits.Sticky) != 0 && ctx.Uid != 0 && ctx.Uid != dir.Uid && ctx.Uid != victim.Uid;

    private FopResult<Iatt> AddEntry(FopContext ctx, Gfid parent, string name, uint mode, Gfid gfid, Action<Node>? init = null)
    {
        var e = Dir(ctx, parent, name, write: true, out var dir);
        if (e != Errno.None) return e;
        if (dir.Entries!.ContainsKey(name)) return Errno.EEXIST;
        if (_nodes.ContainsKey(gfid)) return Errno.EEXIST;
        var now = Timespec.Now();
        uint gid = (dir.Mode & ModeBits.SetGid) != 0 ? dir.Gid : ctx.Gid;
        if (ModeBits.IsDirectory(mode) && (dir.Mode & ModeBits.SetGid) != 0) mode |= ModeBits.SetGid;
        var n = new Node { Gfid = gfid, Mode = mode, Uid = ctx.Uid, Gid = gid, Links = 1, Atime = now, Mtime = now, Ctime = now };
        if (n.IsDir) n.Entries = new SortedDictionary<string, Gfid>(StringComparer.Ordinal);
        init?.Invoke(n);
        _nodes[gfid] = n;
        dir.Entries[name] = gfid;
        dir.Mtime = dir.Ctime = now;
        return AttrOf(n);
    }

    public override ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name)
    {
        lock (_lock)
        {
            var e = Dir(ctx, parent, name, write: false, out var dir);
            if (e != Errno.None) return Done<Iatt>(e);
            return Done(dir.Entries!.TryGetValue(name, out var g) ? AttrOf(_nodes[g], ctx) : FopResult<Iatt>.Fail(Errno.ENOENT));
        }
    }

    public override ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        lock (_lock)
        {
            if (fd is not null && fd.TryGetContext<Node>(this, out var held)) return Done(FopResult<Iatt>.Success(AttrOf(held, ctx)));
            return Done(_nodes.TryGetValue(gfid, out var n) ? AttrOf(n, ctx) : FopResult<Iatt>.Fail(Errno.ESTALE));
        }
    }

    public override ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest r)
    {
        lock (_lock)
        {
            if (!(fd is not null && fd.TryGetContext(this, out Node n)) && !_nodes.TryGetValue(gfid, out n!)) return Done<Iatt>(Errno.ESTALE);
            bool owner = ctx.Uid == 0 || ctx.Uid == n.Uid;
            var now = Timespec.Now();
            if (r.Has(SetattrValid.Mode))
            {
                if (!owner) return Done<Iatt>(Errno.EPERM);
                uint mode = r.Mode & ModeBits.PermMask;
                if (ctx.Uid != 0 && n.Gid != ctx.Gid && !ctx.Groups.Contains(n.Gid)) mode &= ~ModeBits.SetGid;
                n.Mode = (n.Mode & ModeBits.TypeMask) | mode;
            }
            if (r.Has(SetattrValid.Uid) || r.Has(SetattrValid.Gid))
            {
                uint uid = r.Has(SetattrValid.Uid) ? r.Uid : n.Uid, gid = r.Has(SetattrValid.Gid) ? r.Gid : n.Gid;
                if (ctx.Uid != 0 && (uid != n.Uid || ctx.Uid != n.Uid || (gid != n.Gid && gid != ctx.Gid && !ctx.Groups.Contains(gid))))
                    return Done<Iatt>(Errno.EPERM);
                n.Uid = uid;
                n.Gid = gid;
                if (!n.IsDir) n.Mode &= ~(ModeBits.SetUid | ((n.Mode & 0x8) != 0 ? ModeBits.SetGid : 0));
            }
            // Asked for by a writer or truncater without CAP_FSETID (it need not own the file).
            if (r.Has(SetattrValid.KillSuidGid) && !n.IsDir) n.Mode &= ~(ModeBits.SetUid | ((n.Mode & 0x8) != 0 ? ModeBits.SetGid : 0));
            if (r.Has(SetattrValid.Size))
            {
                if (n.IsDir) return Done<Iatt>(Errno.EISDIR);
                if (fd is null && !Allowed(ctx, n, 2)) return Done<Iatt>(Errno.EACCES);
                Resize(n, r.Size);
                n.Mtime = now;
            }
            if (r.Has(SetattrValid.Atime) || r.Has(SetattrValid.Mtime))
            {
                bool explicitTimes = (r.Has(SetattrValid.Atime) && !r.Has(SetattrValid.AtimeNow)) || (r.Has(SetattrValid.Mtime) && !r.Has(SetattrValid.MtimeNow));
                if (!owner && (explicitTimes || !Allowed(ctx, n, 2))) return Done<Iatt>(explicitTimes ? Errno.EPERM : Errno.EACCES);
                if (r.Has(SetattrValid.Atime)) n.Atime = r.Has(SetattrValid.AtimeNow) ? now : r.Atime;
                if (r.Has(SetattrValid.Mtime)) n.Mtime = r.Has(SetattrValid.MtimeNow) ? now : r.Mtime;
            }
            n.Ctime = now;
            return Done(FopResult<Iatt>.Success(AttrOf(n)));
        }
    }

    private static void Resize(Node n, long size)
    {
        if (size < n.Size) n.Data.Clear(size, n.Size - size);
        n.Size = size;
    }

    public override ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, Gfid gfid)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done<string>(Errno.ESTALE);
            return Done(n.Target is { } t ? FopResult<string>.Success(t) : Errno.EINVAL);
        }
    }

    public override ValueTask<FopResult> AccessAsync(FopContext ctx, Gfid gfid, int mask)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done(Errno.ESTALE);
            return Done(mask == 0 || Allowed(ctx, n, mask) ? FopResult.Success : Errno.EACCES);
        }
    }

    public override ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, Gfid gfid)
    {
        lock (_lock)
        {
            long used = _nodes.Values.Sum(n => n.Size);
            ulong blocks = (ulong)(_capacity / 4096), free = (ulong)Math.Max(0, (_capacity - used) / 4096);
            return Done(FopResult<StatfsInfo>.Success(new StatfsInfo
            {
                Blocks = blocks, BlocksFree = free, BlocksAvailable = free, Files = 1_000_000, FilesFree = 1_000_000 - (ulong)_nodes.Count,
            }));
        }
    }

    public override ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid)
    {
        lock (_lock) return Done(AddEntry(ctx, parent, name, mode, newGfid, n => n.Rdev = rdev));
    }

    public override ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid)
    {
        lock (_lock) return Done(AddEntry(ctx, parent, name, ModeBits.Directory | (mode & ModeBits.PermMask), newGfid, n => n.Links = 2));
    }

    public override ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid)
    {
        lock (_lock) return Done(AddEntry(ctx, parent, name, ModeBits.Symlink | 0x1FF, newGfid, n => n.Target = target));
    }

    public override ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd)
    {
        lock (_lock)
        {
            var e = Dir(ctx, parent, name, write: false, out var dir);
            if (e != Errno.None) return Done<Iatt>(e);
            if (dir.Entries!.TryGetValue(name, out var existing))
            {
                if ((fd.Flags & OpenFlags.Exclusive) != 0) return Done<Iatt>(Errno.EEXIST);
                var n = _nodes[existing];
                if (n.IsDir) return Done<Iatt>(Errno.EISDIR);
                fd.SetContext(this, n);
                if ((fd.Flags & OpenFlags.Truncate) != 0) Resize(n, 0);
                return Done(FopResult<Iatt>.Success(AttrOf(n)));
            }
            var r = AddEntry(ctx, parent, name, ModeBits.Regular | (mode & ModeBits.PermMask), fd.Gfid);
            if (r.Ok) fd.SetContext(this, _nodes[fd.Gfid]);
            return Done(r);
        }
    }

    public override ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name)
    {
        lock (_lock)
        {
            var e = Dir(ctx, parent, name, write: true, out var dir);
            if (e != Errno.None) return Done(e);
            if (!dir.Entries!.TryGetValue(name, out var g)) return Done(Errno.ENOENT);
            var n = _nodes[g];
            if (n.IsDir) return Done(Errno.EISDIR);
            if (StickyDenies(ctx, dir, n)) return Done(Errno.EPERM);
            dir.Entries.Remove(name);
            dir.Mtime = dir.Ctime = n.Ctime = Timespec.Now();
            if (--n.Links == 0) _nodes.Remove(g); // open handles keep the node object alive (nlink 0)
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name)
    {
        lock (_lock)
        {
            var e = Dir(ctx, parent, name, write: true, out var dir);
            if (e != Errno.None) return Done(e);
            if (!dir.Entries!.TryGetValue(name, out var g)) return Done(Errno.ENOENT);
            var n = _nodes[g];
            if (!n.IsDir) return Done(Errno.ENOTDIR);
            if (n.Entries!.Count > 0) return Done(Errno.ENOTEMPTY);
            if (StickyDenies(ctx, dir, n)) return Done(Errno.EPERM);
            dir.Entries.Remove(name);
            _nodes.Remove(g);
            dir.Mtime = dir.Ctime = Timespec.Now();
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags)
    {
        lock (_lock)
        {
            var e = Dir(ctx, oldParent, oldName, write: true, out var from);
            if (e == Errno.None) e = Dir(ctx, newParent, newName, write: true, out _);
            if (e != Errno.None) return Done(e);
            var to = _nodes[newParent];
            if (!from.Entries!.TryGetValue(oldName, out var g)) return Done(Errno.ENOENT);
            var moving = _nodes[g];
            if (StickyDenies(ctx, from, moving)) return Done(Errno.EPERM);
            if (moving.IsDir && IsAncestor(g, newParent)) return Done(Errno.EINVAL);
            bool exists = to.Entries!.TryGetValue(newName, out var victimGfid);
            if ((flags & RenameFlags.NoReplace) != 0 && exists) return Done(Errno.EEXIST);
            var now = Timespec.Now();
            if ((flags & RenameFlags.Exchange) != 0)
            {
                if (!exists) return Done(Errno.ENOENT);
                from.Entries[oldName] = victimGfid;
                to.Entries[newName] = g;
            }
            else
            {
                if (exists)
                {
                    if (victimGfid == g) return Done(FopResult.Success);
                    var victim = _nodes[victimGfid];
                    if (StickyDenies(ctx, to, victim)) return Done(Errno.EPERM);
                    if (victim.IsDir != moving.IsDir) return Done(victim.IsDir ? Errno.EISDIR : Errno.ENOTDIR);
                    if (victim.IsDir && victim.Entries!.Count > 0) return Done(Errno.ENOTEMPTY);
                    if (victim.IsDir || --victim.Links == 0) _nodes.Remove(victimGfid);
                }
                from.Entries.Remove(oldName);
                to.Entries[newName] = g;
            }
            from.Mtime = from.Ctime = to.Mtime = to.Ctime = moving.Ctime = now;
            return Done(FopResult.Success);
        }
    }

    private bool IsAncestor(Gfid dir, Gfid of)
    {
        // Walk down from dir: is 'of' inside the tree rooted at dir?
        if (dir == of) return true;
        var n = _nodes[dir];
        foreach (var c in n.Entries!.Values)
        {
            if (_nodes.TryGetValue(c, out var cn) && cn.IsDir && IsAncestor(c, of)) return true;
        }
        return false;
    }

    public override ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done<Iatt>(Errno.ESTALE);
            if (n.IsDir) return Done<Iatt>(Errno.EPERM);
            var e = Dir(ctx, newParent, newName, write: true, out var dir);
            if (e != Errno.None) return Done<Iatt>(e);
            if (dir.Entries!.ContainsKey(newName)) return Done<Iatt>(Errno.EEXIST);
            dir.Entries[newName] = gfid;
            n.Links++;
            dir.Mtime = dir.Ctime = n.Ctime = Timespec.Now();
            return Done(FopResult<Iatt>.Success(AttrOf(n)));
        }
    }

    public override ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(fd.Gfid, out var n)) return Done(Errno.ESTALE);
            if (n.IsDir && fd.CanWrite) return Done(Errno.EISDIR);
            int mask = (fd.CanRead ? 4 : 0) | (fd.CanWrite ? 2 : 0);
            if (!Allowed(ctx, n, mask)) return Done(Errno.EACCES);
            if ((fd.Flags & OpenFlags.Truncate) != 0 && fd.CanWrite) Resize(n, 0);
            fd.SetContext(this, n);
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(fd.Gfid, out var n)) return Done(Errno.ESTALE);
            if (!n.IsDir) return Done(Errno.ENOTDIR);
            if (!Allowed(ctx, n, 4)) return Done(Errno.EACCES);
            fd.SetContext(this, n);
            return Done(FopResult.Success);
        }
    }

    private Errno Handle(FileHandle fd, out Node n) =>
        fd.TryGetContext(this, out n) ? Errno.None : Errno.EBADF;

    public override ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        lock (_lock)
        {
            if (Handle(fd, out var n) is var e && e != Errno.None) return Done<DataBuffer>(e);
            if (!fd.CanRead) return Done<DataBuffer>(Errno.EBADF);
            if (n.IsDir) return Done<DataBuffer>(Errno.EISDIR);
            if (offset < 0) return Done<DataBuffer>(Errno.EINVAL);
            int count = (int)Math.Clamp(n.Size - offset, 0, size);
            var buf = DataBuffer.Rent(count);
            n.Data.Read(offset, buf.Span);
            return Done(FopResult<DataBuffer>.Success(buf));
        }
    }

    public override ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
    {
        lock (_lock)
        {
            if (Handle(fd, out var n) is var e && e != Errno.None) return Done<int>(e);
            if (!fd.CanWrite) return Done<int>(Errno.EBADF);
            if ((fd.Flags & OpenFlags.Append) != 0) offset = n.Size;
            long end = offset + data.Length;
            if (offset < 0 || end < offset) return Done<int>(Errno.EFBIG);
            if (end > n.Size) Resize(n, end);
            n.Data.Write(offset, data.Span);
            n.Mtime = n.Ctime = Timespec.Now();
            if (ctx.Uid != 0) n.Mode &= ~(ModeBits.SetUid | ((n.Mode & 0x8) != 0 ? ModeBits.SetGid : 0));
            return Done(FopResult<int>.Success(data.Length));
        }
    }

    public override ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd) => Done(FopResult.Success);
    public override ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly) => Done(FopResult.Success);
    public override ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly) => Done(FopResult.Success);

    public override ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        fd.RemoveContext(this, out _);
        return Done(FopResult.Success);
    }

    public override ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd) => ReleaseAsync(ctx, fd);

    public override ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length)
    {
        lock (_lock)
        {
            if (Handle(fd, out var n) is var e && e != Errno.None) return Done(e);
            if (offset < 0 || length <= 0) return Done(Errno.EINVAL);
            long end = offset + length;
            if ((mode & (FallocateMode.PunchHole | FallocateMode.ZeroRange)) != 0)
            {
                long stop = Math.Min(end, n.Size);
                if (stop > offset) n.Data.Clear(offset, stop - offset);
                if ((mode & FallocateMode.ZeroRange) != 0 && (mode & FallocateMode.KeepSize) == 0 && end > n.Size) Resize(n, end);
            }
            else if ((mode & ~FallocateMode.KeepSize) != 0) return Done(Errno.ENOTSUP);
            else if ((mode & FallocateMode.KeepSize) == 0 && end > n.Size) Resize(n, end);
            n.Mtime = n.Ctime = Timespec.Now();
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence)
    {
        lock (_lock)
        {
            if (Handle(fd, out var n) is var e && e != Errno.None) return Done<long>(e);
            if (offset < 0 || offset >= n.Size) return Done<long>(Errno.ENXIO);
            return whence switch
            {
                SeekWhence.Data => n.Data.NextData(offset, n.Size) is long d ? Done(FopResult<long>.Success(d)) : Done<long>(Errno.ENXIO),
                SeekWhence.Hole => Done(FopResult<long>.Success(n.Data.NextHole(offset, n.Size))),
                _ => Done<long>(Errno.EINVAL),
            };
        }
    }

    public override ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        lock (_lock)
        {
            if ((fd is null || !fd.TryGetContext(this, out Node n)) && !_nodes.TryGetValue(gfid, out n!)) return Done<IReadOnlyDictionary<string, long[]>>(Errno.ESTALE);
            var result = new Dictionary<string, long[]>(StringComparer.Ordinal);
            foreach (var (key, delta) in deltas)
            {
                var current = n.Xattrs.TryGetValue(key, out var raw) ? XattrCounters.Decode(raw) : [];
                var sum = XattrCounters.Add(current, delta);
                n.Xattrs[key] = XattrCounters.Encode(sum);
                result[key] = sum;
            }
            return Done(FopResult<IReadOnlyDictionary<string, long[]>>.Success(result));
        }
    }

    public override ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk) =>
        Done<FileLock>(Errno.ENOSYS); // features/locks above the storage serves inode locks

    public override ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type) =>
        Done(Errno.ENOSYS);

    public override ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk) =>
        Done<FileLock>(Errno.ENOSYS); // locks belong to features/locks above the storage

    public override ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done(Errno.ESTALE);
            if (ctx.Uid != 0 && ctx.Uid != n.Uid && name.StartsWith("user.", StringComparison.Ordinal) && !Allowed(ctx, n, 2)) return Done(Errno.EACCES);
            bool exists = n.Xattrs.ContainsKey(name);
            if ((flags & XattrFlags.Create) != 0 && exists) return Done(Errno.EEXIST);
            if ((flags & XattrFlags.Replace) != 0 && !exists) return Done(Errno.ENODATA);
            n.Xattrs[name] = value.ToArray();
            n.Ctime = Timespec.Now();
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done<byte[]>(Errno.ESTALE);
            return Done(n.Xattrs.TryGetValue(name, out var v) ? FopResult<byte[]>.Success(v.ToArray()) : Errno.ENODATA);
        }
    }

    public override ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done<IReadOnlyList<string>>(Errno.ESTALE);
            return Done(FopResult<IReadOnlyList<string>>.Success(n.Xattrs.Keys.ToList()));
        }
    }

    public override ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(gfid, out var n)) return Done(Errno.ESTALE);
            if (!n.Xattrs.Remove(name)) return Done(Errno.ENODATA);
            n.Ctime = Timespec.Now();
            return Done(FopResult.Success);
        }
    }

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Done(List(ctx, fd, offset, sizeHint, plus: false));

    public override ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Done(List(ctx, fd, offset, sizeHint, plus: true));

    /// <summary>Cookies are positions in name order: 1 after ".", 2 after "..", 3 after the first name, ...</summary>
    private FopResult<IReadOnlyList<DirEntry>> List(FopContext ctx, FileHandle fd, long offset, int sizeHint, bool plus)
    {
        lock (_lock)
        {
            if (Handle(fd, out var dir) is var e && e != Errno.None) return e;
            var result = new List<DirEntry>();
            int budget = Math.Max(sizeHint, 512);
            long pos = 0;
            void Add(DirEntry d)
            {
                if (pos++ < offset || budget <= 0) return;
                result.Add(d);
                budget -= 32 + d.Name.Length + (plus ? 128 : 0);
            }
            Add(new DirEntry { Name = ".", NextOffset = 1, Type = 4 });
            Add(new DirEntry { Name = "..", NextOffset = 2, Type = 4 });
            foreach (var (name, g) in dir.Entries!)
            {
                if (!_nodes.TryGetValue(g, out var n)) continue;
                Add(new DirEntry { Name = name, NextOffset = pos + 1, Type = ModeBits.ToDirentType(n.Mode), Gfid = g, Attr = plus ? AttrOf(n, ctx) : null });
            }
            return result;
        }
    }

    /// <summary>File contents in 64 KiB chunks allocated on write, so holes (and files past 4 GiB) cost nothing.</summary>
    private sealed class SparseData
    {
        private const int ChunkSize = 64 * 1024;
        private readonly Dictionary<long, byte[]> _chunks = new();

        public long AllocatedBytes => (long)_chunks.Count * ChunkSize;

        public void Read(long offset, Span<byte> dest)
        {
            while (!dest.IsEmpty)
            {
                int at = (int)(offset % ChunkSize), n = Math.Min(dest.Length, ChunkSize - at);
                if (_chunks.TryGetValue(offset / ChunkSize, out var c)) c.AsSpan(at, n).CopyTo(dest);
                else dest[..n].Clear();
                dest = dest[n..];
                offset += n;
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> src)
        {
            while (!src.IsEmpty)
            {
                int at = (int)(offset % ChunkSize), n = Math.Min(src.Length, ChunkSize - at);
                if (!_chunks.TryGetValue(offset / ChunkSize, out var c)) _chunks[offset / ChunkSize] = c = new byte[ChunkSize];
                src[..n].CopyTo(c.AsSpan(at));
                src = src[n..];
                offset += n;
            }
        }

        public void Clear(long offset, long length)
        {
            long end = offset + length;
            foreach (var index in _chunks.Keys.Where(k => k * ChunkSize < end && (k + 1) * ChunkSize > offset).ToList())
            {
                long start = index * ChunkSize;
                if (offset <= start && end >= start + ChunkSize) _chunks.Remove(index);
                else
                {
                    int from = (int)Math.Max(offset - start, 0), to = (int)Math.Min(end - start, ChunkSize);
                    _chunks[index].AsSpan(from, to - from).Clear();
                }
            }
        }

        public long? NextData(long offset, long size)
        {
            var next = _chunks.Keys.Where(k => (k + 1) * ChunkSize > offset).DefaultIfEmpty(-1).Min();
            return next < 0 || next * ChunkSize >= size ? null : Math.Max(offset, next * ChunkSize);
        }

        public long NextHole(long offset, long size)
        {
            long k = offset / ChunkSize;
            while (_chunks.ContainsKey(k)) k++;
            return Math.Min(Math.Max(offset, k * ChunkSize), size);
        }
    }
}
