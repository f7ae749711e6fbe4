using System.Diagnostics;
using System.Runtime.InteropServices;
using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.ClientFuse.Host;
using Brickfs.ClientFuse.Interop;
using Brickfs.Translators.Graph;

namespace Brickfs.ClientFuse;

/// <summary>
/// mount.brickfs: checks its arguments, then (without -f) re-executes itself as a background
/// daemon in a new session and waits until that daemon reports the mount answering, or
/// reports its one-line failure. The daemon (or the -f process) builds the graph, mounts,
/// serves, and unmounts on SIGTERM/SIGINT; an external umount ends it too.
/// </summary>
public static class Program
{
    private const string Name = "mount.brickfs";

    /// <summary>Set in the re-executed background process; its stdout is the pipe to the waiting parent.</summary>
    private const string DaemonEnv = "BRICKFS_MOUNT_DAEMON";

    public static int Main(string[] args)
    {
        bool daemon = Environment.GetEnvironmentVariable(DaemonEnv) == "1";
        MountOptions options;
        try
        {
            options = MountOptions.Parse(args);
            if (options.Help)
            {
                Console.Out.WriteLine(MountOptions.Usage);
                return 0;
            }
            Check(options);
            if (options.Source is { } source)
            {
                options = Fetch(options, source);
                // The background process mounts the file fetched here instead of asking again.
                args = [.. args, "-o", $"volfile={options.Volfile}{(options.ReadOnly ? ",ro" : "")}"];
            }
        }
        catch (UsageException e)
        {
            return Fail(daemon, e.Message);
        }
        if (daemon) return RunDaemon(args, options);
        return options.Foreground ? Serve(options, Console.Error, ready: null) : Spawn(args, options);
    }

    private static int Fail(bool daemon, string message)
    {
        if (daemon) ToParent($"ERROR {Name}: {message}");
        else Console.Error.WriteLine($"{Name}: {message}");
        return 1;
    }

    /// <summary>The checks that need no graph: root, the volfile's presence, the mount point, the device.</summary>
    private static void Check(MountOptions o)
    {
        if (Native.GetEuid() != 0) throw new UsageException("must be run as root");
        if (o.Source is null && !File.Exists(o.Volfile)) throw new UsageException($"{o.Volfile}: no such volfile");
        string dir = o.MountPoint;
        if (File.Exists(dir)) throw new UsageException($"{dir}: not a directory");
        if (!Directory.Exists(dir)) throw new UsageException($"{dir}: no such directory");
        if (Directory.EnumerateFileSystemEntries(dir).Any()) throw new UsageException($"{dir}: directory is not empty");
        if (!File.Exists(o.FuseDevice)) throw new UsageException($"{o.FuseDevice}: no FUSE device (is the fuse module loaded?)");
    }

