using Brickfs.Translators.Core;
using W = Brickfs.Translators.Protocol.Wire;

namespace Brickfs.Translators.Protocol;

/// <summary>Core types to wire messages and back. A missing sub-message reads as the type's zero value.</summary>
internal static class WireConvert
{
    public static W.Gfid ToWire(this Gfid g) => new() { Hi = g.Hi, Lo = g.Lo };
    public static Gfid FromWire(this W.Gfid? g) => g is null ? Gfid.Null : new Gfid(g.Hi, g.Lo);

    public static W.Timespec ToWire(this Timespec t) => new() { Sec = t.Sec, Nsec = t.Nsec };
    public static Timespec FromWire(this W.Timespec? t) => t is null ? default : new Timespec(t.Sec, t.Nsec);

    public static W.Iatt ToWire(this Iatt a)
    {
        var w = new W.Iatt
        {
            Gfid = a.Gfid.ToWire(), Mode = a.Mode, Nlink = a.Nlink, Uid = a.Uid, Gid = a.Gid, Rdev = a.Rdev,
            Size = a.Size, Blocks = a.Blocks, BlockSize = a.BlockSize,
            Atime = a.Atime.ToWire(), Mtime = a.Mtime.ToWire(), Ctime = a.Ctime.ToWire(),
        };
        if (a.Xattrs is { } xattrs)
        {
            w.HasXattrs = true;
            foreach (var (k, v) in xattrs) w.Xattrs[k] = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(v);
        }
        return w;
    }

    public static Iatt FromWire(this W.Iatt? a) => a is null ? new Iatt() : new Iatt
    {
        Gfid = a.Gfid.FromWire(), Mode = a.Mode, Nlink = a.Nlink, Uid = a.Uid, Gid = a.Gid, Rdev = a.Rdev,
        Size = a.Size, Blocks = a.Blocks, BlockSize = a.BlockSize,
        Atime = a.Atime.FromWire(), Mtime = a.Mtime.FromWire(), Ctime = a.Ctime.FromWire(),
        Xattrs = a.HasXattrs ? a.Xattrs.ToDictionary(p => p.Key, p => p.Value.ToByteArray(), StringComparer.Ordinal) : null,
    };

    public static IEnumerable<W.XattrCounter> ToWire(this IReadOnlyDictionary<string, long[]> counters) =>
        counters.Select(p => new W.XattrCounter { Name = p.Key, Values = { p.Value } });

    public static IReadOnlyDictionary<string, long[]> FromWire(this IEnumerable<W.XattrCounter> counters) =>
        counters.ToDictionary(c => c.Name, c => c.Values.ToArray(), StringComparer.Ordinal);

    public static W.SetattrArgs ToWire(this SetattrRequest r) => new()
    {
        Valid = (uint)r.Valid, Mode = r.Mode, Uid = r.Uid, Gid = r.Gid, Size = r.Size,
        Atime = r.Atime.ToWire(), Mtime = r.Mtime.ToWire(), Ctime = r.Ctime.ToWire(),
    };

    public static SetattrRequest FromWire(this W.SetattrArgs? r) => r is null ? new SetattrRequest() : new SetattrRequest
    {
        Valid = (SetattrValid)r.Valid, Mode = r.Mode, Uid = r.Uid, Gid = r.Gid, Size = r.Size,
        Atime = r.Atime.FromWire(), Mtime = r.Mtime.FromWire(), Ctime = r.Ctime.FromWire(),
    };

    public static W.DirEntry ToWire(this DirEntry e)
    {
        var w = new W.DirEntry { Name = e.Name, NextOffset = e.NextOffset, Type = e.Type };
        if (e.Gfid is { } g) w.Gfid = g.ToWire();
        if (e.Attr is { } a) w.Attr = a.ToWire();
        return w;
    }

    public static DirEntry FromWire(this W.DirEntry e) => new()
    {
        Name = e.Name, NextOffset = e.NextOffset, Type = (byte)e.Type,
        Gfid = e.Gfid is null ? null : e.Gfid.FromWire(),
        Attr = e.Attr is null ? null : e.Attr.FromWire(),
    };

    public static W.Statfs ToWire(this StatfsInfo s) => new()
    {
        Blocks = s.Blocks, BlocksFree = s.BlocksFree, BlocksAvailable = s.BlocksAvailable, Files = s.Files,
        FilesFree = s.FilesFree, BlockSize = s.BlockSize, FragmentSize = s.FragmentSize, NameMax = s.NameMax,
    };

    public static StatfsInfo FromWire(this W.Statfs? s) => s is null ? new StatfsInfo() : new StatfsInfo
    {
        Blocks = s.Blocks, BlocksFree = s.BlocksFree, BlocksAvailable = s.BlocksAvailable, Files = s.Files,
        FilesFree = s.FilesFree, BlockSize = s.BlockSize, FragmentSize = s.FragmentSize, NameMax = s.NameMax,
    };

    public static W.FileLock ToWire(this FileLock l) => new()
    {
        Type = (uint)l.Type, Start = l.Start, End = l.End, Pid = l.Pid, Owner = l.Owner, ClientId = l.ClientId, Kind = (uint)l.Kind,
    };

    public static FileLock FromWire(this W.FileLock? l) => l is null ? new FileLock() : new FileLock
    {
        Type = (LockType)l.Type, Start = l.Start, End = l.End, Pid = l.Pid, Owner = l.Owner, ClientId = l.ClientId, Kind = (LockKind)l.Kind,
    };

    public static W.Caller ToCaller(this FopContext ctx)
    {
        var c = new W.Caller { Uid = ctx.Uid, Gid = ctx.Gid, Pid = ctx.Pid, LockOwner = ctx.LockOwner };
        if (ctx.Groups.Length > 0) c.Groups.Add(ctx.Groups);
        if (ctx.XattrRequest is { } keys)
        {
            c.HasXattrRequest = true;
            c.XattrRequest.Add(keys);
        }
        return c;
    }

    /// <summary>The brick-side context of a request: the caller as sent, the client id from the handshake.</summary>
    public static FopContext ToContext(this W.Caller? c, string clientId, ulong requestId, CancellationToken cancellation) => c is null
        ? new FopContext { Uid = 65534, Gid = 65534, ClientId = clientId, RequestId = requestId, Cancellation = cancellation }
        : new FopContext
        {
            Uid = c.Uid, Gid = c.Gid, Pid = c.Pid, Groups = c.Groups.Count == 0 ? [] : [.. c.Groups], LockOwner = c.LockOwner,
            ClientId = clientId, RequestId = requestId, Cancellation = cancellation,
            XattrRequest = c.HasXattrRequest ? [.. c.XattrRequest] : null,
        };
}
