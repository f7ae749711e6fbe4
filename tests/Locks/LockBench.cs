using Brickfs.Translators.Core;
using Brickfs.Translators.Features;
using Brickfs.Translators.Features.Locks;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Locks;

/// <summary>features/locks over storage/memory with one file "f" created, and shorthands for lock calls.</summary>
internal sealed class LockBench : IAsyncDisposable
{
    public const string Volfile = """
        volume brick-mem
            type storage/memory
        end-volume

        volume brick-locks
            type features/locks
            subvolumes brick-mem
        end-volume
        """;

    /// <summary>How long a test waits for something that should happen at once.</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(5);

    private LockBench(TranslatorGraph graph, FileHandle file)
    {
        Graph = graph;
        File = file;
    }

    public TranslatorGraph Graph { get; }

    public Translator Top => Graph.Top;

    public LocksTranslator Locks => Graph.Find<LocksTranslator>();

    /// <summary>An open descriptor of "f"; the lock translator keys on its GFID.</summary>
    public FileHandle File { get; }

    public LockSnapshot State => Locks.Snapshot(File.Gfid);

    public static async Task<LockBench> StartAsync()
    {
        var graph = GraphBuilder.BuildText(Volfile, "locks-test.vol");
        await graph.InitAsync(CancellationToken.None);
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var created = await graph.Top.CreateAsync(Ctx(), Gfid.Root, "f", 0x1A4, fd);
        Assert.That(created.Ok, Is.True, $"create f: {created}");
        return new LockBench(graph, fd);
    }

    public static FopContext Ctx(string client = "c1", ulong lockOwner = 0, CancellationToken cancellation = default) =>
        new() { Uid = 0, Gid = 0, Pid = 1, ClientId = client, LockOwner = lockOwner, Cancellation = cancellation };

    public static FileLock Posix(LockType type, long start, long end, ulong owner, string client = "c1", uint pid = 100) =>
        new() { Type = type, Start = start, End = end, Owner = owner, ClientId = client, Pid = pid, Kind = LockKind.Posix };

    public static FileLock Flock(LockType type, ulong owner, string client = "c1") =>
        new() { Type = type, Owner = owner, ClientId = client, Pid = 100, Kind = LockKind.Flock };

    public ValueTask<FopResult<FileLock>> SetAsync(FileLock lk) =>
        Top.LkAsync(Ctx(lk.ClientId, lk.Owner), File, LockCommand.Set, lk);

    public ValueTask<FopResult<FileLock>> SetWaitAsync(FileLock lk, CancellationToken cancellation = default) =>
        Top.LkAsync(Ctx(lk.ClientId, lk.Owner, cancellation), File, LockCommand.SetWait, lk);

    public ValueTask<FopResult<FileLock>> GetAsync(FileLock lk) =>
        Top.LkAsync(Ctx(lk.ClientId, lk.Owner), File, LockCommand.Get, lk);

    /// <summary>Takes a lock that the test's setup needs; failing here is a broken setup.</summary>
    public async Task HoldAsync(FileLock lk)
    {
        var r = await SetAsync(lk);
        Assert.That(r.Error, Is.EqualTo(Errno.None), $"setup lock {lk}");
    }

    /// <summary>Held fcntl ranges as (type, start, end, owner, client), ordered by start.</summary>
    public IEnumerable<(LockType, long, long, ulong, string)> PosixRanges =>
        State.Posix.Select(l => (l.Type, l.Start, l.End, l.Owner, l.ClientId));

    public static async Task<FopResult<FileLock>> WithinDeadline(ValueTask<FopResult<FileLock>> pending) =>
        await pending.AsTask().WaitAsync(Deadline);

    public async ValueTask DisposeAsync() => await Graph.DisposeAsync();
}
