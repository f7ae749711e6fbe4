using Brickfs.Translators.Core;
using Google.Protobuf;

namespace Brickfs.Translators.Protocol.Wire;

/// <summary>Every request message: the caller's identity travels as field 1.</summary>
public interface IWireRequest : IMessage
{
    Caller Caller { get; set; }
}

/// <summary>Every reply message: the errno travels as field 1 (0 = success).</summary>
public interface IWireReply : IMessage
{
    int Errno { get; set; }
}

public sealed partial class LookupRequest : IWireRequest;
public sealed partial class LookupReply : IWireReply;
public sealed partial class StatRequest : IWireRequest;
public sealed partial class StatReply : IWireReply;
public sealed partial class SetattrRequest : IWireRequest;
public sealed partial class SetattrReply : IWireReply;
public sealed partial class ReadlinkRequest : IWireRequest;
public sealed partial class ReadlinkReply : IWireReply;
public sealed partial class MknodRequest : IWireRequest;
public sealed partial class MknodReply : IWireReply;
public sealed partial class MkdirRequest : IWireRequest;
public sealed partial class MkdirReply : IWireReply;
public sealed partial class UnlinkRequest : IWireRequest;
public sealed partial class UnlinkReply : IWireReply;
public sealed partial class RmdirRequest : IWireRequest;
public sealed partial class RmdirReply : IWireReply;
public sealed partial class SymlinkRequest : IWireRequest;
public sealed partial class SymlinkReply : IWireReply;
public sealed partial class RenameRequest : IWireRequest;
public sealed partial class RenameReply : IWireReply;
public sealed partial class LinkRequest : IWireRequest;
public sealed partial class LinkReply : IWireReply;
public sealed partial class OpenRequest : IWireRequest;
public sealed partial class OpenReply : IWireReply;
public sealed partial class CreateRequest : IWireRequest;
public sealed partial class CreateReply : IWireReply;
public sealed partial class ReadRequest : IWireRequest;
public sealed partial class ReadReply : IWireReply;
public sealed partial class WriteRequest : IWireRequest;
public sealed partial class WriteReply : IWireReply;
public sealed partial class StatfsRequest : IWireRequest;
public sealed partial class StatfsReply : IWireReply;
public sealed partial class FlushRequest : IWireRequest;
public sealed partial class FlushReply : IWireReply;
public sealed partial class ReleaseRequest : IWireRequest;
public sealed partial class ReleaseReply : IWireReply;
public sealed partial class FsyncRequest : IWireRequest;
public sealed partial class FsyncReply : IWireReply;
public sealed partial class SetxattrRequest : IWireRequest;
public sealed partial class SetxattrReply : IWireReply;
public sealed partial class GetxattrRequest : IWireRequest;
public sealed partial class GetxattrReply : IWireReply;
public sealed partial class ListxattrRequest : IWireRequest;
public sealed partial class ListxattrReply : IWireReply;
public sealed partial class RemovexattrRequest : IWireRequest;
public sealed partial class RemovexattrReply : IWireReply;
public sealed partial class OpendirRequest : IWireRequest;
public sealed partial class OpendirReply : IWireReply;
public sealed partial class ReaddirRequest : IWireRequest;
public sealed partial class ReaddirReply : IWireReply;
public sealed partial class ReaddirplusRequest : IWireRequest;
public sealed partial class ReaddirplusReply : IWireReply;
public sealed partial class ReleasedirRequest : IWireRequest;
public sealed partial class ReleasedirReply : IWireReply;
public sealed partial class FsyncdirRequest : IWireRequest;
public sealed partial class FsyncdirReply : IWireReply;
public sealed partial class LkRequest : IWireRequest;
public sealed partial class LkReply : IWireReply;
public sealed partial class AccessRequest : IWireRequest;
public sealed partial class AccessReply : IWireReply;
public sealed partial class FallocateRequest : IWireRequest;
public sealed partial class FallocateReply : IWireReply;
public sealed partial class LseekRequest : IWireRequest;
public sealed partial class LseekReply : IWireReply;
public sealed partial class XattropRequest : IWireRequest;
public sealed partial class XattropReply : IWireReply;
public sealed partial class InodelkRequest : IWireRequest;
public sealed partial class InodelkReply : IWireReply;
public sealed partial class EntrylkRequest : IWireRequest;
public sealed partial class EntrylkReply : IWireReply;

