using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Bitrot;

/// <summary>features/bitrot's options as a volfile states them, and what <c>enable off</c> means.</summary>
public class BitrotOptionsTests
{
    private static string Volfile(string option) => $"""
        volume store
            type storage/memory
        end-volume
        volume bitrot
            type features/bitrot
            {option}
            subvolumes store
        end-volume
        """;

    [Test]
    public void DefaultsAre64KiBBlocksNormalRateDaily()
    {
        var b = (BitrotTranslator)GraphBuilder.BuildText(Volfile("")).Top;
        Assert.That(b.BlockSize, Is.EqualTo(64 * 1024));
        Assert.That(b.ScrubRate, Is.EqualTo(32L << 20));
        Assert.That(b.ScrubInterval, Is.EqualTo(TimeSpan.FromDays(1)));
    }

    [TestCase("option scrub-throttle lazy", 8L << 20)]
    [TestCase("option scrub-throttle aggressive", 128L << 20)]
    [TestCase("option scrub-throttle 5MB", 5L << 20)]
    public void ScrubThrottleTakesANameOrARate(string option, long rate) =>
        Assert.That(((BitrotTranslator)GraphBuilder.BuildText(Volfile(option)).Top).ScrubRate, Is.EqualTo(rate));

    [TestCase("option scrub-frequency hourly", 3600)]
    [TestCase("option scrub-frequency weekly", 7 * 86400)]
    [TestCase("option scrub-frequency 90", 90)]
    public void ScrubFrequencyTakesANameOrSeconds(string option, int seconds) =>
        Assert.That(((BitrotTranslator)GraphBuilder.BuildText(Volfile(option)).Top).ScrubInterval, Is.EqualTo(TimeSpan.FromSeconds(seconds)));

    [TestCase("option block-size 48KB", "not a power of two")]
    [TestCase("option block-size 2KB", "outside")]
    [TestCase("option block-size 2MB", "outside")]
    [TestCase("option scrub-throttle fast", "scrub-throttle")]
    [TestCase("option scrub-frequency sometimes", "scrub-frequency")]
    public void BadValuesAreVolfileErrors(string option, string why)
    {
        var e = Assert.Throws<VolfileException>(() => GraphBuilder.BuildText(Volfile(option)));
        Assert.That(e!.Message, Does.Contain(why));
    }

    [Test]
    public async Task WithBitrotOffAModifiedFileLosesItsChecksumsSoTurningItOnNeverFlagsIt()
    {
        var ctx = FopContext.Internal();
        var on = GraphBuilder.BuildText(Volfile("option block-size 4KB"));
        await on.InitAsync(CancellationToken.None);
        var storage = on["store"];
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        Assert.That((await on.Top.CreateAsync(ctx, Gfid.Root, "f", 0x1A4, fd)).Ok, Is.True);
        Assert.That((await on.Top.WriteAsync(ctx, fd, 0, new byte[8192])).Ok, Is.True);
        await on.Top.ReleaseAsync(ctx, fd);

        var off = new BitrotTranslator(TranslatorOptions.From(BitrotTranslator.OptionSpecs, ("block-size", "4KB"), ("enable", "off")));
        off.Attach(storage);
        await off.InitAsync(CancellationToken.None);
        var w = new FileHandle(fd.Gfid, OpenFlags.ReadWrite);
        Assert.That((await off.OpenAsync(ctx, w)).Ok, Is.True);
        Assert.That((await off.WriteAsync(ctx, w, 100, new byte[] { 9, 9, 9 })).Ok, Is.True);
        await off.ReleaseAsync(ctx, w);
        await off.DisposeAsync();

        var again = new BitrotTranslator(TranslatorOptions.From(BitrotTranslator.OptionSpecs, ("block-size", "4KB")));
        again.Attach(storage);
        await again.InitAsync(CancellationToken.None);
        var r = new FileHandle(fd.Gfid, OpenFlags.ReadOnly);
        Assert.That((await again.OpenAsync(ctx, r)).Ok, Is.True);
        var read = await again.ReadAsync(ctx, r, 0, 8192);
        Assert.That(read.Error, Is.EqualTo(Errno.None), "no stale checksum judged the changed block");
        using (var data = read.Value) Assert.That(data.Span[100], Is.EqualTo(9));
        await again.ReleaseAsync(ctx, r);
        Assert.That((await again.ScrubNowAsync()).BlocksSigned, Is.EqualTo(2), "the scrubber signs it afresh");
        await again.DisposeAsync();
        await on.DisposeAsync();
    }
}
