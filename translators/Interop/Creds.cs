using System.Runtime.InteropServices;
using Brickfs.Translators.Core;

namespace Brickfs.Translators.Interop;

/// <summary>
/// Per-thread file-system credentials. Linux keeps fsuid, fsgid and supplementary groups per
/// thread at the syscall level (glibc's setgroups would broadcast to every thread, so the raw
/// syscall is used), which lets the kernel check permissions and pick new owners for the caller
/// of each fop while the brick itself runs as root. A scope must not span an await: the thread
/// would change under it.
/// </summary>
internal static class Creds
{
    [ThreadStatic] private static uint t_uid;
    [ThreadStatic] private static uint t_gid;
    [ThreadStatic] private static uint[]? t_groups;

    /// <summary>False when the process is not root: then every fop runs with the process's own credentials.</summary>
    public static bool CanSwitch { get; } = Libc.GetEuid() == 0;

    private static readonly (long SetFsUid, long SetFsGid, long SetGroups) Nr =
        RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => (122, 123, 116),
            Architecture.Arm64 => (151, 152, 159),
            var a => throw new PlatformNotSupportedException($"no syscall numbers for {a}"),
        };

    /// <summary>Runs the following syscalls as the caller of <paramref name="ctx"/> until the scope is disposed.</summary>
    public static Scope As(FopContext ctx)
    {
        if (!CanSwitch || (ctx.Uid == 0 && ctx.Gid == 0)) return default;
        if (ctx.Uid != 0 && (t_groups is null || !t_groups.AsSpan().SequenceEqual(ctx.Groups))) SetGroups(ctx.Groups);
        if (t_gid != ctx.Gid)
        {
            Libc.Syscall(Nr.SetFsGid, ctx.Gid, 0, 0, 0, 0);
            t_gid = ctx.Gid;
        }
        if (t_uid != ctx.Uid)
        {
            Libc.Syscall(Nr.SetFsUid, ctx.Uid, 0, 0, 0, 0);
            t_uid = ctx.Uid;
        }
        return new Scope(true);
    }

    private static unsafe void SetGroups(uint[] groups)
    {
        fixed (uint* p = groups)
        {
            if (Libc.Syscall(Nr.SetGroups, groups.Length, (long)p, 0, 0, 0) != 0)
                throw new InvalidOperationException($"setgroups failed: errno {Marshal.GetLastPInvokeError()}");
        }
        t_groups = groups;
    }

    /// <summary>
    /// Back to fsuid/fsgid 0. Supplementary groups stay: with fsuid 0 the thread regains
    /// CAP_DAC_OVERRIDE and friends, so extra groups grant nothing, and the next caller with the
    /// same groups (the common case) saves a syscall.
    /// </summary>
    private static void ToRoot()
    {
        if (t_uid != 0)
        {
            Libc.Syscall(Nr.SetFsUid, 0, 0, 0, 0, 0);
            t_uid = 0;
        }
        if (t_gid != 0)
        {
            Libc.Syscall(Nr.SetFsGid, 0, 0, 0, 0, 0);
            t_gid = 0;
        }
    }

    public readonly ref struct Scope
    {
        private readonly bool _switched;

        internal Scope(bool switched) => _switched = switched;

        public void Dispose()
        {
            if (_switched) ToRoot();
        }
    }
}
