using Brickfs.ClientFuse.Bridge;
using Brickfs.Translators.Core;

namespace Brickfs.Tests.Fuse;

/// <summary>
/// The bridge's node table keeps, per directory, the stat begun after its latest change through
/// this mount, and per file whether it is known to have no file capability.
/// </summary>
public class NodeTableTests
{
    private static Task<FopResult<Iatt>> StatOf(uint nlink) => Task.FromResult(FopResult<Iatt>.Success(new Iatt { Nlink = nlink }));

    private static long Later => Environment.TickCount64 + 60_000;

    /// <summary>A table holding one directory, changed once, with a stat (nlink 3) kept after that change until <paramref name="until"/>.</summary>
    private static (NodeTable Table, ulong Dir) WithKeptDirStat(long until)
    {
        var t = new NodeTable();
        ulong dir = t.Remember(Gfid.NewRandom());
        long c = t.DirChanged(dir);
        t.KeepDirStat(dir, new NodeTable.DirStat(c, until, StatOf(3)));
        return (t, dir);
    }

    [Test]
    public async Task AKeptDirectoryStatAnswersOnceWhenNoChangeCameAfterIt()
    {
        var (t, dir) = WithKeptDirStat(Later);
        var kept = t.TakeDirStat(dir);
        Assert.That(kept, Is.Not.Null);
        Assert.That((await kept!).Value.Nlink, Is.EqualTo(3u));
        Assert.That(t.TakeDirStat(dir), Is.Null, "one GETATTR per kept stat");
    }

    [Test]
    public void AChangeAfterTheStatBeganOutdatesIt()
    {
        var (t, dir) = WithKeptDirStat(Later);
        t.DirChanged(dir);
        Assert.That(t.TakeDirStat(dir), Is.Null);
    }

    [Test]
    public void AStatBegunBeforeTheLatestChangeIsNotKept()
    {
        var t = new NodeTable();
        ulong dir = t.Remember(Gfid.NewRandom());
        long c = t.DirChanged(dir);
        t.DirChanged(dir);
        t.KeepDirStat(dir, new NodeTable.DirStat(c, Later, StatOf(3)));
        Assert.That(t.TakeDirStat(dir), Is.Null);
    }

    [Test]
    public void AnExpiredStatIsNotUsed()
    {
        var (t, dir) = WithKeptDirStat(Environment.TickCount64 - 1);
        Assert.That(t.TakeDirStat(dir), Is.Null);
    }

    [Test]
    public void ACapabilityNoteLastsUntilItExpiresOrIsForgotten()
    {
        var t = new NodeTable();
        ulong f = t.Remember(Gfid.NewRandom());
        Assert.That(t.KnownWithoutCapability(f), Is.False);
        t.NoteNoCapability(f, Later);
        Assert.That(t.KnownWithoutCapability(f), Is.True);
        t.ForgetNoCapability(f);
        Assert.That(t.KnownWithoutCapability(f), Is.False);
        t.NoteNoCapability(f, Environment.TickCount64 - 1);
        Assert.That(t.KnownWithoutCapability(f), Is.False);
    }

    [Test]
    public void AForgottenNodeKeepsNothing()
    {
        var (t, dir) = WithKeptDirStat(Later);
        t.NoteNoCapability(dir, Later);
        t.Forget(dir, 1);
        Assert.That(t.TakeDirStat(dir), Is.Null);
        Assert.That(t.KnownWithoutCapability(dir), Is.False);
        Assert.That(t.DirChanged(dir), Is.Zero);
    }
}
