using System.Diagnostics;
using Brickfs.Translators.Core;
using Brickfs.Translators.Graph;

namespace Brickfs.Bench;

/// <summary>
/// <c>brickfs-bench --bitrot-micro DIR [ROUNDS]</c>: features/bitrot's own cost, without FUSE or
/// the network. The brick graph runs in-process over storage/posix on DIR (a Btrfs directory),
/// once with features/bitrot off and once on, taking turns for ROUNDS rounds; each round times a
/// sequential 1 MiB write of 256 MiB with 4 writes in flight (as the kernel sends them), an
/// aligned 1 MiB read of it, and 4 KiB random writes (4 files, one write in flight each).
/// Prints the median per workload and the on/off ratio, and the process CPU time per operation
/// (less disturbed than wall time by other work on a loaded machine).
/// </summary>
public static class BitrotMicro
{
    private const long SeqSize = 256L << 20;
    private const int RandFileSize = 64 << 20;
    private const int RandWrites = 4000;

    public static async Task<int> RunAsync(string dir, int rounds)
    {
        var results = new Dictionary<(string Workload, bool On), List<double>>();
        void Add(string w, bool on, double v)
        {
            if (!results.TryGetValue((w, on), out var l)) results[(w, on)] = l = [];
            l.Add(v);
            Console.Error.WriteLine($"  {w} bitrot {(on ? "on" : "off")}: {v:0.#} (load {File.ReadAllText("/proc/loadavg").Split(' ')[0]})");
        }
        for (int r = 0; r < rounds; r++)
        {
            foreach (bool on in new[] { false, true })
            {
                string brick = Path.Combine(dir, $"micro-{(on ? "on" : "off")}");
                if (Directory.Exists(brick)) Directory.Delete(brick, true);
                Directory.CreateDirectory(brick);
                var graph = GraphBuilder.BuildText($"""
                    volume p
                        type storage/posix
                        option directory {brick}
                    end-volume
                    volume b
                        type features/bitrot
                        option enable {(on ? "on" : "off")}
                        subvolumes p
                    end-volume
                    """);
                await graph.InitAsync(CancellationToken.None);
                try
                {
                    var top = graph.Top;
                    var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                    double CpuPerOp(int ops)
                    {
                        var now = Process.GetCurrentProcess().TotalProcessorTime;
                        double us = (now - cpu).TotalMicroseconds / ops;
                        cpu = now;
                        return us;
                    }
                    Add("sequential write 1 MiB, 4 in flight (MiB/s)", on, await SeqWriteAsync(top));
                    Add("  CPU per 1 MiB write (us)", on, CpuPerOp((int)(SeqSize >> 20)));
                    Add("sequential read 1 MiB (MiB/s)", on, await SeqReadAsync(top));
                    Add("  CPU per 1 MiB read (us)", on, CpuPerOp((int)(SeqSize >> 20)));
                    await LayOutRandFilesAsync(top);
                    cpu = Process.GetCurrentProcess().TotalProcessorTime;
                    Add("4 KiB random write, 4 files (writes/s)", on, await RandWriteAsync(top));
                    Add("  CPU per 4 KiB write (us)", on, CpuPerOp(4 * RandWrites));
                }
                finally
                {
                    await graph.DisposeAsync();
                    Directory.Delete(brick, true);
                }
            }
        }
        Console.WriteLine($"{"workload (median of " + rounds + ")",-48}{"off",12}{"on",12}{"on/off",10}");
        foreach (var w in results.Keys.Select(k => k.Workload).Distinct())
        {
            double off = Median(results[(w, false)]), on = Median(results[(w, true)]);
            Console.WriteLine($"{w,-48}{off,12:0.0}{on,12:0.0}{on / off * 100,9:0.0}%");
        }
        return 0;
    }

    private static double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);

    private static readonly FopContext Ctx = FopContext.Internal();

    private static async Task<FileHandle> CreateAsync(Translator top, string name)
    {
        var fd = new FileHandle(Gfid.NewRandom(), OpenFlags.ReadWrite | OpenFlags.Create);
        var r = await top.CreateAsync(Ctx, Gfid.Root, name, 0x1A4, fd);
        if (!r.Ok) throw new InvalidOperationException($"create {name}: {r.Error}");
        return fd;
    }

    private static async Task<double> SeqWriteAsync(Translator top)
    {
        var fd = await CreateAsync(top, "seq");
        var data = new byte[1 << 20];
        Random.Shared.NextBytes(data);
        var sw = Stopwatch.StartNew();
        long next = 0;
        async Task Writer()
        {
            while (true)
            {
                long at = Interlocked.Add(ref next, data.Length) - data.Length;
                if (at >= SeqSize) return;
                var w = await top.WriteAsync(Ctx, fd, at, data);
                if (!w.Ok) throw new InvalidOperationException($"write: {w.Error}");
            }
        }
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(Writer)));
        await top.FsyncAsync(Ctx, fd, false);
        double mibps = SeqSize / 1048576.0 / sw.Elapsed.TotalSeconds;
        await top.ReleaseAsync(Ctx, fd);
        return mibps;
    }

    private static async Task<double> SeqReadAsync(Translator top)
    {
        var l = await top.LookupAsync(Ctx, Gfid.Root, "seq");
        var fd = new FileHandle(l.Value.Gfid, OpenFlags.ReadOnly);
        await top.OpenAsync(Ctx, fd);
        var sw = Stopwatch.StartNew();
        for (long at = 0; at < SeqSize; at += 1 << 20)
        {
            var r = await top.ReadAsync(Ctx, fd, at, 1 << 20);
            if (!r.Ok) throw new InvalidOperationException($"read: {r.Error}");
            r.Value.Dispose();
        }
        double mibps = SeqSize / 1048576.0 / sw.Elapsed.TotalSeconds;
        await top.ReleaseAsync(Ctx, fd);
        return mibps;
    }

    private static async Task LayOutRandFilesAsync(Translator top)
    {
        var fill = new byte[1 << 20];
        Random.Shared.NextBytes(fill);
        for (int i = 0; i < 4; i++)
        {
            var fd = await CreateAsync(top, $"rand{i}");
            for (long at = 0; at < RandFileSize; at += fill.Length) await top.WriteAsync(Ctx, fd, at, fill);
            await top.ReleaseAsync(Ctx, fd);
        }
    }

    private static async Task<double> RandWriteAsync(Translator top)
    {
        var fds = new List<FileHandle>();
        for (int i = 0; i < 4; i++)
        {
            var l = await top.LookupAsync(Ctx, Gfid.Root, $"rand{i}");
            var again = new FileHandle(l.Value.Gfid, OpenFlags.ReadWrite);
            await top.OpenAsync(Ctx, again);
            fds.Add(again);
        }
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(fds.Select((fd, i) => Task.Run(async () =>
        {
            var rng = new Random(i);
            var data = new byte[4096];
            for (int n = 0; n < RandWrites; n++)
            {
                rng.NextBytes(data);
                var w = await top.WriteAsync(Ctx, fd, (long)rng.Next(RandFileSize / 4096) * 4096, data);
                if (!w.Ok) throw new InvalidOperationException($"write: {w.Error}");
            }
        })));
        double rate = 4.0 * RandWrites / sw.Elapsed.TotalSeconds;
        foreach (var fd in fds) await top.ReleaseAsync(Ctx, fd);
        return rate;
    }
}
