using Brickfs.Tests.Conformance;
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
