using Brickfs.Translators.Cluster.Distribute;
using Brickfs.Translators.Cluster.Replicate;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Features;
using Brickfs.Translators.Features.Bitrot;
using Brickfs.Translators.Features.Index;
using Brickfs.Translators.Protocol;
using Brickfs.Translators.Storage;

namespace Brickfs.Translators;

/// <summary>Every translator type Brickfs ships, registered under its type string.</summary>
internal static class BuiltinTypes
{
    public static TranslatorRegistry Register(TranslatorRegistry r) => r
        .Register(MemoryStorageTranslator.Type)
        .Register(PosixTranslator.Type)
        .Register(ErrorGenTranslator.Type)
        .Register(DelayGenTranslator.Type)
        .Register(LocksTranslator.Type)
        .Register(IndexTranslator.Type)
        .Register(BitrotTranslator.Type)
        .Register(ProtocolClientTranslator.Type)
        .Register(ProtocolServerTranslator.Type)
        .Register(ReplicateTranslator.Type)
        .Register(DistributeTranslator.Type);
}
