using System.Text.Json;
using Brickfs.Mgmt.Model;

namespace Brickfs.Mgmt.Store;

/// <summary>
/// The embedded store of a standalone server: one JSON file, <c>state.json</c>, in the state
/// directory. Every update writes a temporary file, fsyncs it, renames it over the old file and
/// fsyncs the directory, so a crash at any moment leaves either the old or the new state on
/// disk, never a torn file. Temporary files left by a crash are ignored and removed on open.
/// One process owns a state directory at a time.
/// </summary>
public sealed class FileStateStore : StateStore
{
    public const string FileName = "state.json";

    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly string _directory;
    private MgmtState _state;

    private FileStateStore(string directory, MgmtState state)
    {
        _directory = directory;
        _state = state;
    }

    public string StatePath => Path.Combine(_directory, FileName);

    /// <summary>Opens (creating if needed) the store in <paramref name="directory"/>; a new store gets a fresh node id.</summary>
    public static FileStateStore Open(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        AtomicFile.RemoveStaleTemps(path);
        if (File.Exists(path))
        {
            MgmtState? state;
            try
            {
                state = JsonSerializer.Deserialize<MgmtState>(File.ReadAllBytes(path), MgmtJson.Options);
            }
            catch (JsonException e)
            {
                throw new IOException($"{path}: not a valid state file: {e.Message}", e);
            }
            return new FileStateStore(directory, state ?? throw new IOException($"{path}: empty state"));
        }
        var store = new FileStateStore(directory, new MgmtState { NodeId = Guid.NewGuid() });
        store.Write(store._state);
        return store;
    }

    public override async ValueTask<MgmtState> ReadAsync(CancellationToken cancellation = default)
    {
        await _lock.WaitAsync(cancellation);
        try
        {
            return MgmtJson.Clone(_state);
        }
        finally
        {
            _lock.Release();
        }
    }

    public override async ValueTask<MgmtResult<T>> UpdateAsync<T>(Func<MgmtState, MgmtResult<T>> change, CancellationToken cancellation = default)
    {
        await _lock.WaitAsync(cancellation);
        try
        {
            var copy = MgmtJson.Clone(_state);
            var result = change(copy);
            if (!result.Ok) return result;
            copy.Generation = _state.Generation + 1;
            Write(copy);
            _state = copy;
            return result;
        }
        finally
        {
            _lock.Release();
        }
    }

    private void Write(MgmtState state) =>
        AtomicFile.Write(StatePath, f => JsonSerializer.Serialize(f, state, MgmtJson.Indented));
}
