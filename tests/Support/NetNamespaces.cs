using System.Diagnostics;

namespace Brickfs.Tests.Support;

/// <summary>
/// Test hosts as Linux network namespaces: <c>count</c> namespaces, each joined by a veth pair
/// to a bridge in the root namespace, with addresses from a private /24 that this object picks
/// (10.213.X.0/24 with X random and unused on this machine). The root namespace (where the
/// client and the mount run) is <see cref="ClientAddress"/> on the bridge; host i is
/// <see cref="HostAddress"/>(i). Nothing here routes beyond the bridge: traffic only ever goes
/// to addresses inside namespaces this object created.
/// <para>
/// <see cref="Cut"/> sets the host's bridge port down: packets to and from it vanish without a
/// reset or an ICMP error, so TCP peers on either side see silence and only a ping timeout
/// notices (a DROP rule would do the same; this machine has no iptables/nft).
/// </para>
/// Dispose removes everything (processes still running in the namespaces are killed by pid,
/// namespaces, veths, bridge), also after a failed construction or test.
/// </summary>
public sealed class NetNamespaces : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(20);

    private readonly string _id;
    private readonly int _subnet;
    private readonly List<string> _namespaces = [];
    private readonly bool[] _cut;
    private bool _bridgeCreated;

    public int Count { get; }

    /// <summary>The bridge in the root namespace.</summary>
    public string Bridge => $"bfs{_id}br";

    /// <summary>The root namespace's address on the bridge: where the client connects from.</summary>
    public string ClientAddress => $"10.213.{_subnet}.1";

    public NetNamespaces(int count)
    {
        if (count is < 1 or > 200) throw new ArgumentOutOfRangeException(nameof(count));
        Count = count;
        _cut = new bool[count];
        _id = Guid.NewGuid().ToString("N")[..6];
        _subnet = PickSubnet();
        try
        {
            Ip($"link add {Bridge} type bridge");
            _bridgeCreated = true;
            Ip($"addr add {ClientAddress}/24 dev {Bridge}");
            Ip($"link set {Bridge} up");
            for (int i = 0; i < count; i++)
            {
                string ns = Namespace(i);
                Ip($"netns add {ns}");
                _namespaces.Add(ns);
                Ip($"link add {RootVeth(i)} type veth peer name {HostVeth(i)} netns {ns}");
                Ip($"link set {RootVeth(i)} master {Bridge}");
                Ip($"link set {RootVeth(i)} up");
                Ip($"-n {ns} link set lo up");
                Ip($"-n {ns} addr add {HostAddress(i)}/24 dev {HostVeth(i)}");
                Ip($"-n {ns} link set {HostVeth(i)} up");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The name of host i's namespace (unique per instance: bfs-&lt;id&gt;-h&lt;i&gt;).</summary>
    public string Namespace(int i) => $"bfs-{_id}-h{i}";

    public string HostAddress(int i) => $"10.213.{_subnet}.{11 + i}";

    private string RootVeth(int i) => $"bfs{_id}h{i}";

    private string HostVeth(int i) => $"bfs{_id}h{i}p";

    /// <summary>The command prefix that runs a program inside host i (for <c>Process.Start</c> callers).</summary>
    public IReadOnlyList<string> Launcher(int i) => ["ip", "netns", "exec", Namespace(i)];

    /// <summary>Runs <paramref name="program"/> inside host i's namespace, with a timeout.</summary>
    public ShellResult RunInHost(int i, string program, IEnumerable<string> args, TimeSpan? timeout = null) =>
        Shell.Run("ip", ["netns", "exec", Namespace(i), program, .. args], timeout ?? CommandTimeout);

    /// <summary>Silently drops all traffic of host i (its bridge port goes down): no reset, no ICMP.</summary>
    public void Cut(int i)
    {
        Ip($"link set {RootVeth(i)} down");
        _cut[i] = true;
    }

    /// <summary>Reconnects host i; returns once its bridge port forwards again.</summary>
    public void Restore(int i)
    {
        Ip($"link set {RootVeth(i)} up");
        _cut[i] = false;
        var deadline = DateTime.UtcNow + CommandTimeout;
        while (!Shell.Sh($"bridge link show dev {RootVeth(i)} | grep -q 'state forwarding'").Ok)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"bridge port {RootVeth(i)} of host {i} does not forward after restore");
            Thread.Sleep(20);
        }
    }

    public bool IsCut(int i) => _cut[i];

    /// <summary>Restores every cut host (tests call it from teardown so the next test starts connected).</summary>
    public void RestoreAll()
    {
        for (int i = 0; i < Count; i++) if (_cut[i]) Restore(i);
    }

    /// <summary>A private /24 not in use on this machine (checked against every address and route).</summary>
    private static int PickSubnet()
    {
        string used = Shell.Must("ip -o addr show; ip route show table all", CommandTimeout);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int x = Random.Shared.Next(1, 255);
            if (!used.Contains($"10.213.{x}.", StringComparison.Ordinal)) return x;
        }
        Assert.Fail("no free 10.213.X.0/24 test subnet");
        return 0;
    }

    private static void Ip(string args) => Shell.Must($"ip {args}", CommandTimeout);

    public void Dispose()
    {
        var errors = new List<string>();
        foreach (var ns in _namespaces)
        {
            // Whatever a test started inside (brickd, sqlite3, ...) dies with its namespace's
            // addresses otherwise only after a timeout; kill those pids explicitly.
            var pids = Shell.Sh($"ip netns pids {ns}", CommandTimeout).Stdout
                .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var pid in pids)
            {
                try
                {
                    using var p = Process.GetProcessById(int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture));
                    p.Kill();
                    p.WaitForExit(10_000);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
                {
                    // already gone
                }
            }
            var r = Shell.Sh($"ip netns del {ns}", CommandTimeout);
            if (!r.Ok) errors.Add($"ip netns del {ns}: {r.Stderr.Trim()}");
        }
        _namespaces.Clear();
        // Deleting a namespace deletes its veth end and with it the pair; delete leftovers anyway.
        for (int i = 0; i < Count; i++) Shell.Sh($"ip link del {RootVeth(i)} 2>/dev/null", CommandTimeout);
        if (_bridgeCreated)
        {
            var r = Shell.Sh($"ip link del {Bridge}", CommandTimeout);
            if (!r.Ok) errors.Add($"ip link del {Bridge}: {r.Stderr.Trim()}");
            _bridgeCreated = false;
        }
        if (errors.Count > 0) TestContext.Progress.WriteLine("NetNamespaces cleanup: " + string.Join("; ", errors));
    }
}
