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

public class MemoryStorageInternalFopTests
{
    [Test]
    public async Task XattropAddsCountersAtomicallyAndLookupReturnsRequestedXattrs()
    {
        var mem = new Brickfs.Translators.Storage.MemoryStorageTranslator();
        var ctx = new FopContext();
        var g = Gfid.NewRandom();
        Assert.That((await mem.MkdirAsync(ctx, Gfid.Root, "d", 0x1ED, g)).Ok, Is.True);
        var first = await mem.XattropAsync(ctx, g, null, new Dictionary<string, long[]> { ["trusted.x"] = [1, 0, 2] });
        var second = await mem.XattropAsync(ctx, g, null, new Dictionary<string, long[]> { ["trusted.x"] = [1, 5] });
        Assert.That(first.Value["trusted.x"], Is.EqualTo(new long[] { 1, 0, 2 }));
        Assert.That(second.Value["trusted.x"], Is.EqualTo(new long[] { 2, 5, 2 }));

        var looked = await mem.LookupAsync(new FopContext { XattrRequest = ["trusted.x", "trusted.absent"] }, Gfid.Root, "d");
        Assert.That(looked.Value.Xattrs!.Keys, Is.EqualTo(new[] { "trusted.x" }));
        Assert.That(XattrCounters.Decode(looked.Value.Xattrs["trusted.x"]), Is.EqualTo(new long[] { 2, 5, 2 }));
        Assert.That((await mem.LookupAsync(ctx, Gfid.Root, "d")).Value.Xattrs, Is.Null, "nothing asked, nothing returned");
    }
}
