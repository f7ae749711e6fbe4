using System.Globalization;
using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.Translators.Core;

namespace Brickfs.ClientFuse.Host;

/// <summary>A command-line mistake: one line for the user, exit status 1.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The parsed command line of mount.brickfs. Both calling forms are accepted:
/// <c>mount.brickfs --volfile FILE [-o OPTS] [-f] DIR</c> and mount(8)'s
/// <c>mount.brickfs SPEC DIR [-sfnv] [-o OPTS]</c>. Generic mount options (rw, defaults,
/// _netdev, noauto, nofail, x-systemd.*, ...) and options Brickfs does not know are accepted
/// and ignored, so fstab lines written for other filesystems' helpers keep working.
/// </summary>
public sealed record MountOptions
{
    public string? Volfile { get; init; }
    public string? Spec { get; init; }
    public string MountPoint { get; init; } = "";
    public bool Foreground { get; init; }
    public bool Help { get; init; }
    public bool ReadOnly { get; init; }
    public string? LogFile { get; init; }
    /// <summary>Kernel cache times as given in -o; null = the default for the volume (<see cref="BridgeOptions"/>).</summary>
    public TimeSpan? AttributeTimeout { get; init; }
    public TimeSpan? EntryTimeout { get; init; }
    public TimeSpan? NegativeTimeout { get; init; }
    public int ReaderThreads { get; init; } = 4;
    public FuseTransport Transport { get; init; } = FuseTransport.Auto;
    public int ReadaheadKiB { get; init; } = FuseSessionOptions.DefaultReadaheadKiB;
    public bool Passthrough { get; init; } = true;
    public string FuseDevice { get; init; } = Environment.GetEnvironmentVariable("BRICKFS_FUSE_DEVICE") is { Length: > 0 } d ? d : "/dev/fuse";
    public IReadOnlyList<string> Ignored { get; init; } = [];
    /// <summary>The parsed SPEC when the volfile comes from brickfs-mgmtd (no --volfile given).</summary>
    public VolumeSource? Source { get; init; }
    public IReadOnlyList<string> BackupVolfileServers { get; init; } = [];
    public TimeSpan VolfileTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public const string Usage = """
        usage: mount.brickfs --volfile FILE [-o OPTIONS] [-f] DIR
               mount.brickfs HOST[:PORT]:/VOL DIR [-o OPTIONS]   (as called by mount -t brickfs)

        Mounts a Brickfs volume on DIR through FUSE. Without -f it returns once the mount
        answers and keeps serving in the background. With HOST[:PORT]:/VOL the client volfile
        comes from brickfs-mgmtd on HOST (port 24007 unless given); HOST:/snaps/SNAP/VOL
        mounts snapshot SNAP of volume VOL (read-only).

          --volfile FILE        client volfile to build the translator graph from
          -o OPTIONS            comma-separated mount options:
               volfile=FILE            same as --volfile
               backup-volfile-servers=H2:H3:...
                                       ask these brickfs-mgmtd hosts (same port) when HOST does not answer
               volfile-timeout=SEC     seconds to wait for each volfile server (default 10)
               log-file=FILE           default /var/log/brickfs/<DIR with / as ->.log
               attribute-timeout=SEC   kernel attribute cache time (default 1; 3600 for a
                                       volume whose graph has no protocol/client)
               entry-timeout=SEC       kernel name cache time (default 1; 3600 likewise)
               negative-timeout=SEC    kernel cache time of missing names (default 0; 3600 likewise)
               reader-threads=N        threads reading /dev/fuse (default 4)
               fuse-transport=auto|dev|uring
                                       how requests travel: per-CPU io_uring queues (uring:
                                       kernel 6.14+ with /sys/module/fuse/parameters/enable_uring
                                       = Y), or /dev/fuse reads (dev); auto (the default) takes
                                       io_uring when the kernel offers it, else /dev/fuse
               readahead-kb=KIB        read-ahead window of sequential reads (default 4096, as
                                       Btrfs uses; 0 turns read-ahead off)
               passthrough=on|off      on a volume whose graph has no protocol/client and
                                       whose storage keeps each file as one local file, the
                                       kernel reads and writes the files itself (FUSE
                                       passthrough, kernel 6.9+; default on)
               ro                      mount read-only
             generic options (rw, defaults, _netdev, noauto, nofail, ...) are ignored
          -f                    stay in the foreground, log to stderr
          --help                this text
        """;

    public string DefaultLogFile
    {
        get
        {
            string name = Path.GetFullPath(MountPoint).Trim('/').Replace('/', '-');
            return $"/var/log/brickfs/{(name.Length == 0 ? "root" : name)}.log";
        }
    }

    /// <summary>
    /// The bridge's options. A volume other clients share gets short cache times (1 s, no
    /// negative entries) and invalidation at lock points; a sole client (a graph with no
    /// protocol/client: nothing but this kernel changes the volume) may let the kernel cache for
    /// <see cref="FuseBridgeOptions.SoleClientCacheTime"/>. Times given in -o win either way.
    /// </summary>
    public FuseBridgeOptions BridgeOptions(bool soleClient)
    {
        var cache = soleClient ? FuseBridgeOptions.SoleClientCacheTime : TimeSpan.FromSeconds(1);
        return new FuseBridgeOptions
        {
            SoleClient = soleClient,
            AttributeTimeout = AttributeTimeout ?? cache,
            EntryTimeout = EntryTimeout ?? cache,
            NegativeTimeout = NegativeTimeout ?? (soleClient ? cache : TimeSpan.Zero),
        };
    }

