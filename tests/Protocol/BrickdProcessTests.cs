using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Brickfs.Translators.Core;
using Brickfs.Translators.Protocol;

namespace Brickfs.Tests.Protocol;

/// <summary>The real brickd program from its build output, as a child process.</summary>
public class BrickdProcessTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"brickd-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static string MemoryBrick(int port) => $"""
        volume b1
            type storage/memory
        end-volume

        volume b1-server
            type protocol/server
            option listen-host 127.0.0.1
            option listen-port {port}
            option auth.allow 127.0.0.1
            subvolumes b1
        end-volume
        """;

    private static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "brickd.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static async Task<(int Code, string Stderr)> WaitExitAsync(Process p)
    {
        using var cts = new CancellationTokenSource(Kit.Deadline);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("brickd did not exit in time");
        }
        return (p.ExitCode, await p.StandardError.ReadToEndAsync());
    }

    private static async Task SignalAsync(Process p, string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, p.Id.ToString()]);
        await kill.WaitForExitAsync();
    }

    [Test]
    public async Task ServesABrickAndExitsZeroOnSigterm()
    {
        int port = Kit.FreePort();
        string volfile = Path.Combine(_dir, "brick.vol"), logFile = Path.Combine(_dir, "brickd.log"), pidFile = Path.Combine(_dir, "brickd.pid");
        await File.WriteAllTextAsync(volfile, MemoryBrick(port));
        using var brickd = Start("--volfile", volfile, "--log-file", logFile, "--pid-file", pidFile);
        try
        {
            await Kit.Eventually(() => File.Exists(pidFile), "brickd wrote its pid file");
            Assert.That((await File.ReadAllTextAsync(pidFile)).Trim(), Is.EqualTo(brickd.Id.ToString()));

            var log = new ProtocolLog(new CaptureWriter());
            await using (var client = await Kit.TcpClientAsync(log, port))
            {
                await Kit.Eventually(() => client.IsConnected, "connected to brickd");
                var fd = await Kit.CreateAsync(client, "f", "over the wire"u8.ToArray());
                using var back = (await client.ReadAsync(Kit.Ctx(), fd, 0, 100)).Value;
                Assert.That(back.Span.ToArray(), Is.EqualTo("over the wire"u8.ToArray()));
                Assert.That((await client.LookupAsync(Kit.Ctx(), Gfid.Root, "f")).Value.Gfid, Is.EqualTo(fd.Gfid));
            }

            await SignalAsync(brickd, "TERM");
            var (code, stderr) = await WaitExitAsync(brickd);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(File.Exists(pidFile), Is.False, "the pid file is removed on clean exit");
            Assert.That(await File.ReadAllTextAsync(logFile), Does.Contain("accepted client").And.Contain("stopping on signal"));
        }
        finally
        {
            if (!brickd.HasExited) brickd.Kill(entireProcessTree: true);
        }
    }

    [TestCase("volume b1\n    type storage/nope\nend-volume\n", "unknown translator type 'storage/nope'")]
    [TestCase("volume b1\n    type storage/memory\nend-volume\n", "must be protocol/server")]
    public async Task ABadVolfileIsOneLineOnStderrAndANonZeroExit(string text, string reason)
    {
        string volfile = Path.Combine(_dir, "bad.vol");
        await File.WriteAllTextAsync(volfile, text);
        using var brickd = Start("--volfile", volfile);
        var (code, stderr) = await WaitExitAsync(brickd);
        Assert.That(code, Is.Not.Zero);
        Assert.That(stderr.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.StartWith("brickd: ").And.Contain(reason));
    }

    [Test]
    public async Task AMissingVolfileOrAPortInUseIsOneLineAndANonZeroExit()
    {
        using (var missing = Start("--volfile", Path.Combine(_dir, "nope.vol")))
        {
            var (code, stderr) = await WaitExitAsync(missing);
            Assert.That(code, Is.Not.Zero);
            Assert.That(stderr.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), stderr);
        }

        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        string volfile = Path.Combine(_dir, "brick.vol");
        await File.WriteAllTextAsync(volfile, MemoryBrick(((IPEndPoint)taken.LocalEndPoint!).Port));
        using var brickd = Start("--volfile", volfile);
        var (code2, stderr2) = await WaitExitAsync(brickd);
        Assert.That(code2, Is.Not.Zero);
        Assert.That(stderr2.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), stderr2);
        Assert.That(stderr2, Does.Contain("cannot listen"));
    }

    [Test]
    public async Task HelpPrintsUsageAndExitsZero()
    {
        using var brickd = Start("--help");
        var (code, _) = await WaitExitAsync(brickd);
        Assert.That(code, Is.Zero);
        Assert.That(await brickd.StandardOutput.ReadToEndAsync(), Does.Contain("--volfile FILE"));
    }
}
