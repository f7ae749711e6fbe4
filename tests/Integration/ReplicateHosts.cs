using System.Text;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A replica-N volume over N test hosts (network namespaces), one real <c>brickd</c> per host
/// listening on its host address, bricks as subvolumes of one loop-mounted Btrfs image (the
/// brick directories stay readable from the root namespace, so tests checksum the copies
/// directly). The volume is mounted in the root namespace over the bridge. Faults:
/// <see cref="Net"/>.Cut/Restore and <see cref="BrickProcess.Kill"/>/<see cref="BrickProcess.Start"/>.
/// </summary>
public sealed class ReplicatedHostsVolume : MountedVolume
{
    public const string VolumeName = "rep";

    public NetNamespaces Net { get; }
    public BrickProcess[] Bricks { get; }
    public int PingTimeoutSeconds { get; }

    /// <summary>The client volfile the mount uses (also what brickfs-shd is given).</summary>
    public string ClientVolfile => Path.Combine(WorkDir, "client.vol");

    public ReplicatedHostsVolume(int replicas, int pingTimeoutSeconds) : base("rephosts")
    {
        PingTimeoutSeconds = pingTimeoutSeconds;
        try
        {
            Net = Own(new NetNamespaces(replicas));
            var image = Own(new BtrfsImage("rephosts", 3L << 30));
            Bricks = new BrickProcess[replicas];
            for (int i = 0; i < replicas; i++)
            {
                Bricks[i] = Own(new BrickProcess(WorkDir, $"b{i}", image.Subvolume($"b{i}"), port: 24100, host: Net.HostAddress(i),
                    launcher: Net.Launcher(i), withIndex: true));
            }
            Mount(Volfile());
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The name replicate and brickfs-shd give brick i (its protocol/client volume).</summary>
    public static string ChildName(int i) => $"{VolumeName}-client-{i}";

    /// <summary>A client volfile for this volume; other mounts of the same bricks pass their own replicate options.</summary>
    public string Volfile(params string[] replicateOptions)
    {
        var v = new StringBuilder();
        for (int i = 0; i < Bricks.Length; i++)
        {
            v.Append($"""
                volume {ChildName(i)}
                    type protocol/client
                    option remote-host {Net.HostAddress(i)}
                    option remote-port {Bricks[i].Port}
                    option remote-subvolume {Bricks[i].Name}
                    option ping-timeout {PingTimeoutSeconds}
                end-volume

                """);
        }
        v.Append($"volume {VolumeName}\n    type cluster/replicate\n");
        foreach (var o in replicateOptions) v.Append($"    option {o}\n");
        v.Append($"    subvolumes {string.Join(' ', Enumerable.Range(0, Bricks.Length).Select(ChildName))}\nend-volume\n");
        return v.ToString();
    }

    /// <summary>
    /// Every regular file and symlink of brick i (beside .brickfs) with its type, mode and
    /// SHA-256, keyed by path: equal maps mean byte-identical copies.
    /// </summary>
    public SortedDictionary<string, string> BrickContents(int i)
    {
        var dir = Bricks[i].Directory;
        var listing = Shell.Must(
            $"cd '{dir}' && find . -path ./.brickfs -prune -o -mindepth 1 -printf '%y %m %p\\n' | sort && " +
            $"find . -path ./.brickfs -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum", TimeSpan.FromSeconds(60));
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in listing.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Length > 66 && line[64] == ' ' && line[65] == ' ')
            {
                map[line[66..]] += " sha256=" + line[..64];
            }
            else
            {
                var parts = line.Split(' ', 3);
                map[parts[2]] = $"{parts[0]} {parts[1]}";
            }
        }
        return map;
    }

    /// <summary>Pending-change counters on brick i that are not zero, as "path name=value" (empty = nothing pending).</summary>
    public List<string> NonZeroPending(int i)
    {
        var dump = Shell.Sh($"cd '{Bricks[i].Directory}' && getfattr -R -d -m '^trusted\\.brickfs\\.pending' -e hex . 2>/dev/null",
            TimeSpan.FromSeconds(60)).Stdout;
        var bad = new List<string>();
        string file = "";
        foreach (var line in dump.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# file: ", StringComparison.Ordinal)) file = line[8..];
            else if (!file.StartsWith(".brickfs", StringComparison.Ordinal) && line.Split('=', 2) is [var name, var value]
                     && value.TrimStart('0', 'x').Length > 0)
                bad.Add($"{file} {name}={value}");
        }
        return bad;
    }

    /// <summary>Runs the real brickfs-shd on this volume's client volfile (in the root namespace, like the mount).</summary>
    public ShellResult Shd(params string[] args) =>
        Shell.Run(Programs.Find("brickfs-shd"), ["--volfile", ClientVolfile, .. args], TimeSpan.FromSeconds(120));
}

/// <summary>Another mount of existing bricks with its own client volfile (for example other replicate options).</summary>
public sealed class ExtraMount : MountedVolume
{
    public ExtraMount(string name, string volfileText, string options = "") : base(name)
    {
        try
        {
            Mount(volfileText, options);
        }
        catch
        {
            Dispose();
            throw;
        }
    }
}
