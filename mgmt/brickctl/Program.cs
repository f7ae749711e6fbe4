
namespace Brickfs.Brickctl;

public static class Program
{
    public static Task<int> Main(string[] args) => Brickfs.Mgmt.Cli.Brickctl.RunAsync(args, Console.Out, Console.Error);
}
