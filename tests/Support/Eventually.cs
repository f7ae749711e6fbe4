namespace Brickfs.Tests.Support;

/// <summary>Waits for a condition with a deadline instead of sleeping a fixed time.</summary>
public static class Eventually
{
    public static async Task<bool> TryAsync(TimeSpan timeout, Func<Task<bool>> condition, TimeSpan? poll = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (await condition()) return true;
            if (DateTime.UtcNow >= deadline) return false;
            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(50));
        }
    }

    public static Task<bool> TryAsync(TimeSpan timeout, Func<bool> condition, TimeSpan? poll = null) =>
        TryAsync(timeout, () => Task.FromResult(condition()), poll);

    /// <summary>Fails the test with <paramref name="what"/> if the condition does not hold within the timeout.</summary>
    public static async Task HoldsAsync(TimeSpan timeout, Func<bool> condition, string what)
    {
        if (!await TryAsync(timeout, condition)) Assert.Fail($"within {timeout.TotalSeconds:0.#} s: {what}");
    }

    public static async Task HoldsAsync(TimeSpan timeout, Func<Task<bool>> condition, string what)
    {
        if (!await TryAsync(timeout, condition)) Assert.Fail($"within {timeout.TotalSeconds:0.#} s: {what}");
    }
}
