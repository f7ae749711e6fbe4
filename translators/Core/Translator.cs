namespace Brickfs.Translators.Core;

/// <summary>
/// A node of the translator graph. One virtual async method per <see cref="Fop"/>; the default
/// passes the call unchanged to the only child, so a translator overrides just the fops it
/// changes (GlusterFS's default fops). Expected failures come back as errno results; an
/// exception means a bug or broken infrastructure and is turned into EIO at the graph's edges.
/// </summary>
public abstract class Translator : IAsyncDisposable
{
    private IReadOnlyList<Translator> _children = [];

    /// <summary>The volume name from the volfile.</summary>
    public string Name { get; internal set; } = "";

    /// <summary>The registered type string, e.g. <c>storage/posix</c>.</summary>
    public string TypeName { get; internal set; } = "";

    public IReadOnlyList<Translator> Children
    {
        get => _children;
        internal set => _children = value;
    }

    /// <summary>The only child; a translator that passes fops through has exactly one.</summary>
    protected Translator Child => _children.Count == 1
        ? _children[0]
        : throw new InvalidOperationException($"{TypeName} '{Name}' needs exactly one child, has {_children.Count}");

    /// <summary>Sets children outside a volfile (tests, programmatic graphs).</summary>
    public void Attach(params Translator[] children) => _children = children;

    /// <summary>Starts the translator once its children have started (open directories, connect).</summary>
    public virtual ValueTask InitAsync(CancellationToken cancellation) => ValueTask.CompletedTask;

    /// <summary>Stops the translator before its children stop.</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    public override string ToString() => $"{TypeName} '{Name}'";

    /// <summary>
    /// Raised by a translator that reaches its storage over a connection (protocol/client) when
    /// that connection is lost, before any reconnect: what a translator above cached about this
    /// child (GlusterFS's CHILD_DOWN) may have changed meanwhile. Handlers must be quick.
    /// </summary>
    public event Action? ConnectionLost;

    protected void RaiseConnectionLost() => ConnectionLost?.Invoke();

    /// <summary>
    /// Raised by such a translator when a connection is established again and the files open
    /// through it are open again (GlusterFS's CHILD_UP): a translator above that saw the child
    /// leave may take it back at once instead of at the next fop that asks every child. Handlers
    /// must be quick.
    /// </summary>
    public event Action? ConnectionUp;

    protected void RaiseConnectionUp() => ConnectionUp?.Invoke();

    /// <summary>This translator and, down through translators with one child, those below it: where a <see cref="ConnectionLost"/> or <see cref="ConnectionUp"/> of this child comes from.</summary>
    public IEnumerable<Translator> ChainBelow()
    {
        for (Translator? t = this; t is not null; t = t.Children.Count == 1 ? t.Children[0] : null) yield return t;
    }

    /// <summary>
    /// Whether this running translator can take new values of the options in
    /// <paramref name="changed"/> without being rebuilt (a <c>volume set</c> reaching a mounted
    /// client, GlusterFS's reconfigure): null when it can, else why not. The default takes
    /// none; a type opts in option by option.
    /// </summary>
    public virtual string? CanReconfigure(IReadOnlyCollection<string> changed) =>
        $"{this} cannot change {string.Join(", ", changed)} while running";

    /// <summary>
    /// Takes new option values; called only after <see cref="CanReconfigure"/> accepted every
    /// changed option. Fops already in flight may still use the old values.
    /// </summary>
    public virtual void Reconfigure(TranslatorOptions options)
    {
    }

    /// <summary>
    /// Whether this running translator can take the subvolumes named <paramref name="after"/>
    /// instead of <paramref name="before"/> (add-brick or remove-brick reaching a mounted
    /// client): null when it can, else why not. The default takes no change.
    /// </summary>
    public virtual string? CanChangeSubvolumes(IReadOnlyList<string> before, IReadOnlyList<string> after) =>
        $"{this} cannot change its subvolumes while running";

    /// <summary>
    /// Takes <paramref name="children"/> as its subvolumes, in volfile order; called only after
    /// <see cref="CanChangeSubvolumes"/> accepted the change. Children it keeps are the same
    /// objects as before; new ones are built and started by the caller. Fops already in flight
    /// may still use the old children; the caller stops removed ones only after they drained.
    /// </summary>
    public virtual ValueTask ChangeSubvolumesAsync(IReadOnlyList<Translator> children) =>
        throw new NotSupportedException($"{this} cannot change its subvolumes while running");

    /// <summary>
    /// The OS descriptor of <paramref name="fd"/>'s data when reading and writing that
    /// descriptor is exactly what this translator's read and write fops would do, so the FUSE
    /// kernel may do them itself (passthrough) and this graph never sees them: nothing here or
    /// below counts, checks, transforms, fences, replicates or tracks a read or write. Storage
    /// that keeps a file as one local file says so; a translator that does not see reads or
    /// writes may pass the question on. The default answers false, which keeps every read and
    /// write in the graph.
    /// </summary>
    public virtual bool TryGetPassthroughFd(FileHandle fd, out int osFd)
    {
        osFd = -1;
        return false;
    }

    // ---- inode operations -------------------------------------------------------------

