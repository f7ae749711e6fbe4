using Brickfs.Translators.Core;
using Brickfs.Translators.Protocol;

namespace Brickfs.Translators.Features.Bitrot;

/// <summary>One brick's answer: its scrubber status, or the errno that kept it from answering.</summary>
/// <param name="Brick">The volume name of the graph node that reaches the brick (a protocol/client, or a local features/bitrot).</param>
public sealed record BrickScrub(string Brick, Errno Error, BitrotStatus? Status);

/// <summary>
/// The scrubber's control path for tools that hold a client graph (the management plane's
/// <c>brickctl volume bitrot VOL scrub status|ondemand</c>, brickfs-shd): every brick of the graph
/// is asked through the virtual root xattrs of features/bitrot
/// (<see cref="BitrotTranslator.ScrubStatusXattr"/>, <see cref="BitrotTranslator.ScrubNowXattr"/>),
/// so no fop is added to the wire. The bricks are the graph's protocol/client nodes, or
/// features/bitrot nodes of a local graph; each is asked directly, not through cluster
/// translators, so every brick answers for itself. The FUSE mount refuses these xattrs to
/// applications, so only such tools reach them, and the bricks answer root callers only.
/// </summary>
public static class ScrubControl
{
    private static FopContext Ctx(CancellationToken cancellation) =>
        new() { Uid = 0, Gid = 0, Pid = 0, ClientId = "bitrot-scrub-control", Cancellation = cancellation };

    /// <summary>The nodes of <paramref name="top"/>'s graph that reach a brick, in graph order, each once.</summary>
    public static IReadOnlyList<Translator> Bricks(Translator top)
    {
        var found = new List<Translator>();
        var seen = new HashSet<Translator>(ReferenceEqualityComparer.Instance);
        void Walk(Translator t)
        {
            if (!seen.Add(t)) return;
            if (t is ProtocolClientTranslator or BitrotTranslator)
            {
                found.Add(t);
                return;
            }
            foreach (var c in t.Children) Walk(c);
        }
        Walk(top);
        return found;
    }

    /// <summary>Every brick's scrubber status, asked in parallel. A brick without features/bitrot answers ENODATA (or ENOTCONN when down).</summary>
    public static async Task<IReadOnlyList<BrickScrub>> StatusAsync(Translator top, CancellationToken cancellation = default)
    {
        var ctx = Ctx(cancellation);
        return await Task.WhenAll(Bricks(top).Select(async b =>
        {
            var r = await b.GetxattrAsync(ctx, Gfid.Root, BitrotTranslator.ScrubStatusXattr);
            if (!r.Ok) return new BrickScrub(b.Name, r.Error, null);
            var status = BitrotStatus.FromJson(r.Value);
            return new BrickScrub(b.Name, status is null ? Errno.EPROTO : Errno.None, status);
        }));
    }

    /// <summary>
    /// Starts an on-demand pass on every brick (a brick already scrubbing goes on with its pass)
    /// and returns at once with each brick's answer: None, ENOTSUP (bitrot off), ENOTCONN...
    /// </summary>
    public static async Task<IReadOnlyList<BrickScrub>> StartAsync(Translator top, CancellationToken cancellation = default)
    {
        var ctx = Ctx(cancellation);
        return await Task.WhenAll(Bricks(top).Select(async b =>
        {
            var r = await b.SetxattrAsync(ctx, Gfid.Root, BitrotTranslator.ScrubNowXattr, "1"u8.ToArray(), 0);
            return new BrickScrub(b.Name, r.Error, null);
        }));
    }

    /// <summary>
    /// Starts an on-demand pass on every brick and waits until each brick that accepted it has
    /// completed a pass more than before and is idle, polling every <paramref name="poll"/>;
    /// returns the final statuses (bricks that refused or stopped answering keep their errno).
    /// Bounded only by <paramref name="cancellation"/>: a pass takes as long as the throttle makes it.
    /// </summary>
    public static async Task<IReadOnlyList<BrickScrub>> ScrubAndWaitAsync(Translator top, TimeSpan poll, CancellationToken cancellation = default)
    {
        var before = (await StatusAsync(top, cancellation)).ToDictionary(b => b.Brick, b => b.Status?.Passes ?? 0);
        var started = (await StartAsync(top, cancellation)).Where(b => b.Error == Errno.None).Select(b => b.Brick).ToHashSet();
        while (true)
        {
            var now = await StatusAsync(top, cancellation);
            bool done = now.All(b => !started.Contains(b.Brick) || b.Error != Errno.None
                || b.Status is { Running: false } s && s.Passes > before.GetValueOrDefault(b.Brick));
            if (done) return now;
            await Task.Delay(poll, cancellation);
        }
    }
}
