using System.Text;
using Brickfs.Mgmt.Model;
using Brickfs.Mgmt.Store;

namespace Brickfs.Tests.Mgmt;

public class FileStateStoreTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("brickfs-store-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static VolumeDefinition Volume(string name) => new() { Name = name, Id = Guid.NewGuid() };

    [Test]
    public async Task A_new_store_gets_a_node_id_that_survives_reopening()
    {
        Guid id;
        await using (var store = FileStateStore.Open(_dir)) id = (await store.ReadAsync()).NodeId;
        Assert.That(id, Is.Not.EqualTo(Guid.Empty));
        await using var again = FileStateStore.Open(_dir);
        Assert.That((await again.ReadAsync()).NodeId, Is.EqualTo(id));
    }

    [Test]
    public async Task An_update_is_on_disk_when_it_returns()
    {
        await using (var store = FileStateStore.Open(_dir))
        {
            var r = await store.UpdateAsync<int>(s => { s.Volumes.Add(Volume("v1")); return 1; });
            Assert.That(r.Ok);
        }
        await using var again = FileStateStore.Open(_dir);
        var state = await again.ReadAsync();
        Assert.That(state.Volumes.Select(v => v.Name), Is.EqualTo(new[] { "v1" }));
        Assert.That(state.Generation, Is.EqualTo(1), "one update since the store was created");
    }

    [Test]
    public async Task A_refused_update_stores_nothing()
    {
        await using var store = FileStateStore.Open(_dir);
        var before = await File.ReadAllBytesAsync(store.StatePath);
        var r = await store.UpdateAsync<int>(s =>
        {
            s.Volumes.Add(Volume("half-made"));
            return MgmtError.Invalid("no");
        });
        Assert.That(r.Ok, Is.False);
        Assert.That(r.Error!.Message, Is.EqualTo("no"));
        Assert.That(await File.ReadAllBytesAsync(store.StatePath), Is.EqualTo(before));
        Assert.That((await store.ReadAsync()).Volumes, Is.Empty);
    }

    [Test]
    public async Task Changing_what_ReadAsync_returned_changes_nothing_stored()
    {
        await using var store = FileStateStore.Open(_dir);
        var copy = await store.ReadAsync();
        copy.Volumes.Add(Volume("not-stored"));
        Assert.That((await store.ReadAsync()).Volumes, Is.Empty);
    }

    [Test]
    public async Task A_crash_while_writing_leaves_the_old_state_and_the_torn_temp_file_is_ignored()
    {
        await using (var store = FileStateStore.Open(_dir))
            await store.UpdateAsync<int>(s => { s.Volumes.Add(Volume("old")); return 1; });
        // What a crash between "write temp" and "rename" leaves: a partial new state beside the old one.
        var torn = Path.Combine(_dir, FileStateStore.FileName + AtomicFile.TempMarker + "deadbeef");
        await File.WriteAllTextAsync(torn, "{\"generation\": 3, \"volumes\": [{\"name\": \"new\", \"id\"");

        await using var again = FileStateStore.Open(_dir);
        Assert.That((await again.ReadAsync()).Volumes.Select(v => v.Name), Is.EqualTo(new[] { "old" }));
        Assert.That(File.Exists(torn), Is.False, "stale temp files are removed on open");
    }

    [Test]
    public async Task Updates_leave_no_temp_files_and_the_file_is_always_complete_json()
    {
        await using var store = FileStateStore.Open(_dir);
        await Task.WhenAll(Enumerable.Range(0, 20).Select(i =>
            store.UpdateAsync<int>(s => { s.Volumes.Add(Volume($"v{i}")); return i; }).AsTask()));
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName), Is.EqualTo(new[] { FileStateStore.FileName }));
        await using var again = FileStateStore.Open(_dir);
        Assert.That((await again.ReadAsync()).Volumes, Has.Count.EqualTo(20), "serialised updates: none lost");
    }

    [Test]
    public void A_corrupt_state_file_is_an_error_naming_it_not_an_empty_state()
    {
        File.WriteAllText(Path.Combine(_dir, FileStateStore.FileName), "{ not json", Encoding.UTF8);
        var e = Assert.Throws<IOException>(() => FileStateStore.Open(_dir));
        Assert.That(e!.Message, Does.Contain(FileStateStore.FileName));
    }
}
