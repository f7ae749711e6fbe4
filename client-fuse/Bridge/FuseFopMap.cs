using Brickfs.ClientFuse.Fuse;
using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Bridge;

/// <summary>How one kernel opcode is served: by a fop, by the FUSE layer alone, or not at all (ENOSYS).</summary>
public readonly record struct FuseMapping(Fop? Fop, bool Supported, string Note)
{
    public static FuseMapping To(Fop fop) => new(fop, true, "");
    public static FuseMapping NoFop(string why) => new(null, true, why);
    public static FuseMapping Unsupported(string why) => new(null, false, why);
}

/// <summary>The one table from kernel opcodes to fops; tests check it covers every <see cref="Fop"/> and every opcode.</summary>
public static class FuseFopMap
{
    public static IReadOnlyDictionary<FuseOpcode, FuseMapping> Table { get; } = new Dictionary<FuseOpcode, FuseMapping>
    {
        [FuseOpcode.Lookup] = FuseMapping.To(Fop.Lookup),
        [FuseOpcode.Forget] = FuseMapping.NoFop("drops kernel lookup counts in the bridge's node table"),
        [FuseOpcode.BatchForget] = FuseMapping.NoFop("drops kernel lookup counts in the bridge's node table"),
        [FuseOpcode.Getattr] = FuseMapping.To(Fop.Stat),
        [FuseOpcode.Setattr] = FuseMapping.To(Fop.Setattr),
        [FuseOpcode.Readlink] = FuseMapping.To(Fop.Readlink),
        [FuseOpcode.Symlink] = FuseMapping.To(Fop.Symlink),
        [FuseOpcode.Mknod] = FuseMapping.To(Fop.Mknod),
        [FuseOpcode.Mkdir] = FuseMapping.To(Fop.Mkdir),
        [FuseOpcode.Unlink] = FuseMapping.To(Fop.Unlink),
        [FuseOpcode.Rmdir] = FuseMapping.To(Fop.Rmdir),
        [FuseOpcode.Rename] = FuseMapping.To(Fop.Rename),
        [FuseOpcode.Rename2] = FuseMapping.To(Fop.Rename),
        [FuseOpcode.Link] = FuseMapping.To(Fop.Link),
        [FuseOpcode.Open] = FuseMapping.To(Fop.Open),
        [FuseOpcode.Read] = FuseMapping.To(Fop.Read),
        [FuseOpcode.Write] = FuseMapping.To(Fop.Write),
        [FuseOpcode.Statfs] = FuseMapping.To(Fop.Statfs),
        [FuseOpcode.Release] = FuseMapping.To(Fop.Release),
        [FuseOpcode.Fsync] = FuseMapping.To(Fop.Fsync),
        [FuseOpcode.Setxattr] = FuseMapping.To(Fop.Setxattr),
        [FuseOpcode.Getxattr] = FuseMapping.To(Fop.Getxattr),
        [FuseOpcode.Listxattr] = FuseMapping.To(Fop.Listxattr),
        [FuseOpcode.Removexattr] = FuseMapping.To(Fop.Removexattr),
        [FuseOpcode.Flush] = FuseMapping.To(Fop.Flush),
        [FuseOpcode.Init] = FuseMapping.NoFop("negotiated by the session"),
        [FuseOpcode.Opendir] = FuseMapping.To(Fop.Opendir),
        [FuseOpcode.Readdir] = FuseMapping.To(Fop.Readdir),
        [FuseOpcode.Releasedir] = FuseMapping.To(Fop.Releasedir),
        [FuseOpcode.Fsyncdir] = FuseMapping.To(Fop.Fsyncdir),
        [FuseOpcode.Getlk] = FuseMapping.To(Fop.Lk),
        [FuseOpcode.Setlk] = FuseMapping.To(Fop.Lk),
        [FuseOpcode.Setlkw] = FuseMapping.To(Fop.Lk),
        [FuseOpcode.Access] = FuseMapping.To(Fop.Access),
        [FuseOpcode.Create] = FuseMapping.To(Fop.Create),
        [FuseOpcode.Interrupt] = FuseMapping.NoFop("cancels the interrupted request's FopContext.Cancellation"),
        [FuseOpcode.Bmap] = FuseMapping.Unsupported("block devices only"),
        [FuseOpcode.Destroy] = FuseMapping.NoFop("answered by the session at unmount"),
        [FuseOpcode.Ioctl] = FuseMapping.Unsupported("no ioctls"),
        [FuseOpcode.Poll] = FuseMapping.Unsupported("regular files are always ready"),
        [FuseOpcode.NotifyReply] = FuseMapping.NoFop("Brickfs sends no RETRIEVE notifications"),
        [FuseOpcode.Fallocate] = FuseMapping.To(Fop.Fallocate),
        [FuseOpcode.Readdirplus] = FuseMapping.To(Fop.Readdirplus),
        [FuseOpcode.Lseek] = FuseMapping.To(Fop.Lseek),
        [FuseOpcode.CopyFileRange] = FuseMapping.Unsupported("the kernel falls back to read and write"),
        [FuseOpcode.SetupMapping] = FuseMapping.Unsupported("DAX only"),
        [FuseOpcode.RemoveMapping] = FuseMapping.Unsupported("DAX only"),
        [FuseOpcode.Syncfs] = FuseMapping.Unsupported("virtiofs only"),
        [FuseOpcode.Tmpfile] = FuseMapping.Unsupported("O_TMPFILE not offered yet"),
    };

    /// <summary>
    /// Fops no kernel opcode reaches, each with the reason: they are internal to the graph
    /// (cluster translators, self-heal), never asked for by an application.
    /// </summary>
    public static IReadOnlyDictionary<Fop, string> Internal { get; } = new Dictionary<Fop, string>
    {
        [Fop.Xattrop] = "pending-change counters of cluster/replicate",
        [Fop.Inodelk] = "transaction locks of cluster translators, apart from applications' locks",
        [Fop.Entrylk] = "name locks of cluster translators",
    };
}
