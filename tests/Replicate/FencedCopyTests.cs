using System.Text;
using Brickfs.Tests.Support;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Graph;
using static Brickfs.Tests.Replicate.ReplicaBench;

namespace Brickfs.Tests.Replicate;

/// <summary>
/// A client whose locks on a brick were lost has that brick's handles fenced: protocol/client
/// answers every request on them with EBADFD, which the mount shows as EIO (LEASES.md).
/// Replicate goes on with the copies whose locks hold; when the fenced copies leave no
/// quorum, the handle is done for, and the answer must say so (EIO), not "retry later"
/// (ENOTCONN). Each brick here is b{i} (see <see cref="ReplicaBench"/>) under a fence: an
/// error-gen answering EBADFD for fd fops, switched on per copy.
/// </summary>
public class FencedCopyTests
{
    private const uint FileMode = 0x1A4;

    private static async Task<TranslatorGraph> StartAsync()
    {
        var v = new StringBuilder();
        for (int i = 0; i < 3; i++)
        {
            v.Append(TestVolfiles.FaultableBrick(i, TestVolfiles.MemoryStorage));
            v.Append($"volume fence{i}\n    type debug/error-gen\n    option error-no EBADFD\n    option enable write,fsync,lk\n    subvolumes b{i}\nend-volume\n");
        }
        v.Append("volume vol\n    type cluster/replicate\n    subvolumes fence0 fence1 fence2\nend-volume\n");
        var graph = GraphBuilder.BuildText(v.ToString(), "fenced-copies.vol");
        await graph.InitAsync(CancellationToken.None);
        for (int i = 0; i < 3; i++)
        {
            ((ErrorGenTranslator)graph[$"b{i}"]).Active = false;
            ((ErrorGenTranslator)graph[$"fence{i}"]).Active = false;
        }
        return graph;
    }

    private static void Fence(TranslatorGraph g, params int[] copies)
    {
        foreach (int i in copies) ((ErrorGenTranslator)g[$"fence{i}"]).Active = true;
    }

    private static async Task<FileHandle> CreateAsync(Translator top, string name)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await top.CreateAsync(Ctx(), Gfid.Root, name, FileMode, fd);
        Assert.That(r.Error, Is.EqualTo(Errno.None), "create");
        return fd;
    }

    private static FileLock WriteLock => new() { Type = LockType.Write, Start = 0, End = 99, Owner = 1, ClientId = "c1", Pid = 7 };

    [Test]
    public async Task OneFencedCopyIsLeftForHealAndTheClientSeesNoError()
    {
        await using var g = await StartAsync();
        var fd = await CreateAsync(g.Top, "f");
        Fence(g, 2);
        Assert.That((await g.Top.WriteAsync(Ctx(), fd, 0, "data"u8.ToArray())).Error, Is.EqualTo(Errno.None), "write");
        Assert.That((await g.Top.FsyncAsync(Ctx(), fd, false)).Error, Is.EqualTo(Errno.None), "fsync");
        Assert.That((await g.Top.LkAsync(Ctx(), fd, LockCommand.Set, WriteLock)).Error, Is.EqualTo(Errno.None), "lock");
    }

    [Test]
    public async Task WhenFencedCopiesLeaveNoQuorumWritesFsyncAndLocksFailAsFencedNotAsUnreachable()
    {
        await using var g = await StartAsync();
        var fd = await CreateAsync(g.Top, "f");
        Fence(g, 1, 2);
        // EBADFD is the graph's "fenced": the mount answers it as EIO (FuseBridge.ToKernel).
        Assert.That((await g.Top.WriteAsync(Ctx(), fd, 0, "late"u8.ToArray())).Error, Is.EqualTo(Errno.EBADFD), "write");
        Assert.That((await g.Top.FsyncAsync(Ctx(), fd, false)).Error, Is.EqualTo(Errno.EBADFD), "fsync");
        Assert.That((await g.Top.LkAsync(Ctx(), fd, LockCommand.Set, WriteLock)).Error, Is.EqualTo(Errno.EBADFD), "lock");
    }

    [Test]
    public async Task CopiesThatAreMerelyUnreachableStillAnswerEnotconn()
    {
        await using var g = await StartAsync();
        var fd = await CreateAsync(g.Top, "f");
        foreach (int i in new[] { 1, 2 }) ((ErrorGenTranslator)g[$"b{i}"]).Active = true;
        Assert.That((await g.Top.WriteAsync(Ctx(), fd, 0, "x"u8.ToArray())).Error, Is.EqualTo(Errno.ENOTCONN), "write");
        Assert.That((await g.Top.LkAsync(Ctx(), fd, LockCommand.Set, WriteLock)).Error, Is.EqualTo(Errno.ENOTCONN), "lock");
    }
}
