namespace CdmUserMem.Benchmarks.Quick;

/// <summary>A latency distribution of the quick run: percentiles in microseconds, and its CDF for the plot.</summary>
internal sealed record Distribution(string Name, ulong Count, double P50, double P99, double P999, double Max,
                                    IReadOnlyList<(double Microseconds, double Fraction)> Cdf)
{
    /// <summary>From one of the engine's native histograms (values are bucket midpoints, within 12.5 %).</summary>
    public static Distribution FromEngine(string name, LatencyDistribution d)
    {
        var cdf = new List<(double, double)>();
        ulong seen = 0;
        foreach (var b in d.Buckets)
        {
            seen += b.Count;
            cdf.Add((b.UpperNanoseconds / 1e3, (double)seen / d.Count));
        }
        return new Distribution(name, d.Count, d.P50.TotalMicroseconds, d.P99.TotalMicroseconds, d.P999.TotalMicroseconds,
                                d.Max.TotalMicroseconds, cdf);
    }

    /// <summary>From samples a benchmark timed itself (exact percentiles, nearest rank).</summary>
    public static Distribution FromSamples(string name, IReadOnlyCollection<double> microseconds)
    {
        var sorted = microseconds.Order().ToArray();
        double At(double p) => sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
        var cdf = sorted.Select((v, i) => (v, (i + 1.0) / sorted.Length)).ToList();
        return new Distribution(name, (ulong)sorted.Length, At(50), At(99), At(99.9), sorted.Length == 0 ? 0 : sorted[^1], cdf);
    }
}

/// <summary>Effective GB/s of migrations of one size, beside the copy floor and memcpy of the same size.</summary>
internal sealed record SizePoint(ulong Bytes, double ToDevice, double ToHost, double NonTemporalCopy, double Memcpy);
