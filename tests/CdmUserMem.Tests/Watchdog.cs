using System.Diagnostics;

namespace CdmUserMem.Tests;

/// <summary>Runs for a set time and fails if a progress counter stops moving for too long.</summary>
internal sealed class Watchdog
{
    private long _progress;

    public void Tick() => Interlocked.Increment(ref _progress);

    public long Progress => Interlocked.Read(ref _progress);

    /// <summary>Returns when <paramref name="duration"/> has passed; throws if progress stalls for <paramref name="stall"/>.</summary>
    public void Watch(TimeSpan duration, TimeSpan stall, Func<bool> failed)
    {
        var clock = Stopwatch.StartNew();
        long last = Progress;
        var lastMove = clock.Elapsed;
        while (clock.Elapsed < duration)
        {
            Thread.Sleep(100);
            if (failed()) return;
            long now = Progress;
            if (now != last) { last = now; lastMove = clock.Elapsed; }
            else if (clock.Elapsed - lastMove > stall)
                throw new TimeoutException($"No progress for {stall.TotalSeconds} s after {clock.Elapsed.TotalSeconds:F1} s (progress {now}): hang.");
        }
    }
}
