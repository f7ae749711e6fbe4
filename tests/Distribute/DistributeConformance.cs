using Brickfs.Tests.Conformance;
using Brickfs.Tests.Support;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;

namespace Brickfs.Tests.Distribute;

/// <summary>The storage POSIX contract holds through cluster/distribute over three in-memory bricks.</summary>
public class DistributeOfThreeConformance : StorageConformance
{
    protected override async Task<Translator> CreateStorageAsync()
    {
        var graph = GraphBuilder.BuildText(DistributeVolume.Volfile(3));
        await graph.InitAsync(CancellationToken.None);
        return graph.Top;
    }
}

/// <summary>
/// The storage POSIX contract through distribute over two replica-3 sets, each brick stacked as
/// brickd stacks it (features/locks, features/index) over memory, with an idle error-gen on top.
/// </summary>
public class DistributeOfTwoReplicaThreeConformance : StorageConformance
{
    internal static string TwoReplicaThreeSets(Func<int, string> storage)
    {
        var v = new System.Text.StringBuilder();
        for (int i = 0; i < 6; i++) v.Append(TestVolfiles.FaultableBrick(i, storage(i)));
        for (int s = 0; s < 2; s++) v.Append($"volume rep-{s}\n    type cluster/replicate\n    subvolumes b{3 * s} b{3 * s + 1} b{3 * s + 2}\nend-volume\n");
        v.Append("volume dht\n    type cluster/distribute\n    subvolumes rep-0 rep-1\nend-volume\n");
        return v.ToString();
    }

    internal static void Idle(TranslatorGraph graph)
    {
        for (int i = 0; i < 6; i++) ((ErrorGenTranslator)graph[$"b{i}"]).Active = false;
    }

    protected override async Task<Translator> CreateStorageAsync()
    {
        var graph = GraphBuilder.BuildText(TwoReplicaThreeSets(_ => TestVolfiles.MemoryStorage));
        await graph.InitAsync(CancellationToken.None);
        Idle(graph);
        return graph.Top;
    }
}

/// <summary>The same over storage/posix bricks on Btrfs, the bricks' filesystem.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
[Category("btrfs")]
[NonParallelizable]
public class DistributeOfTwoReplicaThreePosixConformance : ClusterOverPosixConformance
{
    private BtrfsImage? _image;

    protected override string BaseDirectory => _image!.MountPoint;

    [OneTimeSetUp]
    public void MountBtrfs() => _image = new BtrfsImage("dht-rep-posix", 512L << 20);

    [OneTimeTearDown]
    public void UnmountBtrfs()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        _image?.Dispose();
    }

    protected override async Task<Translator> CreateStorageAsync()
    {
        var top = await base.CreateStorageAsync();
        DistributeOfTwoReplicaThreeConformance.Idle(Graph);
        return top;
    }

    protected override string Volfile() => DistributeOfTwoReplicaThreeConformance.TwoReplicaThreeSets(_ => TestVolfiles.PosixStorage(NewBrickDirectory()));
}
