using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// Replica 3 on three hosts (network namespaces, one real brickd each, bricks on Btrfs), mounted
/// through the real FUSE client over the bridge, with faults made by cutting links and killing
/// brick processes while programs write. Each test leaves every host connected and every brick
/// running; the copies are compared byte by byte directly on the brick directories.
/// </summary>
[NonParallelizable]
[CancelAfter(600_000)]
public sealed class ReplicateFaultTests
{
    private const int PingTimeoutSeconds = 3;
    /// <summary>How much later than the ping timeout a stalled fop may end (scheduling on a shared 2-core machine).</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(5);
    /// <summary>Lines (or commits) a program must complete to count as "going on" in a phase.</summary>
    private const int Progress = 15;
    private static readonly TimeSpan PhaseTimeout = TimeSpan.FromSeconds(PingTimeoutSeconds + 40);
    private static readonly TimeSpan HealTimeout = TimeSpan.FromSeconds(60);

    private ReplicatedHostsVolume _v = null!;

    [OneTimeSetUp]
    public void StartHosts() => _v = new ReplicatedHostsVolume(3, PingTimeoutSeconds);

    [OneTimeTearDown]
    public void StopHosts() => _v?.Dispose();

    /// <summary>Each test starts with the mount connected to all three bricks: a new file lands on every brick.</summary>
    [SetUp]
    public async Task WaitForAllBricks()
    {
        int n = 0;
        await Eventually.HoldsAsync(PhaseTimeout, () =>
        {
            string name = $".connected-{TestContext.CurrentContext.Test.MethodName}-{n++}";
            return Shell.Sh($"echo x > '{_v.PathOf(name)}'", TimeSpan.FromSeconds(PingTimeoutSeconds * 4)).Ok
                   && _v.Bricks.All(b => File.Exists(Path.Combine(b.Directory, name)));
        }, "the mount writes to all three bricks");
    }

    [TearDown]
    public void ReconnectEverything()
    {
        if (_v is null) return;
        _v.Net.RestoreAll();
        foreach (var b in _v.Bricks) if (b.Pid is null) b.Start();
    }

    [Test]
    [Order(1)]
    public async Task ACutHostMissesWritesThatHealCopiesOnceItReturns()
    {
        using var writer = new AppendWriter(_v, "cut-one");
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "before the cut");

