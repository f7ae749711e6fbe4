namespace Brickfs.Translators.Core;

/// <summary>
/// A brick-side translator that keeps state per client (locks, leases). protocol/server calls
/// <see cref="ReleaseClient"/> on every translator of its brick graph that implements this when
/// the last connection of that client is gone (disconnect, or the same client reconnecting),
/// so the state of a client that went away does not outlive it.
/// </summary>
public interface IClientAware
{
    void ReleaseClient(string clientId);
}
