using System.ComponentModel;
using System.Diagnostics;

namespace Brickfs.Mgmt.Node;

/// <summary>How a run of an outside program ended.</summary>
internal sealed record ToolRun(string? StartError, bool TimedOut, int ExitCode, string Stdout, string Stderr)
{
    public bool Ok => StartError is null && !TimedOut && ExitCode == 0;
}

/// <summary>
/// Runs an outside program (btrfs, brickfs-shd) to completion with its output captured and a
/// time limit: one that does not finish in time, or whose caller gives up, is killed with its
/// children. A program that cannot be started is reported, not thrown.
/// </summary>
internal static class Tool
{
    public static async Task<ToolRun> RunAsync(string program, IEnumerable<string> args, TimeSpan timeout, CancellationToken ct = default)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException("no process");
        }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException)
        {
            return new ToolRun(e.Message, false, -1, "", "");
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = p.StandardError.ReadToEndAsync(CancellationToken.None);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
            limit.CancelAfter(timeout);
            try
            {
                await p.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                return new ToolRun(null, true, -1, "", "");
            }
            return new ToolRun(null, false, p.ExitCode, await stdout, await stderr);
        }
    }
}
