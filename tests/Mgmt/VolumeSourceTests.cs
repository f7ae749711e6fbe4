using Brickfs.ClientFuse.Host;

namespace Brickfs.Tests.Mgmt;

/// <summary>How mount.brickfs reads <c>HOST[:PORT]:/VOL</c> and the options that go with fetching a volfile.</summary>
public class VolumeSourceTests
{
    [TestCase("server1:/gv0", "server1", 24007, "gv0")]
    [TestCase("server1:gv0", "server1", 24007, "gv0")]
    [TestCase("10.0.0.5:24010:/gv0", "10.0.0.5", 24010, "gv0")]
    [TestCase("[fd00::5]:/gv0", "fd00::5", 24007, "gv0")]
    [TestCase("[fd00::5]:24010:/gv0", "fd00::5", 24010, "gv0")]
    [TestCase("server1:/snaps/s1/gv0", "server1", 24007, "snaps/s1/gv0")]
    public void A_source_names_host_port_and_volume(string spec, string host, int port, string volume)
    {
        Assert.That(VolumeSource.TryParse(spec, out var s), Is.True);
        Assert.That(s, Is.EqualTo(new VolumeSource(host, port, volume)));
    }

    [TestCase("gv0")]
    [TestCase(":/gv0")]
    [TestCase("server1:/")]
    [TestCase("server1:99999:/gv0")]
    [TestCase("[fd00::5:/gv0")]
    [TestCase("/dev/sda1")]
    public void Anything_else_is_not_a_source(string spec) => Assert.That(VolumeSource.TryParse(spec, out _), Is.False);

    [Test]
    public void Volumes_and_snapshots_have_their_own_volfile_urls()
    {
        VolumeSource.TryParse("h:/gv0", out var vol);
        VolumeSource.TryParse("h:/snaps/s1/gv0", out var snap);
        Assert.That(vol.VolfilePath, Is.EqualTo("api/v1/volumes/gv0/volfile?kind=client"));
        Assert.That(snap.VolfilePath, Is.EqualTo("api/v1/snapshots/s1/volfile"));
    }

    [Test]
    public void A_source_without_a_volfile_fetches_one_and_a_snapshot_mounts_read_only()
    {
        var o = MountOptions.Parse(["h:/snaps/s1/gv0", "/mnt/x", "-o", "rw,_netdev,backup-volfile-servers=h2:h3,volfile-timeout=3"]);
        Assert.That(o.Volfile, Is.Null);
        Assert.That(o.Source, Is.EqualTo(new VolumeSource("h", 24007, "snaps/s1/gv0")));
        Assert.That(o.BackupVolfileServers, Is.EqualTo(new[] { "h2", "h3" }));
        Assert.That(o.VolfileTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
        Assert.That(o.ReadOnly, Is.True, "a snapshot is read-only whatever the options say");
        Assert.That(MountOptions.Parse(["h:/gv0", "/mnt/x", "-o", "volfile=/etc/v.vol"]).Source, Is.Null, "an explicit volfile wins");
        var bad = Assert.Throws<UsageException>(() => MountOptions.Parse(["/dev/sda1", "/mnt/x"]));
        Assert.That(bad!.Message, Is.EqualTo("/dev/sda1: not HOST[:PORT]:/VOLUME (or give -o volfile=FILE)"));
    }
}
