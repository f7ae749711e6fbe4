using System.Diagnostics;
using System.Text;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// The SQLite contract (DESIGN.md contract 3, issue 5): the stock sqlite3 shell, rollback
/// journal, several processes on each of three mounts of one network volume. No update is lost,
/// the database never corrupts, also when a client dies or is cut off in the middle of a write
/// transaction. Sizes are constants so a longer soak is one edit.
/// </summary>
[NonParallelizable]
public class SqliteMultiClientTests
{
    private const int Clients = 3;
    private const int ProcessesPerClient = 2;
    private const int Increments = 100;
    private const int TransferWriters = 3;
    private const int TransfersPerWriter = 60;
    private const int Accounts = 10;
    private const int Rows = 2000;

    /// <summary>
    /// sqlite3's busy handler polls with growing sleeps (up to 100 ms), so among six writers at
    /// ~15 transactions a second one can lose every race for over 10 s: a "database is locked"
    /// that says nothing about lost updates. A minute of patience keeps the check exact (v ==
    /// commits, no errors at all).
    /// </summary>
    private const int BusyTimeoutMs = 60_000;

    private static string Db(ClientMount m) => m.PathOf("app.db");

    private static void AssertIntegrity(ClientMount m)
    {
        var (output, err) = SqliteProcess.Run(Db(m), ".timeout 30000\nPRAGMA integrity_check;\n");
        Assert.That(output.Trim(), Is.EqualTo("ok"), $"integrity_check: {err}");
    }

    private static string Scalar(ClientMount m, string sql)
    {
        var (output, err) = SqliteProcess.Run(Db(m), $".timeout 30000\n{sql}\n");
        Assert.That(err, Is.Empty, sql);
        return output.Trim();
    }

    [Test]
    [CancelAfter(180_000)]
    public async Task ConcurrentIncrementsFromThreeMountsLoseNothing()
    {
        using var volume = new SharedVolume(Clients);
        SqliteProcess.Run(Db(volume[0]), "CREATE TABLE counter(v INTEGER NOT NULL);\nINSERT INTO counter VALUES (0);\n");

        var script = new StringBuilder($".timeout {BusyTimeoutMs}\n");
        for (int i = 0; i < Increments; i++) script.Append("BEGIN IMMEDIATE; UPDATE counter SET v = v + 1; COMMIT;\n");
        var watch = Stopwatch.StartNew();
        var runs = Enumerable.Range(0, Clients * ProcessesPerClient)
            .Select(p => Task.Run(() => SqliteProcess.Run(Db(volume[p % Clients]), script.ToString(), TimeSpan.FromSeconds(150))))
            .ToArray();
        var results = await Task.WhenAll(runs);
        watch.Stop();

        int commits = Clients * ProcessesPerClient * Increments;
        TestContext.Out.WriteLine($"{commits} transactions from {runs.Length} processes on {Clients} mounts in {watch.Elapsed.TotalSeconds:0.0} s ({commits / watch.Elapsed.TotalSeconds:0} tx/s)");
        Assert.That(results.Select(r => r.Err), Is.All.Empty,
            "no transaction failed (busy or I/O error); mount logs:\n" + string.Join("\n", volume.Mounts.Select(m => m.LogTail())) + "\nbrick:\n" + volume.Brick.Tail());
        Assert.That(Scalar(volume[1], "SELECT v FROM counter;"), Is.EqualTo(commits.ToString()));
        AssertIntegrity(volume[2]);
    }

