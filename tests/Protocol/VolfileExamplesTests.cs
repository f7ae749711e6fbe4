using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Tests.Protocol;

/// <summary>The hand-written volfiles in volfiles/ stay valid as the translators evolve.</summary>
public class VolfileExamplesTests
{
    private static string Volfiles()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Brickfs.sln"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "repository root above the test output");
        return Path.Combine(dir!.FullName, "volfiles");
    }

    [TestCase("net1.vol", "b1")]
    [TestCase("three-bricks-example/client-1.vol", "b1")]
    [TestCase("three-bricks-example/client-2.vol", "b2")]
    [TestCase("three-bricks-example/client-3.vol", "b3")]
    public void ClientVolfilesBuildToAProtocolClient(string file, string brick)
    {
        var graph = GraphBuilder.BuildFile(Path.Combine(Volfiles(), file));
        Assert.That(graph.Top, Is.InstanceOf<ProtocolClientTranslator>());
        var declared = VolfileParser.ParseFile(Path.Combine(Volfiles(), file)).Single();
        Assert.That(declared.Options.Single(o => o.Key == "remote-subvolume").Value, Is.EqualTo(brick));
    }

    [TestCase("brick-b1.vol", "b1")]
    [TestCase("three-bricks-example/brick-b1.vol", "b1")]
    [TestCase("three-bricks-example/brick-b2.vol", "b2")]
    [TestCase("three-bricks-example/brick-b3.vol", "b3")]
    public void BrickVolfilesPutProtocolServerOverTheNamedBrick(string file, string brick)
    {
        // storage/posix and features/locks live on other branches; check the shape, not the types.
        var volumes = VolfileParser.ParseFile(Path.Combine(Volfiles(), file));
        var top = volumes[^1];
        Assert.That(top.Type, Is.EqualTo("protocol/server"));
        Assert.That(top.Subvolumes, Is.EqualTo(new[] { brick }));
    }

    [Test]
    public void EveryRemoteSubvolumeOfTheThreeBrickClientNamesABrickOfTheExample()
    {
        var client = VolfileParser.ParseFile(Path.Combine(Volfiles(), "three-bricks-example/client.vol"));
        var remote = client.Select(v => v.Options.Single(o => o.Key == "remote-subvolume").Value);
        Assert.That(remote, Is.EqualTo(new[] { "b1", "b2", "b3" }));
    }
}
