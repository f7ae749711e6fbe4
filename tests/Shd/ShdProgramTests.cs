using System.Diagnostics;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Brickfs.Shd;
using Brickfs.Tests.Support;
using Brickfs.Translators.Core;
using static Brickfs.Tests.Shd.ShdBench;

namespace Brickfs.Tests.Shd;

/// <summary>brickfs-shd as an administrator runs it: info, split-brain resolution, full, its arguments, its unit file.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class ShdProgramTests
{
    private static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(params string[] args) => await RunAsync(null, args);

    private static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(HttpMessageHandler? handler, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        int exit = await ShdCommand.RunAsync(args, stdout, stderr, limit.Token, handler);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Replica 2 without quorum (the only way one writer makes a split-brain): down b0, write; back, down b1, write; back.</summary>
    private static async Task<(ShdBench, Gfid)> SplitBrainAsync(string onB0, string onB1)
    {
        var v = await StartAsync(2, "quorum-type none");
        var f = await v.WriteFileAsync("f", "base");
        v.Down(0);
        await v.OverwriteAsync(f, onB1);
        v.Up(0);
        Assert.That((await v.Top.LookupAsync(Ctx(), Gfid.Root, "f")).Ok, Is.True);
        v.Down(1);
        await v.OverwriteAsync(f, onB0);
        v.Up(1);
        return (v, f);
    }

    [Test]
    public async Task InfoListsPendingEntriesPerBrickAndMarksSplitBrain()
    {
        var (v, f) = await SplitBrainAsync(onB0: "AAAA", onB1: "BBBBBBBB");
        await using var _ = v;
        string volfile = v.VolfileFile();
        try
        {
            Assert.That((await v.ReadAsync(f)).Error, Is.EqualTo(Errno.EIO), "reads refuse to pick a copy");

            var (exit, stdout, stderr) = await RunAsync("--volfile", volfile, "info");

            Assert.That(exit, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain($"Brick {ChildName(0)}\n/f - Is in split-brain\n\nStatus: Connected\nNumber of entries: 1\n"));
            Assert.That(stdout, Does.Contain($"Brick {ChildName(1)}\n/f - Is in split-brain\n\nStatus: Connected\nNumber of entries: 1\n"));
            Assert.That(stdout, Does.Contain($"Split-brain entries of vol: 1\n/f (data)"));

            var json = await RunAsync("--volfile", volfile, "info", "--json");
            Assert.That(json.Exit, Is.EqualTo(0), json.Stderr);
            using var doc = JsonDocument.Parse(json.Stdout);
            var bricks = doc.RootElement[0].GetProperty("bricks");
            Assert.That(bricks.GetArrayLength(), Is.EqualTo(2));
            Assert.That(bricks[1].GetProperty("entries")[0].GetProperty("gfid").GetString(), Is.EqualTo(f.ToString()));
            Assert.That(bricks[1].GetProperty("entries")[0].GetProperty("splitBrain").GetBoolean(), Is.True);
            Assert.That(bricks[1].GetProperty("entries")[0].GetProperty("path").GetString(), Is.EqualTo("/f"));
        }
        finally
        {
            File.Delete(volfile);
        }
    }

    [Test]
    public async Task InfoShowsABrickThatDoesNotAnswer()
    {
        await using var v = await StartAsync(3);
        v.Down(1);
        var f = await v.WriteFileAsync("f", "x");
        string volfile = v.VolfileFile();
        try
        {
            var (exit, stdout, stderr) = await RunAsync("--volfile", volfile, "info");
            Assert.That(exit, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain($"Brick {ChildName(1)}\nStatus: Transport endpoint is not connected\nNumber of entries: -\n"));
            Assert.That(stdout, Does.Contain($"Brick {ChildName(0)}\n"));
            Assert.That(stdout, Does.Contain("/f\n").And.Not.Contain("split-brain\n\n").And.Not.Contain("<gfid:"), "paths, not GFIDs");
        }
        finally
        {
            File.Delete(volfile);
        }
    }

    [TestCase("bigger-file", null, "BBBBBBBB")]
    [TestCase("latest-mtime", null, "AAAA")]
    [TestCase("source-brick", "vol-client-0", "AAAA")]
    [TestCase("source-brick", "vol-client-1", "BBBBBBBB")]
    public async Task EachSplitBrainPolicyResolvesAPathToTheCopyItNames(string policy, string? brick, string expected)
    {
        var (v, f) = await SplitBrainAsync(onB0: "AAAA", onB1: "BBBBBBBB");
        await using var _ = v;
        string volfile = v.VolfileFile();
        try
        {
            string[] args = brick is null ? ["--volfile", volfile, "split-brain", policy, "/f"] : ["--volfile", volfile, "split-brain", policy, brick, "/f"];

            var (exit, stdout, stderr) = await RunAsync(args);

            Assert.That(exit, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.StartWith("Healed /f "));
            Assert.That((await v.ReadAsync(f)).Value, Is.EqualTo(expected));
            await v.AssertCopiesIdenticalAsync();
            Assert.That(await v.CountersZeroAsync(f), Is.True);
            Assert.That(v.IndexesEmpty, Is.True);
            var again = await RunAsync(args);
            Assert.That((again.Exit, again.Stderr), Is.EqualTo((1, "brickfs-shd: /f: not in split-brain\n")));
        }
        finally
        {
            File.Delete(volfile);
        }
    }

    [Test]
    public async Task SplitBrainRefusesAnUnknownBrickOrPathWithOneLine()
    {
        var (v, f) = await SplitBrainAsync(onB0: "AAAA", onB1: "BBBB");
        await using var _ = v;
        string volfile = v.VolfileFile();
        try
        {
            var brick = await RunAsync("--volfile", volfile, "split-brain", "source-brick", "nope", "/f");
            Assert.That(brick.Exit, Is.EqualTo(1));
            Assert.That(brick.Stderr, Is.EqualTo("brickfs-shd: /f: no brick 'nope' in vol (its bricks: vol-client-0, vol-client-1)\n"));
            var path = await RunAsync("--volfile", volfile, "split-brain", "bigger-file", "/missing");
            Assert.That((path.Exit, path.Stderr), Is.EqualTo((1, "brickfs-shd: /missing: No such file or directory\n")));
            Assert.That((await v.ReadAsync(f)).Error, Is.EqualTo(Errno.EIO), "nothing was resolved");
        }
        finally
        {
            File.Delete(volfile);
        }
    }

    [Test]
    public async Task FullAndOnceRunFromTheVolfileThatMgmtdServes()
    {
        await using var v = await StartAsync(3);
        v.Down(2);
        await v.WriteFileAsync("f", "while b2 was down");
        v.Up(2);
        var mgmtd = new VolfileHandler("vol", v.ClientVolfile);

        var once = await RunAsync(mgmtd, "--volfile-server", "mgmt.example:24007", "--volume", "vol", "--once");

        Assert.That(once.Exit, Is.EqualTo(0), once.Stderr);
        Assert.That(once.Stdout, Does.StartWith("heal pass: healed "));
        Assert.That(mgmtd.Asked, Is.EqualTo(new[] { "http://mgmt.example:24007/api/v1/volumes/vol/volfile?kind=client" }));
        await v.AssertCopiesIdenticalAsync();
        Assert.That(v.IndexesEmpty, Is.True);

        var full = await RunAsync(mgmtd, "--volfile-server", "mgmt.example", "--volume", "vol", "full", "--json");
        Assert.That(full.Exit, Is.EqualTo(0), full.Stderr);
        Assert.That(JsonDocument.Parse(full.Stdout).RootElement.GetProperty("remaining").GetInt32(), Is.Zero);

        var unknown = await RunAsync(mgmtd, "--volfile-server", "mgmt.example", "--volume", "other", "info");
        Assert.That((unknown.Exit, unknown.Stderr), Is.EqualTo((1, "brickfs-shd: volume other does not exist\n")));
    }

    /// <summary>Answers the client volfile of one volume as brickfs-mgmtd does, and 404 with mgmtd's error body for others.</summary>
    private sealed class VolfileHandler(string volume, string volfile) : HttpMessageHandler
    {
        public List<string> Asked { get; } = [];

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            string uri = request.RequestUri!.ToString();
            lock (Asked) Asked.Add(uri);
            if (request.Method == HttpMethod.Get && uri.EndsWith($"/api/v1/volumes/{volume}/volfile?kind=client", StringComparison.Ordinal))
                return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(volfile) });
            var name = uri.Split("/volumes/")[1].Split('/')[0];
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.NotFound)
            {
                Content = new StringContent($"{{\"error\":\"volume {name} does not exist\"}}", Encoding.UTF8, "application/json"),
            });
        }
    }

    [Test]
    public async Task AVolfileWithoutReplicationIsRefused()
    {
        string volfile = Path.Combine(Path.GetTempPath(), $"brickfs-shd-{Guid.NewGuid():N}.vol");
        File.WriteAllText(volfile, "volume m\n    type storage/memory\nend-volume\n");
        try
        {
            var r = await RunAsync("--volfile", volfile, "info");
            Assert.That((r.Exit, r.Stderr), Is.EqualTo((1, "brickfs-shd: the volfile has no cluster/replicate translator: nothing to heal\n")));
            File.WriteAllText(volfile, "volume m\n    type storage/nope\nend-volume\n");
            var bad = await RunAsync("--volfile", volfile, "info");
            Assert.That(bad.Exit, Is.EqualTo(1));
            Assert.That(bad.Stderr, Does.StartWith($"brickfs-shd: {volfile}:2: ").And.EndWith("\n"));
            Assert.That(bad.Stderr.TrimEnd('\n'), Does.Not.Contain('\n'));
        }
        finally
        {
            File.Delete(volfile);
        }
    }

    [TestCase(new string[0], "needs --volfile FILE or --volfile-server HOST[:PORT] --volume VOL")]
    [TestCase(new[] { "--volfile", "a", "--volfile-server", "h", "--volume", "v" }, "give --volfile or --volfile-server, not both")]
    [TestCase(new[] { "--volfile-server", "h" }, "--volfile-server needs --volume VOL")]
    [TestCase(new[] { "--volfile", "a", "--parallel", "0" }, "--parallel needs a number from 1 to 1024")]
    [TestCase(new[] { "--volfile", "a", "--interval", "soon" }, "--interval needs a whole number of seconds, at least 1")]
    [TestCase(new[] { "--volfile", "a", "--bogus" }, "unknown option '--bogus'")]
    [TestCase(new[] { "--volfile", "a", "heal" }, "unknown command 'heal' (try brickfs-shd --help)")]
    [TestCase(new[] { "--volfile", "a", "split-brain", "coin-toss", "/f" }, "unknown split-brain policy 'coin-toss' (bigger-file, latest-mtime or source-brick)")]
    [TestCase(new[] { "--volfile", "a", "split-brain", "source-brick", "/f" }, "split-brain source-brick needs BRICK PATH")]
    [TestCase(new[] { "--volfile", "a", "split-brain", "bigger-file", "f" }, "PATH is a path inside the volume starting with /, not 'f'")]
    [TestCase(new[] { "--volfile", "a", "--once", "info" }, "--once applies to the daemon, not to a command")]
    public void TheProgramRefusesBadArgumentsWithOneLineAndExitStatus2(string[] args, string message)
    {
        var r = Shell.Run(Programs.Find("brickfs-shd"), args, TimeSpan.FromSeconds(30));
        Assert.That(r.ExitCode, Is.EqualTo(2), r.ToString());
        Assert.That(r.Stderr, Is.EqualTo($"brickfs-shd: {message}\n"));
        Assert.That(r.Stdout, Is.Empty);
    }

    [Test]
    public void HelpDescribesEveryCommand()
    {
        var r = Shell.Run(Programs.Find("brickfs-shd"), ["--help"], TimeSpan.FromSeconds(30));
        Assert.That(r.Ok, r.ToString());
        Assert.That(r.Stdout, Does.StartWith("usage: brickfs-shd (--volfile FILE | --volfile-server HOST[:PORT] --volume VOL)"));
        foreach (var word in new[] { "info", "full", "split-brain bigger-file PATH", "split-brain latest-mtime PATH", "split-brain source-brick BRICK PATH", "--parallel", "--interval", "--once" })
            Assert.That(r.Stdout, Does.Contain(word));
    }

    private static string Unit([CallerFilePath] string source = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", "..", "mgmt", "systemd", "brickfs-shd@.service"));

    [Test]
    public void TheSystemdTemplateUnitPassesSystemdAnalyzeVerify()
    {
        var text = File.ReadAllText(Unit());
        Assert.That(text, Does.Contain("ExecStart=/usr/local/bin/brickfs-shd --volfile-server localhost --volume %i\n"));
        var dir = Directory.CreateTempSubdirectory("brickfs-unit-").FullName;
        try
        {
            // verify insists that ExecStart exists, and needs an instance of a template.
            var copy = Path.Combine(dir, "brickfs-shd@vol0.service");
            File.WriteAllText(copy, text.Replace("/usr/local/bin/brickfs-shd", Programs.Find("brickfs-shd")));
            File.SetUnixFileMode(copy, (UnixFileMode)0x1A4);
            var r = Shell.Run("systemd-analyze", ["verify", copy], TimeSpan.FromSeconds(30));
            Assert.That(r.Ok && r.Stderr.Trim().Length == 0, r.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public async Task TheRealDaemonHealsOverTcpAndStopsCleanlyOnSigterm()
    {
        // One replica set of three TCP bricks in this process; the daemon is the built program.
        var ports = Enumerable.Range(0, 3).Select(_ => Brickfs.Tests.Protocol.Kit.FreePort()).ToArray();
        var bricks = new List<Brickfs.Translators.Graph.TranslatorGraph>();
        string volfile = Path.Combine(Path.GetTempPath(), $"brickfs-shd-{Guid.NewGuid():N}.vol");
        var log = new Brickfs.Tests.Protocol.CaptureWriter();
        try
        {
            var client = new StringBuilder();
            for (int i = 0; i < 3; i++)
            {
                var g = Brickfs.Translators.Graph.GraphBuilder.BuildText($"""
                    volume m{i}
                        type storage/memory
                    end-volume
                    volume x{i}
                        type features/index
                        subvolumes m{i}
                    end-volume
                    volume b{i}
                        type features/locks
                        subvolumes x{i}
                    end-volume
                    volume s{i}
                        type protocol/server
                        option listen-host 127.0.0.1
                        option listen-port {ports[i]}
                        option auth.allow 127.0.0.1
                        subvolumes b{i}
                    end-volume
                    """);
                foreach (var s in g.All.OfType<Brickfs.Translators.Protocol.ProtocolServerTranslator>()) s.Log = new Brickfs.Translators.Protocol.ProtocolLog(log);
                await g.InitAsync(CancellationToken.None);
                bricks.Add(g);
                client.Append($"volume c{i}\n    type protocol/client\n    option remote-host 127.0.0.1\n    option remote-port {ports[i]}\n    option remote-subvolume b{i}\nend-volume\n");
            }
            client.Append("volume vol\n    type cluster/replicate\n    subvolumes c0 c1 c2\nend-volume\n");
            File.WriteAllText(volfile, client.ToString());
            // A pending heal the daemon must find in the bricks' indexes: b0 and b1 blame b2 for a file b2 lacks.
            var f = Gfid.NewRandom();
            for (int i = 0; i < 2; i++)
            {
                var b = bricks[i][$"b{i}"];
                await b.MknodAsync(Ctx(), Gfid.Root, "f", RegularMode, 0, f);
                await b.XattropAsync(Ctx(), f, null, new Dictionary<string, long[]> { ["trusted.brickfs.pending.c2"] = [1, 1, 0] });
                await b.XattropAsync(Ctx(), Gfid.Root, null, new Dictionary<string, long[]> { ["trusted.brickfs.pending.c2"] = [0, 0, 1] });
            }
            Assert.That(bricks[0].Find<Brickfs.Translators.Features.Index.IndexTranslator>().ListPending(), Has.Count.EqualTo(2));

            var psi = new ProcessStartInfo(Programs.Find("brickfs-shd")) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--volfile", volfile, "--interval", "3600" }) psi.ArgumentList.Add(a);
            using var daemon = Process.Start(psi)!;
            var stdout = daemon.StandardOutput.ReadToEndAsync();
            var stderr = new StringBuilder();
            daemon.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
            daemon.BeginErrorReadLine();
            string Err() { lock (stderr) return stderr.ToString(); }
            try
            {
                await Eventually.HoldsAsync(TimeSpan.FromSeconds(20),
                    () => Enumerable.Range(0, 3).All(i => bricks[i].Find<Brickfs.Translators.Features.Index.IndexTranslator>().ListPending().Count == 0),
                    "the daemon empties every index");
                Assert.That((await bricks[2]["b2"].LookupAsync(Ctx(), Gfid.Root, "f")).Value.Gfid, Is.EqualTo(f), "b2 got the file with its GFID");
                Assert.That(Err(), Does.Contain($"healed {f}"));

                Assert.That(Shell.Run("kill", ["-TERM", daemon.Id.ToString()]).Ok);
                using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                await daemon.WaitForExitAsync(limit.Token);
                Assert.That(daemon.ExitCode, Is.EqualTo(0), Err() + await stdout);
                Assert.That(Err(), Does.Contain("stopping"));
            }
            finally
            {
                if (!daemon.HasExited) daemon.Kill();
            }
        }
        finally
        {
            foreach (var g in bricks) await g.DisposeAsync();
            File.Delete(volfile);
        }
    }
}
