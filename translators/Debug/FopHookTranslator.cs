using Brickfs.Translators.Core;

namespace Brickfs.Translators.Debug;

/// <summary>
/// Base of the debug translators: every fop first awaits <see cref="BeforeFopAsync"/>, which may
/// delay it or answer an errno instead of passing it on. One place overrides every fop, so a
/// new debug translator writes only its hook.
/// </summary>
public abstract class FopHookTranslator : Translator
{
    /// <summary>Runs before each fop; <see cref="Errno.None"/> passes the call to the child.</summary>
    protected abstract ValueTask<Errno> BeforeFopAsync(Fop fop, FopContext ctx);

    public sealed override async ValueTask<FopResult<Iatt>> LookupAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = await BeforeFopAsync(Fop.Lookup, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.LookupAsync(ctx, parent, name);
    }

    public sealed override async ValueTask<FopResult<Iatt>> StatAsync(FopContext ctx, Gfid gfid, FileHandle? fd)
    {
        var e = await BeforeFopAsync(Fop.Stat, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.StatAsync(ctx, gfid, fd);
    }

    public sealed override async ValueTask<FopResult<Iatt>> SetattrAsync(FopContext ctx, Gfid gfid, FileHandle? fd, SetattrRequest request)
    {
        var e = await BeforeFopAsync(Fop.Setattr, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.SetattrAsync(ctx, gfid, fd, request);
    }

    public sealed override async ValueTask<FopResult<string>> ReadlinkAsync(FopContext ctx, Gfid gfid)
    {
        var e = await BeforeFopAsync(Fop.Readlink, ctx);
        return e != Errno.None ? FopResult<string>.Fail(e) : await base.ReadlinkAsync(ctx, gfid);
    }

    public sealed override async ValueTask<FopResult> AccessAsync(FopContext ctx, Gfid gfid, int mask)
    {
        var e = await BeforeFopAsync(Fop.Access, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.AccessAsync(ctx, gfid, mask);
    }

    public sealed override async ValueTask<FopResult<StatfsInfo>> StatfsAsync(FopContext ctx, Gfid gfid)
    {
        var e = await BeforeFopAsync(Fop.Statfs, ctx);
        return e != Errno.None ? FopResult<StatfsInfo>.Fail(e) : await base.StatfsAsync(ctx, gfid);
    }

    public sealed override async ValueTask<FopResult<Iatt>> MknodAsync(FopContext ctx, Gfid parent, string name, uint mode, ulong rdev, Gfid newGfid)
    {
        var e = await BeforeFopAsync(Fop.Mknod, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.MknodAsync(ctx, parent, name, mode, rdev, newGfid);
    }

    public sealed override async ValueTask<FopResult<Iatt>> MkdirAsync(FopContext ctx, Gfid parent, string name, uint mode, Gfid newGfid)
    {
        var e = await BeforeFopAsync(Fop.Mkdir, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.MkdirAsync(ctx, parent, name, mode, newGfid);
    }

    public sealed override async ValueTask<FopResult> UnlinkAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = await BeforeFopAsync(Fop.Unlink, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.UnlinkAsync(ctx, parent, name);
    }

    public sealed override async ValueTask<FopResult> RmdirAsync(FopContext ctx, Gfid parent, string name)
    {
        var e = await BeforeFopAsync(Fop.Rmdir, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.RmdirAsync(ctx, parent, name);
    }

    public sealed override async ValueTask<FopResult<Iatt>> SymlinkAsync(FopContext ctx, Gfid parent, string name, string target, Gfid newGfid)
    {
        var e = await BeforeFopAsync(Fop.Symlink, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.SymlinkAsync(ctx, parent, name, target, newGfid);
    }

    public sealed override async ValueTask<FopResult> RenameAsync(FopContext ctx, Gfid oldParent, string oldName, Gfid newParent, string newName, RenameFlags flags)
    {
        var e = await BeforeFopAsync(Fop.Rename, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.RenameAsync(ctx, oldParent, oldName, newParent, newName, flags);
    }

    public sealed override async ValueTask<FopResult<Iatt>> LinkAsync(FopContext ctx, Gfid gfid, Gfid newParent, string newName)
    {
        var e = await BeforeFopAsync(Fop.Link, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.LinkAsync(ctx, gfid, newParent, newName);
    }

    public sealed override async ValueTask<FopResult> OpenAsync(FopContext ctx, FileHandle fd)
    {
        var e = await BeforeFopAsync(Fop.Open, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.OpenAsync(ctx, fd);
    }

    public sealed override async ValueTask<FopResult<Iatt>> CreateAsync(FopContext ctx, Gfid parent, string name, uint mode, FileHandle fd)
    {
        var e = await BeforeFopAsync(Fop.Create, ctx);
        return e != Errno.None ? FopResult<Iatt>.Fail(e) : await base.CreateAsync(ctx, parent, name, mode, fd);
    }

    public sealed override async ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        var e = await BeforeFopAsync(Fop.Read, ctx);
        return e != Errno.None ? FopResult<DataBuffer>.Fail(e) : await base.ReadAsync(ctx, fd, offset, size);
    }

    public sealed override async ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
    {
        var e = await BeforeFopAsync(Fop.Write, ctx);
        return e != Errno.None ? FopResult<int>.Fail(e) : await base.WriteAsync(ctx, fd, offset, data);
    }

    public sealed override async ValueTask<FopResult> FlushAsync(FopContext ctx, FileHandle fd)
    {
        var e = await BeforeFopAsync(Fop.Flush, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.FlushAsync(ctx, fd);
    }

    public sealed override async ValueTask<FopResult> ReleaseAsync(FopContext ctx, FileHandle fd)
    {
        var e = await BeforeFopAsync(Fop.Release, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.ReleaseAsync(ctx, fd);
    }

    public sealed override async ValueTask<FopResult> FsyncAsync(FopContext ctx, FileHandle fd, bool dataOnly)
    {
        var e = await BeforeFopAsync(Fop.Fsync, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.FsyncAsync(ctx, fd, dataOnly);
    }

    public sealed override async ValueTask<FopResult> FallocateAsync(FopContext ctx, FileHandle fd, int mode, long offset, long length)
    {
        var e = await BeforeFopAsync(Fop.Fallocate, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.FallocateAsync(ctx, fd, mode, offset, length);
    }

    public sealed override async ValueTask<FopResult<long>> LseekAsync(FopContext ctx, FileHandle fd, long offset, int whence)
    {
        var e = await BeforeFopAsync(Fop.Lseek, ctx);
        return e != Errno.None ? FopResult<long>.Fail(e) : await base.LseekAsync(ctx, fd, offset, whence);
    }

    public sealed override async ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk)
    {
        var e = await BeforeFopAsync(Fop.Lk, ctx);
        return e != Errno.None ? FopResult<FileLock>.Fail(e) : await base.LkAsync(ctx, fd, command, lk);
    }

    public sealed override async ValueTask<FopResult> SetxattrAsync(FopContext ctx, Gfid gfid, string name, ReadOnlyMemory<byte> value, int flags)
    {
        var e = await BeforeFopAsync(Fop.Setxattr, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.SetxattrAsync(ctx, gfid, name, value, flags);
    }

    public sealed override async ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        var e = await BeforeFopAsync(Fop.Getxattr, ctx);
        return e != Errno.None ? FopResult<byte[]>.Fail(e) : await base.GetxattrAsync(ctx, gfid, name);
    }

    public sealed override async ValueTask<FopResult<IReadOnlyList<string>>> ListxattrAsync(FopContext ctx, Gfid gfid)
    {
        var e = await BeforeFopAsync(Fop.Listxattr, ctx);
        return e != Errno.None ? FopResult<IReadOnlyList<string>>.Fail(e) : await base.ListxattrAsync(ctx, gfid);
    }

    public sealed override async ValueTask<FopResult> RemovexattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        var e = await BeforeFopAsync(Fop.Removexattr, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.RemovexattrAsync(ctx, gfid, name);
    }

    public sealed override async ValueTask<FopResult> OpendirAsync(FopContext ctx, FileHandle fd)
    {
        var e = await BeforeFopAsync(Fop.Opendir, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.OpendirAsync(ctx, fd);
    }

    public sealed override async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint)
    {
        var e = await BeforeFopAsync(Fop.Readdir, ctx);
        return e != Errno.None ? FopResult<IReadOnlyList<DirEntry>>.Fail(e) : await base.ReaddirAsync(ctx, fd, offset, sizeHint);
    }

    public sealed override async ValueTask<FopResult<IReadOnlyList<DirEntry>>> ReaddirplusAsync(FopContext ctx, FileHandle fd, long offset, int sizeHint)
    {
        var e = await BeforeFopAsync(Fop.Readdirplus, ctx);
        return e != Errno.None ? FopResult<IReadOnlyList<DirEntry>>.Fail(e) : await base.ReaddirplusAsync(ctx, fd, offset, sizeHint);
    }

    public sealed override async ValueTask<FopResult> ReleasedirAsync(FopContext ctx, FileHandle fd)
    {
        var e = await BeforeFopAsync(Fop.Releasedir, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.ReleasedirAsync(ctx, fd);
    }

    public sealed override async ValueTask<FopResult> FsyncdirAsync(FopContext ctx, FileHandle fd, bool dataOnly)
    {
        var e = await BeforeFopAsync(Fop.Fsyncdir, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.FsyncdirAsync(ctx, fd, dataOnly);
    }

    public sealed override async ValueTask<FopResult<IReadOnlyDictionary<string, long[]>>> XattropAsync(FopContext ctx, Gfid gfid, FileHandle? fd, IReadOnlyDictionary<string, long[]> deltas)
    {
        var e = await BeforeFopAsync(Fop.Xattrop, ctx);
        return e != Errno.None ? FopResult<IReadOnlyDictionary<string, long[]>>.Fail(e) : await base.XattropAsync(ctx, gfid, fd, deltas);
    }

    public sealed override async ValueTask<FopResult<FileLock>> InodelkAsync(FopContext ctx, string domain, Gfid gfid, LockCommand command, FileLock lk)
    {
        var e = await BeforeFopAsync(Fop.Inodelk, ctx);
        return e != Errno.None ? FopResult<FileLock>.Fail(e) : await base.InodelkAsync(ctx, domain, gfid, command, lk);
    }

    public sealed override async ValueTask<FopResult> EntrylkAsync(FopContext ctx, string domain, Gfid parent, string? name, LockCommand command, LockType type)
    {
        var e = await BeforeFopAsync(Fop.Entrylk, ctx);
        return e != Errno.None ? FopResult.Fail(e) : await base.EntrylkAsync(ctx, domain, parent, name, command, type);
    }
}
