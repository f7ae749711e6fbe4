using Brickfs.Translators.Core;

namespace Brickfs.Translators.Storage.Posix;

/// <summary>
/// Layout of the GFID index under <c>.brickfs/gfid/</c>: <c>aa/bb/&lt;uuid&gt;</c>, where aa and bb
/// are the first two bytes of the UUID in hex. Non-directories are hard links there; a directory
/// is a relative symlink naming its parent's index entry and its own name, so the kernel resolves
/// a chain of them to the directory without leaving the export.
/// </summary>
internal static class GfidIndex
{
    public const string Xattr = BrickXattrs.Gfid;
    public const string HiddenDir = ".brickfs";
    public const string IndexFromRoot = ".brickfs/gfid/";

    /// <summary>The index's own directory inside <see cref="HiddenDir"/>: off limits even to brick-internal callers.</summary>
    public const string IndexDirName = "gfid";

    /// <summary>From an index bucket (<c>.brickfs/gfid/aa/bb</c>) up to the export root.</summary>
    private const string ToRoot = "../../../../";

    /// <summary>"aa/bb/uuid", relative to <c>.brickfs/gfid</c>.</summary>
    public static string RelPath(Gfid g)
    {
        string s = g.ToString();
        return string.Create(6 + s.Length, s, static (span, u) =>
        {
            span[0] = u[0];
            span[1] = u[1];
            span[2] = '/';
            span[3] = u[2];
            span[4] = u[3];
            span[5] = '/';
            u.AsSpan().CopyTo(span[6..]);
        });
    }

    public static string Bucket1(Gfid g) => g.ToString()[..2];
    public static string Bucket2(Gfid g) { string s = g.ToString(); return s[..2] + "/" + s[2..4]; }

    /// <summary>The symlink target of a directory named <paramref name="name"/> in <paramref name="parent"/>.</summary>
    public static string DirTarget(Gfid parent, string name) =>
        parent == Gfid.Root ? ToRoot + name : "../../" + RelPath(parent) + "/" + name;

    /// <summary>Splits a directory symlink target back into parent GFID and name; false if it is not one of ours.</summary>
    public static bool TryParseDirTarget(string target, out Gfid parent, out string name)
    {
        parent = default;
        name = "";
        if (target.StartsWith(ToRoot, StringComparison.Ordinal))
        {
            parent = Gfid.Root;
            name = target[ToRoot.Length..];
            return IsPlainName(name);
        }
        if (!target.StartsWith("../../", StringComparison.Ordinal)) return false;
        var rest = target.AsSpan(6);
        // aa/bb/uuid/name
        if (rest.Length < 6 + 36 + 2 || rest[2] != '/' || rest[5] != '/' || rest[6 + 36] != '/') return false;
        if (!Gfid.TryParse(rest.Slice(6, 36).ToString(), out parent)) return false;
        name = rest[(6 + 36 + 1)..].ToString();
        return IsPlainName(name);
    }

    private static bool IsPlainName(string name) => name.Length > 0 && name != "." && name != ".." && !name.Contains('/');
}
