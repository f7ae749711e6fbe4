using Brickfs.Translators.Core;

namespace Brickfs.Translators.Features.Locks;

/// <summary>
/// What one client (mount) holds or waits for on this brick: the inodes to visit when it goes
/// away. This is the record a client lease and its epoch will hang on. Guarded by its own lock,
/// taken after an inode's stripe lock, never before.
/// </summary>
internal sealed class LockClient(string clientId)
{
    public string ClientId { get; } = clientId;

    public Lock Sync { get; } = new();

    /// <summary>Inodes where the client holds or waits for a lock (possibly a few already idle).</summary>
    public HashSet<Gfid> Inodes { get; } = [];

    /// <summary>Set once the client was released; a retired record takes no new inodes.</summary>
    public bool Retired { get; set; }
}
