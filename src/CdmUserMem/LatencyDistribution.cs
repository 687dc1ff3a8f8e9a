using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>What a latency distribution of the engine measures.</summary>
public enum LatencyKind
{
    /// <summary>Fault service: from the fault thread reading a fault that resolves pages (a first touch, or a
    /// refill of a discarded page) to its wake-up call; faults read together queue behind one another, and
    /// that wait is included. Recorded before the wake, so a toucher that returns finds its fault counted.
    /// A fault that only waits for a migration is not counted.</summary>
    FaultService = CdmLatency.Fault,
    /// <summary>One native migration batch of a single page, from claim to release.</summary>
    MigrationSinglePage = CdmLatency.MigratePage,
    /// <summary>One native migration batch of 2 to 16 pages (up to 64 KiB).</summary>
    MigrationUpTo64KiB = CdmLatency.Migrate64K,
    /// <summary>One native migration batch of 17 to 512 pages (up to 2 MiB; the default batch).</summary>
    MigrationUpTo2MiB = CdmLatency.Migrate2M,
    /// <summary>One native migration batch of more than 512 pages.</summary>
    MigrationOver2MiB = CdmLatency.MigrateLarger,
}

/// <summary>One bucket of a <see cref="LatencyDistribution"/>: values in [Lower, Upper) nanoseconds.</summary>
public readonly record struct LatencyBucket(ulong LowerNanoseconds, ulong UpperNanoseconds, ulong Count);

/// <summary>
/// A snapshot of a latency histogram the native engine records: log-linear buckets, 8 per power of two,
/// so every percentile is known to within 12.5 % (it is reported as its bucket's midpoint).
/// </summary>
public sealed class LatencyDistribution
{
    private readonly ulong[] _buckets;

    internal LatencyDistribution(LatencyKind kind, ulong[] buckets, ulong sumNanoseconds)
    {
        Kind = kind;
        _buckets = buckets;
        SumNanoseconds = sumNanoseconds;
        foreach (ulong c in buckets) Count += c;
    }

    public LatencyKind Kind { get; }

    /// <summary>Events recorded.</summary>
    public ulong Count { get; }

    public ulong SumNanoseconds { get; }

    public TimeSpan Mean => Count == 0 ? TimeSpan.Zero : FromNanoseconds((double)SumNanoseconds / Count);

    public TimeSpan P50 => Percentile(50);
    public TimeSpan P99 => Percentile(99);
    public TimeSpan P999 => Percentile(99.9);

    /// <summary>The upper bound of the highest non-empty bucket.</summary>
    public TimeSpan Max
    {
        get
        {
            for (int i = _buckets.Length - 1; i >= 0; i--)
                if (_buckets[i] != 0) return FromNanoseconds(UpperBound(i));
            return TimeSpan.Zero;
        }
    }

    /// <summary>The value below which <paramref name="percentile"/> % of the events fall (its bucket's midpoint);
    /// zero when nothing was recorded.</summary>
    public TimeSpan Percentile(double percentile)
    {
        if (percentile is < 0 or > 100 || double.IsNaN(percentile))
            throw new ArgumentOutOfRangeException(nameof(percentile), percentile, "A percentile is 0 to 100.");
        if (Count == 0) return TimeSpan.Zero;
        ulong rank = Math.Max(1, (ulong)Math.Ceiling(percentile / 100 * Count));
        ulong seen = 0;
        for (int i = 0; i < _buckets.Length; i++)
        {
            seen += _buckets[i];
            if (seen >= rank) return FromNanoseconds((LowerBound(i) + UpperBound(i)) / 2.0);
        }
        return Max;
    }

    /// <summary>The non-empty buckets, shortest first.</summary>
    public IEnumerable<LatencyBucket> Buckets
    {
        get
        {
            for (int i = 0; i < _buckets.Length; i++)
                if (_buckets[i] != 0) yield return new LatencyBucket(LowerBound(i), UpperBound(i), _buckets[i]);
        }
    }

    /// <summary>The events recorded since <paramref name="earlier"/>, a snapshot of the same histogram.</summary>
    public LatencyDistribution Since(LatencyDistribution earlier)
    {
        ArgumentNullException.ThrowIfNull(earlier);
        if (earlier.Kind != Kind) throw new ArgumentException($"{earlier.Kind} is not {Kind}.", nameof(earlier));
        var delta = new ulong[_buckets.Length];
        for (int i = 0; i < delta.Length; i++)
            delta[i] = _buckets[i] >= earlier._buckets[i] ? _buckets[i] - earlier._buckets[i] : 0;
        return new LatencyDistribution(Kind, delta, SumNanoseconds >= earlier.SumNanoseconds ? SumNanoseconds - earlier.SumNanoseconds : 0);
    }

    /// <summary>Smallest value of bucket <paramref name="index"/>, in nanoseconds (cdm_engine.h's layout).</summary>
    internal static ulong LowerBound(int index) =>
        index < CdmEngine.LatencySubBuckets ? (ulong)index
            : (ulong)(CdmEngine.LatencySubBuckets + index % CdmEngine.LatencySubBuckets) << (index / CdmEngine.LatencySubBuckets - 1);

    internal static ulong UpperBound(int index) =>
        index < CdmEngine.LatencySubBuckets ? (ulong)index + 1
            : LowerBound(index) + (1UL << (index / CdmEngine.LatencySubBuckets - 1));

    private static TimeSpan FromNanoseconds(double ns) => TimeSpan.FromTicks((long)Math.Round(ns / 100));

    public override string ToString() =>
        Count == 0 ? $"{Kind}: none" :
        $"{Kind}: n={Count}, p50 {Micro(P50)}, p99 {Micro(P99)}, p99.9 {Micro(P999)}, max < {Micro(Max)}";

    private static string Micro(TimeSpan t) => $"{t.TotalMicroseconds:0.0} µs";
}