    [Test]
    [CancelAfter(180_000)]
    public async Task TransfersAndDeletesKeepTheBalanceWhileReadersCheckIt()
    {
        using var volume = new SharedVolume(Clients);
        var setup = new StringBuilder("CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);\n");
        setup.Append("CREATE TABLE transfer(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER);\n");
        for (int i = 0; i < Accounts; i++) setup.Append($"INSERT INTO account VALUES ({i}, 1000);\n");
        SqliteProcess.Run(Db(volume[0]), setup.ToString());
        const int total = Accounts * 1000;

        var random = new Random(5);
        var writers = Enumerable.Range(0, TransferWriters).Select(w =>
        {
            var s = new StringBuilder($".timeout {BusyTimeoutMs}\n");
            for (int i = 0; i < TransfersPerWriter; i++)
            {
                int src = random.Next(Accounts), dst = random.Next(Accounts), amount = random.Next(1, 200);
                s.Append($"BEGIN IMMEDIATE; UPDATE account SET balance = balance - {amount} WHERE id = {src}; ");
                s.Append($"INSERT INTO transfer(src, dst, amount) VALUES ({src}, {dst}, {amount}); ");
                s.Append($"UPDATE account SET balance = balance + {amount} WHERE id = {dst}; ");
                if (i % 10 == 9) s.Append("DELETE FROM transfer WHERE id % 3 = 0; ");
                s.Append("COMMIT;\n");
            }
            return s.ToString();
        }).ToList();
        var writerRuns = writers.Select((s, w) => Task.Run(() => SqliteProcess.Run(Db(volume[w % Clients]), s, TimeSpan.FromSeconds(150)))).ToArray();

        // Readers on every mount check the invariant until the writers are done.
        var sums = new List<string>();
        var readerRuns = Enumerable.Range(0, Clients).Select(c => Task.Run(async () =>
        {
            var reads = new StringBuilder(".timeout 10000\n");
            for (int i = 0; i < 10; i++) reads.Append("SELECT sum(balance) FROM account;\n");
            do
            {
                var (output, err) = SqliteProcess.Run(Db(volume[c]), reads.ToString(), TimeSpan.FromSeconds(60));
                Assert.That(err, Is.Empty, $"reader on mount {c}");
                lock (sums) sums.AddRange(output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
                await Task.Delay(20);
            }
            while (!writerRuns.All(t => t.IsCompleted));
        })).ToArray();

        var results = await Task.WhenAll(writerRuns);
        await Task.WhenAll(readerRuns);

        Assert.That(results.Select(r => r.Err), Is.All.Empty, "no transfer failed");
        Assert.That(sums, Is.Not.Empty);
        Assert.That(sums.Distinct(), Is.EqualTo(new[] { total.ToString() }), "every reader saw the balance whole");
        Assert.That(Scalar(volume[2], "SELECT sum(balance) FROM account;"), Is.EqualTo(total.ToString()));
        AssertIntegrity(volume[1]);
    }

    /// <summary>Rows whose value says they were committed by setup; a victim's transaction rewrites them all.</summary>
    private static void CreateRows(ClientMount m)
    {
        SqliteProcess.Run(Db(m), $"""
            CREATE TABLE t(id INTEGER PRIMARY KEY, value INTEGER NOT NULL, pad BLOB);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {Rows})
            INSERT INTO t SELECT i, i * 7, zeroblob(1000) FROM n;
            CREATE TABLE committed(id INTEGER PRIMARY KEY, by TEXT);
            INSERT INTO committed(by) VALUES ('setup');
            """);
    }

    /// <summary>
    /// A transaction that has written its journal and (small cache) spilled changed pages into
    /// the database file, then waits holding the EXCLUSIVE lock: the worst moment to lose it.
    /// </summary>
    private static SqliteProcess StartVictim(ClientMount m, string marker, string go) => SqliteProcess.Start(Db(m), $"""
        .timeout 10000
        PRAGMA cache_size = 10;
        BEGIN IMMEDIATE;
        UPDATE t SET value = -1, pad = randomblob(1000);
        .shell touch {marker}
        .shell while [ ! -e {go} ]; do sleep 0.05; done
        INSERT INTO committed(by) VALUES ('victim');
        COMMIT;
        """);

    /// <summary>Starts <see cref="StartVictim"/> on mount 0 and waits until it has written its journal; creating <c>Go</c> lets it commit.</summary>
    private static async Task<(SqliteProcess Victim, string Go)> StartVictimAtItsJournalAsync(SharedVolume volume)
    {
        string marker = Path.Combine(volume.WorkDir, "journal-written"), go = Path.Combine(volume.WorkDir, "go");
        var victim = StartVictim(volume[0], marker, go);
        try
        {
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(60), () => File.Exists(marker) || victim.WaitForExit(TimeSpan.Zero),
                "the victim wrote its journal and spilled pages");
            Assert.That(File.Exists(marker), Is.True, $"victim: {victim.Stderr}");
            return (victim, go);
        }
        catch
        {
            victim.Dispose();
            throw;
        }
    }

