using Brickfs.Translators.Core;

namespace Brickfs.Shd;

/// <summary>
/// Names for the GFIDs that heal info prints: the path under which a walk of the volume from the
/// root (breadth first, through the client graph, so every name is one a mount would show)
/// first meets each GFID. Bricks keep no name of a file by GFID (files are hard links in the GFID
/// index, only directories record their parent), so the walk is the only way from a GFID to a
/// path; it stops once every GFID has one or after <see cref="DefaultBudget"/> entries, and
/// callers show a GFID it did not reach as <c>&lt;gfid:...&gt;</c>, as GlusterFS does.
/// </summary>
internal static class PathResolver
{
    /// <summary>Entries a walk reads at most: a few seconds of listing on a large volume.</summary>
    public const int DefaultBudget = 200_000;

    public static async Task<IReadOnlyDictionary<Gfid, string>> ResolveAsync(Translator top, IEnumerable<Gfid> gfids, CancellationToken cancellation, int budget = DefaultBudget)
    {
        var wanted = new HashSet<Gfid>(gfids);
        var paths = new Dictionary<Gfid, string>();
        if (wanted.Remove(Gfid.Root)) paths[Gfid.Root] = "/";
        var ctx = new FopContext { Uid = 0, Gid = 0, ClientId = "brickfs-shd", Cancellation = cancellation };
        var queue = new Queue<(Gfid Dir, string Path)>();
        queue.Enqueue((Gfid.Root, ""));
        int read = 0;
        while (wanted.Count > 0 && queue.Count > 0 && read < budget)
        {
            var (dir, path) = queue.Dequeue();
            // Entries without attributes count: replicate drops those of files it knows stale on the
            // listing copy, and a file in split-brain is stale everywhere, yet info must name it.
            var entries = await SelfHealDaemon.ListAsync(top, ctx, dir, withoutAttributes: true);
            if (entries is null) continue; // unreadable here (split-brain, gone): its names stay GFIDs
            foreach (var e in entries)
            {
                read++;
                var gfid = e.Gfid!.Value;
                string p = path + "/" + e.Name;
                if (wanted.Remove(gfid)) paths[gfid] = p;
                if (e.Attr?.IsDirectory ?? e.Type == DtDir) queue.Enqueue((gfid, p));
            }
        }
        return paths;
    }

    private const byte DtDir = 4;
}
