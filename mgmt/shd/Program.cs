using System.Runtime.InteropServices;

namespace Brickfs.Shd;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        using var stop = new CancellationTokenSource();
        // SIGTERM (systemd stop) and SIGINT end the daemon between heals; a heal in flight finishes its fop and unlocks.
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        return await ShdCommand.RunAsync(args, Console.Out, Console.Error, stop.Token);
    }
}
