using System.Globalization;
using System.Net;
using System.Text.Json;

namespace Brickfs.ClientFuse.Host;

/// <summary>
/// A mount source as mount(8) passes it, <c>HOST[:PORT]:/VOL</c> (GlusterFS's form; IPv6 hosts
/// in brackets). <c>VOL</c> may itself contain '/', e.g. <c>/snaps/SNAP/VOL</c> for a snapshot.
/// </summary>
public sealed record VolumeSource(string Host, int Port, string Volume)
{
    /// <summary>brickfs-mgmtd's port when the source names none.</summary>
    public const int DefaultPort = 24007;

    public static bool TryParse(string spec, out VolumeSource source)
    {
        source = null!;
        string host, rest;
        if (spec.StartsWith('['))
        {
            int close = spec.IndexOf(']');
            if (close < 0 || close + 1 >= spec.Length || spec[close + 1] != ':') return false;
            host = spec[1..close];
            rest = spec[(close + 2)..];
            if (!IPAddress.TryParse(host, out _)) return false;
        }
        else
        {
            int colon = spec.IndexOf(':');
            if (colon <= 0) return false;
            host = spec[..colon];
            rest = spec[(colon + 1)..];
        }
        int port = DefaultPort;
        int slash = rest.IndexOf('/');
        if (slash > 0 && rest[slash - 1] == ':')
        {
            if (!int.TryParse(rest[..(slash - 1)], NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535) return false;
            rest = rest[slash..];
        }
        string volume = rest.Trim('/');
        if (volume.Length == 0 || host.Length == 0 || host.Contains('/')) return false;
        source = new VolumeSource(host, port, volume);
        return true;
    }

    /// <summary>The volfile URL path on brickfs-mgmtd: a volume's client volfile, or a snapshot's (<c>snaps/SNAP/VOL</c>).</summary>
    public string VolfilePath
    {
        get
        {
            var parts = Volume.Split('/');
            return parts is ["snaps", var snap, _]
                ? $"api/v1/snapshots/{Uri.EscapeDataString(snap)}/volfile"
                : $"api/v1/volumes/{Uri.EscapeDataString(Volume)}/volfile?kind=client";
        }
    }
}

/// <summary>
/// Fetches a client volfile from brickfs-mgmtd over its HTTP API, trying the servers in order
/// (the source's host, then <c>backup-volfile-servers</c>) until one answers. A server that
/// answers "no such volume" ends the search: every server of a cluster holds the same
/// definitions, so asking the next one would only delay the same answer. Only plain HTTP and
/// System.Net.Http are used, so the mount program needs no ASP.NET.
/// </summary>
public static class VolfileServers
{
    public static async Task<string> FetchAsync(VolumeSource source, IReadOnlyList<string> backups, TimeSpan perServer)
    {
        var servers = new List<(string Host, int Port)> { (source.Host, source.Port) };
        servers.AddRange(backups.Select(b => (b, source.Port)));
        var failures = new List<string>();
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        foreach (var (host, port) in servers)
        {
            string h = host.Contains(':') ? $"[{host}]" : host;
            string where = $"{h}:{port}";
            using var limit = new CancellationTokenSource(perServer);
            try
            {
                using var response = await http.GetAsync($"http://{where}/{source.VolfilePath}", limit.Token);
                string body = await response.Content.ReadAsStringAsync(limit.Token);
                if (response.IsSuccessStatusCode) return body;
                string message = ErrorOf(body) ?? $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}";
                if (response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.BadRequest)
                    throw new UsageException($"{source.Host}:/{source.Volume}: {where}: {message}");
                failures.Add($"{where}: {message}");
            }
            catch (OperationCanceledException)
            {
                failures.Add($"{where}: no answer within {perServer.TotalSeconds:0.#} s");
            }
            catch (HttpRequestException e)
            {
                failures.Add($"{where}: {e.Message}");
            }
        }
        throw new UsageException($"{source.Host}:/{source.Volume}: no volfile server answered ({string.Join("; ", failures)})");
    }

    private static string? ErrorOf(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out var e) ? e.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Where a fetched volfile is kept while its mount lives: one file per mount point, in /run (gone at reboot).</summary>
    public static string CachePath(string mountPoint)
    {
        string name = Path.GetFullPath(mountPoint).Trim('/').Replace('/', '-');
        return Path.Combine(Environment.GetEnvironmentVariable("BRICKFS_RUN_DIR") is { Length: > 0 } d ? d : "/run/brickfs",
            "volfiles", (name.Length == 0 ? "root" : name) + ".vol");
    }
}
