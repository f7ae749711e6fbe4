using System.Runtime.CompilerServices;
using Brickfs.Mgmt.Model;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using VolgenGen = Brickfs.Mgmt.Volgen.Volgen;

namespace Brickfs.Tests.Mgmt;

/// <summary>
/// Generated volfiles against golden files in tests/Mgmt/Golden (regenerate them with
/// BRICKFS_UPDATE_GOLDEN=1 and review the diff). Every output is also parsed, and the brick
/// graphs are built with the translator types that exist today.
/// </summary>
public class VolgenTests
{
    public static VolumeDefinition Layout(string name, int replica, int arbiter, params string[] bricks)
    {
        var v = new VolumeDefinition
        {
            Name = name,
            Id = new Guid("00000000-0000-0000-0000-0000000000" + (bricks.Length * 16 + replica).ToString("x2")),
            ReplicaCount = replica,
            ArbiterCount = arbiter,
        };
        var validator = new VolumeValidator(_ => false, _ => new Brickfs.Mgmt.Node.MountPoint("/", "btrfs"));
        var state = new MgmtState();
        Assert.That(validator.CheckBricks(state, v, bricks, force: false), Is.Null);
        Assert.That(BrickPorts.Assign(state, v), Is.Null);
        return v;
    }

    public static IEnumerable<TestCaseData> Layouts()
    {
        yield return new TestCaseData("distribute-3", Layout("dist", 1, 0, "n1:/srv/b1", "n2:/srv/b1", "n3:/srv/b1"));
        yield return new TestCaseData("replicate-3", Layout("rep", 3, 0, "n1:/srv/b1", "n2:/srv/b1", "n3:/srv/b1"));
        yield return new TestCaseData("replicate-3-arbiter-1", Layout("arb", 3, 1, "n1:/srv/b1", "n2:/srv/b1", "n3:/srv/arbiter"));
        yield return new TestCaseData("distributed-replicate-2x3",
            Layout("dr", 3, 0, "n1:/srv/b1", "n2:/srv/b1", "n3:/srv/b1", "n1:/srv/b2", "n2:/srv/b2", "n3:/srv/b2"));
    }

    [TestCaseSource(nameof(Layouts))]
    public void Client_volfile_matches_its_golden_file_and_parses(string golden, VolumeDefinition v)
    {
        var text = VolgenGen.ClientVolfile(v);
        AssertGolden($"{golden}.client.vol", text);
        var decls = VolfileParser.Parse(text, golden);
        Assert.That(decls.Where(d => d.Type == "protocol/client"), Has.Exactly(v.Bricks.Count).Items);
        Assert.That(decls.Where(d => d.Type == "cluster/replicate"), Has.Exactly(v.ReplicaCount > 1 ? v.SetCount : 0).Items);
        Assert.That(decls.Where(d => d.Type == "cluster/distribute"), Has.Exactly(v.Bricks.Count / v.ReplicaCount > 1 ? 1 : 0).Items);
        var used = decls.SelectMany(d => d.Subvolumes).ToHashSet();
        Assert.That(decls.Where(d => !used.Contains(d.Name)), Has.Exactly(1).Items, "one top volume");
    }

    [TestCaseSource(nameof(Layouts))]
    public void Brick_volfiles_match_golden_files_parse_and_build(string golden, VolumeDefinition v)
    {
        for (int i = 0; i < v.Bricks.Count; i++)
        {
            var text = VolgenGen.BrickVolfile(v, i);
            if (i == 0 || v.IsArbiter(i)) AssertGolden($"{golden}.brick-{i}.vol", text);
            var decls = VolfileParser.Parse(text, $"{golden}.brick-{i}");
            Assert.That(decls.Select(d => d.Type), Is.EqualTo(new[]
            {
                "storage/posix", v.ReplicaCount > 1 ? "features/index" : null, "features/locks", "protocol/server",
            }.OfType<string>()), "top down: protocol/server, features/locks, features/index, storage/posix");
            BuildBrickGraph(decls, $"{golden}.brick-{i}");
        }
    }

    [TestCaseSource(nameof(Layouts))]
    public void Every_client_asks_for_the_subvolume_and_port_its_brick_serves(string golden, VolumeDefinition v)
    {
        var client = VolfileParser.Parse(VolgenGen.ClientVolfile(v)).Where(d => d.Type == "protocol/client").ToList();
        for (int i = 0; i < v.Bricks.Count; i++)
        {
            var brick = VolfileParser.Parse(VolgenGen.BrickVolfile(v, i));
            var server = brick.Single(d => d.Type == "protocol/server");
            string Opt(VolumeDeclaration d, string k) => d.Options.Single(o => o.Key == k).Value;
            Assert.That(Opt(client[i], "remote-subvolume"), Is.EqualTo(server.Subvolumes.Single()));
            Assert.That(Opt(client[i], "remote-port"), Is.EqualTo(Opt(server, "listen-port")));
            Assert.That(Opt(client[i], "remote-host"), Is.EqualTo(v.Bricks[i].Host));
            Assert.That(Opt(brick.Single(d => d.Type == "storage/posix"), "directory"), Is.EqualTo(v.Bricks[i].Path));
        }
    }

