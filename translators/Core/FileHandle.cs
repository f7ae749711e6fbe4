namespace Brickfs.Translators.Core;

/// <summary>
/// An open file or directory (GlusterFS's fd_t). The top of the graph creates it and passes the
/// same object down every open/read/write/release; each translator keeps its own state on it
/// with <see cref="SetContext"/> (an OS descriptor in storage/posix, a remote handle in
/// protocol/client, per-child handles in cluster translators).
/// </summary>
public sealed class FileHandle
{
    private (Translator Owner, object State)[] _contexts = [];
    private readonly Lock _lock = new();

    public FileHandle(Gfid gfid, int flags, bool isDirectory = false)
    {
        Gfid = gfid;
        Flags = flags;
        IsDirectory = isDirectory;
    }

    public Gfid Gfid { get; }

    /// <summary>open(2) flags as the caller gave them.</summary>
    public int Flags { get; }

    public bool IsDirectory { get; }

    /// <summary>The kernel's file handle number (or the brick's remote handle); informative.</summary>
    public ulong Id { get; set; }

    /// <summary>Lock owner of flock/OFD locks taken through this open file description.</summary>
    public ulong LockOwner { get; set; }

    public int AccessMode => Flags & OpenFlags.AccessMask;
    public bool CanRead => AccessMode != OpenFlags.WriteOnly;
    public bool CanWrite => AccessMode != OpenFlags.ReadOnly;

    public void SetContext(Translator owner, object state)
    {
        lock (_lock)
        {
            var cur = _contexts;
            for (int i = 0; i < cur.Length; i++)
            {
                if (ReferenceEquals(cur[i].Owner, owner))
                {
                    var copy = (((Translator, object)[])cur.Clone());
                    copy[i] = (owner, state);
                    _contexts = copy;
                    return;
                }
            }
            var grown = new (Translator, object)[cur.Length + 1];
            cur.CopyTo(grown, 0);
            grown[^1] = (owner, state);
            _contexts = grown;
        }
    }

    /// <summary>Lock-free read of this translator's state (the array is replaced, never mutated).</summary>
    public bool TryGetContext<T>(Translator owner, out T state) where T : class
    {
        foreach (var (o, s) in Volatile.Read(ref _contexts))
        {
            if (ReferenceEquals(o, owner) && s is T t)
            {
                state = t;
                return true;
            }
        }
        state = null!;
        return false;
    }

    public bool RemoveContext(Translator owner, out object? state)
    {
        lock (_lock)
        {
            var cur = _contexts;
            int i = Array.FindIndex(cur, c => ReferenceEquals(c.Owner, owner));
            if (i < 0)
            {
                state = null;
                return false;
            }
            state = cur[i].State;
            _contexts = [.. cur[..i], .. cur[(i + 1)..]];
            return true;
        }
    }

    public override string ToString() => $"fd({Gfid}, flags=0x{Flags:x})";
}
