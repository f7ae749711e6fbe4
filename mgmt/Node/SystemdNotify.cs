using System.Net.Sockets;
using System.Text;

namespace Brickfs.Mgmt.Node;

/// <summary>
/// sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET, so a Type=notify unit is
/// "started" only once the API answers. Without the variable (not under systemd) it does nothing.
/// </summary>
public static class SystemdNotify
{
    public static bool Send(string state)
    {
        var path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path)) return false;
        if (path[0] == '@') path = "\0" + path[1..];
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Send(Encoding.UTF8.GetBytes(state));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
