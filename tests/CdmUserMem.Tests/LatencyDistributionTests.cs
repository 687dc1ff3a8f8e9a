using CdmUserMem;
using CdmUserMem.Interop;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>The native engine's latency histograms: what they count, and the arithmetic over their buckets.</summary>
public class LatencyDistributionTests
{
    [Fact]
    public void Buckets_tile_the_range_without_gaps_and_within_an_eighth()
    {
        Assert.Equal(0UL, LatencyDistribution.LowerBound(0));
        for (int i = 1; i < CdmEngine.LatencyBuckets; i++)
        {
            Assert.Equal(LatencyDistribution.UpperBound(i - 1), LatencyDistribution.LowerBound(i));
            ulong lower = LatencyDistribution.LowerBound(i), width = LatencyDistribution.UpperBound(i) - lower;
            if (i >= CdmEngine.LatencySubBuckets) Assert.True(width * 8 <= lower, $"bucket {i}: [{lower}, +{width})");
        }
        // The last bucket reaches past 20 minutes: nothing the engine measures overflows it in practice.
        Assert.True(LatencyDistribution.LowerBound(CdmEngine.LatencyBuckets - 1) > 1_200_000_000_000UL);
    }

    [Fact]
    public void Percentiles_walk_the_cumulative_counts()
    {
        var buckets = new ulong[CdmEngine.LatencyBuckets];
        int at1us = Index(1000), at100us = Index(100_000);
        buckets[at1us] = 990;
        buckets[at100us] = 10;
        var d = new LatencyDistribution(LatencyKind.FaultService, buckets, 990 * 1000 + 10 * 100_000);
        Assert.Equal(1000UL, d.Count);
        Assert.InRange(d.P50.TotalMicroseconds, 0.9, 1.2);
        Assert.InRange(d.P99.TotalMicroseconds, 0.9, 1.2);
        Assert.InRange(d.P999.TotalMicroseconds, 90, 115);
        Assert.InRange(d.Mean.TotalMicroseconds, 1.9, 2.0);
        Assert.Equal(2, d.Buckets.Count());
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Percentile(101));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Percentile(double.NaN));

        var later = (ulong[])buckets.Clone();
        later[at100us] += 5;
        var since = new LatencyDistribution(LatencyKind.FaultService, later, d.SumNanoseconds + 500_000).Since(d);
        Assert.Equal(5UL, since.Count);
        Assert.InRange(since.P50.TotalMicroseconds, 90, 115);
        Assert.Throws<ArgumentException>(() => since.Since(new LatencyDistribution(LatencyKind.MigrationSinglePage, buckets, 0)));
    }

    [Fact]
    public void Faults_and_migration_batches_are_recorded_by_kind()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(8 * MiB, new RegionOptions { ReadaheadPages = 0, FaultAroundPages = 1 });
        Fill(region, 0, 64 * Page, seed: 1);
        // Recorded before the wake: every fault of the fill is in the histogram once the fill returns.
        var faults = system.GetLatency(LatencyKind.FaultService);
        // Each of the 64 faults is served once; an access that raced the fill may fault twice.
        Assert.InRange(faults.Count, 64UL, system.GetStatistics().FirstTouchFaults + 8);
        Assert.True(faults.P50 > TimeSpan.Zero && faults.P50 < TimeSpan.FromSeconds(1), faults.ToString());
        Assert.True(faults.P999 >= faults.P50);

        region.Migrate(0, Page, device).ThrowIfIncomplete();
        region.Migrate(Page, 16 * Page, device).ThrowIfIncomplete();
        region.Migrate(0, 64 * Page, system.Host, new MigrationOptions { BatchPages = 32 }).ThrowIfIncomplete();
        region.Migrate(0, 1024 * Page, device, new MigrationOptions { BatchPages = 1024 }).ThrowIfIncomplete();
        Assert.Equal(1UL, system.GetLatency(LatencyKind.MigrationSinglePage).Count);
        Assert.Equal(1UL, system.GetLatency(LatencyKind.MigrationUpTo64KiB).Count);
        Assert.Equal(2UL, system.GetLatency(LatencyKind.MigrationUpTo2MiB).Count);
        Assert.Equal(1UL, system.GetLatency(LatencyKind.MigrationOver2MiB).Count);
        Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => system.GetLatency((LatencyKind)99));
    }

    [Fact]
    public void Recording_off_records_nothing()
    {
        var (system, device) = Create(options: new MemorySystemOptions { RecordLatencies = false });
        using var _ = system;
        using var region = system.Reserve(MiB);
        Fill(region, 0, MiB, seed: 2);
        region.Migrate(0, MiB, device).ThrowIfIncomplete();
        Assert.True(system.GetStatistics().FirstTouchFaults > 0);
        foreach (var kind in Enum.GetValues<LatencyKind>()) Assert.Equal(0UL, system.GetLatency(kind).Count);
        Assert.Equal(TimeSpan.Zero, system.GetLatency(LatencyKind.FaultService).P99);
    }

    private static int Index(ulong ns)
    {
        for (int i = 0; i < CdmEngine.LatencyBuckets; i++)
            if (ns < LatencyDistribution.UpperBound(i)) return i;
        return CdmEngine.LatencyBuckets - 1;
    }
}
