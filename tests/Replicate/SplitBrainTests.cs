using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using static Brickfs.Tests.Replicate.ReplicaBench;

namespace Brickfs.Tests.Replicate;

/// <summary>Split-brain on replica 2 without quorum (the only way one writer can make one): detected, listed, never resolved silently.</summary>
public class SplitBrainTests
{
    /// <summary>Down b0, write A; back b0, down b1, write B; back b1.</summary>
    private static async Task<(ReplicaBench, FileHandle)> SplitAsync(string onB0, string onB1)
    {
        var v = await StartAsync(2, "quorum-type none");
        var fd = await v.CreateAsync("f");
        await v.MustWriteAsync(fd, 0, "base");
        v.Down(0);
        await v.MustWriteAsync(fd, 0, onB1);
        v.Up(0);
        Assert.That((await v.Top.LookupAsync(Ctx(), Gfid.Root, "f")).Ok, Is.True);
        v.Down(1);
        await v.MustWriteAsync(fd, 0, onB0);
        v.Up(1);
        Assert.That((await v.Top.LookupAsync(Ctx(), Gfid.Root, "f")).Ok, Is.True, "lookup still answers in split-brain");
        return (v, fd);
    }

    [Test]
    public async Task EachCopyBlamingTheOtherFailsReadsWithEioAndIsListed()
    {
        var (v, fd) = await SplitAsync(onB0: "AAAA", onB1: "BBBBBBBB");
        await using var _ = v;
        // Each accuses the other beyond what it counts against itself (b1 missed the post-op of
        // the batch it was cut off in, so it keeps that batch's uniform mark on every counter).
        for (int i = 0; i < 2; i++)
        {
            long own = (await v.PendingAsync(i, fd.Gfid, i))[0], other = (await v.PendingAsync(i, fd.Gfid, 1 - i))[0];
            Assert.That(other - own, Is.EqualTo(1), $"b{i} accuses b{1 - i} for data");
        }

        Assert.That((await v.ReadTextAsync(fd)).Error, Is.EqualTo(Errno.EIO));
        var listed = v.Replicate.ListSplitBrain().Single();
        Assert.That(listed.Gfid, Is.EqualTo(fd.Gfid));
        Assert.That(listed.Kind, Is.EqualTo(SplitBrainKind.Data));
        Assert.That((await v.Replicate.HealAsync(fd.Gfid)).Outcome, Is.EqualTo(HealOutcome.SplitBrain), "heal refuses to pick a side");
        Assert.That(await v.TextAsync(0, fd.Gfid), Is.EqualTo("AAAA"));
    }

    [TestCase(SplitBrainPolicy.BiggerFile, null, "BBBBBBBB")]
    [TestCase(SplitBrainPolicy.LatestMtime, null, "AAAA")]
    [TestCase(SplitBrainPolicy.SourceBrick, "b0", "AAAA")]
    [TestCase(SplitBrainPolicy.SourceBrick, "b1", "BBBBBBBB")]
    public async Task ResolutionByPolicyMakesEveryCopyTheChosenOne(SplitBrainPolicy policy, string? source, string expected)
    {
        var (v, fd) = await SplitAsync(onB0: "AAAA", onB1: "BBBBBBBB");
        await using var _ = v;
        Assert.That((await v.ReadTextAsync(fd)).Error, Is.EqualTo(Errno.EIO));

        var r = await v.Replicate.ResolveSplitBrainAsync(fd.Gfid, policy, source);

        Assert.That(r.Outcome, Is.EqualTo(HealOutcome.Healed), r.Detail);
        Assert.That(await v.TextAsync(0, fd.Gfid), Is.EqualTo(expected));
        Assert.That(await v.TextAsync(1, fd.Gfid), Is.EqualTo(expected));
        Assert.That(await v.AllCountersZeroAsync(fd.Gfid), Is.True);
        Assert.That(v.Replicate.ListSplitBrain(), Is.Empty);
        Assert.That((await v.ReadTextAsync(fd)).Value, Is.EqualTo(expected));
        Assert.That(v.Index(0).ListPending(), Is.Empty);
        Assert.That(v.Index(1).ListPending(), Is.Empty);
    }

    [Test]
    public async Task AnUnknownSourceBrickIsRefused()
    {
        var (v, fd) = await SplitAsync(onB0: "AAAA", onB1: "BBBB");
        await using var _ = v;
        var r = await v.Replicate.ResolveSplitBrainAsync(fd.Gfid, SplitBrainPolicy.SourceBrick, "nope");
        Assert.That(r.Outcome, Is.EqualTo(HealOutcome.Unavailable));
        Assert.That((await v.ReadTextAsync(fd)).Error, Is.EqualTo(Errno.EIO));
    }
}
