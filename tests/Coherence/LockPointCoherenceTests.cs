using System.Text;
using Brickfs.Tests.Coherence.Interop;
using Brickfs.Tests.Integration;
using Brickfs.Tests.Support;
using Microsoft.Win32.SafeHandles;

namespace Brickfs.Tests.Coherence;

/// <summary>
/// Contract 3 through the kernel: once a lock is granted, reads and stats see every write
/// another client finished before releasing its conflicting lock, even through a descriptor
/// whose pages this mount had cached, and a name another client removed is not served from the
/// dentry cache. Two mounts of one network volume.
/// </summary>
[NonParallelizable]
[CancelAfter(120_000)]
public class LockPointCoherenceTests
{
    private static SafeFileHandle Open(string path) => File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);

    private static string ReadAll(SafeFileHandle h, int size)
    {
        var buffer = new byte[size];
        int n = RandomAccess.Read(h, buffer, 0);
        return Encoding.ASCII.GetString(buffer, 0, n);
    }

    [Test]
    public void AfterALockIsGrantedCachedPagesOfAnotherClientsEarlierWriteAreNotServed()
    {
        using var volume = new SharedVolume(2);
        File.WriteAllText(volume[0].PathOf("f"), new string('a', 8192));
        using var a = Open(volume[0].PathOf("f"));
        using var b = Open(volume[1].PathOf("f"));
        Assert.That(ReadAll(a, 8192), Is.EqualTo(new string('a', 8192)), "A has the file's pages cached");

        for (int round = 0; round < 10; round++)
        {
            string content = new string((char)('b' + round), 4096 + round * 100);
            Assert.That(Fcntl.Lock(b, Fcntl.WriteLock), Is.Zero);
            RandomAccess.Write(b, Encoding.ASCII.GetBytes(content), 0);
            Assert.That(Fcntl.Lock(b, Fcntl.Unlock), Is.Zero, "B's unlock comes after its write reached the bricks");

            Assert.That(Fcntl.Lock(a, Fcntl.ReadLock), Is.Zero);
            Assert.That(ReadAll(a, 8192)[..content.Length], Is.EqualTo(content), $"round {round}: A sees B's write once it holds the lock");
            Assert.That(Fcntl.Lock(a, Fcntl.Unlock), Is.Zero);
        }
    }

    [Test]
    public void AfterALockIsGrantedANameAnotherClientRemovedIsGone()
    {
        using var volume = new SharedVolume(2);
        File.WriteAllText(volume[0].PathOf("app.db"), "db");
        File.WriteAllText(volume[0].PathOf("app.db-journal"), "journal");
        using var a = Open(volume[0].PathOf("app.db"));
        using var b = Open(volume[1].PathOf("app.db"));
        Assert.That(File.Exists(volume[0].PathOf("app.db-journal")), Is.True, "A has the journal's dentry cached");

        Assert.That(Fcntl.Lock(b, Fcntl.WriteLock), Is.Zero);
        File.Delete(volume[1].PathOf("app.db-journal"));
        Assert.That(Fcntl.Lock(b, Fcntl.Unlock), Is.Zero);

        Assert.That(Fcntl.Lock(a, Fcntl.ReadLock), Is.Zero);
        Assert.That(File.Exists(volume[0].PathOf("app.db-journal")), Is.False, "the -journal probe is answered by the bricks");
    }

    /// <summary>
    /// A directory where locks are taken is one where names change under other clients' locks
    /// (SQLite's journal): names handed out there right after a lock point are not cached at all,
    /// so a lock point never has a directory full of them to drop. Names are cached for an hour
    /// here, so only that rule keeps another client's removal from being served stale.
    /// </summary>
    [Test]
    public void InADirectoryWhereLocksAreTakenNamesAreAskedForAgain()
    {
        using var volume = new SharedVolume(2, mountOptions: "entry-timeout=3600,attribute-timeout=3600");
        var (a, b) = (volume[0], volume[1]);
        Directory.CreateDirectory(a.PathOf("locks"));
        Directory.CreateDirectory(a.PathOf("plain"));
        File.WriteAllText(a.PathOf("locks/app.db"), "db");
        using var db = Open(a.PathOf("locks/app.db"));

        Assert.That(Fcntl.Lock(db, Fcntl.ReadLock), Is.Zero);
        Assert.That(Fcntl.Lock(db, Fcntl.Unlock), Is.Zero);
        using (File.OpenHandle(a.PathOf("locks/x"), FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite)) { }
        Assert.That(Shell.Must($"echo made > '{a.PathOf("plain/x")}' && echo ok").Trim(), Is.EqualTo("ok"));
        Assert.That(File.Exists(a.PathOf("locks/x")) && File.Exists(a.PathOf("plain/x")), Is.True, "A knows both (attributes fresh after the write)");

        File.Delete(b.PathOf("locks/x"));
        File.Delete(b.PathOf("plain/x"));

        Assert.That(File.Exists(a.PathOf("locks/x")), Is.False, "a name in the lock directory is asked for again");
        Assert.That(File.Exists(a.PathOf("plain/x")), Is.True, "elsewhere names keep the entry timeout the mount was given");
    }

    [Test]
    public async Task InvalidatingWhileTheKernelWaitsForALockOnThatInodeDoesNotDeadlock()
    {
        using var volume = new SharedVolume(1);
        File.WriteAllText(volume[0].PathOf("f"), "data");
        using var holder = Open(volume[0].PathOf("f"));
        using var waiter = Open(volume[0].PathOf("f"));
        Assert.That(ReadAll(waiter, 16), Is.EqualTo("data"));
        Assert.That(Fcntl.Lock(holder, Fcntl.WriteLock, ofd: true), Is.Zero);

        // An OFD F_SETLKW through another open file description blocks in the kernel on this inode.
        var blocked = Task.Run(() => Fcntl.Lock(waiter, Fcntl.WriteLock, ofd: true));
        await Task.Delay(200);
        Assert.That(blocked.IsCompleted, Is.False, "the second open file description waits");

        Assert.That(Fcntl.Lock(holder, Fcntl.Unlock, ofd: true), Is.Zero);
        Assert.That(await blocked.WaitAsync(TimeSpan.FromSeconds(20)), Is.Zero, "granted, the inode invalidated, and answered");
        Assert.That(ReadAll(waiter, 16), Is.EqualTo("data"));
    }
}
