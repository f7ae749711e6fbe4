namespace Brickfs.Translators.Core;

/// <summary>
/// Per-request context handed down the graph with every fop: who is calling, for which lock
/// owner, and the cancellation that a FUSE INTERRUPT (or a timeout) triggers. Translators keep
/// their per-call state in locals; the <see cref="Extra"/> bag carries data between translators
/// that has no place in a fop's signature (GlusterFS's xdata).
/// </summary>
public sealed class FopContext
{
    private Dictionary<string, object>? _extra;

    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public uint Pid { get; init; }

    /// <summary>Supplementary groups of the caller; empty when unknown.</summary>
    public uint[] Groups { get; init; } = [];

    /// <summary>The kernel's lock owner for this request (POSIX locks, FLUSH, flock); 0 when none.</summary>
    public ulong LockOwner { get; init; }

    /// <summary>Identifies the client (mount) that issued the request; lock owners are scoped by it.</summary>
    public string ClientId { get; init; } = "local";

    public ulong RequestId { get; init; }

    public CancellationToken Cancellation { get; init; }

    /// <summary>
    /// Xattrs the caller wants returned with the attributes of lookup, stat and readdirplus
    /// (in <see cref="Iatt.Xattrs"/>), saving a getxattr round trip per entry; null for none.
    /// </summary>
    public IReadOnlyList<string>? XattrRequest { get; init; }

    public bool IsRoot => Uid == 0;

    /// <summary>
    /// A request made by a translator of the brick's own graph (bitrot's checksum store, the
    /// index), never one that came over the wire: protocol/server builds its contexts from wire
    /// fields only and cannot set this. storage/posix lets such requests reach the hidden
    /// <c>.brickfs/</c> directory and the brick-private <c>trusted.brickfs.*</c> xattrs. Cluster
    /// translators run on the client and must not set it.
    /// </summary>
    public bool BrickInternal { get; init; }

    /// <summary>Extra data between translators; allocated on first use.</summary>
    public Dictionary<string, object> Extra => _extra ??= new Dictionary<string, object>(StringComparer.Ordinal);

    public bool HasExtra => _extra is { Count: > 0 };

    public bool TryGetExtra<T>(string key, out T value)
    {
        if (_extra is not null && _extra.TryGetValue(key, out var o) && o is T t)
        {
            value = t;
            return true;
        }
        value = default!;
        return false;
    }

    /// <summary>The context of an internal request made by Brickfs itself (self-heal, rebalance).</summary>
    public static FopContext Internal(CancellationToken cancellation = default) =>
        new() { Uid = 0, Gid = 0, Pid = 0, ClientId = "internal", Cancellation = cancellation };

    /// <summary>The context of a request made by a brick-side translator for its own state (see <see cref="BrickInternal"/>).</summary>
    public static FopContext Brick(CancellationToken cancellation = default) =>
        new() { Uid = 0, Gid = 0, Pid = 0, ClientId = "brick", Cancellation = cancellation, BrickInternal = true };

    /// <summary>A copy with the same caller, for fan-out where each child may add its own extra data.</summary>
    public FopContext Fork() => new()
    {
        Uid = Uid, Gid = Gid, Pid = Pid, Groups = Groups, LockOwner = LockOwner, ClientId = ClientId,
        RequestId = RequestId, Cancellation = Cancellation, XattrRequest = XattrRequest, BrickInternal = BrickInternal,
        _extra = _extra is null ? null : new Dictionary<string, object>(_extra, StringComparer.Ordinal),
    };
}
