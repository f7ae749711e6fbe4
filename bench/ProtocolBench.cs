using System.Diagnostics;
using System.Globalization;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;
using Brickfs.Translators.Protocol;

namespace Brickfs.Bench;

/// <summary>
/// <c>brickfs-bench protocol</c>: round-trip latency and throughput of the real wire codec
/// (protocol/client to protocol/server over loopback TCP) with N requests in flight, without
/// FUSE, so changes to the network path can be measured in seconds. By default the brick runs
/// in this process (storage/memory, or storage/posix with --dir); --remote HOST:PORT:BRICK
/// measures a separate brickd. --direct runs the same loops on the brick graph itself (no
/// protocol), the floor the network path is compared with.
/// </summary>
public static class ProtocolBench
{
    private const string Usage = """
        usage: brickfs-bench protocol [--dir DIR | --remote HOST:PORT:BRICK] [--direct]
                                      [--inflight 1,4,16] [--seconds 3] [--ops read,write,stat,create]
          --dir DIR        brick on storage/posix in DIR (default: storage/memory)
          --remote H:P:B   a running brickd (brick B) instead of an in-process brick
          --direct         call the brick graph without the protocol (baseline)
          --inflight LIST  concurrent request loops (default 1,4,16)
          --seconds S      per measurement (default 3)
          --ops LIST       read, write (4 KiB), read1m, write1m (1 MiB), stat, create (create+flush+release)
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        string? dir = null, remote = null;
        bool direct = false;
        int[] inflight = [1, 4, 16];
        double seconds = 3;
        string[] ops = ["read", "write", "stat", "create"];
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--dir": dir = Next(); break;
                case "--remote": remote = Next(); break;
                case "--direct": direct = true; break;
                case "--inflight": inflight = Next().Split(',').Select(int.Parse).ToArray(); break;
                case "--seconds": seconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--ops": ops = Next().Split(','); break;
                case "--help": Console.Out.WriteLine(Usage); return 0;
                default: Console.Error.WriteLine(Usage); return 1;
            }
        }

        TranslatorGraph? brick = null;
        TranslatorGraph? client = null;
        try
        {
            Translator top;
            if (remote is null)
            {
                string storage = dir is null
                    ? "volume pb-store\n    type storage/memory\nend-volume\n"
                    : $"volume pb-store\n    type storage/posix\n    option directory {dir}\nend-volume\n";
                brick = GraphBuilder.BuildText(storage + """
                    volume pb-brick
                        type features/locks
                        subvolumes pb-store
                    end-volume
                    volume pb-server
                        type protocol/server
                        option listen-host 127.0.0.1
                        option listen-port 0
                        subvolumes pb-brick
                    end-volume
                    """);
                await brick.InitAsync(CancellationToken.None);
                remote = $"127.0.0.1:{brick.Find<ProtocolServerTranslator>().ListenEndPoint!.Port}:pb-brick";
            }
            if (direct)
            {
                if (brick is null) throw new ArgumentException("--direct needs the in-process brick");
                top = brick["pb-brick"];
            }
            else
            {
                var p = remote.Split(':');
                client = GraphBuilder.BuildText($"""
                    volume pb-client
                        type protocol/client
                        option remote-host {p[0]}
                        option remote-port {p[1]}
                        option remote-subvolume {p[2]}
                    end-volume
                    """);
                await client.InitAsync(CancellationToken.None);
                top = client.Top;
                if (!((ProtocolClientTranslator)top).IsConnected) throw new IOException($"cannot connect to {remote}");
            }
            Console.Out.WriteLine($"protocol bench: {(direct ? "direct (no protocol)" : remote)}, brick {(brick is null ? "remote" : dir ?? "storage/memory")}, {seconds:0.#} s per figure, load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
            foreach (var op in ops)
            foreach (int n in inflight)
            {
                var r = await MeasureAsync(top, op, n, TimeSpan.FromSeconds(seconds));
                string mib = op.EndsWith("1m", StringComparison.Ordinal) ? $"   {r.Ops:0} MiB/s" : "";
                Console.Out.WriteLine($"  {op,-7} inflight {n,3}: {r.Ops,9:0} ops/s   p50 {r.P50Us,7:0} us   p99 {r.P99Us,7:0} us{mib}");
            }
            return 0;
        }
        finally
        {
            if (client is not null) await client.DisposeAsync();
            if (brick is not null) await brick.DisposeAsync();
        }
    }

    private sealed record Result(double Ops, double P50Us, double P99Us);

    private static FopContext Ctx() => new() { Uid = 0, Gid = 0, ClientId = "bench" };

    private static async Task<Result> MeasureAsync(Translator top, string op, int inflight, TimeSpan duration)
    {
        var ctx = Ctx();
        // One file per loop, 1 MiB, so reads hit data and loops do not share a handle.
        var files = new List<(FileHandle Fd, string Name)>();
        var payload = new byte[4096];
        Random.Shared.NextBytes(payload);
        var big = new byte[1 << 20];
        var dirName = $"pb-{op}-{inflight}-{Environment.ProcessId}";
        var dirGfid = Gfid.NewRandom();
        Check(await top.MkdirAsync(ctx, Gfid.Root, dirName, 0x1ED, dirGfid), "mkdir");
        for (int i = 0; i < inflight; i++)
        {
            var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
            Check(await top.CreateAsync(ctx, dirGfid, $"f{i}", 0x1A4, fd), "create");
            Check(await top.WriteAsync(ctx, fd, 0, big), "layout write");
            files.Add((fd, $"f{i}"));
        }

        var stop = Stopwatch.StartNew();
        var latencies = new List<long>[inflight];
        long created = 0;
        async Task Loop(int k)
        {
            var lat = latencies[k] = new List<long>(1 << 16);
            var (fd, name) = files[k];
            var rnd = new Random(k);
            while (stop.Elapsed < duration)
            {
                long t0 = Stopwatch.GetTimestamp();
                long off = rnd.Next(256) * 4096L;
                switch (op)
                {
                    case "read":
                        using (var b = Check(await top.ReadAsync(ctx, fd, off, 4096), "read")) { }
                        break;
                    case "write":
                        Check(await top.WriteAsync(ctx, fd, off, payload), "write");
                        break;
                    case "read1m":
                        using (var b = Check(await top.ReadAsync(ctx, fd, 0, 1 << 20), "read")) { }
                        break;
                    case "write1m":
                        Check(await top.WriteAsync(ctx, fd, 0, big), "write");
                        break;
                    case "stat":
                        Check(await top.LookupAsync(ctx, dirGfid, name), "lookup");
                        break;
                    case "create":
                    {
                        var nfd = new FileHandle(Gfid.NewRandom(), OpenFlags.WriteOnly | OpenFlags.Create);
                        long c = Interlocked.Increment(ref created);
                        Check(await top.CreateAsync(ctx, dirGfid, $"c{c}", 0x1A4, nfd), "create");
                        Check(await top.FlushAsync(ctx, nfd), "flush");
                        Check(await top.ReleaseAsync(ctx, nfd), "release");
                        break;
                    }
                    default:
                        throw new ArgumentException($"unknown op {op}");
                }
                lat.Add(Stopwatch.GetTimestamp() - t0);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, inflight).Select(k => Task.Run(() => Loop(k))));
        double elapsed = stop.Elapsed.TotalSeconds;
        foreach (var (fd, _) in files) await top.ReleaseAsync(ctx, fd);
        var all = latencies.SelectMany(l => l).Order().ToArray();
        double Us(long ticks) => ticks * 1e6 / Stopwatch.Frequency;
        return new Result(all.Length / elapsed, Us(all[all.Length / 2]), Us(all[(int)(all.Length * 0.99)]));
    }

    private static T Check<T>(FopResult<T> r, string what) => r.Ok ? r.Value : throw new IOException($"{what}: {r.Error}");

    private static void Check(FopResult r, string what)
    {
        if (!r.Ok) throw new IOException($"{what}: {r.Error}");
    }
}
