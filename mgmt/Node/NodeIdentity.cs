using System.Net;
using System.Net.NetworkInformation;

namespace Brickfs.Mgmt.Node;

/// <summary>
/// Decides whether a brick's HOST names this node, so mgmtd starts only its own bricks. A host
/// is local when it is the configured node address, the listen address, this machine's host
/// name (full or short), localhost, or a literal address of a local interface. Names are not
/// resolved through DNS: a slow resolver must not stall volume start, and a brick line names
/// its host the way the operator configured it.
/// </summary>
public sealed class NodeIdentity
{
    private readonly HashSet<string> _names = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<IPAddress> _addresses = [];

    public NodeIdentity(IEnumerable<string> extraNames, bool includeMachine = true)
    {
        foreach (var n in extraNames.Where(n => !string.IsNullOrEmpty(n))) Add(n);
        if (!includeMachine) return;
        var host = Dns.GetHostName();
        Add(host);
        Add(host.Split('.')[0]);
        Add("localhost");
        _addresses.Add(IPAddress.Loopback);
        _addresses.Add(IPAddress.IPv6Loopback);
        try
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
                foreach (var a in nic.GetIPProperties().UnicastAddresses)
                    _addresses.Add(a.Address);
        }
        catch (NetworkInformationException)
        {
            // Without the interface list only names and loopback count as local.
        }
    }

    /// <summary>The name this node gives itself in answers (the first configured name, else the host name).</summary>
    public string Name { get; private set; } = "";

    private void Add(string nameOrAddress)
    {
        if (Name.Length == 0) Name = nameOrAddress;
        if (IPAddress.TryParse(nameOrAddress.Trim('[', ']'), out var ip))
        {
            if (!ip.Equals(IPAddress.Any) && !ip.Equals(IPAddress.IPv6Any)) _addresses.Add(ip);
        }
        else
        {
            _names.Add(nameOrAddress);
        }
    }

    public bool IsLocal(string host) =>
        IPAddress.TryParse(host.Trim('[', ']'), out var ip) ? _addresses.Contains(ip) : _names.Contains(host);
}
