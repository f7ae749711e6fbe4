using Brickfs.Shd;
using Brickfs.Tests.Support;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Features.Index;
using static Brickfs.Tests.Shd.ShdBench;

namespace Brickfs.Tests.Shd;

/// <summary>The self-heal daemon over replica 3 on the in-memory wire: what a returning brick missed is repaired from the indexes.</summary>
public class SelfHealDaemonTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Test]
    public async Task EachBricksIndexIsReadOverTheWireFromTheClientGraph()
    {
        await using var v = await StartAsync(3);
        v.Down(2);
        var f = await v.WriteFileAsync("f", "while b2 was down");
        var shd = await v.DaemonAsync();
        var replica = shd.Replicas.Single();

        var byChild = await replica.ListPendingByChildAsync();

        Assert.That(byChild.Select(c => c.Child), Is.EqualTo(new[] { ChildName(0), ChildName(1), ChildName(2) }));
        Assert.That(byChild[0].Pending, Does.Contain(f).And.Contain(Gfid.Root), "b0 blames b2 for the file and for the root's new name");
        Assert.That(byChild[1].Pending, Is.EquivalentTo(byChild[0].Pending));
        Assert.That(byChild[2].Error, Is.EqualTo(Errno.ENOTCONN));
        Assert.That(await replica.ListPendingAsync(), Is.EquivalentTo(v.Index(0).ListPending()));
    }

    [Test]
    public async Task AnIndexLongerThanOnePageIsListedWholeAndOnlyRootMayReadIt()
    {
        await using var v = await StartAsync(2, "quorum-type none");
        var expected = new List<Gfid>();
        var index = v.Bricks[0]["b0-index"];
        for (int i = 0; i < IndexTranslator.PendingPageEntries + 100; i++)
        {
            var g = Gfid.NewRandom();
            await v.Storage(0).MknodAsync(Ctx(), Gfid.Root, $"f{i}", RegularMode, 0, g);
            Assert.That((await index.XattropAsync(Ctx(), g, null, new Dictionary<string, long[]> { [ReplicateTranslator.PendingPrefix + ChildName(1)] = [1, 0, 0] })).Ok, Is.True);
            expected.Add(g);
        }
        var shd = await v.DaemonAsync();

        var listed = await shd.Replicas.Single().ListPendingAsync();

        Assert.That(listed, Is.EqualTo(expected.OrderBy(g => g.Hi).ThenBy(g => g.Lo)), "two pages, in GFID order, none twice");
        var user = new FopContext { Uid = 1000, Gid = 1000 };
        Assert.That((await v.Mount.Find<ReplicateTranslator>().Children[0].GetxattrAsync(user, Gfid.Root, IndexTranslator.PendingListXattr)).Error,
            Is.EqualTo(Errno.EPERM));
    }

    [Test]
    public async Task OnePassAfterABrickReturnsMakesEveryCopyIdenticalAndEmptiesTheIndexes()
    {
        await using var v = await StartAsync(3);
        var old = await v.WriteFileAsync("old", "before the outage");
        await v.WriteFileAsync("doomed", "removed during the outage");
        var keep = await v.MkdirAsync("keep");

        v.Down(2);
        await v.OverwriteAsync(old, "changed during the outage");
        Assert.That((await v.Top.SetattrAsync(Ctx(), old, null, new SetattrRequest { Valid = SetattrValid.Mode, Mode = 0x180 })).Ok, Is.True);
        Assert.That((await v.Top.SetxattrAsync(Ctx(), keep, "user.note", "hello"u8.ToArray(), 0)).Ok, Is.True);
        Assert.That((await v.Top.UnlinkAsync(Ctx(), Gfid.Root, "doomed")).Ok, Is.True);
        await v.WriteFileAsync("new", "created during the outage");
        var d = await v.MkdirAsync("d");
        var inner = await v.MkdirAsync("inner", d);
        await v.WriteFileAsync("deep", "a file two levels down", inner);
        v.Up(2);
        Assert.That(await v.SnapshotAsync(2), Is.Not.EqualTo(await v.SnapshotAsync(0)), "b2 missed the changes");

        var shd = await v.DaemonAsync();
        var summary = await shd.RunPassAsync();

        Assert.That(summary.Healed, Is.GreaterThan(0), v.Log.Text.ToString());
        Assert.That(summary.Remaining, Is.Zero, v.Log.Text.ToString());
        await v.AssertCopiesIdenticalAsync();
        Assert.That(v.IndexesEmpty, Is.True);
        Assert.That(await v.CountersZeroAsync(old), Is.True);
        Assert.That(v.Log.Text.ToString(), Does.Contain($"healed {old}"), "each heal is logged with its GFID");
    }

    [Test]
    public async Task TheDaemonHealsAsSoonAsABrickAnswersAgainWithoutWaitingForTheInterval()
    {
        await using var v = await StartAsync(3);
        var shd = await v.DaemonAsync(probe: TimeSpan.FromMilliseconds(20));
        using var stop = new CancellationTokenSource();
        v.Down(1);
        var loop = shd.RunAsync(TimeSpan.FromHours(1), stop.Token);
        await Eventually.HoldsAsync(Deadline, () => v.Log.Text.ToString().Contains("healing vol every"), "the daemon started");
        var f = await v.WriteFileAsync("f", "written while b1 was down");
        Assert.That(v.IndexesEmpty, Is.False);

        v.Up(1);

        await Eventually.HoldsAsync(Deadline, () => v.IndexesEmpty, "the indexes are emptied by the daemon");
        await v.AssertCopiesIdenticalAsync();
        Assert.That(await v.CountersZeroAsync(f), Is.True);
        stop.Cancel();
        await loop.WaitAsync(Deadline);
        Assert.That(v.Log.Text.ToString(), Does.Contain("a brick is back: healing now").And.Contain("stopping"));
    }

    [Test]
    public async Task NoMoreThanTheParallelLimitOfHealsRunAtOnce()
    {
        const int limit = 3;
        await using var v = await StartAsync(3);
        v.Down(0);
        var files = new List<Gfid>();
        for (int i = 0; i < 12; i++) files.Add(await v.WriteFileAsync($"f{i}", $"content {i}"));
        v.Up(0);

        int inFlight = 0, most = 0;
        var full = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var shd = await v.DaemonAsync(parallel: limit, heal: async (r, g, ct) =>
        {
            int now = Interlocked.Increment(ref inFlight);
            lock (files) most = Math.Max(most, now);
            // The first heals wait until the limit is reached, so a pass that ran them one by one would never get here.
            if (now == limit) full.TrySetResult();
            try
            {
                await full.Task.WaitAsync(Deadline, ct);
                return await r.HealAsync(g, ct);
            }
            finally
            {
                Interlocked.Decrement(ref inFlight);
            }
        });

        var summary = await shd.RunPassAsync();

        Assert.That(most, Is.EqualTo(limit), "the limit is reached and never passed");
        Assert.That(summary.Remaining, Is.Zero);
        await v.AssertCopiesIdenticalAsync();
        Assert.That(v.IndexesEmpty, Is.True);
    }

    [Test]
    public async Task AFullCrawlHealsWhatTheIndexesNeverListed()
    {
        await using var v = await StartAsync(3);
        var shared = await v.WriteFileAsync("shared", "same everywhere");
        // Behind the index's back, on the storage below it: b2's copy differs and the others blame it...
        var fd = new FileHandle(shared, OpenFlags.ReadWrite);
        await v.Storage(2).OpenAsync(Ctx(), fd);
        await v.Storage(2).WriteAsync(Ctx(), fd, 0, "SAME"u8.ToArray());
        await v.Storage(2).ReleaseAsync(Ctx(), fd);
        for (int i = 0; i < 2; i++)
        {
            await v.Storage(i).XattropAsync(Ctx(), shared, null, new Dictionary<string, long[]> { [ReplicateTranslator.PendingPrefix + ChildName(2)] = [1, 0, 0] });
        }
        // ...and a file and a directory tree exist on b0 alone, without any counter.
        var lonely = Gfid.NewRandom();
        await v.Storage(0).MknodAsync(Ctx(), Gfid.Root, "lonely", RegularMode, 0, lonely);
        var lfd = new FileHandle(lonely, OpenFlags.ReadWrite);
        await v.Storage(0).OpenAsync(Ctx(), lfd);
        await v.Storage(0).WriteAsync(Ctx(), lfd, 0, "only on b0"u8.ToArray());
        await v.Storage(0).ReleaseAsync(Ctx(), lfd);
        var ldir = Gfid.NewRandom();
        await v.Storage(0).MkdirAsync(Ctx(), Gfid.Root, "ldir", 0x1ED, ldir);
        await v.Storage(0).MknodAsync(Ctx(), ldir, "inside", RegularMode, 0, Gfid.NewRandom());
        Assert.That(v.IndexesEmpty, Is.True, "nothing went through the indexes");

        var shd = await v.DaemonAsync();
        Assert.That((await shd.RunPassAsync()).Healed, Is.Zero, "an index pass cannot see any of it");
        var summary = await shd.RunFullCrawlAsync();

        Assert.That(summary.Healed, Is.GreaterThanOrEqualTo(2), v.Log.Text.ToString());
        await v.AssertCopiesIdenticalAsync();
        Assert.That(await v.CountersZeroAsync(shared), Is.True);
        Assert.That((await v.ReadAsync(shared)).Value, Is.EqualTo("same everywhere"));
        Assert.That(v.IndexesEmpty, Is.True);
    }
}
