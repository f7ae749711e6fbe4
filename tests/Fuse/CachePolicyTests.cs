using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Host;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Fuse;

/// <summary>How long the kernel may cache, by who else can change the volume.</summary>
public class CachePolicyTests
{
    private static MountOptions Parse(params string[] args) => MountOptions.Parse([.. args, "/mnt/x"]);

    [Test]
    public void AVolumeOthersShareGetsShortCachesAndNoNegativeEntries()
    {
        var b = Parse("--volfile", "v.vol").BridgeOptions(soleClient: false);
        Assert.Multiple(() =>
        {
            Assert.That(b.SoleClient, Is.False);
            Assert.That(b.AttributeTimeout, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(b.EntryTimeout, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(b.NegativeTimeout, Is.EqualTo(TimeSpan.Zero), "another client may create the name (SQLite's -journal probe)");
        });
    }

    [Test]
    public void ASoleClientCachesLongIncludingMissingNames()
    {
        var b = Parse("--volfile", "v.vol").BridgeOptions(soleClient: true);
        Assert.Multiple(() =>
        {
            Assert.That(b.SoleClient, Is.True);
            Assert.That(b.AttributeTimeout, Is.EqualTo(FuseBridgeOptions.SoleClientCacheTime));
            Assert.That(b.EntryTimeout, Is.EqualTo(FuseBridgeOptions.SoleClientCacheTime));
            Assert.That(b.NegativeTimeout, Is.EqualTo(FuseBridgeOptions.SoleClientCacheTime));
        });
    }

    [Test]
    public void CacheTimesGivenAsMountOptionsWinEitherWay()
    {
        foreach (bool sole in new[] { false, true })
        {
            var b = Parse("--volfile", "v.vol", "-o", "attribute-timeout=2,entry-timeout=0.5,negative-timeout=0").BridgeOptions(sole);
            Assert.That((b.AttributeTimeout, b.EntryTimeout, b.NegativeTimeout),
                Is.EqualTo((TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(0.5), TimeSpan.Zero)), $"sole client {sole}");
        }
    }

    /// <summary>Passthrough is on unless the mount says off, in the on/off words volfile options take.</summary>
    [Test]
    public void PassthroughIsOnUnlessTheMountSaysOff()
    {
        Assert.That(Parse("--volfile", "v.vol").Passthrough, Is.True);
        Assert.That(Parse("--volfile", "v.vol", "-o", "passthrough=off").Passthrough, Is.False);
        Assert.That(Parse("--volfile", "v.vol", "-o", "passthrough=on").Passthrough, Is.True);
        var e = Assert.Throws<UsageException>(() => Parse("--volfile", "v.vol", "-o", "passthrough=maybe"));
        Assert.That(e!.Message, Is.EqualTo("option passthrough=maybe: must be on or off"));
    }

    [Test]
    public async Task OnlyAGraphWithoutProtocolClientIsASoleClient()
    {
        await using var local = GraphBuilder.BuildText("""
            volume p
                type storage/posix
                option directory /srv/nowhere
            end-volume
            volume l
                type features/locks
                subvolumes p
            end-volume
            """, "local.vol");
        await using var network = GraphBuilder.BuildText("""
            volume c
                type protocol/client
                option remote-host 127.0.0.1
                option remote-port 24100
                option remote-subvolume b1
            end-volume
            volume l
                type features/locks
                subvolumes c
            end-volume
            """, "net.vol");
        Assert.That(FuseBridge.IsSoleClient(local.Top), Is.True);
        Assert.That(FuseBridge.IsSoleClient(network.Top), Is.False);
    }
}
