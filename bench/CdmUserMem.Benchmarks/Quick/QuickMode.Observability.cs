using System.Diagnostics.Metrics;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>
    /// The cost of observability: a first-touch sweep with one fault per page, and 2 MiB migrations, each with
    /// latency recording on and a listener subscribed to every CdmUserMem instrument (so the exporter replays
    /// every event), against the same with recording off and no listener. Runs alternate, so drift hits both.
    /// </summary>
    private static List<Figure> MetricsOverhead(List<Distribution> distributions)
    {
        const ulong SweepSize = 32 * MiB, MigrationSize = 64 * MiB, Piece = 2 * MiB;
        const int Repetitions = 7;
        var on = new List<double>[] { new(), new() };
        var off = new List<double>[] { new(), new() };
        LatencyDistribution? faults = null, batches = null;
        using (var listener = ListenToEverything())
        using (var recording = MemorySystem.Create())
        using (var silent = MemorySystem.Create(new MemorySystemOptions { RecordLatencies = false }))
        {
            var systems = new[] { (recording, on), (silent, off) };
            var regions = systems.Select(s => Migratable(s.Item1, MigrationSize)).ToArray();
            for (int rep = 0; rep < Repetitions; rep++)
                for (int i = 0; i < systems.Length; i++)
                {
                    var (system, samples) = systems[i];
                    using (var sweep = system.Reserve(SweepSize, new RegionOptions { FaultAroundPages = 1, ReadaheadPages = 0 }))
                        samples[0].Add(SweepSize / Page / Sampler.Time(() => Sweep((byte*)sweep.Pointer, SweepSize)));
                    var (region, device) = regions[i];
                    samples[1].Add(2 * MigrationSize / Sampler.Time(() =>
                    {
                        for (ulong o = 0; o < MigrationSize; o += Piece) region.Migrate(o, Piece, device);
                        for (ulong o = 0; o < MigrationSize; o += Piece) region.Migrate(o, Piece, system.Host);
                    }) / 1e9);
                }
            faults = recording.GetLatency(LatencyKind.FaultService);
            batches = recording.GetLatency(LatencyKind.MigrationUpTo2MiB);
            foreach (var (region, _) in regions) region.Dispose();
        }
        distributions.Add(Distribution.FromEngine("fault service (engine), one fault per page", faults));
        distributions.Add(Distribution.FromEngine("2 MiB migration batch (engine)", batches));
        return
        [
            new Figure("first-touch sweep FA 1, metrics on", "pages/s", Sampler.Median(on[0]), "metrics off", Sampler.Median(off[0]),
                HigherIsBetter: true, TargetRatio: 0.97, Repetitions),
            new Figure("2 MiB migrations both ways, metrics on", "GB/s", Sampler.Median(on[1]), "metrics off", Sampler.Median(off[1]),
                HigherIsBetter: true, TargetRatio: 0.97, Repetitions),
        ];
    }

    private static (Region Region, MemoryNode Device) Migratable(MemorySystem system, ulong size)
    {
        var device = system.AddCoherentDeviceNode($"observed-device-{system.GetHashCode():x}", size);
        var region = system.Reserve(size);
        region.Prefault(0, size);
        FillPages((byte*)region.Pointer, size);
        region.Migrate(0, size, device);
        region.Migrate(0, size, system.Host);
        return (region, device);
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
