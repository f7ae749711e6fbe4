using System.Diagnostics;
using System.Text;

namespace Brickfs.Tests.Integration;

/// <summary>
/// The real <c>sqlite3</c> shell running a script from stdin, in the background. Every wait has
/// a deadline; Dispose kills it (and any `.shell` child) if it still runs.
/// </summary>
public sealed class SqliteProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _err = new();

    private SqliteProcess(string database, string script)
    {
        var psi = new ProcessStartInfo("sqlite3")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = "/",
        };
        psi.ArgumentList.Add(database);
        _process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start sqlite3");
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _process.StandardInput.Write(script);
        _process.StandardInput.Close();
    }

    public static SqliteProcess Start(string database, string script) => new(database, script);

    /// <summary>Runs a script to the end and returns (stdout, stderr); fails the test if it outlives <paramref name="timeout"/>.</summary>
    public static (string Out, string Err) Run(string database, string script, TimeSpan? timeout = null)
    {
        using var p = Start(database, script);
        if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(60))) Assert.Fail($"sqlite3 on {database} did not finish in time; stderr: {p.Stderr}");
        return (p.Stdout, p.Stderr);
    }

    public int Pid => _process.Id;

    public string Stdout { get { lock (_out) return _out.ToString(); } }

    public string Stderr { get { lock (_err) return _err.ToString(); } }

    public int ExitCode => _process.ExitCode;

    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout)) return false;
        _process.WaitForExit(); // drains the output readers
        return true;
    }

    public void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}
