using Brickfs.Mgmt.Model;

namespace Brickfs.Mgmt.Store;

/// <summary>
/// Where a management daemon keeps peers and volume definitions. An abstract class, not an
/// interface, so members can be added without breaking implementations: the embedded file
/// store today, etcd (compare-and-swap transactions) for clusters later.
/// </summary>
public abstract class StateStore : IAsyncDisposable
{
    /// <summary>A private copy of the current state; changing it changes nothing stored.</summary>
    public abstract ValueTask<MgmtState> ReadAsync(CancellationToken cancellation = default);

    /// <summary>
    /// Applies <paramref name="change"/> to a private copy of the current state and stores the
    /// result as one atomic step. Updates are serialised: <paramref name="change"/> sees every
    /// earlier update. If it returns an error, nothing is stored and the error is returned.
    /// When this returns success the new state is durable.
    /// </summary>
    public abstract ValueTask<MgmtResult<T>> UpdateAsync<T>(Func<MgmtState, MgmtResult<T>> change, CancellationToken cancellation = default);

    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
