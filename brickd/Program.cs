namespace Brickfs.Brickd;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("brickd: not built yet");
        return 1;
    }
}
