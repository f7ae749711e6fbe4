using System.Text.Json.Serialization;

namespace Brickfs.Mgmt.Model;

public enum VolumeStatus
{
    Created,
    Started,
    Stopped,
}

/// <summary>The layout names GlusterFS users know; derived from the replica and brick counts, never stored.</summary>
public enum VolumeLayout
{
    Distribute,
    Replicate,
    DistributedReplicate,
}

/// <summary>One brick of a volume: a directory on a host, and the TCP port its brickd listens on (allocated once, persisted).</summary>
public sealed class BrickDefinition
{
    public required string Host { get; init; }
    public required string Path { get; init; }
    /// <summary>Stable within the volume (never reused after remove-brick), so a brick's names in volfiles do not change when others go.</summary>
    public int Number { get; set; }
    public int Port { get; set; }

    [JsonIgnore]
    public string Spec => $"{Host}:{Path}";
}

/// <summary>
/// A volume definition as stored. Bricks are in the user's order: consecutive groups of
/// <see cref="ReplicaCount"/> bricks form a replica set, and with an arbiter the last brick of
/// each set is the arbiter (GlusterFS's rule, so the same create line gives the same layout).
/// </summary>
public sealed class VolumeDefinition
{
    public required string Name { get; init; }
    public required Guid Id { get; init; }
    /// <summary>1 for a plain distribute volume.</summary>
    public int ReplicaCount { get; set; } = 1;
    /// <summary>0 or 1; 1 only with replica 3.</summary>
    public int ArbiterCount { get; set; }
    public List<BrickDefinition> Bricks { get; init; } = [];
    /// <summary>Options the user set with <c>volume set</c>; unset keys take the table's default.</summary>
    public SortedDictionary<string, string> Options { get; init; } = new(StringComparer.Ordinal);
    public VolumeStatus Status { get; set; } = VolumeStatus.Created;
    public int NextBrickNumber { get; set; }
    /// <summary>
    /// Numbers of the bricks a <c>remove-brick ... start</c> is draining: the client volfile marks
    /// their sets decommissioned (no new files, no hash range) until commit or stop.
    /// </summary>
    public List<int> Decommissioned { get; init; } = [];

    [JsonIgnore]
    public int SetCount => Bricks.Count / ReplicaCount;

    [JsonIgnore]
    public VolumeLayout Layout => ReplicaCount == 1 ? VolumeLayout.Distribute
        : SetCount == 1 ? VolumeLayout.Replicate : VolumeLayout.DistributedReplicate;

    public bool IsArbiter(int brickIndex) => ArbiterCount > 0 && brickIndex % ReplicaCount == ReplicaCount - 1;

    public static string LayoutName(VolumeLayout layout) => layout switch
    {
        VolumeLayout.Distribute => "Distribute",
        VolumeLayout.Replicate => "Replicate",
        _ => "Distributed-Replicate",
    };
}

public sealed class PeerDefinition
{
    public required string Host { get; init; }
    public int Port { get; init; }
    public Guid NodeId { get; init; }
    public DateTimeOffset ProbedAt { get; init; }
}

/// <summary>Everything a management daemon persists. One document, replaced as a whole on every change.</summary>
public sealed class MgmtState
{
    /// <summary>Bumped on every stored change, so a reader can tell two states apart.</summary>
    public long Generation { get; set; }
    public Guid NodeId { get; set; }
    public List<PeerDefinition> Peers { get; init; } = [];
    public List<VolumeDefinition> Volumes { get; init; } = [];
    public List<SnapshotDefinition> Snapshots { get; init; } = [];

    public VolumeDefinition? FindVolume(string name) => Volumes.FirstOrDefault(v => v.Name == name);
    public SnapshotDefinition? FindSnapshot(string name) => Snapshots.FirstOrDefault(s => s.Name == name);

    /// <summary>Every brick that holds a port on some host: the volumes' and the activated snapshots'.</summary>
    public IEnumerable<VolumeDefinition> PortHolders => Volumes.Concat(Snapshots.Select(s => s.Bricks));
}

/// <summary>
/// A read-only Btrfs snapshot of every brick of a volume, taken at one point. <see cref="Bricks"/>
/// is the volume as it was, with each brick's path replaced by its snapshot's path, so the
/// snapshot can be served (activated) and mounted as a volume of its own; its name is the
/// snapshot's name. <see cref="Origins"/> lists the origin brick paths in the same order.
/// </summary>
public sealed class SnapshotDefinition
{
    public required string Name { get; init; }
    public required Guid Id { get; init; }
    public required string Volume { get; init; }
    public required Guid VolumeId { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public required VolumeDefinition Bricks { get; init; }
    public List<string> Origins { get; init; } = [];
    /// <summary>Whether brickds serve the snapshot's bricks, so it can be mounted read-only.</summary>
    public bool Active { get; set; }
}