    /// <summary>Fetches the client volfile from brickfs-mgmtd and keeps it in /run for the life of the mount.</summary>
    private static MountOptions Fetch(MountOptions o, VolumeSource source)
    {
        string text = VolfileServers.FetchAsync(source, o.BackupVolfileServers, o.VolfileTimeout).GetAwaiter().GetResult();
        string path = VolfileServers.CachePath(o.MountPoint);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{path}: cannot keep the fetched volfile: {e.Message}");
        }
        return o with { Volfile = path };
    }

    // ---- front process --------------------------------------------------------------------

    private static int Spawn(string[] args, MountOptions options)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo
        {
            FileName = self,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            // Never hand the caller's stderr to the daemon: something holding it open would make
            // "mount.brickfs ... 2>&1 | cat" (and every caller waiting for EOF) hang forever.
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            psi.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment[DaemonEnv] = "1";
        using var child = Process.Start(psi) ?? throw new InvalidOperationException("cannot start the background process");
        child.StandardInput.Close();

        var readLine = child.StandardOutput.ReadLineAsync();
        if (!readLine.Wait(TimeSpan.FromSeconds(60)))
        {
            Console.Error.WriteLine($"{Name}: the background process did not report within 60 s; see {LogFileOf(options)}");
            return 1;
        }
        string? line = readLine.Result;
        if (line == "READY")
        {
            if (IsMounted(Path.GetFullPath(options.MountPoint))) return 0;
            Console.Error.WriteLine($"{Name}: {options.MountPoint}: the background process reported ready but nothing is mounted");
            return 1;
        }
        if (line is not null && line.StartsWith("ERROR ", StringComparison.Ordinal))
        {
            Console.Error.WriteLine(line["ERROR ".Length..]);
            return 1;
        }
        child.WaitForExit(5000);
        Console.Error.WriteLine($"{Name}: the background process exited{(child.HasExited ? $" with status {child.ExitCode}" : "")} before mounting; see {LogFileOf(options)}");
        return 1;
    }

    /// <summary>Writes to fd 1 directly: Console.Out would keep a duplicate of the pipe open after it is replaced.</summary>
    private static void ToParent(string line) => Native.WriteAll(1, System.Text.Encoding.UTF8.GetBytes(line + "\n"));

    private static string LogFileOf(MountOptions o) => o.LogFile ?? o.DefaultLogFile;

    private static bool IsMounted(string dir) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == dir && l.Contains(" - fuse.brickfs ", StringComparison.Ordinal));

    // ---- background process ----------------------------------------------------------------

    private static int RunDaemon(string[] args, MountOptions options)
    {
        Native.Setsid();
        string logPath = LogFileOf(options);
        int logFd;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
            logFd = Native.Open(logPath, Native.O_WRONLY | Native.O_CREAT | Native.O_APPEND | Native.O_CLOEXEC, 0x1A4 /* 0644 */);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logFd = -1;
            _ = e;
        }
        if (logFd < 0) return Fail(daemon: true, $"{logPath}: cannot open the log file");
        Native.Dup2(logFd, 2);
        void Ready()
        {
            ToParent("READY");
            Native.Dup2(logFd, 1); // the parent sees EOF and returns; later output goes to the log
        }
        return Serve(options, Console.Error, Ready);
    }

    /// <summary>Builds the graph, mounts, serves until unmounted or signalled. <paramref name="ready"/> runs once the mount answers.</summary>
    private static int Serve(MountOptions options, TextWriter stderr, Action? ready)
    {
        try
        {
            using var log = options.LogFile is { } path && ready is null ? OpenLog(path) : new Log(stderr);
            return ServeAsync(options, log, ready).GetAwaiter().GetResult();
        }
        catch (UsageException e)
        {
            return Fail(ready is not null, e.Message);
        }
        catch (Exception e)
        {
            stderr.WriteLine(e);
            return Fail(ready is not null, $"{options.MountPoint}: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>
    /// The mgmtd volume this mount's graph came from, when it came from one (the volfile is the
    /// copy fetched for this mount point, not a file the user named); null for snapshots, which
    /// never change.
    /// </summary>
    private static VolumeSource? ManagedSource(MountOptions o)
    {
        var source = o.Source;
        if (source is null && o.Spec is { } spec && o.Volfile == VolfileServers.CachePath(o.MountPoint) && VolumeSource.TryParse(spec, out var parsed))
            source = parsed;
        return source is null || source.Volume.StartsWith("snaps/", StringComparison.Ordinal) ? null : source;
    }

    private static Log OpenLog(string path)
    {
        try
        {
            return Log.ToFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{path}: cannot open the log file: {e.Message}");
        }
    }

    private static async Task<int> ServeAsync(MountOptions options, Log log, Action? ready)
    {
        bool daemon = ready is not null;
        TranslatorGraph graph;
        try
        {
            graph = GraphBuilder.BuildFile(options.Volfile!);
        }
        catch (VolfileException e)
        {
            if (daemon) log.Error("mount.volfile-invalid", $"error=\"{e.Message}\"");
            return Fail(daemon, e.Message);
        }
        catch (IOException e)
        {
            return Fail(daemon, $"{options.Volfile}: {e.Message}");
        }
        if (options.Ignored.Count > 0) log.Info("mount.options-ignored", $"options={string.Join(',', options.Ignored)}");

        var shutdown = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; shutdown.TrySetResult(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; shutdown.TrySetResult(); });
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => c.Cancel = true);

        FuseMount mount;
        try
        {
            await graph.InitAsync(CancellationToken.None);
            var bridgeOptions = options.BridgeOptions(FuseBridge.IsSoleClient(graph.Top));
            log.Info("mount.caching", $"dir={options.MountPoint} sole-client={bridgeOptions.SoleClient} attribute-timeout={bridgeOptions.AttributeTimeout.TotalSeconds} entry-timeout={bridgeOptions.EntryTimeout.TotalSeconds} negative-timeout={bridgeOptions.NegativeTimeout.TotalSeconds}");
            mount = await FuseMount.StartAsync(graph.Top, options.MountPoint, new FuseSessionOptions
            {
                DevicePath = options.FuseDevice,
                Source = options.Spec ?? "brickfs",
                ReadOnly = options.ReadOnly,
                ReaderThreads = options.ReaderThreads,
                Transport = options.Transport,
                ReadaheadKiB = options.ReadaheadKiB,
                StorageInProcess = bridgeOptions.SoleClient,
                Passthrough = options.Passthrough && bridgeOptions.SoleClient,
            }, bridgeOptions, log);
        }
        catch (FuseMountException e)
        {
            if (daemon) log.Error("mount.failed", $"dir={options.MountPoint} error=\"{e.Message}\"");
            await graph.DisposeAsync();
            return Fail(daemon, e.Message);
        }
        log.Info("mount.serving", $"dir={mount.MountPoint} volfile={options.Volfile} pid={Environment.ProcessId}");
        ready?.Invoke();

        using var watchStop = new CancellationTokenSource();
        var watch = Task.CompletedTask;
        if (ManagedSource(options) is { } source)
        {
            var watcher = new VolfileWatcher(source, options.BackupVolfileServers, graph, File.ReadAllText(options.Volfile!), options.Volfile!, log)
            {
                SubvolumesAdded = added => mount.Bridge.WatchLockLoss(added.All),
            };
            watch = Task.Run(() => watcher.RunAsync(watchStop.Token));
        }
        if (await Task.WhenAny(mount.Completion, shutdown.Task) == shutdown.Task)
        {
            log.Info("mount.signal", $"dir={mount.MountPoint}; unmounting");
            await mount.UnmountAsync();
        }
        watchStop.Cancel();
        await watch;
        await mount.DisposeAsync();
        await graph.DisposeAsync();
        log.Info("mount.exit", $"dir={mount.MountPoint}");
        return 0;
    }
}
