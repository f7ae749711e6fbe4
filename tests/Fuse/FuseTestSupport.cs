using System.Collections.Concurrent;
using System.Diagnostics;
using Brickfs.ClientFuse.Bridge;
using Brickfs.ClientFuse.Fuse;
using Brickfs.ClientFuse.Host;
using Brickfs.Translators.Core;
using Brickfs.Translators.Debug;
using Brickfs.Translators.Storage;

namespace Brickfs.Tests.Fuse;

/// <summary>Shell, waiting and temp-dir helpers for tests over real /dev/fuse mounts.</summary>
internal static class FuseTest
{
    public static string TempDir(string prefix) => Directory.CreateTempSubdirectory($"brickfs-{prefix}-").FullName;

    /// <summary>Waits for <paramref name="condition"/> until <paramref name="timeout"/>; fails the test with <paramref name="what"/> otherwise.</summary>
    public static void Eventually(Func<bool> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout) Assert.Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting for: {what}");
            Thread.Sleep(20);
        }
    }

    public sealed record Result(int Exit, string Out, string Err);

    /// <summary>Runs <paramref name="file"/> with arguments; kills it and fails the test if it outlives <paramref name="timeoutMs"/>.</summary>
    public static Result Run(string file, IEnumerable<string> args, int timeoutMs = 30_000, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish within {timeoutMs} ms");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static Result Sh(string script, int timeoutMs = 30_000) => Run("/bin/sh", ["-c", script], timeoutMs);

    public static Process Start(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    public static bool IsMounted(string dir) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == dir && l.Contains(" - fuse", StringComparison.Ordinal));

    /// <summary>Teardown fallback: a lazy unmount never blocks and always frees the mount point.</summary>
    public static void ForceUnmount(string dir)
    {
        if (IsMounted(dir)) Run("umount", ["-l", dir], 10_000);
    }

    public static void Kill(int pid, string signal) => Run("kill", [$"-{signal}", pid.ToString()], 10_000);

    public static bool ProcessAlive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ");

    /// <summary>The built mount.brickfs next to the repository's client-fuse project, same configuration as the tests.</summary>
    public static string MountProgram
    {
        get
        {
            var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
            string config = testDir.Parent!.Name;
            var root = testDir;
            while (root is not null && !File.Exists(Path.Combine(root.FullName, "Brickfs.sln"))) root = root.Parent;
            Assert.That(root, Is.Not.Null, "repository root (Brickfs.sln) not found above the test assembly");
            string exe = Path.Combine(root!.FullName, "client-fuse", "bin", config, "net10.0", "mount.brickfs");
            Assert.That(File.Exists(exe), Is.True, $"{exe} is not built");
            return exe;
        }
    }
}

/// <summary>
/// A test translator between the bridge and the rest of the graph: records what reaches the
/// graph (write sizes, lock requests, whether a request's cancellation fired) and can answer
/// F_GETLK or throw on demand.
/// </summary>
internal sealed class RecordingTranslator : Translator
{
    public ConcurrentQueue<int> WriteSizes { get; } = new();
    public ConcurrentQueue<(LockCommand Command, FileLock Lock, ulong ContextOwner)> Locks { get; } = new();
    public ConcurrentQueue<(Fop Fop, bool Cancelled, Errno Error)> Finished { get; } = new();
    public int LocksStarted => _locksStarted;
    public int ReadsStarted => _readsStarted;
    private int _locksStarted, _readsStarted;

    /// <summary>When set, F_GETLK is answered with this lock instead of asking the child.</summary>
    public FileLock? GetLkAnswer { get; set; }

    /// <summary>A getxattr of this name throws (a bug in a translator): the bridge must answer EIO and keep serving.</summary>
    public const string ThrowingXattr = "user.throw";

    public override ValueTask<FopResult<int>> WriteAsync(FopContext ctx, FileHandle fd, long offset, ReadOnlyMemory<byte> data)
    {
        WriteSizes.Enqueue(data.Length);
        return base.WriteAsync(ctx, fd, offset, data);
    }

    /// <summary>Runs on the thread that serves a read, before the read goes down (it may block, as a disk read would).</summary>
    public Action<int>? BeforeRead { get; set; }

    public override async ValueTask<FopResult<DataBuffer>> ReadAsync(FopContext ctx, FileHandle fd, long offset, int size)
    {
        Interlocked.Increment(ref _readsStarted);
        BeforeRead?.Invoke(size);
        var r = await base.ReadAsync(ctx, fd, offset, size);
        Finished.Enqueue((Fop.Read, ctx.Cancellation.IsCancellationRequested, r.Error));
        return r;
    }

    public override async ValueTask<FopResult<FileLock>> LkAsync(FopContext ctx, FileHandle fd, LockCommand command, FileLock lk)
    {
        Locks.Enqueue((command, lk, ctx.LockOwner));
        Interlocked.Increment(ref _locksStarted);
        if (command == LockCommand.Get && GetLkAnswer is { } answer) return answer;
        var r = await base.LkAsync(ctx, fd, command, lk);
        Finished.Enqueue((Fop.Lk, ctx.Cancellation.IsCancellationRequested, r.Error));
        return r;
    }

    /// <summary>Names of the getxattrs that reached the graph.</summary>
    public ConcurrentQueue<string> Getxattrs { get; } = new();

    public override ValueTask<FopResult<byte[]>> GetxattrAsync(FopContext ctx, Gfid gfid, string name)
    {
        Getxattrs.Enqueue(name);
        return name == ThrowingXattr ? throw new InvalidOperationException("injected translator bug") : base.GetxattrAsync(ctx, gfid, name);
    }
}

/// <summary>
/// An in-process mount: recorder → [delay-gen] → storage/memory, served by this test process
/// on a temp dir. Disposal always unmounts (lazily as the last resort).
/// </summary>
internal sealed class InProcessMount : IAsyncDisposable
{
    private InProcessMount(string dir, FuseMount mount, RecordingTranslator recorder, MemoryStorageTranslator memory, DelayGenTranslator? delay)
    {
        Dir = dir;
        Mount = mount;
        Recorder = recorder;
        Memory = memory;
        Delay = delay;
    }

    public string Dir { get; }
    public FuseMount Mount { get; }
    public RecordingTranslator Recorder { get; }
    public MemoryStorageTranslator Memory { get; }
    public DelayGenTranslator? Delay { get; }
    public string this[string name] => Path.Combine(Dir, name);

    public static async Task<InProcessMount> StartAsync(string? delayFops = null, FuseBridgeOptions? bridge = null, FuseSessionOptions? session = null)
    {
        var memory = new MemoryStorageTranslator();
        Translator below = memory;
        DelayGenTranslator? delay = null;
        if (delayFops is not null)
        {
            delay = new DelayGenTranslator(TranslatorOptions.From(DelayGenTranslator.OptionSpecs,
                ("enable", delayFops), ("delay-duration", "10000000")));
            delay.Attach(memory);
            below = delay;
        }
        var recorder = new RecordingTranslator();
        recorder.Attach(below);
        string dir = FuseTest.TempDir("inproc");
        try
        {
            var mount = await FuseMount.StartAsync(recorder, dir, session ?? new FuseSessionOptions(), bridge ?? new FuseBridgeOptions(), Log.Null);
            return new InProcessMount(dir, mount, recorder, memory, delay);
        }
        catch
        {
            FuseTest.ForceUnmount(dir);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Mount.UnmountAsync();
            await Mount.DisposeAsync();
        }
        finally
        {
            FuseTest.ForceUnmount(Dir);
            try
            {
                Directory.Delete(Dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