    /// <summary>Takes the victim's client away (<paramref name="cut"/>), then times another client's BEGIN IMMEDIATE ... COMMIT.</summary>
    private static (string Err, TimeSpan Elapsed) SurvivorCommitsAfter(Action cut, ClientMount survivor)
    {
        var watch = Stopwatch.StartNew();
        cut();
        var (_, err) = SqliteProcess.Run(Db(survivor), ".timeout 30000\nBEGIN IMMEDIATE; INSERT INTO committed(by) VALUES ('survivor'); COMMIT;\n");
        return (err, watch.Elapsed);
    }

    private static void AssertVictimLeftNoTrace(ClientMount reader)
    {
        Assert.That(Scalar(reader, $"SELECT count(*) FROM t WHERE value = id * 7;"), Is.EqualTo(Rows.ToString()), "the hot journal was rolled back");
        Assert.That(Scalar(reader, "SELECT count(*) FROM committed WHERE by = 'victim';"), Is.EqualTo("0"));
        AssertIntegrity(reader);
    }

    [Test]
    [CancelAfter(120_000)]
    public async Task AClientKilledInTheMiddleOfATransactionIsRolledBackAndTheOthersGoOn()
    {
        using var volume = new SharedVolume(2);
        CreateRows(volume[0]);
        var (victim, go) = await StartVictimAtItsJournalAsync(volume);
        using var _ = victim;
        Assert.That(File.Exists(volume[1].PathOf("app.db-journal")), Is.True, "the journal is on the volume");

        var (err, elapsed) = SurvivorCommitsAfter(volume[0].Kill, volume[1]);
        TestContext.Out.WriteLine($"client killed -> another client committed: {elapsed.TotalMilliseconds:0} ms");
        victim.Kill();

        Assert.That(err, Is.Empty);
        Assert.That(elapsed, Is.LessThan(volume.Lease + TimeSpan.FromSeconds(10)), "within the lease plus slack");
        Assert.That(Scalar(volume[1], "SELECT group_concat(by) FROM committed;"), Is.EqualTo("setup,survivor"), "no committed row lost");
        Assert.That(File.Exists(volume[1].PathOf("app.db-journal")), Is.False, "the next opener rolled the hot journal back");
        AssertVictimLeftNoTrace(volume[1]);
    }

    [Test]
    [CancelAfter(120_000)]
    public async Task AClientCutOffInTheMiddleOfATransactionFailsAndNeverCorrupts()
    {
        using var volume = new SharedVolume(2, leaseSeconds: 3);
        CreateRows(volume[0]);
        var (victim, go) = await StartVictimAtItsJournalAsync(volume);
        using var _ = victim;

        var (err, elapsed) = SurvivorCommitsAfter(volume[0].Stop, volume[1]);
        TestContext.Out.WriteLine($"client cut off (SIGSTOP) -> another client committed: {elapsed.TotalMilliseconds:0} ms (lease {volume.Lease.TotalSeconds} s)");
        Assert.That(err, Is.Empty);
        Assert.That(elapsed, Is.GreaterThanOrEqualTo(volume.Lease * 0.9), "the cut-off client kept its lock for its lease");

        volume[0].Continue();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => volume[0].LogTail().Contains("lost the lease", StringComparison.Ordinal),
            "the resumed client noticed that its lease is gone");
        File.WriteAllText(go, "");
        Assert.That(victim.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "the victim finishes");
        TestContext.Out.WriteLine($"victim's stderr: {victim.Stderr}");
        // Its reads get EIO, which SQLite reports as "database disk image is malformed" (LEASES.md).
        Assert.That(victim.Stderr, Does.Contain("Runtime error near line 7"), "the cut-off client's transaction fails");

        Assert.That(Scalar(volume[1], "SELECT group_concat(by) FROM committed;"), Is.EqualTo("setup,survivor"));
        AssertVictimLeftNoTrace(volume[1]);
        // The resumed client works again for new opens.
        Assert.That(Scalar(volume[0], "SELECT count(*) FROM committed;"), Is.EqualTo("2"));
    }
}

