using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Brickfs.Tests.Support;

namespace Brickfs.Tests.Mgmt;

/// <summary>The built executables and the systemd unit, as an administrator runs them.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class MgmtProgramsTests
{
    private static string Unit(string name, [CallerFilePath] string source = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", "..", "mgmt", "systemd", name));

    [TestCase("brickfs-mgmtd.service", "brickfs-mgmtd.service", "brickfs-mgmtd", "Type=notify")]
    [TestCase("brickfs-shd@.service", "brickfs-shd@gv0.service", "brickfs-shd", "--volume %i")]
    public void The_systemd_units_pass_systemd_analyze_verify(string unit, string instance, string program, string expected)
    {
        // verify insists that ExecStart exists; point it at the build instead of the installed path.
        var text = File.ReadAllText(Unit(unit));
        Assert.That(text, Does.Contain($"ExecStart=/usr/local/bin/{program} ").And.Contain(expected));
        Assert.That(File.ReadAllText(Unit("../../install.sh")), Does.Contain($"mgmt/systemd/{unit} /etc/systemd/system/{unit}"), "install.sh installs the unit");
        var dir = Directory.CreateTempSubdirectory("brickfs-unit-").FullName;
        try
        {
            var copy = Path.Combine(dir, instance);
            File.WriteAllText(copy, text.Replace($"/usr/local/bin/{program}", Programs.Find(program)));
            // Other tests in this process may have set umask 0; verify warns about world-writable units.
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
    public void The_programs_answer_help_and_refuse_bad_arguments_with_one_line()
    {
        var help = Shell.Run(Programs.Find("brickfs-mgmtd"), ["--help"], TimeSpan.FromSeconds(30));
        Assert.That(help.Ok && help.Stdout.StartsWith("usage: brickfs-mgmtd"), help.ToString());
        var bad = Shell.Run(Programs.Find("brickfs-mgmtd"), ["--listen"], TimeSpan.FromSeconds(30));
        Assert.That(bad.ExitCode, Is.EqualTo(2), bad.ToString());
        Assert.That(bad.Stderr, Is.EqualTo("brickfs-mgmtd: --listen needs a value\n"));
        var ctl = Shell.Run(Programs.Find("brickctl"), ["volume", "create", "--help"], TimeSpan.FromSeconds(30));
        Assert.That(ctl.Ok && ctl.Stdout.StartsWith("usage: brickctl volume create VOL [replica N [arbiter 1]] HOST:/BRICKDIR... [force]"), ctl.ToString());
    }

    [Test]
    public async Task The_real_daemon_serves_brickctl_and_exits_cleanly_on_SIGTERM()
    {
        var dir = Directory.CreateTempSubdirectory("brickfs-mgmtd-exe-").FullName;
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var psi = new ProcessStartInfo(Programs.Find("brickfs-mgmtd"))
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in new[] { "--state-dir", Path.Combine(dir, "state"), "--listen", $"127.0.0.1:{port}", "--node-address", "node1" })
            psi.ArgumentList.Add(a);
        using var daemon = Process.Start(psi)!;
        var stdout = daemon.StandardOutput.ReadToEndAsync();
        var stderr = daemon.StandardError.ReadToEndAsync();
        try
        {
            string ctl = Programs.Find("brickctl");
            string[] server = ["--server", $"127.0.0.1:{port}", "--timeout", "5"];
            await Eventually.HoldsAsync(TimeSpan.FromSeconds(20), () => Shell.Run(ctl, [.. server, "volume", "list"], TimeSpan.FromSeconds(10)).Ok,
                "brickfs-mgmtd answers");
            var create = Shell.Run(ctl, [.. server, "volume", "create", "v", "node2:/srv/b"], TimeSpan.FromSeconds(10));
            Assert.That(create.Stdout, Is.EqualTo("volume create: v: success: please start the volume to access data\n"), create.ToString());
            Assert.That(File.ReadAllText(Path.Combine(dir, "state", "state.json")), Does.Contain("\"node2\""));

            Assert.That(Shell.Run("kill", ["-TERM", daemon.Id.ToString()]).Ok);
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await daemon.WaitForExitAsync(limit.Token);
            Assert.That(daemon.ExitCode, Is.EqualTo(0), await stderr + await stdout);
        }
        finally
        {
            if (!daemon.HasExited) daemon.Kill();
            Directory.Delete(dir, recursive: true);
        }
    }
}
