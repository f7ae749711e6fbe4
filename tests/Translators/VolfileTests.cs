using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Translators;

public class VolfileTests
{
    private const string TwoLevel = """
        # a test volume
        volume v-mem
            type storage/memory
            option capacity 64MB
        end-volume

        volume v-err
            type debug/error-gen
            option error-no ENOSPC
            option enable write
            subvolumes v-mem
        end-volume
        """;

    [Test]
    public void BuildsGraphWithTopAndChildren()
    {
        var g = GraphBuilder.BuildText(TwoLevel);
        Assert.That(g.Top, Is.InstanceOf<ErrorGenTranslator>());
        Assert.That(g.Top.Name, Is.EqualTo("v-err"));
        Assert.That(g.Top.Children.Single(), Is.InstanceOf<MemoryStorageTranslator>());
        Assert.That(g.All.Select(t => t.Name), Is.EqualTo(new[] { "v-mem", "v-err" }));
    }

    [TestCase("volume a\n type storage/nope\nend-volume\n", 2, "unknown translator type 'storage/nope'")]
    [TestCase("volume a\n type storage/memory\n option colour blue\nend-volume\n", 3, "has no option 'colour'")]
    [TestCase("volume a\n type storage/memory\n option capacity lots\nend-volume\n", 3, "is not a size")]
    [TestCase("volume a\n type debug/error-gen\n subvolumes b\nend-volume\n", 3, "subvolume 'b', which is not declared")]
    [TestCase("volume a\n type storage/memory\n", 1, "not closed by 'end-volume'")]
    [TestCase("volume a\n type storage/memory\nend-volume\nbogus\n", 4, "unknown keyword 'bogus'")]
    [TestCase("volume a\n type debug/error-gen\nend-volume\n", 1, "takes 1 subvolumes, has 0")]
    [TestCase("volume a\n type storage/memory\nend-volume\nvolume b\n type storage/memory\nend-volume\n", 4, "2 top volumes")]
    [TestCase("volume a\n type storage/memory\nend-volume\nvolume a\n", 4, "declared twice")]
    [TestCase("option x y\n", 1, "'option' outside a volume")]
    public void ErrorsNameFileAndLine(string text, int line, string reason)
    {
        var e = Assert.Throws<VolfileException>(() => GraphBuilder.BuildText(text, "t.vol"))!;
        Assert.That(e.Line, Is.EqualTo(line));
        Assert.That(e.Message, Does.StartWith($"t.vol:{line}: "));
        Assert.That(e.Message, Does.Contain(reason));
    }

    [Test]
    public void CyclesAreRejected()
    {
        const string text = """
            volume a
                type debug/error-gen
                subvolumes b
            end-volume
            volume b
                type debug/error-gen
                subvolumes a
            end-volume
            """;
        var e = Assert.Throws<VolfileException>(() => GraphBuilder.BuildText(text, "c.vol"))!;
        Assert.That(e.Message, Does.Contain("cycle"));
    }

    [Test]
    public void MissingFileIsAVolfileError()
    {
        var e = Assert.Throws<VolfileException>(() => GraphBuilder.BuildFile("/nonexistent/x.vol"))!;
        Assert.That(e.Message, Does.StartWith("/nonexistent/x.vol:0: cannot read volfile"));
    }

    [Test]
    public async Task ErrorGenFailsOnlyTheChosenFop()
    {
        var g = GraphBuilder.BuildText(TwoLevel);
        var ctx = new FopContext();
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var created = await g.Top.CreateAsync(ctx, Gfid.Root, "f", 0x1A4, fd);
        Assert.That(created.Ok, Is.True);
        var w = await g.Top.WriteAsync(ctx, fd, 0, new byte[] { 1, 2, 3 });
        Assert.That(w.Error, Is.EqualTo(Errno.ENOSPC));
        var look = await g.Top.LookupAsync(ctx, Gfid.Root, "f");
        Assert.That(look.Ok, Is.True);
    }

    [Test]
    public async Task DelayGenEndsWithEintrWhenCancelled()
    {
        var g = GraphBuilder.BuildText("""
            volume m
                type storage/memory
            end-volume
            volume d
                type debug/delay-gen
                option delay-duration 10000000
                subvolumes m
            end-volume
            """);
        using var cts = new CancellationTokenSource();
        var pending = g.Top.StatAsync(new FopContext { Cancellation = cts.Token }, Gfid.Root, null);
        Assert.That(pending.IsCompleted, Is.False);
        cts.Cancel();
        var r = await pending;
        Assert.That(r.Error, Is.EqualTo(Errno.EINTR));
    }

    [Test]
    public void EveryBuiltinTypeBuildsWithDefaults()
    {
        foreach (var type in TranslatorRegistry.Builtin.Types.Where(t => t.Options.All(o => !o.Required || o.Default is not null)))
        {
            var t = type.Create(new TranslatorOptions(type.Options, new Dictionary<string, string>()));
            Assert.That(t, Is.Not.Null, type.TypeName);
        }
    }
}
