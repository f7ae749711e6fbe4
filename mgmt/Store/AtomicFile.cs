using Brickfs.Mgmt.Interop;

namespace Brickfs.Mgmt.Store;

/// <summary>Replaces a file so that a crash at any moment leaves the old or the new content, never a mix.</summary>
public static class AtomicFile
{
    public const string TempMarker = ".tmp.";

    /// <summary>Writes a temporary file beside <paramref name="path"/>, fsyncs it, renames it over the target and fsyncs the directory.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temp = path + TempMarker + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var f = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(f);
                f.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        Native.FsyncDirectory(directory);
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>Removes temporary files a crash left beside <paramref name="path"/>.</summary>
    public static void RemoveStaleTemps(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        foreach (var stale in Directory.EnumerateFiles(directory, Path.GetFileName(path) + TempMarker + "*")) File.Delete(stale);
    }
}
