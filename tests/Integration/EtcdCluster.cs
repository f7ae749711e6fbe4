using System.Diagnostics;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A static etcd cluster of real <c>etcd</c> processes (Debian's etcd-server), one member per
/// address, each run through its launcher (<c>ip netns exec NS</c> for a test host, nothing for
/// 127.0.0.1), data under a temporary directory. Members can be killed and started again on
/// their data (they rejoin). Dispose kills every member it started.
/// </summary>
public sealed class EtcdCluster : IDisposable
{
    private static readonly TimeSpan Ready = TimeSpan.FromSeconds(30);

    private readonly string _root;
    private readonly IReadOnlyList<string> _hosts;
    private readonly IReadOnlyList<IReadOnlyList<string>> _launchers;
    private readonly int _clientPort;
    private readonly int _peerPort;
    private readonly string _token = "brickfs-test-" + Guid.NewGuid().ToString("N")[..8];
    private readonly Process?[] _members;

    /// <summary>Members on <paramref name="hosts"/> (distinct addresses, or 127.0.0.1 once with free ports).</summary>
    public EtcdCluster(string root, IReadOnlyList<string> hosts, IReadOnlyList<IReadOnlyList<string>>? launchers = null, int? clientPort = null, int? peerPort = null)
    {
        _root = root;
        _hosts = hosts;
        _launchers = launchers ?? hosts.Select(_ => (IReadOnlyList<string>)[]).ToList();
        _clientPort = clientPort ?? BrickProcess.FreePort();
        _peerPort = peerPort ?? BrickProcess.FreePort();
        _members = new Process?[hosts.Count];
        Directory.CreateDirectory(root);
        try
        {
            for (int i = 0; i < hosts.Count; i++) Start(i);
            WaitHealthy(Enumerable.Range(0, hosts.Count));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Count => _hosts.Count;

    public string ClientUrl(int i) => $"http://{_hosts[i]}:{_clientPort}";

    /// <summary>Every member's client URL, member <paramref name="first"/> first (what a mgmtd on that host is given).</summary>
    public string Endpoints(int first) =>
        string.Join(",", Enumerable.Range(0, Count).OrderBy(i => i == first ? 0 : 1).Select(ClientUrl));

    public string LogFile(int i) => Path.Combine(_root, $"etcd{i}.log");

    public void Start(int i)
    {
        if (_members[i] is { HasExited: false }) return;
        string cluster = string.Join(",", _hosts.Select((h, j) => $"m{j}=http://{h}:{_peerPort}"));
        var command = _launchers[i].Append("etcd").ToList();
        var psi = new ProcessStartInfo(command[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        foreach (var a in new[]
                 {
                     "--name", $"m{i}", "--data-dir", Path.Combine(_root, $"m{i}.etcd"),
                     "--listen-client-urls", ClientUrl(i), "--advertise-client-urls", ClientUrl(i),
                     "--listen-peer-urls", $"http://{_hosts[i]}:{_peerPort}", "--initial-advertise-peer-urls", $"http://{_hosts[i]}:{_peerPort}",
                     "--initial-cluster", cluster, "--initial-cluster-token", _token, "--initial-cluster-state", "new",
                     // Relaxed timings: on a test machine loaded by parallel builds, etcd's defaults
                     // (100/1000 ms) let a starved leader lose its term now and then.
                     "--heartbeat-interval", "250", "--election-timeout", "2500",
                     // A member back from a cut does not depose the leader with its higher term.
                     "--pre-vote",
                 })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start etcd");
        var log = new StreamWriter(LogFile(i), append: true) { AutoFlush = true };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _members[i] = p;
    }

    /// <summary>Waits until members <paramref name="which"/> answer /health with a leader.</summary>
    public void WaitHealthy(IEnumerable<int> which)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
        foreach (int i in which)
        {
            var deadline = DateTime.UtcNow + Ready;
            while (true)
            {
                if (_members[i] is { HasExited: true } p) Assert.Fail($"etcd member {i} exited with {p.ExitCode}:\n{File.ReadAllText(LogFile(i))}");
                try
                {
                    var body = http.GetStringAsync($"{ClientUrl(i)}/health").GetAwaiter().GetResult();
                    if (body.Contains("\"true\"", StringComparison.Ordinal)) break;
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    // not up yet
                }
                if (DateTime.UtcNow > deadline) Assert.Fail($"etcd member {i} is not healthy after {Ready.TotalSeconds} s:\n{File.ReadAllText(LogFile(i))}");
                Thread.Sleep(100);
            }
        }
    }

    /// <summary>Kills member i with SIGKILL (the harshest way a member goes down).</summary>
    public void Kill(int i)
    {
        if (_members[i] is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
    }

    public void Dispose()
    {
        for (int i = 0; i < _members.Length; i++)
        {
            Kill(i);
            _members[i]?.Dispose();
            _members[i] = null;
        }
    }
}
