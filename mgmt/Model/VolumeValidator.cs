using System.Net;
using System.Text.RegularExpressions;
using Brickfs.Mgmt.Node;

namespace Brickfs.Mgmt.Model;

/// <summary>
/// The checks GlusterFS's <c>volume create</c> and <c>add-brick</c> make, each failing with one
/// line that names the offending brick. Checks that guard against a bad layout rather than a
/// broken one (bricks on the root filesystem or not on Btrfs, two copies of a replica set on
/// one host) give way to <c>force</c>; the others never do. Filesystem checks apply to this
/// node's bricks only: another node's disks are that node's mgmtd's business.
/// </summary>
public sealed partial class VolumeValidator(Func<string, bool> isLocalHost, Func<string, MountPoint> mountOf, Func<string, bool>? isSubvolume = null)
{
    public const int MaxNameLength = 64;

    /// <summary>
    /// In cluster mode every brick host must be this node or a probed peer (GlusterFS's "not in
    /// 'Peer in Cluster' state"): a brick on a host no mgmtd of the cluster answers for would
    /// never start. Standalone servers place bricks on any host, as before.
    /// </summary>
    public bool RequirePeers { get; init; }
    public const int MaxReplica = 16;

    public static MgmtError? CheckName(string name)
    {
        if (name.Length == 0) return MgmtError.Invalid("volume name is empty");
        if (name.Length > MaxNameLength) return MgmtError.Invalid($"volume name {name} is longer than {MaxNameLength} characters");
        if (!VolumeName().IsMatch(name)) return MgmtError.Invalid($"volume name {name} may contain only letters, digits, '_' and '-'");
        return null;
    }

    /// <summary>Parses <c>HOST:/DIR</c>; the directory comes back without a trailing slash.</summary>
    public static MgmtResult<BrickDefinition> ParseBrick(string spec)
    {
        int colon = spec.LastIndexOf(":/", StringComparison.Ordinal);
        if (colon <= 0) return MgmtError.Invalid($"brick {spec} is not HOST:/DIRECTORY");
        string host = spec[..colon], path = spec[(colon + 1)..];
        bool ipv6 = host.StartsWith('[') && host.EndsWith(']') && IPAddress.TryParse(host[1..^1], out _);
        if (!ipv6 && !HostName().IsMatch(host)) return MgmtError.Invalid($"brick {spec}: '{host}' is not a host name or address");
        path = path.TrimEnd('/');
        if (path.Length == 0) return MgmtError.Invalid($"brick {spec}: the root directory cannot be a brick");
        var parts = path.Split('/')[1..];
        if (parts.Any(p => p is "" or "." or ".."))
            return MgmtError.Invalid($"brick {spec}: the directory must be an absolute path without '.', '..' or '//'");
        return new BrickDefinition { Host = host, Path = path };
    }

    public MgmtResult<VolumeDefinition> ValidateCreate(MgmtState state, string name, int replica, int arbiter, IReadOnlyList<string> bricks, bool force)
    {
        if (CheckName(name) is { } bad) return bad;
        if (state.FindVolume(name) is not null) return MgmtError.Conflict($"volume {name} already exists");
        if (replica == 0) replica = 1;
        if (replica < 1 || replica > MaxReplica || (replica == 1 && arbiter > 0))
            return MgmtError.Invalid(replica == 1 && arbiter > 0 ? "arbiter 1 needs replica 3" : $"replica count must be 2..{MaxReplica}");
        if (arbiter is not (0 or 1)) return MgmtError.Invalid("arbiter count must be 1");
        if (arbiter == 1 && replica != 3) return MgmtError.Invalid($"arbiter 1 needs replica 3, not replica {replica}");
        var volume = new VolumeDefinition { Name = name, Id = Guid.NewGuid(), ReplicaCount = replica, ArbiterCount = arbiter };
        if (CheckBricks(state, volume, bricks, force) is { } error) return error;
        return volume;
    }

