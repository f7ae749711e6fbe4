using Brickfs.Tests.Support;

namespace Brickfs.Tests.Integration;

/// <summary>
/// A test with its own scratch directory and mount point, and the disks and daemons it starts
/// (<see cref="Own{T}"/>), which are undone in reverse order after the mount is gone.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public abstract class ScratchMountTest
{
    private readonly List<IDisposable> _owned = [];

    /// <summary>The prefix of the scratch directory's name under the temp directory.</summary>
    protected abstract string ScratchPrefix { get; }

    protected string _work = "", _mnt = "";

    [SetUp]
    public void CreateScratch()
    {
        _work = Directory.CreateTempSubdirectory(ScratchPrefix).FullName;
        _mnt = Directory.CreateDirectory(Path.Combine(_work, "mnt")).FullName;
    }

    [TearDown]
    public void RemoveScratch()
    {
        Shell.Sh($"umount '{_mnt}' 2>/dev/null || umount -l '{_mnt}' 2>/dev/null", TimeSpan.FromSeconds(30));
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
        Directory.Delete(_work, recursive: true);
    }

    protected T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }
}
