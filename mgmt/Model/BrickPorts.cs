namespace Brickfs.Mgmt.Model;

/// <summary>
/// Brick ports, as GlusterFS allocates them: from 49152 (the start of the dynamic range) upward,
/// the lowest port no other brick on the same host holds. A port is chosen once, when the brick
/// joins its volume, and stored, so client volfiles stay valid across restarts.
/// </summary>
public static class BrickPorts
{
    public const int First = 49152;
    public const int Last = 65535;

    /// <summary>
    /// Gives every brick of <paramref name="volume"/> with port 0 a free port; an error when a host
    /// has run out of ports. <paramref name="taken"/> says whether some other program already
    /// listens on HOST:PORT (mgmtd can tell for its own node), so a brick is never given a port
    /// that it could not bind.
    /// </summary>
    public static MgmtError? Assign(MgmtState state, VolumeDefinition volume, Func<string, int, bool>? taken = null)
    {
        var all = state.PortHolders.Where(v => v != volume).SelectMany(v => v.Bricks).Concat(volume.Bricks).ToList();
        foreach (var b in volume.Bricks.Where(b => b.Port == 0))
        {
            var used = all.Where(o => string.Equals(o.Host, b.Host, StringComparison.OrdinalIgnoreCase) && o.Port != 0)
                .Select(o => o.Port).ToHashSet();
            int port = First;
            while (port <= Last && (used.Contains(port) || (taken is not null && taken(b.Host, port)))) port++;
            if (port > Last) return MgmtError.Unavailable($"no free brick port on host {b.Host}");
            b.Port = port;
        }
        return null;
    }
}
