using System.Diagnostics;
using Brickfs.Translators.Core;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Conformance;

/// <summary>storage/posix on a fresh export directory under /tmp (whatever filesystem that is).</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class PosixStorageConformance : StorageConformance
{
    private readonly List<string> _dirs = [];

    /// <summary>Where export directories are made; the Btrfs subclass points it at its loop mount.</summary>
    protected virtual string BaseDirectory => Path.GetTempPath();

    protected override async Task<Translator> CreateStorageAsync()
    {
        var dir = Path.Combine(BaseDirectory, "brickfs-posix-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        _dirs.Add(dir);
        var t = new PosixTranslator(TranslatorOptions.From(PosixTranslator.OptionSpecs, ("directory", dir)));
        await t.InitAsync(CancellationToken.None);
        return t;
    }

    [TearDown]
    public void RemoveExports()
    {
        foreach (var d in _dirs) Directory.Delete(d, recursive: true);
        _dirs.Clear();
    }
}

/// <summary>
/// The same contract on a loop-mounted Btrfs image: Btrfs's own link counts, d_off cookies,
/// fallocate modes and holes. Fails (does not skip) where Btrfs cannot be mounted.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
[Category("btrfs")]
[NonParallelizable]
public class BtrfsPosixStorageConformance : PosixStorageConformance
{
    private string _image = "";
    private string _mount = "";

    protected override string BaseDirectory => _mount;

    [OneTimeSetUp]
    public void MountBtrfs()
    {
        var work = Path.Combine(Path.GetTempPath(), "brickfs-btrfs-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(work);
        _image = Path.Combine(work, "brick.img");
        _mount = Path.Combine(work, "mnt");
        Directory.CreateDirectory(_mount);
        using (var f = File.Create(_image)) f.SetLength(256L << 20);
        Run("mkfs.btrfs", "-q", "-f", _image);
        Run("mount", "-o", "loop", _image, _mount);
        Assert.That(Run("stat", "-f", "-c", "%T", _mount).Trim(), Is.EqualTo("btrfs"));
    }

    [OneTimeTearDown]
    public void UnmountBtrfs()
    {
        if (_mount.Length > 0 && File.ReadAllText("/proc/mounts").Contains(_mount))
        {
            // Handles a test left open keep descriptors until finalized; a lazy unmount covers any left over.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            if (!TryRun("umount", _mount)) Run("umount", "-l", _mount);
        }
        if (_image.Length > 0) Directory.Delete(Path.GetDirectoryName(_image)!, recursive: true);
    }

    private static bool TryRun(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEndAsync();
        p.StandardError.ReadToEndAsync();
        return p.WaitForExit(TimeSpan.FromSeconds(60)) && p.ExitCode == 0;
    }

    private static string Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{program} {string.Join(' ', args)} timed out");
        }
        Assert.That(p.ExitCode, Is.EqualTo(0), $"{program} {string.Join(' ', args)}: {stderr.Result}");
        return stdout.Result;
    }
}
