using Brickfs.Translators.Core;

namespace Brickfs.Tests.Support;

/// <summary>Whole-file helpers over a translator graph (a client graph in the test process: no kernel page cache in the way).</summary>
public static class GraphFiles
{
    /// <summary>Reads the file at <paramref name="path"/> (names separated by '/') whole; the errno of the first lookup, open or read that fails, with what was read before it.</summary>
    public static async Task<(Errno Error, byte[] Data)> ReadAllAsync(Translator top, string path)
    {
        var ctx = FopContext.Internal();
        var gfid = Gfid.Root;
        foreach (var name in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var l = await top.LookupAsync(ctx, gfid, name);
            if (!l.Ok) return (l.Error, []);
            gfid = l.Value.Gfid;
        }
        var fd = new FileHandle(gfid, OpenFlags.ReadOnly);
        var o = await top.OpenAsync(ctx, fd);
        if (!o.Ok) return (o.Error, []);
        try
        {
            using var all = new MemoryStream();
            while (true)
            {
                var r = await top.ReadAsync(ctx, fd, all.Length, 1 << 20);
                if (!r.Ok) return (r.Error, all.ToArray());
                using var b = r.Value;
                if (b.Length == 0) return (Errno.None, all.ToArray());
                all.Write(b.Span);
            }
        }
        finally
        {
            await top.ReleaseAsync(ctx, fd);
        }
    }
}
