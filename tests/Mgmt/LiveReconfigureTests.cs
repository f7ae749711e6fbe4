using Brickfs.ClientFuse.Host;
using Brickfs.Mgmt.Model;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;
using MgmtVolgen = Brickfs.Mgmt.Volgen.Volgen;

namespace Brickfs.Tests.Mgmt;

/// <summary>
/// What a mounted client does with a new client volfile from mgmtd (VolfileWatcher): options
/// that change live are applied to the running graph, anything else is refused whole. Graphs
/// are built from generated volfiles and never started (no bricks needed).
/// </summary>
public class LiveReconfigureTests
{
    private static VolumeDefinition Replica3()
    {
        var v = new VolumeDefinition { Name = "gv", Id = Guid.Parse("00000000-0000-0000-0000-000000000001"), ReplicaCount = 3 };
        for (int i = 0; i < 3; i++) v.Bricks.Add(new BrickDefinition { Host = $"node{i}", Path = "/b", Number = i, Port = 49152 + i });
        v.NextBrickNumber = 3;
        return v;
    }

    private static string With(VolumeDefinition v, params (string Key, string Value)[] options)
    {
        var copy = MgmtJson.Clone(v);
        foreach (var (k, value) in options) copy.Options[k] = value;
        return MgmtVolgen.ClientVolfile(copy);
    }

    [Test]
    public void Ping_timeout_and_quorum_change_in_the_running_graph()
    {
        var v = Replica3();
        string before = With(v);
        var graph = GraphBuilder.BuildText(before); // never started, so nothing to stop
        var replicate = graph.Find<ReplicateTranslator>();
        Assert.That(replicate.HasQuorum(0b011), Is.True, "quorum auto: two of three");

        string after = With(v, (VolumeOptionTable.PingTimeout, "2"), (VolumeOptionTable.QuorumType, "fixed"), (VolumeOptionTable.QuorumCount, "3"));
        var reason = VolfileWatcher.TryReconfigure(graph, before, after, out var applied);
        Assert.That(reason, Is.Null);
        Assert.That(applied, Does.Contain("gv-client-1.ping-timeout=2").And.Contain("gv-replicate-0.quorum-type=fixed").And.Contain("gv-replicate-0.quorum-count=3"));
        Assert.That(graph.All.OfType<ProtocolClientTranslator>().Select(c => c.PingTimeout), Is.All.EqualTo(TimeSpan.FromSeconds(2)));
        Assert.That(replicate.HasQuorum(0b011), Is.False, "quorum fixed 3: two of three is not enough");
        Assert.That(replicate.HasQuorum(0b111), Is.True);
    }

    [Test]
    public void A_change_of_shape_or_of_an_option_that_is_not_live_changes_nothing()
    {
        var v = Replica3();
        string before = With(v);
        var graph = GraphBuilder.BuildText(before); // never started, so nothing to stop

        var grown = MgmtJson.Clone(v);
        grown.ReplicaCount = 3;
        for (int i = 3; i < 6; i++) grown.Bricks.Add(new BrickDefinition { Host = $"node{i}", Path = "/b", Number = i, Port = 49152 + i });
        Assert.That(VolfileWatcher.TryReconfigure(graph, before, MgmtVolgen.ClientVolfile(grown), out _), Does.StartWith("the graph changed shape"));

        // A brick that moved to another port: the connection would have to be remade.
        string moved = With(v, (VolumeOptionTable.PingTimeout, "2")).Replace("remote-port 49152", "remote-port 50000");
        Assert.That(VolfileWatcher.TryReconfigure(graph, before, moved, out _),
            Is.EqualTo("protocol/client 'gv-client-0' cannot change remote-port while running"));
        Assert.That(graph.All.OfType<ProtocolClientTranslator>().Select(c => c.PingTimeout), Is.All.EqualTo(TimeSpan.FromSeconds(42)),
            "nothing was applied, not even the live option beside it");
    }
}
