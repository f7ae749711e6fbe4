using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Host;

/// <summary>
/// A served mount: the bridge over a translator graph's top, and the FUSE session on a
/// directory. The mount program and in-process tests both start mounts through this type.
/// </summary>
public sealed class FuseMount : IAsyncDisposable
{
    private FuseMount(FuseBridge bridge, FuseSession session)
    {
        Bridge = bridge;
        Session = session;
    }

    public FuseBridge Bridge { get; }
    public FuseSession Session { get; }
    public string MountPoint => Session.MountPoint;

    /// <summary>Completes when the kernel ends the connection (e.g. <c>umount DIR</c>).</summary>
    public Task Completion => Session.Completion;

    /// <summary>Mounts <paramref name="top"/> on <paramref name="mountPoint"/>; returns once the kernel's INIT is answered.</summary>
    public static async Task<FuseMount> StartAsync(Translator top, string mountPoint, FuseSessionOptions session, FuseBridgeOptions bridgeOptions, Log log)
    {
        var bridge = new FuseBridge(top, bridgeOptions);
        var s = await FuseSession.MountAsync(mountPoint, session, bridge, log);
        bridge.Attach(s);
        return new FuseMount(bridge, s);
    }

    /// <summary>Unmounts (lazily if busy) and waits for the readers to stop.</summary>
    public Task UnmountAsync() => Session.UnmountAsync(TimeSpan.FromSeconds(5));

    public ValueTask DisposeAsync() => Session.DisposeAsync();
}
