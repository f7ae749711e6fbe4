using Brickfs.Mgmt.Model;

namespace Brickfs.Mgmt.Node;

/// <summary>
/// The Btrfs operations snapshots need, through btrfs-progs (the <c>btrfs</c> program), each with
/// a timeout. Failures come back as one line naming the path and btrfs's own reason.
/// </summary>
public static class Btrfs
{
    public static TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Whether <paramref name="path"/> is the root of a Btrfs subvolume (what one snapshot covers).</summary>
    public static bool IsSubvolume(string path) =>
        Directory.Exists(path) && MountPoint.Of(path).FileSystemType == "btrfs" && Run("subvolume", "show", path) is null;

    public static MgmtError? CreateSubvolume(string path)
    {
        var parent = Path.GetDirectoryName(path);
        if (parent is not null) Directory.CreateDirectory(parent);
        return Run("subvolume", "create", path);
    }

    /// <summary>Snapshots subvolume <paramref name="source"/> as <paramref name="target"/> (whose parent is created).</summary>
    public static MgmtError? Snapshot(string source, string target, bool readOnly)
    {
        var parent = Path.GetDirectoryName(target);
        if (parent is not null) Directory.CreateDirectory(parent);
        return readOnly ? Run("subvolume", "snapshot", "-r", source, target) : Run("subvolume", "snapshot", source, target);
    }

    /// <summary>Deletes a subvolume (and nothing else: a plain directory is refused by btrfs).</summary>
    public static MgmtError? DeleteSubvolume(string path) => Run("subvolume", "delete", path);

    private static MgmtError? Run(params string[] args)
    {
        var run = Tool.RunAsync("btrfs", args, Timeout).GetAwaiter().GetResult();
        if (run.StartError is not null) return MgmtError.Unavailable($"cannot run btrfs (is btrfs-progs installed?): {run.StartError}");
        if (run.TimedOut) return MgmtError.Unavailable($"btrfs {string.Join(' ', args)}: no answer within {Timeout.TotalSeconds:0} s");
        if (run.ExitCode == 0) return null;
        string why = (run.Stderr.Trim().Split('\n').LastOrDefault() ?? "").Trim();
        return MgmtError.Unavailable($"btrfs {string.Join(' ', args)}: {(why.Length > 0 ? why : $"exit status {run.ExitCode}")}");
    }
}
