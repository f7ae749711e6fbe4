using System.Globalization;

namespace Brickfs.Mgmt.Api;

/// <summary>The command line of brickfs-mgmtd.</summary>
public sealed class MgmtdOptions
{
    public const int DefaultPort = 24007;

    public string StateDir { get; set; } = "/var/lib/brickfs";
    public string ListenHost { get; set; } = "0.0.0.0";
    /// <summary>0 asks the system for a free port (tests).</summary>
    public int ListenPort { get; set; } = DefaultPort;
    /// <summary>Extra name or address under which peers and bricks refer to this node.</summary>
    public string? NodeAddress { get; set; }
    public string? BrickdPath { get; set; }
    public string? ShdPath { get; set; }
    /// <summary>
    /// A file whose first line is a shared secret: when set, every API request must carry it
    /// (header X-Brickfs-Secret), except the health check and volfile fetches, which mounts
    /// and peers make and which reveal nothing that lets anyone change a volume.
    /// </summary>
    public string? SecretFile { get; set; }
    /// <summary>The address bricks listen on (protocol/server listen-host).</summary>
    public string BrickListenHost { get; set; } = Volgen.Volgen.DefaultListenHost;
    /// <summary>Whether brick ports this node's bricks would get are probed for other listeners first (tests with a fake brickd turn it off for predictable ports).</summary>
    public bool ProbeBrickPorts { get; set; } = true;
    /// <summary>
    /// etcd's client URLs (this node's member first): set, the node keeps peers and volumes in
    /// that etcd cluster and converges its bricks to them (cluster mode); unset, in the embedded
    /// store of its state directory (standalone).
    /// </summary>
    public IReadOnlyList<Uri>? EtcdEndpoints { get; set; }
    /// <summary>The key prefix under which this cluster's definitions live in etcd (several clusters may share one etcd).</summary>
    public string EtcdPrefix { get; set; } = Store.EtcdStateStore.DefaultPrefix;
    /// <summary>Whether this machine's host name and interface addresses count as local (tests turn it off to fake remote hosts).</summary>
    public bool MatchMachineAddresses { get; set; } = true;

    public string ResolvedBrickdPath => BrickdPath ?? Beside("brickd");

    public string ResolvedShdPath => ShdPath ?? Beside("brickfs-shd");

    /// <summary>A program installed beside brickfs-mgmtd (install.sh publishes them together), else the name for a PATH search.</summary>
    private static string Beside(string program) =>
        File.Exists(Path.Combine(AppContext.BaseDirectory, program)) ? Path.Combine(AppContext.BaseDirectory, program) : program;

    public const string Usage = """
        usage: brickfs-mgmtd [--state-dir DIR] [--listen HOST:PORT] [--node-address HOST] [--brickd PATH] [--shd PATH] [--brick-listen HOST] [--secret-file FILE]
                             [--etcd-endpoints URL,...] [--etcd-prefix PREFIX]
          --state-dir DIR      peers, volumes, volfiles, brick logs and pid files (default /var/lib/brickfs)
          --listen HOST:PORT   the HTTP API address (default 0.0.0.0:24007)
          --node-address HOST  a name or address bricks and peers use for this node, besides its host name and addresses
          --brickd PATH        the brick daemon (default: brickd beside brickfs-mgmtd, else on PATH)
          --shd PATH           the self-heal program heal commands run (default: brickfs-shd beside brickfs-mgmtd, else on PATH)
          --brick-listen HOST  the address bricks listen on (default 0.0.0.0)
          --secret-file FILE   require the secret in FILE's first line on every request that reads or changes state
                               (brickctl --secret-file FILE); health and volfile fetches stay open
          --etcd-endpoints URL,...  cluster mode: keep peers and volumes in this etcd cluster (client URLs,
                               this node's member first) and converge this node's bricks to them;
                               without it the node is standalone (embedded store in --state-dir)
          --etcd-prefix PREFIX the etcd key prefix of this cluster (default /brickfs/)
        """;

    /// <summary>Parses the arguments; null with <paramref name="error"/> set on a bad command line, null without it for --help.</summary>
    public static MgmtdOptions? Parse(IReadOnlyList<string> args, out string? error)
    {
        var o = new MgmtdOptions();
        error = null;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg is "--help" or "-h") return null;
            string? value = null;
            int eq = arg.IndexOf('=');
            if (arg.StartsWith("--") && eq > 0)
            {
                value = arg[(eq + 1)..];
                arg = arg[..eq];
            }
            string Next()
            {
                if (value is not null) return value;
                if (i + 1 >= args.Count) throw new FormatException($"{arg} needs a value");
                return args[++i];
            }
            try
            {
                switch (arg)
                {
                    case "--state-dir": o.StateDir = Path.GetFullPath(Next()); break;
                    case "--listen":
                        if (!TryParseHostPort(Next(), DefaultPort, out var h, out var p)) throw new FormatException("--listen needs HOST:PORT");
                        o.ListenHost = h;
                        o.ListenPort = p;
                        break;
                    case "--node-address": o.NodeAddress = Next(); break;
                    case "--brickd": o.BrickdPath = Path.GetFullPath(Next()); break;
                    case "--shd": o.ShdPath = Path.GetFullPath(Next()); break;
                    case "--secret-file": o.SecretFile = Path.GetFullPath(Next()); break;
                    case "--brick-listen": o.BrickListenHost = Next(); break;
                    case "--etcd-endpoints": o.EtcdEndpoints = Store.EtcdClient.ParseEndpoints(Next()); break;
                    case "--etcd-prefix":
                        o.EtcdPrefix = Next();
                        if (!o.EtcdPrefix.StartsWith('/')) throw new FormatException("--etcd-prefix must start with '/'");
                        break;
                    default: throw new FormatException($"unknown argument '{arg}'");
                }
            }
            catch (FormatException e)
            {
                error = e.Message;
                return null;
            }
        }
        return o;
    }

    /// <summary>Parses HOST, HOST:PORT, [V6], or [V6]:PORT.</summary>
    public static bool TryParseHostPort(string s, int defaultPort, out string host, out int port)
    {
        host = s;
        port = defaultPort;
        if (s.Length == 0) return false;
        string portText = "";
        if (s.StartsWith('['))
        {
            int close = s.IndexOf(']');
            if (close < 0) return false;
            host = s[1..close];
            if (close + 1 < s.Length)
            {
                if (s[close + 1] != ':') return false;
                portText = s[(close + 2)..];
            }
        }
        else
        {
            int colon = s.LastIndexOf(':');
            if (colon >= 0 && s.IndexOf(':') == colon)
            {
                host = s[..colon];
                portText = s[(colon + 1)..];
            }
        }
        if (host.Length == 0) return false;
        if (portText.Length == 0) return true;
        return int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 0 and <= 65535;
    }
}
