using Brickfs.Translators.Core;

namespace Brickfs.Translators.Storage.Posix;

/// <summary>
/// Who may touch the reserved <c>trusted.brickfs.*</c> xattrs on a storage/posix brick. The
/// brick trusts every client that passed its handshake (auth.allow and credentials), as
/// GlusterFS trusts its clients with <c>trusted.*</c>: cluster translators run on the client and
/// reach the brick as ordinary callers, so the brick cannot tell them from the application
/// behind them. Keeping applications away from these names is the FUSE bridge's job.
/// <list type="bullet">
/// <item><b>Cluster metadata</b> (<c>trusted.brickfs.pending.*</c> of cluster/replicate,
/// <c>trusted.brickfs.layout</c> and <c>trusted.brickfs.linkto</c> of cluster/distribute): read
/// (getxattr, <see cref="FopContext.XattrRequest"/>), set, removed and changed by xattrop by any
/// caller, whatever its uid (replicate asks for counters with the application's uid).</item>
/// <item><b>Readable brick state</b> (<c>trusted.brickfs.gfid</c>, bitrot's
/// <see cref="BitrotBad"/>): read by any caller, so replicate sees a copy marked bad; set and
/// removed only by <see cref="FopContext.BrickInternal"/> requests.</item>
/// <item><b>Brick-private</b> (every other <c>trusted.brickfs.*</c> name, e.g. bitrot's
/// <see cref="BitrotDirty"/>): only <see cref="FopContext.BrickInternal"/> requests see or touch
/// them; to others they do not exist (ENODATA) and cannot be made (EPERM).</item>
/// </list>
/// Listxattr never shows reserved names to callers from outside the brick: they ask by name.
/// </summary>
public static class BrickXattrs
{
    public const string Prefix = "trusted.brickfs.";
    public const string Gfid = "trusted.brickfs.gfid";
    public const string PendingPrefix = "trusted.brickfs.pending.";
    public const string Layout = "trusted.brickfs.layout";
    public const string Linkto = "trusted.brickfs.linkto";

    /// <summary>features/bitrot's mark on a brick copy whose data failed verification.</summary>
    public const string BitrotBad = "trusted.brickfs.bitrot.bad";

    /// <summary>features/bitrot's range of blocks that may be ahead of their checksums.</summary>
    public const string BitrotDirty = "trusted.brickfs.bitrot.dirty";

    public static bool IsReserved(string name) => name.StartsWith(Prefix, StringComparison.Ordinal);

    public static bool IsClusterMetadata(string name) =>
        name == Layout || name == Linkto || name.StartsWith(PendingPrefix, StringComparison.Ordinal);

    private static bool IsReadableState(string name) => name == Gfid || name == BitrotBad;

    /// <summary>trusted.* and security.capability need CAP_SYS_ADMIN/CAP_SETFCAP, which the brick keeps whatever the fsuid.</summary>
    private static bool NeedsRoot(string name) =>
        name.StartsWith("trusted.", StringComparison.Ordinal) || name == "security.capability";

    public static bool MayRead(FopContext ctx, string name)
    {
        if (ctx.BrickInternal) return true;
        if (IsReserved(name)) return IsClusterMetadata(name) || IsReadableState(name);
        return !NeedsRoot(name) || ctx.Uid == 0;
    }

    public static bool MayWrite(FopContext ctx, string name)
    {
        if (ctx.BrickInternal) return true;
        if (IsReserved(name)) return IsClusterMetadata(name);
        return !NeedsRoot(name) || ctx.Uid == 0;
    }

    public static bool MayList(FopContext ctx, string name) =>
        ctx.BrickInternal || (!IsReserved(name) && (!NeedsRoot(name) || ctx.Uid == 0));

    /// <summary>
    /// Xattrop changes counters, which are cluster or brick metadata, never user data: reserved
    /// names by the rules above, other trusted.* names for root, nothing else.
    /// </summary>
    public static bool MayChangeCounter(FopContext ctx, string name) =>
        IsReserved(name) ? MayWrite(ctx, name) : name.StartsWith("trusted.", StringComparison.Ordinal) && (ctx.Uid == 0 || ctx.BrickInternal);
}
