namespace Brickfs.Mgmt.Model;

/// <summary>Why a management request was refused; maps onto an HTTP status at the API.</summary>
public enum MgmtErrorKind
{
    Invalid,
    NotFound,
    Conflict,
    Unavailable,
}

/// <summary>An expected failure: one line a user can act on.</summary>
public sealed record MgmtError(MgmtErrorKind Kind, string Message)
{
    public static MgmtError Invalid(string message) => new(MgmtErrorKind.Invalid, message);
    public static MgmtError NotFound(string message) => new(MgmtErrorKind.NotFound, message);
    public static MgmtError Conflict(string message) => new(MgmtErrorKind.Conflict, message);
    public static MgmtError Unavailable(string message) => new(MgmtErrorKind.Unavailable, message);

    public static MgmtError NoSuchVolume(string name) => NotFound($"volume {name} does not exist");
}

/// <summary>A value or an <see cref="MgmtError"/>; expected failures travel as values, not exceptions.</summary>
public readonly struct MgmtResult<T>
{
    private readonly T? _value;

    private MgmtResult(T? value, MgmtError? error)
    {
        _value = value;
        Error = error;
    }

    public MgmtError? Error { get; }
    public bool Ok => Error is null;
    public T Value => Error is null ? _value! : throw new InvalidOperationException($"no value: {Error.Message}");

    public static implicit operator MgmtResult<T>(T value) => new(value, null);
    public static implicit operator MgmtResult<T>(MgmtError error) => new(default, error);
}
