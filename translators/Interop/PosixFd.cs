using System.Runtime.InteropServices;

namespace Brickfs.Translators.Interop;

/// <summary>
/// An owned OS file descriptor. Reference counted through SafeHandle, so a descriptor shared by
/// a cache can be closed by eviction while a fop still uses it: the close waits for the last
/// user (see <see cref="FdLease"/>).
/// </summary>
internal sealed class PosixFd : SafeHandle
{
    public PosixFd(int fd) : base(new IntPtr(-1), ownsHandle: true) => SetHandle(new IntPtr(fd));

    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The raw descriptor; valid while the handle is neither disposed nor released.</summary>
    public int Fd => (int)handle.ToInt64();

    protected override bool ReleaseHandle() => Libc.Close((int)handle.ToInt64()) == 0;

    /// <summary>Takes a reference for the duration of a fop; dispose the lease to give it back.</summary>
    public FdLease Lease()
    {
        bool added = false;
        DangerousAddRef(ref added);
        return new FdLease(this, owned: false);
    }

    /// <summary>A lease that closes the descriptor when disposed (a private, uncached descriptor).</summary>
    public FdLease Own() => new(this, owned: true);
}

/// <summary>A descriptor in use by one fop: either borrowed from a cache (reference) or owned (closed at the end).</summary>
internal readonly struct FdLease : IDisposable
{
    private readonly PosixFd? _handle;
    private readonly bool _owned;

    internal FdLease(PosixFd handle, bool owned)
    {
        _handle = handle;
        _owned = owned;
    }

    public int Fd => _handle?.Fd ?? -1;
    public bool IsValid => _handle is not null;
    public PosixFd Handle => _handle ?? throw new InvalidOperationException("empty lease");

    public void Dispose()
    {
        if (_handle is null) return;
        if (_owned) _handle.Dispose();
        else _handle.DangerousRelease();
    }
}
