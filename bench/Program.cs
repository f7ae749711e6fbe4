using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Brickfs.Bench;

/// <summary>
/// Runs the same workloads on several directories in one run and prints each figure with its
/// ratio to the first (local Btrfs). Usage:
///   brickfs-bench [--quick] [--locks] [--only=W,W...] NAME=DIR NAME=DIR ...      (the first is the baseline)
///   brickfs-bench protocol --help                        (wire round trips without FUSE)
///   brickfs-bench --bitrot-micro DIR [ROUNDS]       (features/bitrot's own cost in-process; see BitrotMicro)
/// --only runs some workloads: seqwrite, seqread, randread, randwrite, small, sqlite.
/// --repeat=N measures each fio, small-file and sqlite workload N times, the targets taking turns,
/// and reports the median per target: on a loaded machine one run of each is mostly noise.
/// Needs fio and sqlite3 on PATH and root (it drops the page cache before read workloads).
///   brickfs-bench --scaling [--quick] NAME=DIR ...     small files from 8 parallel workers (in one
///                                                      directory, then a directory per worker) and
///                                                      ls -l of a 10,000-file directory only
/// --locks runs only the lock workloads (issue 5): the sqlite3 counter from one and from four
/// processes (BEGIN IMMEDIATE; UPDATE; COMMIT, every update checked: zero lost) and the
/// round trip of one fcntl lock + unlock.
/// </summary>
public static class Program
{
    private sealed record Target(string Name, string Dir);
    private sealed record Figure(string Workload, string Unit, Dictionary<string, double> Values);

    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "protocol") return ProtocolBench.RunAsync(args[1..]).GetAwaiter().GetResult();
        if (args.Length >= 2 && args[0] == "--bitrot-micro")
            return BitrotMicro.RunAsync(args[1], args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 3).GetAwaiter().GetResult();
        bool quick = args.Contains("--quick");
        string[] known = ["seqwrite", "seqread", "randread", "randwrite", "small", "sqlite"];
        var only = args.FirstOrDefault(a => a.StartsWith("--only=", StringComparison.Ordinal)) is { } o
            ? o["--only=".Length..].Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet() : known.ToHashSet();
        if (only.Except(known).FirstOrDefault() is { } unknown)
        {
            Console.Error.WriteLine($"brickfs-bench: unknown workload {unknown} (known: {string.Join(", ", known)})");
            return 1;
        }
        var targets = args.Where(a => a.Contains('=') && !a.StartsWith("--", StringComparison.Ordinal)).Select(a => a.Split('=', 2)).Select(p => new Target(p[0], p[1])).ToList();
        if (targets.Count < 2 || args.Contains("--help"))
        {
            Console.Error.WriteLine("usage: brickfs-bench [--quick] [--only=W,W...] BASELINE=DIR NAME=DIR ...");
            return args.Contains("--help") ? 0 : 1;
        }
        foreach (var t in targets)
        {
            if (!Directory.Exists(t.Dir)) { Console.Error.WriteLine($"brickfs-bench: {t.Dir} is not a directory"); return 1; }
        }
        if (args.Contains("--scaling"))
        {
            int files = quick ? 2000 : 10_000;
            var par = new Dictionary<string, (double Create, double Stat, double Ls)>();
            var spread = new Dictionary<string, (double Create, double Stat, double Ls)>();
            foreach (var t in targets) par[t.Name] = ParallelSmallFiles(t, files, ParallelWorkers, dirPerWorker: false);
            foreach (var t in targets) spread[t.Name] = ParallelSmallFiles(t, files, ParallelWorkers, dirPerWorker: true);
            Print(
            [
                new($"small files, {ParallelWorkers} parallel creators: create {files} (4 KiB)", "files/s", par.ToDictionary(p => p.Key, p => p.Value.Create)),
                new($"small files, {ParallelWorkers} parallel workers: stat {files}", "files/s", par.ToDictionary(p => p.Key, p => p.Value.Stat)),
                new($"ls -l of a {files}-file directory", "s", par.ToDictionary(p => p.Key, p => p.Value.Ls)),
                new($"same, a directory per worker: create {files} (4 KiB)", "files/s", spread.ToDictionary(p => p.Key, p => p.Value.Create)),
                new($"same, a directory per worker: stat {files}", "files/s", spread.ToDictionary(p => p.Key, p => p.Value.Stat)),
            ], targets);
            return 0;
        }
        string seqSize = quick ? "256M" : "1G";
        int smallFiles = quick ? 1000 : 5000;
        int sqliteTx = quick ? 200 : 1000;
        int randSeconds = quick ? 5 : 15;

        int repeat = args.FirstOrDefault(a => a.StartsWith("--repeat=", StringComparison.Ordinal)) is { } rp
            && int.TryParse(rp["--repeat=".Length..], out int n) && n > 0 ? n : 1;
        var figures = new List<Figure>();
        string Repeated = repeat > 1 ? $", median of {repeat}" : "";
        void Measure(string workload, string unit, Func<Target, double> run)
        {
            var runs = targets.ToDictionary(t => t.Name, _ => new List<double>());
            for (int r = 0; r < repeat; r++)
            {
                foreach (var t in targets)
                {
                    double v = run(t);
                    runs[t.Name].Add(v);
                    Console.Error.WriteLine($"  {workload} on {t.Name}: {v:0.##} {unit} (load {File.ReadAllText("/proc/loadavg").Split(' ')[0]})");
                }
            }
            figures.Add(new Figure(workload + Repeated, unit, runs.ToDictionary(p => p.Key, p => Median(p.Value))));
        }
        static double Median(IEnumerable<double> values) => values.Order().ElementAt(values.Count() / 2);

        if (args.Contains("--locks"))
        {
            int counterTx = quick ? 100 : 400;
            int lockPairs = quick ? 200 : 1000;
            Measure($"sqlite3 counter, 1 process ({counterTx} tx, BEGIN IMMEDIATE)", "tx/s", t => Counter(t, 1, counterTx));
            Measure($"sqlite3 counter, 4 processes ({counterTx / 4 * 4} tx in all)", "tx/s", t => Counter(t, 4, counterTx / 4));
            Measure($"fcntl lock + unlock round trip ({lockPairs} pairs)", "us", t => OperatingSystem.IsLinux() ? LockRoundTrip(t, lockPairs) : double.NaN);
            Print(figures, targets);
            return 0;
        }

        if (only.Contains("seqwrite") || only.Contains("seqread"))
            Measure($"sequential write {seqSize} (1 MiB blocks)", "MiB/s", t =>
                Fio(t, "seqwrite", "write", "1M", seqSize, extra: ["--end_fsync=1"]).WriteMiBps);
        if (only.Contains("seqread"))
            Measure($"sequential read {seqSize} (1 MiB blocks)", "MiB/s", t =>
            {
                DropCaches();
                return Fio(t, "seqwrite", "read", "1M", seqSize).ReadMiBps;
            });
        // fio lays out missing files with writes of the job's block size; 4 KiB layout writes
        // would dominate the run on a replicated volume (a transaction each). Lay the files out
        // with 1 MiB writes first (not measured); the random jobs reuse them.
        if (only.Contains("randread") || only.Contains("randwrite"))
            foreach (var t in targets) Fio(t, "rand", "write", "1M", "256M", jobs: 4);
        if (only.Contains("randread"))
            Measure("4 KiB random read (4 jobs, O_DIRECT)", "IOPS", t =>
                Fio(t, "rand", "randread", "4k", "256M", jobs: 4, seconds: randSeconds, extra: ["--direct=1"]).ReadIops);
        if (only.Contains("randwrite"))
            Measure("4 KiB random write (4 jobs, O_DIRECT)", "IOPS", t =>
                Fio(t, "rand", "randwrite", "4k", "256M", jobs: 4, seconds: randSeconds, extra: ["--direct=1"]).WriteIops);

        if (only.Contains("small"))
        {
            // Like the other workloads, --repeat=N runs it N times with the targets taking turns
            // and reports each figure's median.
            var small = targets.ToDictionary(t => t.Name, _ => new List<(double Create, double Stat, double Read, double Delete)>());
            for (int r = 0; r < repeat; r++)
                foreach (var t in targets) small[t.Name].Add(SmallFiles(t, smallFiles));
            figures.Add(new Figure($"small files: create {smallFiles} (4 KiB){Repeated}", "files/s", small.ToDictionary(p => p.Key, p => Median(p.Value.Select(v => v.Create)))));
            figures.Add(new Figure($"small files: stat {smallFiles}{Repeated}", "files/s", small.ToDictionary(p => p.Key, p => Median(p.Value.Select(v => v.Stat)))));
            figures.Add(new Figure($"small files: read {smallFiles}{Repeated}", "files/s", small.ToDictionary(p => p.Key, p => Median(p.Value.Select(v => v.Read)))));
            figures.Add(new Figure($"small files: delete {smallFiles}{Repeated}", "files/s", small.ToDictionary(p => p.Key, p => Median(p.Value.Select(v => v.Delete)))));
        }
        if (only.Contains("sqlite"))
            Measure($"sqlite3 insert transactions ({sqliteTx}, DELETE journal, synchronous=FULL)", "tx/s", t => Sqlite(t, sqliteTx));

        Print(figures, targets);
        return 0;
    }

    private static void Print(List<Figure> figures, List<Target> targets)
    {
        var baseline = targets[0].Name;
        var sb = new StringBuilder();
        int w = figures.Max(f => f.Workload.Length + f.Unit.Length + 3);
        sb.Append("workload".PadRight(w));
        foreach (var t in targets) sb.Append(t.Name.PadLeft(16));
        foreach (var t in targets.Skip(1)) sb.Append($"{t.Name}/{baseline}".PadLeft(Math.Max(14, t.Name.Length + baseline.Length + 3)));
        sb.AppendLine();
        foreach (var f in figures)
        {
            sb.Append($"{f.Workload} ({f.Unit})".PadRight(w));
            foreach (var t in targets) sb.Append(f.Values[t.Name].ToString("0.0", CultureInfo.InvariantCulture).PadLeft(16));
            foreach (var t in targets.Skip(1))
            {
                double ratio = f.Values[baseline] > 0 ? f.Values[t.Name] / f.Values[baseline] : double.NaN;
                sb.Append($"{ratio * 100:0.0}%".PadLeft(Math.Max(14, t.Name.Length + baseline.Length + 3)));
            }
            sb.AppendLine();
        }
        Console.Write(sb.ToString());
    }

    private sealed record FioResult(double ReadMiBps, double WriteMiBps, double ReadIops, double WriteIops);

    private static FioResult Fio(Target t, string file, string rw, string bs, string size, int jobs = 1, int seconds = 0, string[]? extra = null)
    {
        var dir = Path.Combine(t.Dir, "bench-fio");
        Directory.CreateDirectory(dir);
        var args = new List<string>
        {
            "--name=" + file, "--directory=" + dir, "--rw=" + rw, "--bs=" + bs, "--size=" + size, "--numjobs=" + jobs,
            "--ioengine=psync", "--group_reporting", "--output-format=json",
        };
        if (seconds > 0) args.AddRange(["--time_based", "--runtime=" + seconds]);
        if (extra is not null) args.AddRange(extra);
        var (code, stdout, stderr) = Run("fio", args, TimeSpan.FromMinutes(10));
        if (code != 0) throw new InvalidOperationException($"fio failed on {t.Name}: {stderr}");
        using var doc = JsonDocument.Parse(stdout[stdout.IndexOf('{')..]);
        var job = doc.RootElement.GetProperty("jobs")[0];
        double Bw(string k) => job.GetProperty(k).GetProperty("bw").GetDouble() / 1024.0; // KiB/s -> MiB/s
        double Iops(string k) => job.GetProperty(k).GetProperty("iops").GetDouble();
        return new FioResult(Bw("read"), Bw("write"), Iops("read"), Iops("write"));
    }

    private static (double, double, double, double) SmallFiles(Target t, int count)
    {
        var dir = Path.Combine(t.Dir, "bench-small");
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.CreateDirectory(dir);
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        var buf = new byte[4096];
        double Rate(Action<int> op)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < count; i++) op(i);
            return count / sw.Elapsed.TotalSeconds;
        }
        string P(int i) => Path.Combine(dir, $"f{i:D6}");
        double create = Rate(i => File.WriteAllBytes(P(i), data));
        DropCaches();
        double stat = Rate(i => _ = new FileInfo(P(i)).Length);
        double read = Rate(i =>
        {
            using var fs = new FileStream(P(i), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
            _ = fs.Read(buf, 0, buf.Length);
        });
        double delete = Rate(i => File.Delete(P(i)));
        Directory.Delete(dir);
        Console.Error.WriteLine($"  small files on {t.Name}: create {create:0} stat {stat:0} read {read:0} delete {delete:0} /s");
        return (create, stat, read, delete);
    }

    private const int ParallelWorkers = 8;

    /// <summary>
    /// Small files from <paramref name="workers"/> threads at once (where distribute can use its
    /// bricks side by side): creates, stats after dropping caches, and one <c>ls -l</c> of the
    /// whole directory after dropping caches again (seconds).
    /// </summary>
    /// <summary>
    /// <paramref name="workers"/> threads create, then stat, <paramref name="count"/> files, all in
    /// one directory or (<paramref name="dirPerWorker"/>) spread over one directory per worker.
    /// The kernel holds a directory's lock for each O_CREAT open across its round trips, so in
    /// one directory creates take turns whatever the bricks; in many they can run side by side.
    /// ls -l times the one directory (0 when spread).
    /// </summary>
    private static (double Create, double Stat, double LsSeconds) ParallelSmallFiles(Target t, int count, int workers, bool dirPerWorker)
    {
        var dir = Path.Combine(t.Dir, dirPerWorker ? "bench-parallel-dirs" : "bench-parallel");
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.CreateDirectory(dir);
        if (dirPerWorker)
        {
            for (int w = 0; w < workers; w++) Directory.CreateDirectory(Path.Combine(dir, $"w{w}"));
        }
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        var options = new ParallelOptions { MaxDegreeOfParallelism = workers };
        string P(int i) => dirPerWorker ? Path.Combine(dir, $"w{i % workers}", $"f{i:D6}") : Path.Combine(dir, $"f{i:D6}");
        double Rate(Action<int> op)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, count, options, op);
            return count / sw.Elapsed.TotalSeconds;
        }
        double create = Rate(i => File.WriteAllBytes(P(i), data));
        DropCaches();
        double stat = Rate(i => _ = new FileInfo(P(i)).Length);
        double lsSeconds = 0;
        if (!dirPerWorker)
        {
            DropCaches();
            var ls = Stopwatch.StartNew();
            var (code, stdout, stderr) = Run("ls", ["-l", dir], TimeSpan.FromMinutes(10));
            ls.Stop();
            if (code != 0) throw new InvalidOperationException($"ls -l failed on {t.Name}: {stderr}");
            int listed = stdout.Split('\n').Count(l => l.StartsWith('-'));
            if (listed != count) throw new InvalidOperationException($"ls -l on {t.Name} listed {listed} files, expected {count}");
            lsSeconds = ls.Elapsed.TotalSeconds;
        }
        Parallel.For(0, count, options, i => File.Delete(P(i)));
        Directory.Delete(dir, recursive: true);
        Console.Error.WriteLine($"  parallel small files{(dirPerWorker ? " (a directory per worker)" : "")} on {t.Name}: create {create:0} stat {stat:0} /s, ls -l {lsSeconds:0.00} s");
        return (create, stat, lsSeconds);
    }

    private static double Sqlite(Target t, int transactions)
    {
        var db = Path.Combine(t.Dir, "bench.db");
        foreach (var f in new[] { db, db + "-journal" }) if (File.Exists(f)) File.Delete(f);
        var sql = new StringBuilder("PRAGMA journal_mode=DELETE;\nPRAGMA synchronous=FULL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n");
        for (int i = 0; i < transactions; i++) sql.Append($"INSERT INTO t(v) VALUES('row {i} {new string('x', 100)}');\n");
        var sw = Stopwatch.StartNew();
        var (code, _, stderr) = Run("sqlite3", [db], TimeSpan.FromMinutes(10), sql.ToString());
        sw.Stop();
        if (code != 0) throw new InvalidOperationException($"sqlite3 failed on {t.Name}: {stderr}");
        var (_, count, _) = Run("sqlite3", [db, "SELECT count(*) FROM t;"], TimeSpan.FromMinutes(1));
        if (count.Trim() != transactions.ToString(CultureInfo.InvariantCulture))
            throw new InvalidOperationException($"sqlite3 on {t.Name}: {count.Trim()} rows, expected {transactions}");
        File.Delete(db);
        return transactions / sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// <paramref name="processes"/> sqlite3 processes at once, each committing <paramref name="each"/>
    /// increments of one counter; transactions per second of all of them. Throws on any failed
    /// transaction or lost update (the counter must equal the commits).
    /// </summary>
    private static double Counter(Target t, int processes, int each)
    {
        var db = Path.Combine(t.Dir, "bench-counter.db");
        foreach (var f in new[] { db, db + "-journal" }) if (File.Exists(f)) File.Delete(f);
        var (code, _, stderr) = Run("sqlite3", [db], TimeSpan.FromMinutes(1), "PRAGMA journal_mode=DELETE;\nCREATE TABLE counter(v INTEGER NOT NULL);\nINSERT INTO counter VALUES (0);\n");
        if (code != 0) throw new InvalidOperationException($"sqlite3 setup failed on {t.Name}: {stderr}");
        var sql = new StringBuilder(".timeout 120000\nPRAGMA synchronous=FULL;\n");
        for (int i = 0; i < each; i++) sql.Append("BEGIN IMMEDIATE; UPDATE counter SET v = v + 1; COMMIT;\n");
        var sw = Stopwatch.StartNew();
        var runs = Enumerable.Range(0, processes).Select(_ => Task.Run(() => Run("sqlite3", [db], TimeSpan.FromMinutes(20), sql.ToString()))).ToArray();
        Task.WaitAll(runs);
        sw.Stop();
        foreach (var r in runs)
        {
            if (r.Result.Code != 0 || r.Result.Stderr.Length > 0) throw new InvalidOperationException($"sqlite3 counter failed on {t.Name}: {r.Result.Stderr}");
        }
        var (_, v, _) = Run("sqlite3", [db, "SELECT v FROM counter;"], TimeSpan.FromMinutes(1));
        if (v.Trim() != (processes * each).ToString(CultureInfo.InvariantCulture))
            throw new InvalidOperationException($"sqlite3 counter on {t.Name}: v = {v.Trim()} after {processes * each} commits (lost updates)");
        File.Delete(db);
        return processes * each / sw.Elapsed.TotalSeconds;
    }

    /// <summary>Microseconds per exclusive fcntl lock of one byte plus its unlock (FileStream.Lock is fcntl F_SETLK on Linux).</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private static double LockRoundTrip(Target t, int pairs)
    {
        var path = Path.Combine(t.Dir, "bench-lock");
        using var fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite, 1, FileOptions.None);
        fs.Lock(0, 1);
        fs.Unlock(0, 1);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < pairs; i++)
        {
            fs.Lock(0, 1);
            fs.Unlock(0, 1);
        }
        sw.Stop();
        fs.Dispose();
        File.Delete(path);
        return sw.Elapsed.TotalMicroseconds / pairs;
    }

    private static void DropCaches()
    {
        Run("sync", [], TimeSpan.FromMinutes(2));
        File.WriteAllText("/proc/sys/vm/drop_caches", "3");
    }

    private static (int Code, string Stdout, string Stderr) Run(string file, IEnumerable<string> args, TimeSpan timeout, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        if (!p.WaitForExit(timeout))
        {
            p.Kill(true);
            throw new TimeoutException($"{file} ran past {timeout}");
        }
        return (p.ExitCode, o.Result, e.Result);
    }
}
