using System.Diagnostics.Metrics;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>
    /// The cost of observability: the quick mode's sequential first-touch sweep (fault-around 16, readahead
    /// on), the same with one fault per page (fault-around 1, no readahead: the worst case, and noisy, as
    /// each fault crosses vCPUs), and 2 MiB migrations, each with latency recording on and a listener
    /// subscribed to every CdmUserMem instrument (so the exporter replays every event), against the same with
    /// recording off and no listener. Runs alternate, so drift hits both.
    /// </summary>
    private static List<Figure> MetricsOverhead(List<Distribution> distributions)
    {
        // 64 MiB sweeps and 128 MiB of migrations: 16 MiB and 32 MiB ones took about 5 ms, and their pairs measured
        // the scheduler more than the metrics.
        const ulong SweepSize = 64 * MiB, FaultPerPageSize = 4 * MiB, MigrationSize = 128 * MiB, Piece = 2 * MiB;
        const int Pairs = 75;
        var on = new List<double>[] { new(), new(), new() };
        var off = new List<double>[] { new(), new(), new() };
        LatencyDistribution faults, batches;
        // One engine for both halves, recording switched on and off: nothing but the metrics differs.
        using (var system = MemorySystem.Create())
        {
            var (region, device) = Migratable(system, MigrationSize, "observed-device");
            var before = (system.GetLatency(LatencyKind.FaultService), system.GetLatency(LatencyKind.MigrationUpTo2MiB));
            for (int pair = 0; pair < Pairs; pair++)
                // Each pair runs back to back, in alternating order, so drift and order cancel in its ratio.
                foreach (bool observed in pair % 2 == 0 ? new[] { true, false } : new[] { false, true })
                {
                    var samples = observed ? on : off;
                    system.SetLatencyRecording(observed);
                    // Metrics on: recording, and a listener on every instrument, so the exporter's timer replays
                    // the run's events into the histograms while it runs, as in an application. Off: neither.
                    double Timed(Action run)
                    {
                        using var listener = observed ? ListenToEverything() : null;
                        return Sampler.Time(run);
                    }
                    using (var sweep = system.Reserve(SweepSize))
                        samples[0].Add(SweepSize / Page / Timed(() => Sweep((byte*)sweep.Pointer, SweepSize)));
                    using (var sweep = system.Reserve(FaultPerPageSize, new RegionOptions { FaultAroundPages = 1, ReadaheadPages = 0 }))
                        samples[2].Add(FaultPerPageSize / Page / Timed(() => Sweep((byte*)sweep.Pointer, FaultPerPageSize)));
                    samples[1].Add(2 * MigrationSize / Timed(() =>
                    {
                        for (ulong o = 0; o < MigrationSize; o += Piece) region.Migrate(o, Piece, device);
                        for (ulong o = 0; o < MigrationSize; o += Piece) region.Migrate(o, Piece, system.Host);
                    }) / 1e9);
                }
            system.SetLatencyRecording(true);
            faults = system.GetLatency(LatencyKind.FaultService).Since(before.Item1);
            batches = system.GetLatency(LatencyKind.MigrationUpTo2MiB).Since(before.Item2);
            region.Dispose();
        }
        distributions.Add(Distribution.FromEngine("fault service (engine), the metrics-on sweeps", faults));
        distributions.Add(Distribution.FromEngine("2 MiB migration batch (engine)", batches));
        Figure Paired(string name, string unit, int k, double? target) =>
            new(name, unit, Sampler.Median(on[k]), "metrics off", Sampler.Median(off[k]), HigherIsBetter: true, target, Pairs,
                PairedRatio: Sampler.Median(on[k].Zip(off[k], (a, b) => a / b)));
        return
        [
            Paired("sequential first-touch sweep FA 16, metrics on", "pages/s", 0, 0.97),
            Paired("first-touch sweep, one fault per page, metrics on", "pages/s", 2, 0.97),
            Paired("2 MiB migrations both ways, metrics on", "GB/s", 1, 0.97),
        ];
    }

    /// <summary>A listener subscribed to every CdmUserMem instrument, as dotnet-counters or OpenTelemetry would be.</summary>
    private static MeterListener ListenToEverything()
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "CdmUserMem") l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<double>(static (_, _, _, _) => { });
        listener.SetMeasurementEventCallback<long>(static (_, _, _, _) => { });
        listener.Start();
        return listener;
    }
}
