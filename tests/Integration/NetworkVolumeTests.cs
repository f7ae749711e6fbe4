using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

public sealed class NetworkVolumePosixTests : VolumePosixSuite
{
    protected override MountedVolume CreateVolume() => new NetworkVolume();
}

/// <summary>Failures are bounded: a dead or silent brick gives ENOTCONN within the ping timeout, and a returning brick is used again.</summary>
[NonParallelizable]
[CancelAfter(180_000)]
public sealed class BrickFailureTests
{
    private const int PingTimeout = 4;
    private NetworkVolume _volume = null!;

    [SetUp]
    public void MountVolume() => _volume = new NetworkVolume(PingTimeout);

    [TearDown]
    public void Unmount() => _volume.Dispose();

    private static Process Background(string script)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        return Process.Start(psi)!;
    }

    [Test]
    public async Task BrickKilledMidWriteFailsTheWriterWithEnotconnAndTheMountRecovers()
    {
        var f = _volume.PathOf("big");
        using var writer = Background($"exec dd if=/dev/zero of='{f}' bs=1M count=200000 status=none");
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), () => File.Exists(f) && new FileInfo(f).Length > (8 << 20), "the writer is writing");

        _volume.Brick.Kill();
        var killedAt = Stopwatch.StartNew();
        bool exited = writer.WaitForExit((PingTimeout + 6) * 1000);
        Assert.That(exited, Is.True, $"the writer ended within ping-timeout + slack (took {killedAt.Elapsed.TotalSeconds:0.0} s)");
        Assert.That(writer.ExitCode, Is.Not.Zero);
        Assert.That(writer.StandardError.ReadToEnd(), Does.Contain("Transport endpoint is not connected"));

        var stat = Shell.Sh($"stat '{f}'", TimeSpan.FromSeconds(PingTimeout + 6));
        Assert.That(stat.Ok, Is.False);
        Assert.That(stat.Stderr, Does.Contain("Transport endpoint is not connected"));

        _volume.Brick.Start();
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => Shell.Sh($"echo back > '{_volume.PathOf("after")}'").Ok,
            "the mount writes again after the brick restarts");
        Assert.That(File.ReadAllText(_volume.PathOf("after")), Is.EqualTo("back\n"));
        Assert.That(new FileInfo(f).Length, Is.GreaterThan(8 << 20), "what was written before the kill is still there");
    }

    [Test]
    public async Task ASilentBrickGivesEnotconnWithinThePingTimeout()
    {
        Shell.Must($"echo data > '{_volume.PathOf("f")}'");
        var pid = _volume.Brick.Pid!.Value;
        Shell.Must($"kill -STOP {pid}");
        try
        {
            var sw = Stopwatch.StartNew();
            var r = Shell.Sh($"cat '{_volume.PathOf("f")}' > /dev/null; stat '{_volume.PathOf("g")}'", TimeSpan.FromSeconds(PingTimeout * 4));
            sw.Stop();
            Assert.That(r.ExitCode, Is.Not.EqualTo(-1), "the command did not hang");
            Assert.That(r.Stderr, Does.Contain("Transport endpoint is not connected"));
            Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(PingTimeout * 2 + 4)), "bounded by the ping timeout");
        }
        finally
        {
            Shell.Sh($"kill -CONT {pid}");
        }
        await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), () => Shell.Sh($"cat '{_volume.PathOf("f")}'").Stdout == "data\n",
            "the brick is used again once it answers");
    }

    [Test]
    public async Task AProgramHoldingAFileOpenKeepsWorkingAcrossABrickRestart()
    {
        // The holder is a shell, not a .NET FileStream: .NET takes a shared flock on every open,
        // and a descriptor whose locks a brick restart dropped is fenced (EIO until closed; see
        // translators/Features/Locks/LEASES.md). A lock-free descriptor is re-opened by GFID.
        var f = _volume.PathOf("held");
        var psi = new System.Diagnostics.ProcessStartInfo("/bin/bash") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"exec 3<>'{f}'; printf 'before|' >&3 && echo opened; while read _; do if printf after >&3 2>/dev/null; then echo ok; break; else echo failed; fi; done");
        using var holder = System.Diagnostics.Process.Start(psi)!;
        try
        {
            Assert.That(await holder.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)), Is.EqualTo("opened"));

            _volume.Brick.Kill();
            _volume.Brick.Start();

            await Eventually.HoldsAsync(TimeSpan.FromSeconds(30), async () =>
            {
                await holder.StandardInput.WriteLineAsync();
                await holder.StandardInput.FlushAsync();
                return await holder.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)) == "ok";
            }, "a write on the descriptor opened before the restart succeeds (reopened by GFID)");
            Assert.That(holder.WaitForExit(10_000), Is.True);
        }
        finally
        {
            if (!holder.HasExited) holder.Kill();
        }
        Assert.That(File.ReadAllText(f), Is.EqualTo("before|after"));
    }

    [Test]
    public void GarbageOnTheBrickPortClosesThatConnectionOnly()
    {
        Shell.Must($"echo ok > '{_volume.PathOf("g")}'");
        var garbage = new byte[64 * 1024];
        Random.Shared.NextBytes(garbage);
        for (int i = 0; i < 5; i++)
        {
            using var c = new TcpClient();
            c.Connect(IPAddress.Loopback, _volume.Brick.Port);
            using var s = c.GetStream();
            s.WriteTimeout = 5000;
            try
            {
                s.Write(garbage);
            }
            catch (IOException)
            {
                // the brick may close on the first bad header, before all bytes are sent
            }
        }
        Assert.That(_volume.Brick.Pid, Is.Not.Null, "brickd is still running");
        Assert.That(Shell.Must($"cat '{_volume.PathOf("g")}'"), Is.EqualTo("ok\n"));
        Shell.Must($"echo more >> '{_volume.PathOf("g")}'");
    }
}
