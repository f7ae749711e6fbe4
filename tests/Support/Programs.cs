namespace Brickfs.Tests.Support;

/// <summary>The Brickfs programs as built beside the test assembly (the test project references them).</summary>
public static class Programs
{
    public static string MountBrickfs => Find("mount.brickfs");
    public static string Brickd => Find("brickd");

    public static string Find(string name)
    {
        var path = System.IO.Path.Combine(AppContext.BaseDirectory, name);
        if (!File.Exists(path)) Assert.Fail($"program {name} is not built at {path}");
        return path;
    }
}