    public static MountOptions Parse(IReadOnlyList<string> args)
    {
        var o = new MountOptions();
        var positional = new List<string>();
        var ignored = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string Next() => i + 1 < args.Count ? args[++i] : throw new UsageException($"{a} needs a value");
            switch (a)
            {
                case "--help" or "-h":
                    return o with { Help = true };
                case "--volfile":
                    o = o with { Volfile = Next() };
                    break;
                case "-o":
                    o = ApplyOptions(o, Next(), ignored);
                    break;
                case "-f" or "--foreground":
                    o = o with { Foreground = true };
                    break;
                case "-s" or "-n" or "-v" or "--sloppy" or "--no-mtab" or "--verbose":
                    break; // mount(8) helper flags with no meaning here
                case "-t" or "-N":
                    Next();
                    break;
                default:
                    if (a.StartsWith("--volfile=", StringComparison.Ordinal)) o = o with { Volfile = a["--volfile=".Length..] };
                    else if (a.StartsWith("-o", StringComparison.Ordinal) && a.Length > 2) o = ApplyOptions(o, a[2..], ignored);
                    else if (a.StartsWith('-') && a.Length > 1) throw new UsageException($"unknown argument '{a}' (see --help)");
                    else positional.Add(a);
                    break;
            }
        }
        o = positional.Count switch
        {
            0 => throw new UsageException("no mount point given (see --help)"),
            1 => o with { MountPoint = positional[0] },
            2 => o with { Spec = positional[0], MountPoint = positional[1] },
            _ => throw new UsageException($"too many arguments: {string.Join(' ', positional)}"),
        };
        if (o.Volfile is null)
        {
            if (o.Spec is null) throw new UsageException("no volfile given (use --volfile FILE, -o volfile=FILE or HOST:/VOL)");
            if (!VolumeSource.TryParse(o.Spec, out var source))
                throw new UsageException($"{o.Spec}: not HOST[:PORT]:/VOLUME (or give -o volfile=FILE)");
            // A snapshot is a point in the past: its mount is read-only whatever the options say.
            o = o with { Source = source, ReadOnly = o.ReadOnly || source.Volume.StartsWith("snaps/", StringComparison.Ordinal) };
        }
        return o with { Ignored = ignored };
    }

    private static MountOptions ApplyOptions(MountOptions o, string list, List<string> ignored)
    {
        foreach (var item in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = item.IndexOf('=');
            string key = eq < 0 ? item : item[..eq];
            string? value = eq < 0 ? null : item[(eq + 1)..];
            string Value() => value is { Length: > 0 } ? value : throw new UsageException($"option {key} needs a value");
            o = key switch
            {
                "volfile" => o with { Volfile = Value() },
                "backup-volfile-servers" => o with { BackupVolfileServers = Value().Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "volfile-timeout" => o with { VolfileTimeout = Seconds(key, Value()) },
                "log-file" => o with { LogFile = Value() },
                "attribute-timeout" => o with { AttributeTimeout = Seconds(key, Value()) },
                "entry-timeout" => o with { EntryTimeout = Seconds(key, Value()) },
                "negative-timeout" => o with { NegativeTimeout = Seconds(key, Value()) },
                "reader-threads" => o with { ReaderThreads = Threads(Value()) },
                "fuse-transport" => o with { Transport = ParseTransport(Value()) },
                "readahead-kb" => o with { ReadaheadKiB = Kib(Value()) },
                "passthrough" => o with { Passthrough = OnOff(key, Value()) },
                "ro" => o with { ReadOnly = true },
                "rw" => o with { ReadOnly = false },
                "fuse-device" => o with { FuseDevice = Value() },
                _ => Ignore(o, item, ignored),
            };
        }
        return o;
    }

    private static MountOptions Ignore(MountOptions o, string item, List<string> ignored)
    {
        ignored.Add(item);
        return o;
    }

    private static TimeSpan Seconds(string key, string v) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s >= 0 && s < 1e9
            ? TimeSpan.FromSeconds(s)
            : throw new UsageException($"option {key}={v}: not a number of seconds");

    private static FuseTransport ParseTransport(string v) => v switch
    {
        "auto" => FuseTransport.Auto,
        "dev" => FuseTransport.Dev,
        "uring" or "io_uring" => FuseTransport.Uring,
        _ => throw new UsageException($"option fuse-transport={v}: must be auto, dev or uring"),
    };

    /// <summary>The on/off words volfile options take (<see cref="TranslatorOptions.TryParseBool"/>).</summary>
    private static bool OnOff(string key, string v) =>
        TranslatorOptions.TryParseBool(v, out bool on) ? on : throw new UsageException($"option {key}={v}: must be on or off");

    private static int Kib(string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n is >= 0 and <= 1 << 20
            ? n
            : throw new UsageException($"option readahead-kb={v}: must be 0..1048576");

    private static int Threads(string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n is >= 1 and <= 64
            ? n
            : throw new UsageException($"option reader-threads={v}: must be 1..64");
}