    /// <summary>Checks <paramref name="bricks"/> as new bricks of <paramref name="volume"/> and appends them to it.</summary>
    public MgmtError? CheckBricks(MgmtState state, VolumeDefinition volume, IReadOnlyList<string> bricks, bool force)
    {
        if (bricks.Count == 0) return MgmtError.Invalid("no bricks given");
        var parsed = new List<BrickDefinition>();
        foreach (var spec in bricks)
        {
            var b = ParseBrick(spec);
            if (!b.Ok) return b.Error;
            if (parsed.Concat(volume.Bricks).Any(p => p.Host == b.Value.Host && p.Path == b.Value.Path))
                return MgmtError.Invalid($"brick {b.Value.Spec} is given twice");
            if (RequirePeers && !isLocalHost(b.Value.Host) && !state.Peers.Any(p => string.Equals(p.Host, b.Value.Host, StringComparison.OrdinalIgnoreCase)))
                return MgmtError.Invalid($"brick {b.Value.Spec}: host {b.Value.Host} is not a peer of this cluster (brickctl peer probe {b.Value.Host})");
            parsed.Add(b.Value);
        }
        if (parsed.Count % volume.ReplicaCount != 0)
            return MgmtError.Invalid($"{parsed.Count} bricks is not a multiple of the replica count {volume.ReplicaCount}");

        var others = state.Volumes.Where(v => v.Name != volume.Name).SelectMany(v => v.Bricks.Select(b => (Volume: v.Name, Brick: b)))
            .Concat(volume.Bricks.Select(b => (Volume: volume.Name, Brick: b))).ToList();
        for (int i = 0; i < parsed.Count; i++)
        {
            var b = parsed[i];
            foreach (var (otherVolume, o) in others.Concat(parsed.Take(i).Select(p => (Volume: volume.Name, Brick: p))))
            {
                if (o.Host != b.Host) continue;
                if (o.Path == b.Path) return MgmtError.Conflict($"brick {b.Spec} is already a brick of volume {otherVolume}");
                if (Inside(b.Path, o.Path)) return MgmtError.Invalid($"brick {b.Spec} is inside brick {o.Spec} of volume {otherVolume}");
                if (Inside(o.Path, b.Path)) return MgmtError.Invalid($"brick {b.Spec} contains brick {o.Spec} of volume {otherVolume}");
            }
        }

        if (!force)
        {
            for (int set = 0; set < parsed.Count / volume.ReplicaCount; set++)
            {
                var members = parsed.Skip(set * volume.ReplicaCount).Take(volume.ReplicaCount).ToList();
                var dup = members.GroupBy(m => m.Host, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
                if (dup is not null)
                    return MgmtError.Invalid($"bricks {string.Join(" and ", dup.Select(d => d.Spec))} of one replica set are on the same host, which takes all those copies down at once (add 'force' to create anyway)");
            }
            if (CheckLocalFilesystems(parsed) is { } local) return local;
        }
        foreach (var b in parsed) b.Number = volume.NextBrickNumber++;
        volume.Bricks.AddRange(parsed);
        return null;
    }

    /// <summary>
    /// The checks of this node's bricks among <paramref name="bricks"/> that only this node can
    /// make (which filesystem holds them); all give way to <c>force</c>. In a cluster the node
    /// that is asked to create a volume has each other node make them for its own bricks.
    /// </summary>
    public MgmtError? CheckLocalFilesystems(IEnumerable<BrickDefinition> bricks)
    {
        foreach (var b in bricks.Where(b => isLocalHost(b.Host)))
        {
            var mount = mountOf(b.Path);
            if (mount.IsRoot) return MgmtError.Invalid($"brick {b.Spec} is on the root filesystem (add 'force' to use it anyway)");
            if (mount.FileSystemType != "btrfs")
                return MgmtError.Invalid($"brick {b.Spec} is on {mount.FileSystemType} at {mount.Path}, not Btrfs, so snapshots will not work (add 'force' to use it anyway)");
            // A brick that exists must be a subvolume of its own, so one snapshot covers exactly
            // that brick; one that does not exist yet is created as a subvolume.
            if (isSubvolume is not null && Directory.Exists(b.Path) && !isSubvolume(b.Path))
                return MgmtError.Invalid($"brick {b.Spec} is a plain directory, not a Btrfs subvolume, so it cannot be snapshot on its own (give a path that does not exist yet, or a subvolume, or add 'force')");
        }
        return null;
    }

    private static bool Inside(string path, string parent) => path.StartsWith(parent + "/", StringComparison.Ordinal);

    [GeneratedRegex("^[A-Za-z0-9_-]+$")]
    private static partial Regex VolumeName();

    [GeneratedRegex(@"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")]
    private static partial Regex HostName();
}
