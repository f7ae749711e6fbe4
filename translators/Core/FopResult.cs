namespace Brickfs.Translators.Core;

/// <summary>The outcome of a fop that returns nothing but success or an errno.</summary>
public readonly struct FopResult
{
    public Errno Error { get; }
    public bool Ok => Error == Errno.None;

    private FopResult(Errno error) => Error = error;

    public static readonly FopResult Success = new(Errno.None);
    public static FopResult Fail(Errno error) => new(error);
    public static implicit operator FopResult(Errno error) => new(error);

    public override string ToString() => Ok ? "ok" : Error.ToString();
}

/// <summary>The outcome of a fop: a value, or an errno (never both).</summary>
public readonly struct FopResult<T>
{
    private readonly T? _value;
    public Errno Error { get; }
    public bool Ok => Error == Errno.None;

    /// <summary>The value; reading it from a failed result is a bug.</summary>
    public T Value => Ok ? _value! : throw new InvalidOperationException($"fop failed with {Error}; no value");

    private FopResult(T? value, Errno error)
    {
        _value = value;
        Error = error;
    }

    public static FopResult<T> Success(T value) => new(value, Errno.None);
    public static FopResult<T> Fail(Errno error) =>
        error == Errno.None ? throw new ArgumentException("a failure needs an errno") : new(default, error);

    public static implicit operator FopResult<T>(T value) => new(value, Errno.None);
    public static implicit operator FopResult<T>(Errno error) => Fail(error);

    public bool TryGet(out T value)
    {
        value = _value!;
        return Ok;
    }

    /// <summary>Drops the value, keeping success or the errno.</summary>
    public FopResult AsPlain() => Ok ? FopResult.Success : FopResult.Fail(Error);

    public override string ToString() => Ok ? $"ok({_value})" : Error.ToString();
}
