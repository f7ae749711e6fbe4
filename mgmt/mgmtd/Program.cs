using Brickfs.Mgmt.Api;

namespace Brickfs.Mgmtd;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = MgmtdOptions.Parse(args, out var error);
        if (options is null)
        {
            if (error is null)
            {
                Console.WriteLine(MgmtdOptions.Usage);
                return 0;
            }
            Console.Error.WriteLine($"brickfs-mgmtd: {error}");
            return 2;
        }
        MgmtHost host;
        try
        {
            host = MgmtHost.Create(options);
            await host.StartAsync();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"brickfs-mgmtd: {e.Message}");
            return 1;
        }
        await using (host)
        {
            await host.WaitForShutdownAsync();
        }
        return 0;
    }
}
