using System.Reflection;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Translators;

public class FopTableTests
{
    [Test]
    public void EveryFopHasAVirtualBaseMethod()
    {
        foreach (var fop in Enum.GetValues<Fop>())
        {
            var m = typeof(Translator).GetMethod($"{fop}Async", BindingFlags.Public | BindingFlags.Instance);
            Assert.That(m, Is.Not.Null, $"Translator has no {fop}Async");
            Assert.That(m!.IsVirtual && !m.IsAbstract, Is.True, $"{fop}Async must be virtual with a pass-through default");
        }
    }

    [Test]
    public void GfidRoundTripsThroughTextAndBytes()
    {
        var g = Gfid.NewRandom();
        Assert.That(Gfid.Parse(g.ToString()), Is.EqualTo(g));
        Assert.That(Gfid.FromBytes(g.ToBytes()), Is.EqualTo(g));
        Assert.That(Gfid.Root.ToString(), Is.EqualTo("00000000-0000-0000-0000-000000000001"));
        Assert.That(Gfid.Root.InodeNumber, Is.EqualTo(1UL));
    }
}
