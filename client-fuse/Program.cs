namespace Brickfs.ClientFuse;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("mount.brickfs: not built yet");
        return 1;
    }
}