/// <summary>
/// Issue 5 (e): the counter workload of <see cref="SqliteMultiClientTests"/> on a replica-3
/// volume over three network-namespace hosts, three mounts (each its own client and lease),
/// while one brick is killed with SIGKILL and started again. Locks need a quorum of grants, so
/// they hold on the two remaining bricks; the handles whose locks died with the brick are fenced
/// on that brick only (LEASES.md), so no client sees an error and no update is lost.
/// </summary>
[NonParallelizable]
[CancelAfter(900_000)]
public class SqliteReplicaMultiClientTests
{
    private const int ProcessesPerClient = 2;
    private const int Increments = 60;
    private const int BusyTimeoutMs = 120_000;
    private static readonly TimeSpan PhaseTimeout = TimeSpan.FromSeconds(240);

    private static int Counter(string db)
    {
        var (output, err) = SqliteProcess.Run(db, ".timeout 60000\nSELECT v FROM counter;\n", TimeSpan.FromSeconds(90));
        Assert.That(err, Is.Empty, "reading the counter");
        return int.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Test]
    public async Task ConcurrentIncrementsFromThreeMountsLoseNothingWhileABrickIsKilledAndRestarted()
    {
        using var v = new ReplicatedHostsVolume(3, pingTimeoutSeconds: 3);
        using var second = new ExtraMount("rep-sqlite-1", v.Volfile());
        using var third = new ExtraMount("rep-sqlite-2", v.Volfile());
        MountedVolume[] mounts = [v, second, third];
        string[] dbs = [.. mounts.Select(m => m.PathOf("counter.db"))];
        SqliteProcess.Run(dbs[0], "CREATE TABLE counter(v INTEGER NOT NULL);\nINSERT INTO counter VALUES (0);\n");

        var script = new StringBuilder($".timeout {BusyTimeoutMs}\n");
        for (int i = 0; i < Increments; i++) script.Append("BEGIN IMMEDIATE; UPDATE counter SET v = v + 1; COMMIT;\n");
        int commits = mounts.Length * ProcessesPerClient * Increments;
        var watch = Stopwatch.StartNew();
        var runs = Enumerable.Range(0, mounts.Length * ProcessesPerClient)
            .Select(p => Task.Run(() => SqliteProcess.Run(dbs[p % mounts.Length], script.ToString(), TimeSpan.FromSeconds(600))))
            .ToArray();

        // A phase that does not finish fails with the mounts' logs: a stall is read from them.
        string Logs() => "mount logs:\n" + string.Join("\n", mounts.Select(m => m.LogTail()));
        if (!await Eventually.TryAsync(PhaseTimeout, () => Counter(dbs[1]) >= commits / 4))
            Assert.Fail($"within {PhaseTimeout.TotalSeconds:0} s: a quarter of the increments before the kill (counter {Counter(dbs[1])}); {Logs()}");
        v.Bricks[1].Kill();
        int atKill = Counter(dbs[2]);
        if (!await Eventually.TryAsync(PhaseTimeout, () => Counter(dbs[0]) >= atKill + commits / 4))
            Assert.Fail($"within {PhaseTimeout.TotalSeconds:0} s: increments go on with brick 1 dead (counter {Counter(dbs[0])}, {atKill} at the kill); {Logs()}");
        v.Bricks[1].Start();
        var results = await Task.WhenAll(runs);
        watch.Stop();

        TestContext.Out.WriteLine($"{commits} transactions from {runs.Length} processes on {mounts.Length} mounts of replica 3 in {watch.Elapsed.TotalSeconds:0.0} s; brick 1 killed at {atKill}");
        Assert.That(results.Select(r => r.Err), Is.All.Empty, "no transaction failed (busy or I/O error); " + Logs());
        for (int m = 0; m < mounts.Length; m++) Assert.That(Counter(dbs[m]), Is.EqualTo(commits), $"the counter through mount {m}");
        var (check, err) = SqliteProcess.Run(dbs[1], ".timeout 30000\nPRAGMA integrity_check;\n");
        Assert.That(check.Trim(), Is.EqualTo("ok"), $"integrity_check: {err}");
    }
}