/// <summary>
/// The message types of each fop. Every <see cref="Fop"/> member must have an entry: the
/// protocol tests walk the enum, so a new fop without wire messages fails them.
/// </summary>
public static class WireTable
{
    private static readonly MessageParser?[] RequestParsers = new MessageParser?[64];
    private static readonly MessageParser?[] ReplyParsers = new MessageParser?[64];

    static WireTable()
    {
        Add(Fop.Lookup, LookupRequest.Parser, LookupReply.Parser);
        Add(Fop.Stat, StatRequest.Parser, StatReply.Parser);
        Add(Fop.Setattr, SetattrRequest.Parser, SetattrReply.Parser);
        Add(Fop.Readlink, ReadlinkRequest.Parser, ReadlinkReply.Parser);
        Add(Fop.Mknod, MknodRequest.Parser, MknodReply.Parser);
        Add(Fop.Mkdir, MkdirRequest.Parser, MkdirReply.Parser);
        Add(Fop.Unlink, UnlinkRequest.Parser, UnlinkReply.Parser);
        Add(Fop.Rmdir, RmdirRequest.Parser, RmdirReply.Parser);
        Add(Fop.Symlink, SymlinkRequest.Parser, SymlinkReply.Parser);
        Add(Fop.Rename, RenameRequest.Parser, RenameReply.Parser);
        Add(Fop.Link, LinkRequest.Parser, LinkReply.Parser);
        Add(Fop.Open, OpenRequest.Parser, OpenReply.Parser);
        Add(Fop.Create, CreateRequest.Parser, CreateReply.Parser);
        Add(Fop.Read, ReadRequest.Parser, ReadReply.Parser);
        Add(Fop.Write, WriteRequest.Parser, WriteReply.Parser);
        Add(Fop.Statfs, StatfsRequest.Parser, StatfsReply.Parser);
        Add(Fop.Flush, FlushRequest.Parser, FlushReply.Parser);
        Add(Fop.Release, ReleaseRequest.Parser, ReleaseReply.Parser);
        Add(Fop.Fsync, FsyncRequest.Parser, FsyncReply.Parser);
        Add(Fop.Setxattr, SetxattrRequest.Parser, SetxattrReply.Parser);
        Add(Fop.Getxattr, GetxattrRequest.Parser, GetxattrReply.Parser);
        Add(Fop.Listxattr, ListxattrRequest.Parser, ListxattrReply.Parser);
        Add(Fop.Removexattr, RemovexattrRequest.Parser, RemovexattrReply.Parser);
        Add(Fop.Opendir, OpendirRequest.Parser, OpendirReply.Parser);
        Add(Fop.Readdir, ReaddirRequest.Parser, ReaddirReply.Parser);
        Add(Fop.Readdirplus, ReaddirplusRequest.Parser, ReaddirplusReply.Parser);
        Add(Fop.Releasedir, ReleasedirRequest.Parser, ReleasedirReply.Parser);
        Add(Fop.Fsyncdir, FsyncdirRequest.Parser, FsyncdirReply.Parser);
        Add(Fop.Lk, LkRequest.Parser, LkReply.Parser);
        Add(Fop.Access, AccessRequest.Parser, AccessReply.Parser);
        Add(Fop.Fallocate, FallocateRequest.Parser, FallocateReply.Parser);
        Add(Fop.Lseek, LseekRequest.Parser, LseekReply.Parser);
        Add(Fop.Xattrop, XattropRequest.Parser, XattropReply.Parser);
        Add(Fop.Inodelk, InodelkRequest.Parser, InodelkReply.Parser);
        Add(Fop.Entrylk, EntrylkRequest.Parser, EntrylkReply.Parser);
    }

    private static void Add(Fop fop, MessageParser request, MessageParser reply)
    {
        RequestParsers[(int)fop] = request;
        ReplyParsers[(int)fop] = reply;
    }

    /// <summary>Whether <paramref name="fop"/> (a raw wire number) is a fop this build speaks.</summary>
    public static bool IsKnown(int fop) => (uint)fop < (uint)RequestParsers.Length && RequestParsers[fop] is not null;

    public static MessageParser RequestParser(Fop fop) =>
        IsKnown((int)fop) ? RequestParsers[(int)fop]! : throw new KeyNotFoundException($"fop {fop} has no wire request message");

    public static MessageParser ReplyParser(Fop fop) =>
        IsKnown((int)fop) ? ReplyParsers[(int)fop]! : throw new KeyNotFoundException($"fop {fop} has no wire reply message");
}
