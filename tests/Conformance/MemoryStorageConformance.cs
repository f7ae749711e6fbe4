using Brickfs.Translators.Core;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Conformance;

public class MemoryStorageConformance : StorageConformance
{
    protected override Task<Translator> CreateStorageAsync() => Task.FromResult<Translator>(new MemoryStorageTranslator());
}
