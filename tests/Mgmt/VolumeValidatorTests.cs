using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;

namespace Brickfs.Tests.Mgmt;

public class VolumeValidatorTests
{
    // Node n1 is this node: /srv is a Btrfs mount, /data an ext4 one, everything else the root filesystem.
    private static readonly VolumeValidator Validator = new(host => host == "n1", path =>
        path.StartsWith("/srv/") ? new MountPoint("/srv", "btrfs")
        : path.StartsWith("/data/") ? new MountPoint("/data", "ext4")
        : new MountPoint("/", "btrfs"));

    private static MgmtResult<VolumeDefinition> Create(string name, int replica, int arbiter, bool force, params string[] bricks) =>
        Validator.ValidateCreate(new MgmtState(), name, replica, arbiter, bricks, force);

    private static string Refusal(MgmtResult<VolumeDefinition> r)
    {
        Assert.That(r.Ok, Is.False, "the request should be refused");
        Assert.That(r.Error!.Message, Does.Not.Contain("\n"), "errors are one line");
        return r.Error.Message;
    }

    [Test]
    public void A_distributed_replicate_volume_keeps_the_brick_order_and_numbers_bricks()
    {
        var r = Create("gv0", 3, 0, false, "n1:/srv/a", "n2:/srv/a", "n3:/srv/a", "n1:/srv/b", "n2:/srv/b", "n3:/srv/b/");
        Assert.That(r.Ok, r.Error?.Message);
        var v = r.Value;
        Assert.That(v.Layout, Is.EqualTo(VolumeLayout.DistributedReplicate));
        Assert.That(v.SetCount, Is.EqualTo(2));
        Assert.That(v.Bricks.Select(b => b.Spec), Is.EqualTo(new[] { "n1:/srv/a", "n2:/srv/a", "n3:/srv/a", "n1:/srv/b", "n2:/srv/b", "n3:/srv/b" }));
        Assert.That(v.Bricks.Select(b => b.Number), Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }));
    }

    [TestCase("", "volume name is empty")]
    [TestCase("bad name", "may contain only letters, digits")]
    [TestCase("vol/1", "may contain only letters, digits")]
    [TestCase("v.1", "may contain only letters, digits")]
    public void Volume_names_are_letters_digits_underscore_and_dash(string name, string why) =>
        Assert.That(Refusal(Create(name, 1, 0, false, "n1:/srv/a")), Does.Contain(why));

    [Test]
    public void A_long_name_is_refused() =>
        Assert.That(Refusal(Create(new string('v', 65), 1, 0, false, "n1:/srv/a")), Does.Contain("longer than 64"));

    [TestCase("n1:srv/a", "is not HOST:/DIRECTORY")]
    [TestCase("/srv/a", "is not HOST:/DIRECTORY")]
    [TestCase("n1:/", "root directory cannot be a brick")]
    [TestCase("n1:/srv/../etc", "absolute path without")]
    [TestCase("n1:/srv//a", "absolute path without")]
    [TestCase("bad host:/srv/a", "is not a host name")]
    public void Bricks_must_be_host_and_absolute_directory(string brick, string why) =>
        Assert.That(Refusal(Create("v", 1, 0, true, brick)), Does.Contain(why));

    [Test]
    public void The_same_brick_twice_is_refused_even_with_force() =>
        Assert.That(Refusal(Create("v", 1, 0, true, "n2:/srv/a", "n2:/srv/a/")), Is.EqualTo("brick n2:/srv/a is given twice"));

    [Test]
    public void The_brick_count_must_be_a_multiple_of_the_replica_count() =>
        Assert.That(Refusal(Create("v", 3, 0, true, "n1:/srv/a", "n2:/srv/a", "n3:/srv/a", "n1:/srv/b")),
            Is.EqualTo("4 bricks is not a multiple of the replica count 3"));

    [TestCase(2, 1, "arbiter 1 needs replica 3, not replica 2")]
    [TestCase(1, 1, "arbiter 1 needs replica 3")]
    [TestCase(3, 2, "arbiter count must be 1")]
    [TestCase(17, 0, "replica count must be 2..16")]
    public void Replica_and_arbiter_counts_are_checked(int replica, int arbiter, string why) =>
        Assert.That(Refusal(Create("v", replica, arbiter, true, "n1:/srv/a", "n2:/srv/a", "n3:/srv/a")), Is.EqualTo(why));

    [Test]
    public void Two_replicas_of_a_set_on_one_host_need_force()
    {
        Assert.That(Refusal(Create("v", 2, 0, false, "n2:/srv/a", "n2:/srv/b")), Does.Contain("of one replica set are on the same host").And.Contain("force"));
        Assert.That(Create("v", 2, 0, true, "n2:/srv/a", "n2:/srv/b").Ok);
        Assert.That(Create("v", 2, 0, false, "n2:/srv/a", "n3:/srv/a", "n2:/srv/b", "n3:/srv/b").Ok, "different sets may share hosts");
    }

    [Test]
    public void A_local_brick_on_the_root_filesystem_needs_force()
    {
        Assert.That(Refusal(Create("v", 1, 0, false, "n1:/home/brick")), Is.EqualTo("brick n1:/home/brick is on the root filesystem (add 'force' to use it anyway)"));
        Assert.That(Create("v", 1, 0, true, "n1:/home/brick").Ok);
        Assert.That(Create("v", 1, 0, false, "n2:/home/brick").Ok, "another node's disks are checked by that node");
    }

    [Test]
    public void A_local_brick_not_on_btrfs_needs_force()
    {
        Assert.That(Refusal(Create("v", 1, 0, false, "n1:/data/brick")), Does.Contain("is on ext4 at /data, not Btrfs"));
        Assert.That(Create("v", 1, 0, true, "n1:/data/brick").Ok);
    }

    [Test]
    public void Bricks_of_other_volumes_cannot_be_reused_or_nested()
    {
        var state = new MgmtState();
        var first = Validator.ValidateCreate(state, "first", 1, 0, ["n1:/srv/a"], false).Value;
        state.Volumes.Add(first);
        Assert.That(Refusal(Validator.ValidateCreate(state, "first", 1, 0, ["n1:/srv/z"], false)), Is.EqualTo("volume first already exists"));
        Assert.That(Refusal(Validator.ValidateCreate(state, "v", 1, 0, ["n1:/srv/a"], true)), Is.EqualTo("brick n1:/srv/a is already a brick of volume first"));
        Assert.That(Refusal(Validator.ValidateCreate(state, "v", 1, 0, ["n1:/srv/a/inner"], true)), Is.EqualTo("brick n1:/srv/a/inner is inside brick n1:/srv/a of volume first"));
        Assert.That(Refusal(Validator.ValidateCreate(state, "v", 1, 0, ["n1:/srv"], true)), Does.Contain("contains brick n1:/srv/a"));
        Assert.That(Validator.ValidateCreate(state, "v", 1, 0, ["n2:/srv/a"], false).Ok, "the same directory on another host is another brick");
    }

    [Test]
    public void Ports_start_at_49152_and_are_unique_per_host()
    {
        var state = new MgmtState();
        var a = Validator.ValidateCreate(state, "a", 1, 0, ["n1:/srv/a", "n2:/srv/a"], false).Value;
        Assert.That(BrickPorts.Assign(state, a), Is.Null);
        state.Volumes.Add(a);
        var b = Validator.ValidateCreate(state, "b", 1, 0, ["n1:/srv/b", "n3:/srv/b"], false).Value;
        Assert.That(BrickPorts.Assign(state, b), Is.Null);
        Assert.That(a.Bricks.Select(x => x.Port), Is.EqualTo(new[] { 49152, 49152 }));
        Assert.That(b.Bricks.Select(x => x.Port), Is.EqualTo(new[] { 49153, 49152 }));
    }
}
