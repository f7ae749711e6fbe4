using System.Reflection;
using System.Runtime.InteropServices;
using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Fuse;

public class FuseMappingTests
{
    [Test]
    public void EveryFopIsReachableFromSomeFuseOpcode()
    {
        var mapped = FuseFopMap.Table.Values.Where(m => m.Fop is not null).Select(m => m.Fop!.Value).ToHashSet();
        Assert.That(Enum.GetValues<Fop>().Where(f => !mapped.Contains(f) && !FuseFopMap.Internal.ContainsKey(f)), Is.Empty,
            "fops with neither a FUSE mapping nor an explicit internal-only entry");
        Assert.That(FuseFopMap.Internal.Keys.Where(mapped.Contains), Is.Empty, "an internal fop is not also reachable from the kernel");
        Assert.That(FuseFopMap.Internal.Values, Has.All.Not.Empty, "each internal fop says why");
    }

    [Test]
    public void EveryKernelOpcodeHasAnExplicitEntry()
    {
        Assert.That(Enum.GetValues<FuseOpcode>().Where(o => !FuseFopMap.Table.ContainsKey(o)), Is.Empty);
        foreach (var (op, m) in FuseFopMap.Table)
        {
            if (m.Fop is null) Assert.That(m.Note, Is.Not.Empty, $"{op} maps to no fop and must say why");
            else Assert.That(m.Supported, Is.True, $"{op} maps to {m.Fop} and so is served");
        }
    }

    [Test]
    public void StructsHaveTheKernelsSizes()
    {
        // Sizes from include/uapi/linux/fuse.h (protocol 7.38).
        Assert.Multiple(() =>
        {
            Assert.That(Marshal.SizeOf<FuseInHeader>(), Is.EqualTo(40));
            Assert.That(Marshal.SizeOf<FuseOutHeader>(), Is.EqualTo(16));
            Assert.That(Marshal.SizeOf<FuseAttr>(), Is.EqualTo(88));
            Assert.That(Marshal.SizeOf<FuseEntryOut>(), Is.EqualTo(128));
            Assert.That(Marshal.SizeOf<FuseAttrOut>(), Is.EqualTo(104));
            Assert.That(Marshal.SizeOf<FuseSetattrIn>(), Is.EqualTo(88));
            Assert.That(Marshal.SizeOf<FuseInitOut>(), Is.EqualTo(64));
            Assert.That(Marshal.SizeOf<FuseWriteIn>(), Is.EqualTo(40));
            Assert.That(Marshal.SizeOf<FuseReadIn>(), Is.EqualTo(40));
            Assert.That(Marshal.SizeOf<FuseLkIn>(), Is.EqualTo(48));
            Assert.That(Marshal.SizeOf<FuseStatfsOut>(), Is.EqualTo(80));
            Assert.That(Marshal.SizeOf<FuseMknodIn>(), Is.EqualTo(16));
            Assert.That(Marshal.SizeOf<FuseCreateIn>(), Is.EqualTo(16));
            Assert.That(Marshal.SizeOf<FuseReleaseIn>(), Is.EqualTo(24));
            Assert.That(Marshal.SizeOf<FuseDirent>(), Is.EqualTo(24));
        });
    }

    [Test]
    public void NegotiationNeverAsksForWritebackCacheDontMaskOrKillprivV1()
    {
        Assert.That(FuseSession.WantedFlags & (FuseConst.WritebackCache | FuseConst.DontMask | FuseConst.HandleKillpriv | FuseConst.SetxattrExt), Is.Zero);
    }

    [Test]
    public void NegotiationAsksForKillprivV2SoWritesNeedNoCapabilityProbe()
    {
        Assert.That(FuseSession.WantedFlags & FuseConst.HandleKillprivV2, Is.Not.Zero);
    }
}
