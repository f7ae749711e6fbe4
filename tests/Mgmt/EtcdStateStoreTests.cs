using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;
using Brickfs.Tests.Integration;
using Brickfs.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Brickfs.Tests.Mgmt;

/// <summary>The cluster store against a real one-member etcd on 127.0.0.1 (its JSON gateway, as mgmtd uses it).</summary>
[NonParallelizable]
public class EtcdStateStoreTests
{
    private string _dir = "";
    private EtcdCluster _etcd = null!;
    private string _prefix = "";

    [OneTimeSetUp]
    public void StartEtcd()
    {
        _dir = Directory.CreateTempSubdirectory("brickfs-etcd-").FullName;
        _etcd = new EtcdCluster(_dir, ["127.0.0.1"]);
    }

    [OneTimeTearDown]
    public void StopEtcd()
    {
        _etcd.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Each test its own prefix, so tests share the member but not the state.</summary>
    [SetUp]
    public void NewPrefix() => _prefix = $"/brickfs-test-{Guid.NewGuid():N}/";

    private EtcdStateStore Store(Guid? node = null, string? endpoints = null) =>
        new(new EtcdClient(EtcdClient.ParseEndpoints(endpoints ?? _etcd.Endpoints(0))) { RequestTimeout = TimeSpan.FromSeconds(2) },
            _prefix, node ?? Guid.NewGuid(), NullLogger.Instance);

    private static VolumeDefinition Volume(string name) => new() { Name = name, Id = Guid.NewGuid() };

    [Test, CancelAfter(30_000)]
    public async Task Nodes_share_definitions_but_each_keeps_its_own_node_id()
    {
        Guid a = Guid.NewGuid(), b = Guid.NewGuid();
        await using var one = Store(a);
        await using var two = Store(b);
        var r = await one.UpdateAsync<int>(s =>
        {
            s.Volumes.Add(Volume("v1"));
            s.Peers.Add(new PeerDefinition { Host = "h1", Port = 24007, NodeId = a });
            return 1;
        });
        Assert.That(r.Ok, r.Error?.Message);
        var seen = await two.ReadAsync();
        Assert.That(seen.Volumes.Select(v => v.Name), Is.EqualTo(new[] { "v1" }));
        Assert.That(seen.Peers.Single().NodeId, Is.EqualTo(a));
        Assert.That(seen.NodeId, Is.EqualTo(b));
        Assert.That((await one.ReadAsync()).NodeId, Is.EqualTo(a));
        Assert.That(seen.Generation, Is.EqualTo(1));

        await two.UpdateAsync<int>(s =>
        {
            s.Volumes.Clear();
            return 0;
        });
        Assert.That((await one.ReadAsync()).Volumes, Is.Empty, "a removed volume is deleted from etcd");
    }

    [Test, CancelAfter(60_000)]
    public async Task Concurrent_updates_from_several_nodes_are_all_kept()
    {
        var stores = Enumerable.Range(0, 3).Select(_ => Store()).ToList();
        try
        {
            // Every update reads the list and appends: a lost compare-and-swap would lose a name.
            await Task.WhenAll(stores.Select((store, n) => Task.Run(async () =>
            {
                for (int i = 0; i < 8; i++)
                {
                    var r = await store.UpdateAsync<int>(s =>
                    {
                        s.Volumes.Add(Volume($"n{n}-v{i}"));
                        return s.Volumes.Count;
                    });
                    Assert.That(r.Ok, r.Error?.Message);
                }
            })));
            var state = await stores[0].ReadAsync();
            Assert.That(state.Volumes, Has.Count.EqualTo(24));
            Assert.That(state.Generation, Is.EqualTo(24));
        }
        finally
        {
            foreach (var s in stores) await s.DisposeAsync();
        }
    }

    [Test, CancelAfter(30_000)]
    public async Task A_refused_change_stores_nothing()
    {
        await using var store = Store();
        var r = await store.UpdateAsync<int>(s =>
        {
            s.Volumes.Add(Volume("never"));
            return MgmtError.Invalid("no");
        });
        Assert.That(r.Error?.Message, Is.EqualTo("no"));
        var state = await store.ReadAsync();
        Assert.That(state.Volumes, Is.Empty);
        Assert.That(state.Generation, Is.Zero);
    }

    [Test, CancelAfter(30_000)]
    public async Task A_watcher_hears_of_another_nodes_change()
    {
        await using var watcher = Store();
        await using var writer = Store();
        int calls = 0;
        using var stop = new CancellationTokenSource();
        var watch = watcher.WatchAsync(_ =>
        {
            Interlocked.Increment(ref calls);
            return Task.CompletedTask;
        }, stop.Token);
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), () => Volatile.Read(ref calls) >= 1, "the watcher converges once at the start");
        int before = Volatile.Read(ref calls);
        await writer.UpdateAsync<int>(s =>
        {
            s.Volumes.Add(Volume("w"));
            return 1;
        });
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(10), () => Volatile.Read(ref calls) > before, "the watcher is called after the change");
        stop.Cancel();
        await watch;
    }

    [Test, CancelAfter(30_000)]
    public async Task Etcd_unreachable_is_one_clear_line()
    {
        int dead = BrickProcess.FreePort();
        await using var store = Store(endpoints: $"http://127.0.0.1:{dead}");
        var r = await store.UpdateAsync<int>(s => 1);
        Assert.That(r.Error?.Kind, Is.EqualTo(MgmtErrorKind.Unavailable));
        Assert.That(r.Error!.Message, Does.StartWith($"etcd is unavailable (http://127.0.0.1:{dead}/: "));
    }

    [Test, CancelAfter(30_000)]
    public async Task A_dead_endpoint_is_passed_over_for_the_next()
    {
        await using var store = Store(endpoints: $"http://127.0.0.1:{BrickProcess.FreePort()},{_etcd.Endpoints(0)}");
        var r = await store.UpdateAsync<int>(s =>
        {
            s.Volumes.Add(Volume("v"));
            return 1;
        });
        Assert.That(r.Ok, r.Error?.Message);
        Assert.That((await store.ReadAsync()).Volumes.Single().Name, Is.EqualTo("v"));
    }

    [Test]
    public void Endpoints_and_prefix_ends_parse_as_etcd_expects()
    {
        Assert.That(EtcdClient.ParseEndpoints("10.0.0.1:2379, http://h2:2379").Select(u => u.ToString()),
            Is.EqualTo(new[] { "http://10.0.0.1:2379/", "http://h2:2379/" }));
        Assert.Throws<FormatException>(() => EtcdClient.ParseEndpoints("http://h:2379/v3"));
        Assert.That(EtcdClient.PrefixEnd("/brickfs/"), Is.EqualTo("/brickfs0"u8.ToArray()));
    }
}
