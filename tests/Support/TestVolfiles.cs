namespace Brickfs.Tests.Support;

/// <summary>Volfile text for in-process test graphs, so every test stack spells a brick the same way.</summary>
public static class TestVolfiles
{
    /// <summary>
    /// One brick as DESIGN.md stacks it (storage -> features/index -> features/locks) under a
    /// debug/error-gen named <c>b{i}</c> that answers ENOTCONN while active: the test's switch
    /// for taking the brick down. <paramref name="storage"/> is the storage volume's body
    /// (type and options), e.g. <c>type storage/memory</c>.
    /// </summary>
    public static string FaultableBrick(int i, string storage) => $"""
        volume b{i}-store
        {Indent(storage)}
        end-volume
        volume b{i}-index
            type features/index
            subvolumes b{i}-store
        end-volume
        volume b{i}-locks
            type features/locks
            subvolumes b{i}-index
        end-volume
        volume b{i}
            type debug/error-gen
            option error-no ENOTCONN
            subvolumes b{i}-locks
        end-volume

        """;

    public static string MemoryStorage => "type storage/memory";

    public static string PosixStorage(string directory) => $"type storage/posix\noption directory {directory}";

    private static string Indent(string body) => string.Join('\n', body.Split('\n').Select(l => "    " + l.Trim()));
}
