using Brickfs.Translators.Core;
using static Brickfs.Tests.Locks.LockBench;

namespace Brickfs.Tests.Locks;

/// <summary>
/// Random F_SETLK/F_GETLK/flush sequences for a few owners, checked step by step against a
/// reference model that keeps, per owner, the lock type of every byte of 0..63 plus one cell
/// standing for 64..EOF. The translator must agree on every answer, its table must cover exactly
/// the model's bytes, and it must stay canonical (an owner's same-type ranges never touch).
/// </summary>
public class LockModelTests
{
    private const int Bytes = 64;
    private const int Cells = Bytes + 1; // the last cell is [64, EOF]
    private const long Eof = long.MaxValue;

    private static readonly (string Client, ulong Owner)[] Owners = [("c1", 1), ("c1", 2), ("c2", 1)];

    [TestCase(1), TestCase(2), TestCase(3), TestCase(4), TestCase(5), TestCase(6), TestCase(7), TestCase(8)]
    public async Task RandomSequencesMatchTheByteMapModel(int seed)
    {
        await using var b = await StartAsync();
        var rng = new Random(seed);
        var model = new LockType?[Owners.Length, Cells];

        for (int step = 0; step < 400; step++)
        {
            int o = rng.Next(Owners.Length);
            var (client, owner) = Owners[o];
            long start = rng.Next(Bytes);
            long end = rng.Next(10) == 0 ? Eof : start + rng.Next(Math.Min(16, Bytes - (int)start));
            int dice = rng.Next(100);
            string what;

            if (dice < 80)
            {
                var type = dice < 32 ? LockType.Read : dice < 64 ? LockType.Write : LockType.Unlock;
                what = $"seed {seed} step {step}: SETLK {type} [{start},{End(end)}] by {client}/{owner}";
                var r = await b.SetAsync(Posix(type, start, end, owner, client));
                bool conflict = type != LockType.Unlock && ModelConflict(model, o, type, start, end) is not null;
                Assert.That(r.Error, Is.EqualTo(conflict ? Errno.EAGAIN : Errno.None), what);
                if (!conflict)
                {
                    for (long c = start; c <= Cell(end); c++) model[o, c] = type == LockType.Unlock ? null : type;
                }
            }
            else if (dice < 93)
            {
                var type = rng.Next(2) == 0 ? LockType.Read : LockType.Write;
                what = $"seed {seed} step {step}: GETLK {type} [{start},{End(end)}] by {client}/{owner}";
                var answer = (await b.GetAsync(Posix(type, start, end, owner, client))).Value;
                if (ModelConflict(model, o, type, start, end) is null)
                {
                    Assert.That(answer.Type, Is.EqualTo(LockType.Unlock), what);
                }
                else
                {
                    int holder = Array.IndexOf(Owners, (answer.ClientId, answer.Owner));
                    Assert.That(holder, Is.Not.EqualTo(-1).And.Not.EqualTo(o), $"{what}: answered {answer}");
                    Assert.That(answer.Start <= end && start <= answer.End, Is.True, $"{what}: {answer} does not overlap");
                    Assert.That(answer.Type == LockType.Write || type == LockType.Write, Is.True, $"{what}: {answer} does not conflict");
                    for (long c = answer.Start; c <= Cell(answer.End); c++)
                        Assert.That(model[holder, c], Is.EqualTo(answer.Type), $"{what}: {answer} is not what the model holds at {c}");
                }
            }
            else
            {
                what = $"seed {seed} step {step}: flush by {client}/{owner}";
                Assert.That((await b.Top.FlushAsync(Ctx(client, owner), b.File)).Ok, Is.True, what);
                for (int c = 0; c < Cells; c++) model[o, c] = null;
            }

            AssertTableMatches(b.State.Posix, model, what);
        }
    }

    private static long Cell(long offset) => Math.Min(offset, Bytes);

    private static string End(long end) => end == Eof ? "EOF" : end.ToString();

    /// <summary>The first cell where another owner's lock conflicts, or null.</summary>
    private static long? ModelConflict(LockType?[,] model, int requester, LockType type, long start, long end)
    {
        for (long c = start; c <= Cell(end); c++)
        {
            for (int p = 0; p < Owners.Length; p++)
            {
                if (p == requester || model[p, c] is not { } held) continue;
                if (held == LockType.Write || type == LockType.Write) return c;
            }
        }
        return null;
    }

    private static void AssertTableMatches(IReadOnlyList<FileLock> table, LockType?[,] model, string what)
    {
        var seen = new LockType?[Owners.Length, Cells];
        foreach (var l in table)
        {
            int o = Array.IndexOf(Owners, (l.ClientId, l.Owner));
            Assert.That(o, Is.Not.EqualTo(-1), $"{what}: unknown owner in {l}");
            Assert.That(l.End < Bytes || l.End == Eof, Is.True, $"{what}: {l} ends beyond the model's cells");
            for (long c = l.Start; c <= Cell(l.End); c++)
            {
                Assert.That(seen[o, c], Is.Null, $"{what}: two ranges of one owner overlap at {c}");
                seen[o, c] = l.Type;
            }
        }
        for (int o = 0; o < Owners.Length; o++)
        {
            for (int c = 0; c < Cells; c++)
                Assert.That(seen[o, c], Is.EqualTo(model[o, c]), $"{what}: owner {Owners[o]} at cell {c}");

            var mine = table.Where(l => (l.ClientId, l.Owner) == Owners[o]).OrderBy(l => l.Start).ToList();
            for (int i = 1; i < mine.Count; i++)
            {
                bool touch = mine[i - 1].End + 1 == mine[i].Start;
                Assert.That(touch && mine[i - 1].Type == mine[i].Type, Is.False,
                    $"{what}: {mine[i - 1]} and {mine[i]} should have merged");
            }
        }
    }
}
