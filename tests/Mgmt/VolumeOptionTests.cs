using Brickfs.Mgmt.Model;
using VolgenGen = Brickfs.Mgmt.Volgen.Volgen;

namespace Brickfs.Tests.Mgmt;

public class VolumeOptionTests
{
    private static readonly VolumeDefinition Replica3 = VolgenTests.Layout("rep", 3, 0, "n1:/srv/b", "n2:/srv/b", "n3:/srv/b");
    private static readonly VolumeDefinition Distribute = VolgenTests.Layout("dist", 1, 0, "n1:/srv/b", "n2:/srv/b");

    [Test]
    public void The_table_holds_only_real_keys_with_valid_defaults()
    {
        Assert.That(VolumeOptionTable.All.Select(o => o.Key), Is.SupersetOf(new[]
            { "cluster.quorum-type", "cluster.quorum-count", "network.ping-timeout", "features.bitrot", "auth.allow" }));
        Assert.That(VolumeOptionTable.All.Select(o => o.Key), Has.None.StartsWith("performance."));
        Assert.That(VolumeOptionTable.All.Select(o => o.Key), Is.Unique);
        foreach (var o in VolumeOptionTable.All)
        {
            Assert.That(o.Description, Is.Not.Empty, o.Key);
            if (o.Default is not null) Assert.That(o.Spec.Validate(o.Default), Is.Null, $"{o.Key} default");
        }
    }

    /// <summary>A key that changes no volfile would be a placebo: each one must change the volfile it says it affects.</summary>
    [TestCase("cluster.quorum-type", "none")]
    [TestCase("cluster.quorum-count", "2")]
    [TestCase("network.ping-timeout", "10")]
    [TestCase("features.bitrot", "on")]
    [TestCase("auth.allow", "10.1.2.3")]
    public void Every_key_changes_the_volfile_it_affects(string key, string value)
    {
        Assert.That(VolumeOptionTable.TryGet(key, out var option));
        var v = Brickfs.Mgmt.Model.MgmtJson.Clone(Replica3);
        string Generate() => option.Affects == VolfileKind.Client ? VolgenGen.ClientVolfile(v) : VolgenGen.BrickVolfile(v, 0);
        var before = Generate();
        var stored = VolumeOptionTable.Validate(v, key, value);
        Assert.That(stored.Ok, stored.Error?.Message);
        v.Options[key] = stored.Value;
        Assert.That(Generate(), Is.Not.EqualTo(before));
    }

    [TestCase("cluster.quorum-typ", "did you mean cluster.quorum-type")]
    [TestCase("ping-timeout", "did you mean network.ping-timeout")]
    [TestCase("features.bitrott", "did you mean features.bitrot")]
    [TestCase("performance.cache-size", "known options: cluster.quorum-type")]
    public void An_unknown_key_is_refused_with_similar_keys(string key, string hint)
    {
        var r = VolumeOptionTable.Validate(Replica3, key, "1");
        Assert.That(r.Ok, Is.False);
        Assert.That(r.Error!.Message, Does.StartWith($"unknown option '{key}'").And.Contain(hint));
    }

    [TestCase("cluster.quorum-type", "most", "'most' is not one of none, auto, fixed")]
    [TestCase("cluster.quorum-count", "4", "is more than the replica count 3")]
    [TestCase("cluster.quorum-count", "0", "outside 1..16")]
    [TestCase("network.ping-timeout", "-1", "is not a number of seconds")]
    [TestCase("network.ping-timeout", "2000", "outside 0..1013")]
    [TestCase("features.bitrot", "maybe", "is not on/off")]
    [TestCase("auth.allow", "10.0.0.1;rm -rf", "is not an address")]
    public void Bad_values_are_refused_with_the_reason(string key, string value, string why)
    {
        var r = VolumeOptionTable.Validate(Replica3, key, value);
        Assert.That(r.Ok, Is.False);
        Assert.That(r.Error!.Message, Does.StartWith(key).And.Contain(why));
    }

    [Test]
    public void Quorum_keys_are_for_replicated_volumes()
    {
        var r = VolumeOptionTable.Validate(Distribute, "cluster.quorum-type", "fixed");
        Assert.That(r.Error!.Message, Is.EqualTo("cluster.quorum-type applies to replicated volumes; dist is Distribute"));
    }

    [TestCase("enable", "on")]
    [TestCase("yes", "on")]
    [TestCase("0", "off")]
    public void Booleans_are_stored_as_on_or_off(string value, string stored) =>
        Assert.That(VolumeOptionTable.Validate(Replica3, "features.bitrot", value).Value, Is.EqualTo(stored));
}
