using System.Globalization;

namespace Brickfs.Translators.Protocol;

/// <summary>
/// Where protocol/client and protocol/server write their log lines (connections opened, refused
/// and closed, with the reason). Defaults to stderr; brickd points it at its log file, tests at a
/// capture. Lines are whole and never interleave.
/// </summary>
public sealed class ProtocolLog
{
    private readonly TextWriter _writer;
    private readonly Lock _lock = new();

    public ProtocolLog(TextWriter writer) => _writer = writer;

    public static ProtocolLog Stderr { get; } = new(Console.Error);

    /// <summary>Writes one line: time, level (I/W/E), the volume it concerns, the text.</summary>
    public void Write(char level, string volume, string text)
    {
        string line = string.Create(CultureInfo.InvariantCulture, $"[{DateTime.UtcNow:yyyy-MM-dd HH:mm:ss.fff}] {level} [{volume}] {text}");
        lock (_lock)
        {
            _writer.WriteLine(line);
            _writer.Flush();
        }
    }
}
