using System.Diagnostics;

namespace Brickfs.Tests.Support;

public sealed record ShellResult(int ExitCode, string Stdout, string Stderr)
{
    public bool Ok => ExitCode == 0;
    public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
}

/// <summary>Runs programs for integration tests, always with a timeout (a hung child is killed and reported).</summary>
public static class Shell
{
    public static ShellResult Run(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        IDictionary<string, string>? env = null, string? workDir = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null,
            UseShellExecute = false, WorkingDirectory = workDir ?? "/",
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var outTask = p.StandardOutput.ReadToEndAsync();
        var errTask = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        if (!p.WaitForExit(limit))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.WaitForExit(5000);
            return new ShellResult(-1, outTask.Result, errTask.Result + $"\n[killed after {limit.TotalSeconds} s timeout]");
        }
        return new ShellResult(p.ExitCode, outTask.Result, errTask.Result);
    }

    public static ShellResult Sh(string script, TimeSpan? timeout = null, string? stdin = null) =>
        Run("/bin/sh", ["-c", script], timeout, stdin);

    /// <summary>Runs a command and fails the test if it does not exit 0.</summary>
    public static string Must(string script, TimeSpan? timeout = null)
    {
        var r = Sh(script, timeout);
        if (!r.Ok) Assert.Fail($"`{script}` failed: {r}");
        return r.Stdout;
    }
}
