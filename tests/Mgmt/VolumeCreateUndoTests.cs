using Brickfs.Mgmt.Api;
using Brickfs.Mgmt.Bricks;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Node;
using Brickfs.Mgmt.Store;
using Brickfs.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Brickfs.Tests.Mgmt;

/// <summary>
/// A create that makes its brick subvolumes and is then not stored leaves no subvolume behind:
/// the cluster store's compare-and-swap lost to another node's create of the same name (its
/// retry is refused), or etcd's answer was lost. One that was stored keeps them. The store here
/// plays etcd's part over the embedded store; the bricks are on a real Btrfs image.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class VolumeCreateUndoTests
{
    /// <summary>What the store does with one update: <c>change</c> applies the request to a state; the answer is the store's.</summary>
    private delegate ValueTask<MgmtResult<VolumeDefinition>> UpdatePlay(FileStateStore inner, Func<MgmtState, MgmtResult<VolumeDefinition>> change);

    private sealed class PlayedStore(FileStateStore inner, UpdatePlay play) : StateStore
    {
        public override ValueTask<MgmtState> ReadAsync(CancellationToken cancellation = default) => inner.ReadAsync(cancellation);

        public override async ValueTask<MgmtResult<T>> UpdateAsync<T>(Func<MgmtState, MgmtResult<T>> change, CancellationToken cancellation = default)
        {
            if (typeof(T) != typeof(VolumeDefinition)) return await inner.UpdateAsync(change, cancellation);
            // T is VolumeDefinition here: the same types at run time.
            var r = await play(inner, (Func<MgmtState, MgmtResult<VolumeDefinition>>)(object)change);
            return (MgmtResult<T>)(object)r;
        }
    }

    /// <summary>Applies the request to a private copy (its side effects happen) and stores nothing.</summary>
    private static async ValueTask<MgmtResult<VolumeDefinition>> ApplyToCopy(FileStateStore inner, Func<MgmtState, MgmtResult<VolumeDefinition>> change) =>
        change(MgmtJson.Clone(await inner.ReadAsync()));

    private static readonly MgmtError Lost = MgmtError.Unavailable("etcd is unavailable (the answer was lost)");

    private static async Task<(MgmtResult<VolumeDefinition> Result, string Brick)> CreateAsync(UpdatePlay play)
    {
        using var disk = new BtrfsImage("mgmt-undo", 512L << 20);
        string root = Directory.CreateTempSubdirectory("brickfs-undo-").FullName;
        try
        {
            await using var inner = FileStateStore.Open(Path.Combine(root, "state"));
            await using var supervisor = new BrickSupervisor("/bin/false", NullLogger.Instance);
            var store = new PlayedStore(inner, play);
            var validator = new VolumeValidator(h => h == "node1", p => MountPoint.Of(p), Btrfs.IsSubvolume);
            var volumes = new VolumeManager(store, validator, h => h == "node1", supervisor, Path.Combine(root, "state"), "127.0.0.1", NullLogger.Instance) { ProbePorts = false };
            string brick = Path.Combine(disk.MountPoint, "bricks", "b1");
            var result = await volumes.CreateAsync(new CreateVolumeRequest("v", [$"node1:{brick}", "node2:/x/a"]), CancellationToken.None);
            bool kept = Btrfs.IsSubvolume(brick);
            Assert.That(kept, Is.EqualTo(result.Ok), result.Ok ? "a stored create keeps its brick subvolume" : "a create not stored leaves no brick subvolume");
            Assert.That((await inner.ReadAsync()).FindVolume("v") is { } v && v.Bricks.Any(b => b.Path == brick), Is.EqualTo(result.Ok));
            return (result, brick);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task A_create_whose_retry_is_refused_because_another_node_took_the_name_removes_the_subvolumes_it_made()
    {
        var (result, _) = await CreateAsync(async (inner, change) =>
        {
            var first = await ApplyToCopy(inner, change);
            Assert.That(first.Ok, Is.True, "the first attempt passed and made the brick");
            // Meanwhile another node stored a volume of the same name: the compare fails, the retry sees it.
            await inner.UpdateAsync<bool>(s =>
            {
                s.Volumes.Add(new VolumeDefinition { Name = "v", Id = Guid.NewGuid(), Bricks = [new BrickDefinition { Host = "node3", Path = "/y/a", Number = 0 }] });
                return true;
            });
            return await inner.UpdateAsync(change);
        });
        Assert.That(result.Error?.Message, Is.EqualTo("volume v already exists"));
    }

    [Test, CancelAfter(60_000)]
    public async Task A_create_whose_commit_is_unknown_and_absent_removes_the_subvolumes_it_made()
    {
        var (result, _) = await CreateAsync(async (inner, change) =>
        {
            Assert.That((await ApplyToCopy(inner, change)).Ok, Is.True);
            return Lost;
        });
        Assert.That(result.Error, Is.EqualTo(Lost));
    }

    [Test, CancelAfter(60_000)]
    public async Task A_create_whose_answer_was_lost_but_which_committed_is_reported_done_and_keeps_its_subvolumes()
    {
        var (result, brick) = await CreateAsync(async (inner, change) =>
        {
            Assert.That((await inner.UpdateAsync(change)).Ok, Is.True);
            return Lost;
        });
        Assert.That(result.Ok, Is.True, result.Error?.Message);
        Assert.That(result.Value.Bricks[0].Path, Is.EqualTo(brick));
    }
}