    [Test]
    public void Volume_options_reach_the_translators_they_configure()
    {
        var v = Layout("rep", 3, 0, "n1:/srv/b1", "n2:/srv/b1", "n3:/srv/b1");
        v.Options[VolumeOptionTable.Bitrot] = "on";
        v.Options[VolumeOptionTable.AuthAllow] = "10.0.0.0/8,192.168.1.*";
        v.Options[VolumeOptionTable.PingTimeout] = "7";
        v.Options[VolumeOptionTable.QuorumType] = "fixed";
        v.Options[VolumeOptionTable.QuorumCount] = "2";
        var brick = VolfileParser.Parse(VolgenGen.BrickVolfile(v, 1, "10.0.0.2"));
        Assert.That(brick.Select(d => d.Type), Is.EqualTo(new[] { "storage/posix", "features/bitrot", "features/index", "features/locks", "protocol/server" }));
        var server = brick.Single(d => d.Type == "protocol/server").Options.ToDictionary(o => o.Key, o => o.Value);
        Assert.That(server["auth.allow"], Is.EqualTo("10.0.0.0/8,192.168.1.*"));
        Assert.That(server["listen-host"], Is.EqualTo("10.0.0.2"));
        var client = VolfileParser.Parse(VolgenGen.ClientVolfile(v));
        Assert.That(client.Where(d => d.Type == "protocol/client").Select(d => d.Options.Single(o => o.Key == "ping-timeout").Value), Is.All.EqualTo("7"));
        var afr = client.Single(d => d.Type == "cluster/replicate").Options.ToDictionary(o => o.Key, o => o.Value);
        Assert.That(afr, Is.EqualTo(new Dictionary<string, string> { ["quorum-type"] = "fixed", ["quorum-count"] = "2" }));
    }

    [TestCaseSource(nameof(Layouts))]
    public void Client_volfiles_build_into_a_graph(string golden, VolumeDefinition v)
    {
        var graph = GraphBuilder.BuildText(VolgenGen.ClientVolfile(v), $"{golden}.client");
        string expectedTop = v.Bricks.Count > v.ReplicaCount ? "cluster/distribute" : v.ReplicaCount > 1 ? "cluster/replicate" : "cluster/distribute";
        Assert.That(graph.Top.TypeName, Is.EqualTo(expectedTop));
        Assert.That(graph.All.Count(t => t.TypeName == "protocol/client"), Is.EqualTo(v.Bricks.Count));
    }

    [Test]
    public void Brick_names_survive_removing_other_bricks()
    {
        var v = Layout("d", 1, 0, "n1:/srv/b1", "n2:/srv/b1", "n3:/srv/b1");
        v.Bricks.RemoveAt(0);
        Assert.That(VolgenGen.BrickSubvolume(v, 0), Is.EqualTo("d-brick-1"));
        Assert.That(VolgenGen.ClientVolfile(v), Does.Contain("option remote-subvolume d-brick-1\n").And.Contain("volume d-client-2\n"));
    }

    [Test]
    public void A_one_brick_volume_is_just_the_client()
    {
        var v = Layout("one", 1, 0, "n1:/srv/b1");
        var decls = VolfileParser.Parse(VolgenGen.ClientVolfile(v));
        Assert.That(decls.Select(d => d.Type), Is.EqualTo(new[] { "protocol/client" }));
    }

    /// <summary>Builds the whole graph with the real GraphBuilder: every type, option and link is checked.</summary>
    private static void BuildBrickGraph(IReadOnlyList<VolumeDeclaration> decls, string file)
    {
        var graph = GraphBuilder.Build(decls, file);
        Assert.That(graph.Top.TypeName, Is.EqualTo("protocol/server"));
    }

    private static void AssertGolden(string name, string actual, [CallerFilePath] string source = "")
    {
        var path = Path.Combine(Path.GetDirectoryName(source)!, "Golden", name);
        if (Environment.GetEnvironmentVariable("BRICKFS_UPDATE_GOLDEN") == "1")
        {
            File.WriteAllText(path, actual);
            return;
        }
        Assert.That(File.Exists(path), $"golden file {path} is missing (BRICKFS_UPDATE_GOLDEN=1 writes it)");
        Assert.That(actual, Is.EqualTo(File.ReadAllText(path)), $"differs from {path}");
    }
}
