using System.Globalization;

namespace Brickfs.ClientFuse.Host;

/// <summary>
/// One structured line per event: <c>time level event key=value ...</c>. Logging is never on the
/// data path (only failures and lifecycle), so one lock around the writer is enough.
/// </summary>
public sealed class Log : IDisposable
{
    private readonly TextWriter _writer;
    private readonly bool _ownsWriter;
    private readonly Lock _lock = new();

    public Log(TextWriter writer, bool ownsWriter = false)
    {
        _writer = writer;
        _ownsWriter = ownsWriter;
    }

    /// <summary>A log appending to <paramref name="path"/> (its directory is created).</summary>
    public static Log ToFile(string path)
    {
        var dir = Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        return new Log(new StreamWriter(stream) { AutoFlush = true }, ownsWriter: true);
    }

    public static Log Null { get; } = new(TextWriter.Null);

    public void Info(string evt, string details = "") => Write("info", evt, details);
    public void Warn(string evt, string details = "") => Write("warn", evt, details);
    public void Error(string evt, string details = "") => Write("error", evt, details);

    private void Write(string level, string evt, string details)
    {
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {level} {evt}{(details.Length > 0 ? " " : "")}{details}");
        lock (_lock)
        {
            try
            {
                _writer.WriteLine(line);
                _writer.Flush();
            }
            catch (IOException)
            {
                // A full or vanished log disk must not take the mount down.
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    public void Dispose()
    {
        if (_ownsWriter) lock (_lock) _writer.Dispose();
    }
}