    /// <summary>Resolves <paramref name="name"/> in directory <paramref name="parent"/>.</summary>
    public virtual ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name) =>
        Child.LookupAsync(ctx, parent, name);

    /// <summary>Attributes by GFID, or through <paramref name="fd"/> when given (works after unlink).</summary>
    public virtual ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd) =>
        Child.StatAsync(ctx, gfid, fd);

    public virtual ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest request) =>
        Child.SetattrAsync(ctx, gfid, fd, request);

    public virtual ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, Gfid gfid) =>
        Child.ReadlinkAsync(ctx, gfid);

    public virtual ValueTask<FopResult> AccessAsync(FopContext ctx, Gfid gfid, int mask) =>
        Child.AccessAsync(ctx, gfid, mask);

    public virtual ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, Gfid gfid) =>
        Child.StatfsAsync(ctx, gfid);

    // ---- namespace operations ---------------------------------------------------------
    // New entries get the GFID the caller chose (newGfid, or fd.Gfid for create) so that
    // every replica stores the same one.

    public virtual ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid) =>
        Child.MknodAsync(ctx, parent, name, mode, rdev, newGfid);

    public virtual ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid) =>
        Child.MkdirAsync(ctx, parent, name, mode, newGfid);

    public virtual ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name) =>
        Child.UnlinkAsync(ctx, parent, name);

    public virtual ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name) =>
        Child.RmdirAsync(ctx, parent, name);

    public virtual ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid) =>
        Child.SymlinkAsync(ctx, parent, name, target, newGfid);

    public virtual ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags) =>
        Child.RenameAsync(ctx, oldParent, oldName, newParent, newName, flags);

    /// <summary>Adds a hard link to <paramref name="gfid"/>; returns its attributes (nlink grown).</summary>
    public virtual ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName) =>
        Child.LinkAsync(ctx, gfid, newParent, newName);

    // ---- open files ---------------------------------------------------------------------

    /// <summary>Opens <c>fd.Gfid</c> with <c>fd.Flags</c>.</summary>
    public virtual ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd) =>
        Child.OpenAsync(ctx, fd);

    /// <summary>Creates <paramref name="name"/> with GFID <c>fd.Gfid</c> and opens it with <c>fd.Flags</c>.</summary>
    public virtual ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd) =>
        Child.CreateAsync(ctx, parent, name, mode, fd);

    /// <summary>Reads up to <paramref name="size"/> bytes; a shorter buffer means end of file. The caller disposes it.</summary>
    public virtual ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size) =>
        Child.ReadAsync(ctx, fd, offset, size);

    /// <summary>Writes <paramref name="data"/>; returns the count written. The data is only valid during the call.</summary>
    public virtual ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data) =>
        Child.WriteAsync(ctx, fd, offset, data);

    /// <summary>close(2) of one descriptor: carries <c>ctx.LockOwner</c>, whose POSIX locks it releases.</summary>
    public virtual ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd) =>
        Child.FlushAsync(ctx, fd);

    /// <summary>
    /// The last reference to the open file is gone; frees per-translator state. The flock and OFD
    /// locks taken through this open file (owner <see cref="FileHandle.LockOwner"/>) go with it,
    /// wherever locks are kept, as they go with the last close of an open file description.
    /// </summary>
    public virtual ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd) =>
        Child.ReleaseAsync(ctx, fd);

    public virtual ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        Child.FsyncAsync(ctx, fd, dataOnly);

    public virtual ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length) =>
        Child.FallocateAsync(ctx, fd, mode, offset, length);

    public virtual ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence) =>
        Child.LseekAsync(ctx, fd, offset, whence);

    /// <summary>Byte-range, flock and OFD locks; Get answers the conflicting lock or an Unlock-typed lock.</summary>
    public virtual ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk) =>
        Child.LkAsync(ctx, fd, command, lk);

    // ---- xattrs -------------------------------------------------------------------------

    public virtual ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags) =>
        Child.SetxattrAsync(ctx, gfid, name, value, flags);

    public virtual ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name) =>
        Child.GetxattrAsync(ctx, gfid, name);

    public virtual ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid) =>
        Child.ListxattrAsync(ctx, gfid);

    public virtual ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name) =>
        Child.RemovexattrAsync(ctx, gfid, name);

    // ---- directories ---------------------------------------------------------------------

    public virtual ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd) =>
        Child.OpendirAsync(ctx, fd);

    /// <summary>
    /// Entries after cookie <paramref name="offset"/> (0 = from the start), about
    /// <paramref name="sizeHint"/> bytes' worth; an empty list means the end.
    /// </summary>
    public virtual ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Child.ReaddirAsync(ctx, fd, offset, sizeHint);

    /// <summary>As <see cref="ReaddirAsync"/>, with GFID and attributes of every entry but "." and "..".</summary>
    public virtual ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint) =>
        Child.ReaddirplusAsync(ctx, fd, offset, sizeHint);

    public virtual ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd) =>
        Child.ReleasedirAsync(ctx, fd);

    public virtual ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly) =>
        Child.FsyncdirAsync(ctx, fd, dataOnly);

    // ---- internal fops (cluster translators and self-heal; no FUSE mapping) ----------------

    /// <summary>
    /// Atomically adds each vector of <paramref name="deltas"/> to the xattr of that name (a
    /// big-endian int64 array; a missing xattr counts as zeros) and returns the new values. The
    /// replicate translator keeps its pending-change counters this way.
    /// </summary>
    public virtual ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas) =>
        Child.XattropAsync(ctx, gfid, fd, deltas);

    /// <summary>
    /// Byte-range locks on an inode in a named <paramref name="domain"/>, separate from
    /// applications' fcntl locks: cluster translators serialise their transactions with them.
    /// </summary>
    public virtual ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk) =>
        Child.InodelkAsync(ctx, domain, gfid, command, lk);

    /// <summary>
    /// Lock on a name in directory <paramref name="parent"/> (all names when <paramref name="name"/>
    /// is null) in a named domain; <paramref name="type"/> Unlock releases.
    /// </summary>
    public virtual ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type) =>
        Child.EntrylkAsync(ctx, domain, parent, name, command, type);
}
