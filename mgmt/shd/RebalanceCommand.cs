using System.Text.Json;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;
using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Graph;

namespace Brickfs.Shd;

/// <summary>
/// <c>brickfs-shd ... rebalance --state-file FILE</c>: the rebalance process brickfs-mgmtd starts
/// for <c>volume rebalance VOL start</c> and <c>remove-brick ... start</c> (GlusterFS runs its
/// rebalance as a client process over the volume's graph too). It crawls with
/// <see cref="Rebalancer"/> through the volfile's cluster/distribute and keeps FILE (JSON
/// <see cref="RebalanceProgress"/>, replaced atomically) up to date; a FILE left by a stopped
/// or interrupted run is resumed from its checkpoint. SIGTERM stops between files and leaves
/// the state "stopped".
/// </summary>
public static class RebalanceCommand
{
    public static async Task<int> RunAsync(TranslatorGraph graph, string stateFile, TextWriter stdout, TextWriter stderr, CancellationToken cancellation)
    {
        var dht = graph.All.OfType<DistributeTranslator>().FirstOrDefault();
        if (dht is null)
        {
            stderr.WriteLine("brickfs-shd: the volfile has no cluster/distribute translator: nothing to rebalance");
            return ShdCommand.Failed;
        }
        RebalanceProgress? resume = null;
        try
        {
            if (File.Exists(stateFile)) resume = JsonSerializer.Deserialize<RebalanceProgress>(await File.ReadAllTextAsync(stateFile, cancellation), MgmtJson.Options);
        }
        catch (JsonException e)
        {
            stderr.WriteLine($"brickfs-shd: {stateFile} is not a rebalance state ({e.Message}); starting over");
        }
        var rebalancer = new Rebalancer(dht);
        var done = await rebalancer.RunAsync(resume, p =>
        {
            AtomicFile.WriteAllText(stateFile, JsonSerializer.Serialize(p, MgmtJson.Indented));
            return ValueTask.CompletedTask;
        }, cancellation);
        stdout.WriteLine($"rebalance: {done}");
        return done.State is RebalanceProgress.Completed or RebalanceProgress.Stopped ? ShdCommand.Ok : ShdCommand.Failed;
    }
}