        _v.Net.Cut(2);
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "with host 2 cut off (writes go on with 2 of 3)");

        _v.Net.Restore(2);
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "after host 2 returned");
        writer.Stop();

        await HealUntilIdenticalAsync();
        writer.CheckNothingAcknowledgedIsLost(brick: 2);
    }

    [Test]
    [Order(2)]
    public async Task ABrickKilledMidWriteIsHealedAfterItsRestart()
    {
        using var writer = new AppendWriter(_v, "kill-one");
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "before the kill");

        _v.Bricks[1].Kill();
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "with brick 1 killed (writes go on with 2 of 3)");

        _v.Bricks[1].Start();
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "after brick 1 restarted");
        writer.Stop();

        await HealUntilIdenticalAsync();
        writer.CheckNothingAcknowledgedIsLost(brick: 1);
    }

    [Test]
    [Order(3)]
    public async Task BelowQuorumWritesFailWithEnotconnWithinThePingTimeoutReadsGoOnAndNothingAcknowledgedIsLost()
    {
        using var writer = new AppendWriter(_v, "cut-two");
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "before the cuts");
        var probe = Path.Combine(writer.Directory, "probe");
        Shell.Must($"echo before > '{probe}'");

        _v.Net.Cut(1);
        _v.Net.Cut(2);
        var sw = Stopwatch.StartNew();
        var write = Shell.Sh($"/bin/echo during >> '{probe}'", TimeSpan.FromSeconds(PingTimeoutSeconds * 4) + Slack);
        sw.Stop();
        Assert.That(write.Ok, Is.False, "a write with 1 of 3 bricks reachable fails");
        Assert.That(write.Stderr, Does.Contain("Transport endpoint is not connected"), $"{write}\nmount log:\n{_v.LogTail()}");
        Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(PingTimeoutSeconds) + Slack),
            "a write stalled on silent bricks ends within the ping timeout + slack");

        await Eventually.HoldsAsync(PhaseTimeout, () => writer.Errors.Contains("Transport endpoint is not connected", StringComparison.Ordinal),
            "the writer's appends fail with ENOTCONN too");
        var ackedBeforeRead = writer.Acknowledged();
        var read = Shell.Sh($"cat '{writer.Directory}/f0' && cat '{probe}'", TimeSpan.FromSeconds(PingTimeoutSeconds * 4) + Slack);
        Assert.That(read.Ok, Is.True, $"reads go on from the remaining copy: {read}");
        var lines = read.Stdout.Split('\n').ToHashSet();
        Assert.That(lines, Does.Contain("before"));
        foreach (var (file, n) in ackedBeforeRead) if (file == 0) Assert.That(lines, Does.Contain($"line {n}"), $"acknowledged line {n} of f0 is readable");

        _v.Net.Restore(1);
        _v.Net.Restore(2);
        await writer.WaitForProgressAsync(Progress, PhaseTimeout, "after both hosts returned");
        writer.Stop();

        await HealUntilIdenticalAsync();
        writer.CheckNothingAcknowledgedIsLost(brick: 0);
        writer.CheckNothingAcknowledgedIsLost(brick: 2);
    }

    [Test]
    [Order(4)]
    public async Task AlternatingSingleHostPartitionsUnderQuorumLeaveTheOverlapCopyAsSourceNotASplitBrain()
    {
        // With quorum auto any two write majorities share a host, whose copy saw both writes:
        // heal needs no policy and the second write wins everywhere.
        var dir = Dir("alternate-quorum");
        var x = Path.Combine(dir, "x");
        Shell.Must($"echo original > '{x}'");

        _v.Net.Cut(0);
        await WriteEventuallyAsync(x, "first partition: host 0 away\n");
        _v.Net.Restore(0);
        _v.Net.Cut(1);
        await WriteEventuallyAsync(x, "second partition: host 1 away\n");
        _v.Net.Restore(1);

        await HealUntilIdenticalAsync();
        Assert.That(File.ReadAllText(Path.Combine(_v.Bricks[0].Directory, "alternate-quorum", "x")), Is.EqualTo("second partition: host 1 away\n"));
        await Eventually.HoldsAsync(PhaseTimeout, () => Shell.Sh($"cat '{x}'").Stdout == "second partition: host 1 away\n",
            "the mount reads the last acknowledged write");
        Assert.That(_v.Shd("info").Stdout, Does.Contain($"Split-brain entries of {ReplicatedHostsVolume.VolumeName}: 0"));
    }

    [Test]
    [Order(6)] // last: a failure here leaves split-brain files behind
    public async Task AlternatingPartitionsWithoutQuorumMakeASplitBrainThatIsReportedAndResolvedByEachPolicy()
    {
        var dir = Dir("split");
        string Name(string f) => Path.Combine(dir, f);
        // Per file: what host 2 alone gets, then what hosts 0+1 get; each policy must pick a different side.
        var sides = new Dictionary<string, (string Lone, string Pair)>
        {
            ["by-size"] = (new string('L', 5000) + "\n", "pair\n"),    // bigger-file: the lone copy
            ["by-mtime"] = (new string('L', 5000) + "\n", "pair\n"),   // latest-mtime: the pair's copy (written later)
            ["by-brick"] = ("lone\n", new string('P', 5000) + "\n"),   // source-brick host 2: the lone, smaller and older copy
        };
        foreach (var f in sides.Keys) Shell.Must($"echo original > '{Name(f)}'");
        await HealUntilIdenticalAsync();

        using var noQuorum = new ExtraMount("rep-noquorum", _v.Volfile("quorum-type none"));
        string Other(string f) => Path.Combine(noQuorum.MountPoint, "split", f);
        Assert.That(File.ReadAllText(Other("by-size")), Is.EqualTo("original\n"));

        _v.Net.Cut(0);
        _v.Net.Cut(1);
        foreach (var (f, s) in sides) await WriteEventuallyAsync(Other(f), s.Lone, "host 2 alone (quorum none)");
        _v.Net.Restore(0);
        _v.Net.Restore(1);
        _v.Net.Cut(2);
        foreach (var (f, s) in sides) await WriteEventuallyAsync(Name(f), s.Pair, "hosts 0 and 1 (quorum auto, 2 of 3)");
        _v.Net.Restore(2);

        foreach (var f in sides.Keys)
        {
            await Eventually.HoldsAsync(PhaseTimeout, () =>
            {
                var r = Shell.Sh($"cat '{Name(f)}'", TimeSpan.FromSeconds(PingTimeoutSeconds * 4));
                return !r.Ok && r.Stderr.Contains("Input/output error", StringComparison.Ordinal);
            }, $"reading {f} in split-brain fails with EIO through the mount");
        }
        var info = _v.Shd("info");
        Assert.That(info.Ok, Is.True, info.ToString());
        Assert.That(info.Stdout, Does.Contain($"Split-brain entries of {ReplicatedHostsVolume.VolumeName}: 3"), info.Stdout);
        foreach (var f in sides.Keys) Assert.That(info.Stdout, Does.Contain($"/split/{f} - Is in split-brain"), $"info lists {f} by path");

        Resolve("bigger-file", "/split/by-size");
        Resolve("latest-mtime", "/split/by-mtime");
        Resolve("source-brick", ReplicatedHostsVolume.ChildName(2), "/split/by-brick");

        var expect = new Dictionary<string, string> { ["by-size"] = sides["by-size"].Lone, ["by-mtime"] = sides["by-mtime"].Pair, ["by-brick"] = sides["by-brick"].Lone };
        foreach (var (f, content) in expect)
        {
            for (int b = 0; b < 3; b++)
                Assert.That(File.ReadAllText(Path.Combine(_v.Bricks[b].Directory, "split", f)), Is.EqualTo(content), $"brick {b}'s copy of {f}");
            await Eventually.HoldsAsync(PhaseTimeout, () => Shell.Sh($"cat '{Name(f)}'").Stdout == content, $"{f} reads the winner through the mount");
        }
        await HealUntilIdenticalAsync();
    }

    [Test]
    [Order(5)]
    public async Task Sqlite3KeepsEveryCommittedTransactionThroughACutAndABrickKill()
    {
        var dir = Dir("sqlite");
        using var loop = new SqliteLoop(dir, Path.Combine(_v.WorkDir, "sqlite-state"), _v.LogTail);
        await loop.WaitForCommitsAsync(Progress, PhaseTimeout, "before the faults");

        _v.Net.Cut(0);
        await loop.WaitForCommitsAsync(Progress, PhaseTimeout, "with host 0 cut off");
        _v.Net.Restore(0);
        await loop.WaitForCommitsAsync(Progress, PhaseTimeout, "after host 0 returned");
        _v.Bricks[2].Kill();
        await loop.WaitForCommitsAsync(Progress, PhaseTimeout, "with brick 2 killed");
        _v.Bricks[2].Start();
        await loop.WaitForCommitsAsync(Progress, PhaseTimeout, "after brick 2 restarted");
        var committed = loop.Stop();

        await HealUntilIdenticalAsync();
        var db = Path.Combine(dir, "t.db");
        Assert.That(Shell.Must($"sqlite3 '{db}' 'PRAGMA integrity_check;'").Trim(), Is.EqualTo("ok"));
        var rows = Shell.Must($"sqlite3 '{db}' 'SELECT id FROM t;'").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToHashSet();
        var missing = committed.SelectMany(i => new[] { 2L * i, 2L * i + 1 }).Where(id => !rows.Contains(id)).ToList();
        Assert.That(missing, Is.Empty, $"rows of the {committed.Count} transactions sqlite3 reported committed");
        TestContext.Progress.WriteLine($"sqlite3: {committed.Count} transactions committed, {rows.Count} rows, failures: {loop.Failures}");
    }

    // ---- helpers -----------------------------------------------------------------------------

    private string Dir(string name)
    {
        var d = _v.PathOf(name);
        Directory.CreateDirectory(d);
        return d;
    }

    private void Resolve(params string[] args)
    {
        var r = _v.Shd(["split-brain", .. args]);
        Assert.That(r.Ok, Is.True, $"brickfs-shd split-brain {string.Join(' ', args)}: {r}");
    }

    /// <summary>Rewrites a file until one attempt succeeds (a mount may need a moment to notice a returned or cut brick).</summary>
    private static async Task WriteEventuallyAsync(string path, string content, string what = "")
    {
        string last = "";
        bool ok = await Eventually.TryAsync(PhaseTimeout, () =>
        {
            var r = Shell.Run("/bin/sh", ["-c", "printf '%s' \"$1\" > \"$2\"", "sh", content, path], TimeSpan.FromSeconds(PingTimeoutSeconds * 4));
            last = r.ToString();
            return r.Ok;
        }, TimeSpan.FromMilliseconds(250));
        if (!ok) Assert.Fail($"writing {path} ({what}) never succeeded: {last}");
    }

    /// <summary>
    /// Runs brickfs-shd --once until the three brick copies are byte-identical and no pending
    /// counter is left. One pass should do; more are allowed only because a pass heals what the
    /// indexes listed when it started.
    /// </summary>
    private async Task HealUntilIdenticalAsync()
    {
        int passes = 0;
        string state = "";
        bool healed = await Eventually.TryAsync(HealTimeout, () =>
        {
            passes++;
            var r = _v.Shd("--once");
            var copies = Enumerable.Range(0, 3).Select(_v.BrickContents).ToArray();
            var pending = Enumerable.Range(0, 3).SelectMany(_v.NonZeroPending).ToList();
            state = $"shd: {r}\n" + Differences(copies) + (pending.Count > 0 ? "pending: " + string.Join("; ", pending.Take(10)) : "");
            return r.Ok && copies.Skip(1).All(c => c.SequenceEqual(copies[0])) && pending.Count == 0;
        }, TimeSpan.FromMilliseconds(500));
        if (!healed) Assert.Fail($"heal did not converge within {HealTimeout.TotalSeconds} s ({passes} passes):\n{state}");
        TestContext.Progress.WriteLine($"heal converged after {passes} brickfs-shd pass(es)");
        var info = _v.Shd("info");
        Assert.That(info.Ok, Is.True, info.ToString());
        Assert.That(info.Stdout.Split('\n').Where(l => l.StartsWith("Number of entries:", StringComparison.Ordinal)),
            Is.EqualTo(Enumerable.Repeat("Number of entries: 0", 3)), info.Stdout);
    }

    private static string Tail(string s) => s.Length > 2000 ? s[^2000..] : s;

    private static string Differences(SortedDictionary<string, string>[] copies)
    {
        var sb = new StringBuilder();
        foreach (var key in copies.SelectMany(c => c.Keys).Distinct().Order(StringComparer.Ordinal))
        {
            var values = copies.Select(c => c.GetValueOrDefault(key, "(missing)")).ToArray();
            if (values.Distinct().Count() > 1) sb.AppendLine($"{key}: {string.Join(" | ", values)}");
            if (sb.Length > 4000) break;
        }
        return sb.ToString();
    }

    /// <summary>
    /// A shell loop appending numbered lines to f0..f2 and atomically replacing a checksummed
    /// file <c>ck</c> (written to ck.tmp, then renamed), logging every success it was told
    /// about to a file outside the volume, until <see cref="Stop"/>.
    /// </summary>
    private sealed class AppendWriter : IDisposable
    {
        private const string Script = """
            cd "$1" || exit 3
            S="$2"
            exec 2>>"$S/err"
            i=0
            while [ ! -e "$S/stop" ]; do
              i=$((i+1))
              for k in 0 1 2; do
                if /bin/echo "line $i" >> "f$k" 2>>"$S/err"; then echo "$k $i" >> "$S/ack"; else sleep 0.1; fi
              done
              body=$(head -c 6000 /dev/urandom | base64 -w 0)
              sum=$(printf 'version %s\n%s\n' "$i" "$body" | sha256sum | cut -d' ' -f1)
              if printf 'version %s\n%s\n%s\n' "$i" "$body" "$sum" > ck.tmp 2>>"$S/err" && mv -f ck.tmp ck 2>>"$S/err"; then
                echo "ck $i" >> "$S/ack"
              fi
            done
            """;

        private readonly ReplicatedHostsVolume _v;
        private readonly string _name;
        private readonly string _state;
        private readonly Process _process;
        private int _mark;

        public string Directory { get; }

        public AppendWriter(ReplicatedHostsVolume v, string name)
        {
            _v = v;
            _name = name;
            Directory = v.PathOf(name);
            System.IO.Directory.CreateDirectory(Directory);
            _state = Path.Combine(v.WorkDir, name + "-state");
            System.IO.Directory.CreateDirectory(_state);
            File.WriteAllText(Path.Combine(_state, "ack"), "");
            var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            foreach (var a in new[] { "-c", Script, "writer", Directory, _state }) psi.ArgumentList.Add(a);
            _process = Process.Start(psi)!;
        }

        private string[] AckLines() => File.ReadAllLines(Path.Combine(_state, "ack"));

        public string Errors => File.Exists(Path.Combine(_state, "err")) ? File.ReadAllText(Path.Combine(_state, "err")) : "";

        /// <summary>Waits until <paramref name="lines"/> more appends succeeded than at the previous call.</summary>
        public async Task WaitForProgressAsync(int lines, TimeSpan timeout, string phase)
        {
            int target = _mark + lines;
            int count = 0;
            bool ok = await Eventually.TryAsync(timeout, () =>
            {
                if (_process.HasExited) Assert.Fail($"the writer exited with {_process.ExitCode}: {Errors}");
                count = AckLines().Count(l => !l.StartsWith("ck", StringComparison.Ordinal));
                return count >= target;
            }, TimeSpan.FromMilliseconds(100));
            if (!ok) Assert.Fail($"writes do not go on {phase}: {count - _mark} of {lines} appends in {timeout.TotalSeconds} s; errors:\n{Tail(Errors)}\nmount log:\n{_v.LogTail()}");
            _mark = count;
        }

        /// <summary>Every append acknowledged so far, as (file, line number).</summary>
        public List<(int File, int Line)> Acknowledged() =>
            [.. AckLines().Where(l => !l.StartsWith("ck", StringComparison.Ordinal)).Select(l => l.Split(' ')).Select(p => (int.Parse(p[0]), int.Parse(p[1])))];

        public void Stop()
        {
            File.WriteAllText(Path.Combine(_state, "stop"), "");
            if (!_process.WaitForExit(TimeSpan.FromSeconds(PingTimeoutSeconds * 6)))
            {
                _process.Kill(entireProcessTree: true);
                Assert.Fail("the writer did not stop");
            }
        }

        /// <summary>
        /// Every acknowledged line is in its file, once and in order, on brick <paramref name="brick"/>
        /// (the copies are identical by now) and through the mount; ck is a whole version no older
        /// than the last acknowledged one.
        /// </summary>
        public void CheckNothingAcknowledgedIsLost(int brick)
        {
            var acked = Acknowledged();
            Assert.That(acked, Is.Not.Empty);
            for (int k = 0; k < 3; k++)
            {
                var onBrick = File.ReadAllLines(Path.Combine(_v.Bricks[brick].Directory, _name, $"f{k}"));
                var numbers = onBrick.Select(l => l.StartsWith("line ", StringComparison.Ordinal) && int.TryParse(l[5..], out int n) ? n : -1).ToList();
                Assert.That(numbers, Does.Not.Contain(-1), $"f{k} on brick {brick} holds only whole lines");
                Assert.That(numbers, Is.Ordered.Ascending.And.Unique, $"f{k} on brick {brick}: no line twice, none out of order");
                var present = numbers.ToHashSet();
                var lost = acked.Where(a => a.File == k && !present.Contains(a.Line)).Select(a => a.Line).ToList();
                Assert.That(lost, Is.Empty, $"acknowledged lines of f{k} missing on brick {brick}");
                Assert.That(File.ReadAllLines(Path.Combine(Directory, $"f{k}")), Is.EqualTo(onBrick), $"the mount reads f{k} as brick {brick} holds it");
            }
            var lastCk = AckLines().Where(l => l.StartsWith("ck ", StringComparison.Ordinal)).Select(l => int.Parse(l[3..])).DefaultIfEmpty(0).Max();
            Assert.That(lastCk, Is.GreaterThan(0), "some rewrite of ck was acknowledged");
            var ck = File.ReadAllLines(Path.Combine(_v.Bricks[brick].Directory, _name, "ck"));
            Assert.That(ck, Has.Length.EqualTo(3));
            var sum = Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes($"{ck[0]}\n{ck[1]}\n")));
            Assert.That(ck[2], Is.EqualTo(sum), "ck is one whole version (its checksum matches)");
            Assert.That(int.Parse(ck[0]["version ".Length..]), Is.GreaterThanOrEqualTo(lastCk), "ck is no older than the last acknowledged rewrite");
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                File.WriteAllText(Path.Combine(_state, "stop"), "");
                if (!_process.WaitForExit(TimeSpan.FromSeconds(PingTimeoutSeconds * 6))) _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
        }
    }

    /// <summary>
    /// One sqlite3 client running insert transactions (two rows each, journal_mode=DELETE,
    /// synchronous=FULL) in a loop; transaction i writes ids 2i and 2i+1 and is logged as
    /// committed only when sqlite3 exits 0.
    /// </summary>
    private sealed class SqliteLoop : IDisposable
    {
        private const string Script = """
            cd "$1" || exit 3
            S="$2"
            exec 2>>"$S/err"
            sqlite3 -bail t.db 'PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);' >/dev/null 2>>"$S/err" || exit 4
            i=0
            while [ ! -e "$S/stop" ]; do
              i=$((i+1))
              if printf 'PRAGMA journal_mode=DELETE;\nPRAGMA synchronous=FULL;\nPRAGMA busy_timeout=10000;\nBEGIN;\nINSERT INTO t VALUES(%d, hex(randomblob(200)));\nINSERT INTO t VALUES(%d, hex(randomblob(200)));\nCOMMIT;\n' $((2*i)) $((2*i+1)) \
                | sqlite3 -bail t.db >/dev/null 2>>"$S/err"; then
                echo "$i" >> "$S/ack"
              else
                echo "failed $i" >> "$S/failed"; sleep 0.2
              fi
            done
            """;

        private readonly string _state;
        private readonly Func<string> _mountLog;
        private readonly Process _process;
        private int _mark;

        public SqliteLoop(string dir, string state, Func<string> mountLog)
        {
            _state = state;
            _mountLog = mountLog;
            System.IO.Directory.CreateDirectory(state);
            File.WriteAllText(Path.Combine(state, "ack"), "");
            var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            foreach (var a in new[] { "-c", Script, "sqlite-loop", dir, state }) psi.ArgumentList.Add(a);
            _process = Process.Start(psi)!;
        }

        private string Errors => File.Exists(Path.Combine(_state, "err")) ? File.ReadAllText(Path.Combine(_state, "err")) : "";

        public int Failures => File.Exists(Path.Combine(_state, "failed")) ? File.ReadAllLines(Path.Combine(_state, "failed")).Length : 0;

        private List<int> Committed() => [.. File.ReadAllLines(Path.Combine(_state, "ack")).Select(int.Parse)];

        public async Task WaitForCommitsAsync(int more, TimeSpan timeout, string phase)
        {
            int target = _mark + more, count = 0;
            bool ok = await Eventually.TryAsync(timeout, () =>
            {
                if (_process.HasExited) Assert.Fail($"the sqlite3 loop exited with {_process.ExitCode}: {Errors}");
                count = Committed().Count;
                return count >= target;
            }, TimeSpan.FromMilliseconds(100));
            if (!ok) Assert.Fail($"sqlite3 does not commit {phase}: {count - _mark} of {more} in {timeout.TotalSeconds} s; errors:\n{Tail(Errors)}\nmount log:\n{_mountLog()}");
            _mark = count;
        }

        /// <summary>Stops the loop after its current transaction and returns every committed transaction number.</summary>
        public List<int> Stop()
        {
            File.WriteAllText(Path.Combine(_state, "stop"), "");
            if (!_process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                _process.Kill(entireProcessTree: true);
                Assert.Fail("the sqlite3 loop did not stop");
            }
            return Committed();
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                File.WriteAllText(Path.Combine(_state, "stop"), "");
                if (!_process.WaitForExit(TimeSpan.FromSeconds(60))) _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
        }
    }
}
