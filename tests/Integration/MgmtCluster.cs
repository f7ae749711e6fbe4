using System.Text.Json;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// Three hosts (network namespaces), each running an etcd member (one static 3-member cluster)
/// and the real brickfs-mgmtd in cluster mode (--etcd-endpoints, its own member first) on port
/// 24007 of its address, joined by <c>brickctl peer probe</c> from node 0. Bricks are subvolumes
/// of one loop-mounted Btrfs image (a network namespace shares the mount namespace, so every
/// host sees it); brickctl and mounts run in the root namespace, over the bridge. Dispose stops
/// everything it started.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MgmtCluster : IDisposable
{
    public const int Hosts = 3;
    public const int MgmtPort = 24007;

    public string Work { get; }
    public NetNamespaces Net { get; }
    public EtcdCluster Etcd { get; }
    public BtrfsImage Disk { get; }
    public MgmtdProcess[] Mgmtd { get; } = new MgmtdProcess[Hosts];

    /// <summary>The shared secret every node requires and brickctl sends (with <c>secret</c>), else null.</summary>
    public string? SecretFile { get; }

    public MgmtCluster(string name, long diskBytes = 1L << 30, bool secret = false)
    {
        Work = Directory.CreateTempSubdirectory($"brickfs-{name}-").FullName;
        if (secret)
        {
            SecretFile = Path.Combine(Work, "secret");
            File.WriteAllText(SecretFile, Guid.NewGuid().ToString("N") + "\n");
        }
        try
        {
            Net = new NetNamespaces(Hosts);
            Disk = new BtrfsImage(name, diskBytes);
            var hosts = Enumerable.Range(0, Hosts).Select(Net.HostAddress).ToList();
            Etcd = new EtcdCluster(Path.Combine(Work, "etcd"), hosts, Enumerable.Range(0, Hosts).Select(Net.Launcher).ToList(), 2379, 2380);
            for (int i = 0; i < Hosts; i++)
                Mgmtd[i] = new MgmtdProcess(Path.Combine(Work, $"mgmtd{i}"), hosts[i], MgmtPort, Net.Launcher(i), ["--etcd-endpoints", Etcd.Endpoints(i)], SecretFile);

            // Joining: node 0 probes the others; every node then lists the other two, connected.
            Assert.That(Mgmtd[0].MustCtl("peer", "probe", hosts[1]).Stdout, Does.Contain("success"));
            Assert.That(Mgmtd[0].MustCtl("peer", "probe", hosts[2]).Stdout, Does.Contain("success"));
            for (int i = 0; i < Hosts; i++)
            {
                var peers = Mgmtd[i].Json("peer", "status").GetProperty("peers").EnumerateArray().ToList();
                Assert.That(peers.Select(p => p.GetProperty("host").GetString()), Is.EquivalentTo(hosts.Where((_, j) => j != i)), $"peers of node {i}");
                Assert.That(peers.All(p => p.GetProperty("connected").GetBoolean()), Is.True, $"node {i} reaches its peers");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Host(int i) => Net.HostAddress(i);

    /// <summary>One brick per host, HOST_i:DISK/VOLUME-b_i.</summary>
    public string[] Bricks(string volume) => [.. Enumerable.Range(0, Hosts).Select(i => $"{Host(i)}:{Disk.MountPoint}/{volume}-b{i}")];

    /// <summary>`volume info --json VOL` as each node answers it, as text (equal texts = one definition).</summary>
    public List<string> InfoEverywhere(string volume) =>
        [.. Mgmtd.Select(m => JsonSerializer.Serialize(m.Json("volume", "info", volume)))];

    /// <summary>Whether node i reports its own bricks of <paramref name="volume"/> online (at least one, all of them).</summary>
    public bool LocalBricksOnline(int i, string volume)
    {
        var r = Mgmtd[i].Ctl("--json", "volume", "status", volume);
        if (!r.Ok) return false;
        var local = JsonDocument.Parse(r.Stdout).RootElement.GetProperty("bricks").EnumerateArray()
            .Where(b => b.GetProperty("local").GetBoolean()).ToList();
        return local.Count > 0 && local.All(b => b.GetProperty("online").GetBoolean());
    }

    /// <summary>Whether node i runs none of its bricks of <paramref name="volume"/>.</summary>
    public bool LocalBricksOffline(int i, string volume)
    {
        var r = Mgmtd[i].Ctl("--json", "volume", "status", volume);
        if (!r.Ok) return false;
        return JsonDocument.Parse(r.Stdout).RootElement.GetProperty("bricks").EnumerateArray()
            .Where(b => b.GetProperty("local").GetBoolean())
            .All(b => !b.GetProperty("online").GetBoolean());
    }

    /// <summary>Waits until every node runs its bricks of <paramref name="volume"/>.</summary>
    public async Task WaitBricksOnlineAsync(string volume)
    {
        for (int i = 0; i < Hosts; i++)
        {
            int n = i;
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => LocalBricksOnline(n, volume), $"node {n} runs its bricks of {volume}");
        }
    }

    public void Dispose()
    {
        foreach (var m in Mgmtd) m?.Dispose();
        Etcd?.Dispose();
        Net?.Dispose();
        Disk?.Dispose();
        Directory.Delete(Work, recursive: true);
    }
}
