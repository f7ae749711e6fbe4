using System.Net.Sockets;
using System.Runtime.InteropServices;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Brickd;

/// <summary>
/// brickd: serves one brick. Builds the brick graph from its volfile (the top must be
/// protocol/server), starts it, and serves until SIGTERM or SIGINT, then stops cleanly and exits 0.
/// Any startup error is one line on stderr and a non-zero exit.
/// </summary>
public static class Program
{
    private const string Usage = """
        usage: brickd --volfile FILE [--log-file FILE] [--pid-file FILE]

        Serves one brick: protocol/server on top of the brick graph described by FILE.
          --volfile FILE    the brick volfile (GlusterFS syntax); its top volume must be protocol/server
          --log-file FILE   append log lines to FILE instead of stderr
          --pid-file FILE   write the process id to FILE while running
          --help            show this help
        Stops cleanly on SIGTERM or SIGINT.
        """;

    public static int Main(string[] args) => RunAsync(args).GetAwaiter().GetResult();

    private static async Task<int> RunAsync(string[] args)
    {
        string? volfile = null, logFile = null, pidFile = null;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "--help" or "-h")
            {
                Console.Out.WriteLine(Usage);
                return 0;
            }
            if (a is "--volfile" or "--log-file" or "--pid-file")
            {
                if (i + 1 >= args.Length) return Fail($"{a} needs a value");
                string v = args[++i];
                if (a == "--volfile") volfile = v;
                else if (a == "--log-file") logFile = v;
                else pidFile = v;
                continue;
            }
            return Fail($"unknown argument '{a}' (see --help)");
        }
        if (volfile is null) return Fail("--volfile FILE is required (see --help)");

        TextWriter? logWriter = null;
        TranslatorGraph? graph = null;
        try
        {
            ProtocolLog log = ProtocolLog.Stderr;
            if (logFile is not null)
            {
                logWriter = new StreamWriter(new FileStream(logFile, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
                log = new ProtocolLog(logWriter);
            }
            graph = GraphBuilder.BuildFile(volfile);
            if (graph.Top is not ProtocolServerTranslator server)
                return Fail($"{volfile}: the top volume '{graph.Top.Name}' is {graph.Top.TypeName}; a brick volfile's top must be protocol/server");
            server.Log = log;
            foreach (var bitrot in graph.All.OfType<BitrotTranslator>()) bitrot.Log = log; // bad-file events go to the brick's log

            using var stop = new CancellationTokenSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
            using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

            try
            {
                await graph.InitAsync(stop.Token);
            }
            catch (SocketException e)
            {
                return Fail($"cannot listen for brick '{server.BrickName}': {e.Message}");
            }
            if (pidFile is not null)
            {
                // Written aside and renamed, so a reader never sees an empty pid file.
                await File.WriteAllTextAsync(pidFile + ".tmp", $"{Environment.ProcessId}\n");
                File.Move(pidFile + ".tmp", pidFile, overwrite: true);
            }
            log.Write('I', server.Name, $"brickd {Environment.ProcessId} ready");

            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
            log.Write('I', server.Name, "stopping on signal");
            await graph.DisposeAsync();
            graph = null;
            if (pidFile is not null) File.Delete(pidFile);
            return 0;
        }
        catch (VolfileException e)
        {
            return Fail(e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            return Fail(e.Message);
        }
        finally
        {
            if (graph is not null) await graph.DisposeAsync();
            logWriter?.Dispose();
        }
    }

    private static int Fail(string reason)
    {
        Console.Error.WriteLine($"brickd: {reason.ReplaceLineEndings(" ")}");
        return 1;
    }
}
