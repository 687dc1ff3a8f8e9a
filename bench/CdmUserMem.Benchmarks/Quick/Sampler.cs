using System.Diagnostics;

namespace CdmUserMem.Benchmarks.Quick;

/// <summary>Timing helpers: medians of repeated measurements from one process.</summary>
internal static class Sampler
{
    public static double Median(IEnumerable<double> samples)
    {
        var sorted = samples.OrderBy(x => x).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>Seconds <paramref name="action"/> takes.</summary>
    public static double Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    public static double Microseconds(long startTimestamp, long endTimestamp) =>
        (endTimestamp - startTimestamp) * 1e6 / Stopwatch.Frequency;
}
