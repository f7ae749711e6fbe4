namespace Brickfs.Mgmt.Node;

/// <summary>The mount a path lives on, from /proc/self/mountinfo: its mount point and filesystem type.</summary>
public sealed record MountPoint(string Path, string FileSystemType)
{
    public bool IsRoot => Path == "/";

    /// <summary>
    /// The mount holding <paramref name="path"/>, which need not exist yet (bricks are created at
    /// start): the longest mount point that is a prefix of the path. Symlinks in the path are
    /// not followed, so a brick path should be the real path.
    /// </summary>
    public static MountPoint Of(string path, string mountinfo = "/proc/self/mountinfo")
    {
        MountPoint best = new("/", "unknown");
        foreach (var line in File.ReadLines(mountinfo))
        {
            // id parent major:minor root mountpoint options [optional...] - fstype source superopts
            var fields = line.Split(' ');
            int dash = Array.IndexOf(fields, "-");
            if (fields.Length < 5 || dash < 0 || dash + 1 >= fields.Length) continue;
            var mp = Unescape(fields[4]);
            if (!Contains(mp, path)) continue;
            if (mp.Length >= best.Path.Length) best = new MountPoint(mp, fields[dash + 1]);
        }
        return best;
    }

    private static bool Contains(string mountPoint, string path) =>
        mountPoint == "/" || path == mountPoint || path.StartsWith(mountPoint + "/", StringComparison.Ordinal);

    // mountinfo escapes space, tab, newline and backslash as \ooo.
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && IsOctal(s, i + 1))
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                sb.Append(s[i]);
            }
        }
        return sb.ToString();
    }

    private static bool IsOctal(string s, int at) =>
        at + 3 <= s.Length && s[at] is >= '0' and <= '7' && s[at + 1] is >= '0' and <= '7' && s[at + 2] is >= '0' and <= '7';
}
