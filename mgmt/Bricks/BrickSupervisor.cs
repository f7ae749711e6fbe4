using System.Collections.Concurrent;
using System.Diagnostics;
using Brickfs.Mgmt.Interop;
using Microsoft.Extensions.Logging;

namespace Brickfs.Mgmt.Bricks;

/// <summary>What mgmtd needs to run one brick: its key (volume-brick-i), its files and its port.</summary>
public sealed record BrickLaunch(string Key, string Volfile, string LogFile, string PidFile, int Port);

/// <summary>A running (or restarting) brick as the supervisor sees it.</summary>
public sealed record BrickProcessState(int? Pid, bool Online, int Restarts);

/// <summary>
/// Runs this node's <c>brickd</c> processes and keeps them running: one that exits while it
/// should run is started again after a backoff that doubles from <see cref="InitialBackoff"/>
/// up to <see cref="MaxBackoff"/> and resets once a process stayed up for a minute, so a brick
/// that crashes on start does not spin. Stopping sends SIGTERM and, after
/// <see cref="StopGrace"/>, SIGKILL.
/// </summary>
public sealed class BrickSupervisor(string brickdPath, ILogger logger) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, BrickProcess> _bricks = new(StringComparer.Ordinal);

    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(10);
    public string BrickdPath => brickdPath;

    /// <summary>Starts the brick unless it is already supervised.</summary>
    public void Ensure(BrickLaunch launch)
    {
        _bricks.GetOrAdd(launch.Key, _ => BrickProcess.Start(this, launch, logger));
    }

    public async Task StopAsync(string key)
    {
        if (_bricks.TryRemove(key, out var p)) await p.StopAsync();
    }

    /// <summary>The keys of every brick this supervisor runs (or restarts).</summary>
    public IReadOnlyList<string> Keys => [.. _bricks.Keys];

    public BrickProcessState? State(string key) => _bricks.TryGetValue(key, out var p) ? p.State : null;

    /// <summary>
    /// The pid of a brickd an earlier mgmtd left running for this brick: its pid file names a
    /// live process whose command line carries the brick's volfile. Such a process still holds
    /// the brick's port; it is stopped before the brick starts again.
    /// </summary>
    public static int? LeftRunning(string pidFile, string volfile)
    {
        try
        {
            if (!File.Exists(pidFile)) return null;
            if (!int.TryParse(File.ReadAllText(pidFile).Trim(), out int pid) || pid <= 1) return null;
            return File.ReadAllText($"/proc/{pid}/cmdline").Split('\0').Contains(volfile) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_bricks.Keys.ToList().Select(StopAsync));
    }

    private sealed class BrickProcess
    {
        private readonly BrickSupervisor _owner;
        private readonly BrickLaunch _launch;
        private readonly ILogger _log;
        private readonly CancellationTokenSource _stop = new();
        private Task _loop = Task.CompletedTask;
        private volatile Process? _current;
        private int _restarts;

        private BrickProcess(BrickSupervisor owner, BrickLaunch launch, ILogger log)
        {
            _owner = owner;
            _launch = launch;
            _log = log;
        }

        public static BrickProcess Start(BrickSupervisor owner, BrickLaunch launch, ILogger log)
        {
            var p = new BrickProcess(owner, launch, log);
            p._loop = Task.Run(p.RunAsync);
            return p;
        }

        public BrickProcessState State
        {
            get
            {
                var p = _current;
                bool online = p is not null && !HasExited(p);
                return new BrickProcessState(online ? p!.Id : null, online, _restarts);
            }
        }

        private async Task RunAsync()
        {
            await StopStaleAsync();
            var backoff = _owner.InitialBackoff;
            while (!_stop.IsCancellationRequested)
            {
                var started = DateTime.UtcNow;
                try
                {
                    var psi = new ProcessStartInfo(_owner.BrickdPath) { UseShellExecute = false };
                    foreach (var a in new[] { "--volfile", _launch.Volfile, "--log-file", _launch.LogFile, "--pid-file", _launch.PidFile })
                        psi.ArgumentList.Add(a);
                    var p = Process.Start(psi) ?? throw new InvalidOperationException("Process.Start returned null");
                    _current = p;
                    _log.LogInformation(1101, "brick {Brick}: started {Brickd} pid {Pid} on port {Port}", _launch.Key, _owner.BrickdPath, p.Id, _launch.Port);
                    try
                    {
                        await p.WaitForExitAsync(_stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        await TerminateAsync(p);
                        return;
                    }
                    _log.LogWarning(1102, "brick {Brick}: pid {Pid} exited with status {Status}; restarting in {Backoff} s",
                        _launch.Key, p.Id, p.ExitCode, backoff.TotalSeconds);
                }
                catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
                {
                    _log.LogError(1103, "brick {Brick}: cannot start {Brickd}: {Reason}; retrying in {Backoff} s",
                        _launch.Key, _owner.BrickdPath, e.Message, backoff.TotalSeconds);
                }
                if (DateTime.UtcNow - started > TimeSpan.FromMinutes(1)) backoff = _owner.InitialBackoff;
                Interlocked.Increment(ref _restarts);
                try
                {
                    await Task.Delay(backoff, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _owner.MaxBackoff.Ticks));
            }
        }

        public async Task StopAsync()
        {
            _stop.Cancel();
            await _loop;
            _log.LogInformation(1104, "brick {Brick}: stopped", _launch.Key);
        }

        private async Task TerminateAsync(Process p)
        {
            if (HasExited(p)) return;
            Native.Signal(p.Id, Native.SIGTERM);
            using var grace = new CancellationTokenSource(_owner.StopGrace);
            try
            {
                await p.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                _log.LogWarning(1105, "brick {Brick}: pid {Pid} ignored SIGTERM for {Grace} s; killing it", _launch.Key, p.Id, _owner.StopGrace.TotalSeconds);
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync();
            }
        }

        /// <summary>
        /// A brickd left running by an earlier mgmtd (its pid file names a live process whose
        /// command line carries this brick's volfile) is stopped before a new one starts, so two
        /// never fight over one port and export directory.
        /// </summary>
        private async Task StopStaleAsync()
        {
            if (LeftRunning(_launch.PidFile, _launch.Volfile) is not { } pid) return;
            try
            {
                using var stale = Process.GetProcessById(pid);
                _log.LogWarning(1106, "brick {Brick}: stopping pid {Pid} left by an earlier brickfs-mgmtd", _launch.Key, pid);
                Native.Signal(pid, Native.SIGTERM);
                var deadline = DateTime.UtcNow + _owner.StopGrace;
                while (Directory.Exists($"/proc/{pid}") && DateTime.UtcNow < deadline) await Task.Delay(100);
                if (Directory.Exists($"/proc/{pid}")) stale.Kill();
            }
            catch (ArgumentException)
            {
                // Gone already.
            }
        }

        private static bool HasExited(Process p)
        {
            try
            {
                return p.HasExited;
            }
            catch (InvalidOperationException)
            {
                return true;
            }
        }
    }
}
