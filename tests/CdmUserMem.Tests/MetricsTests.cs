using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using CdmUserMem;
using CdmUserMem.Telemetry;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>The CdmUserMem meter, read the way every .NET metrics tool reads it: with a MeterListener.</summary>
public class MetricsTests
{
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        public readonly ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)> Measurements = new();

        public Recorder()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "CdmUserMem") listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
            _listener.Start();
        }

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var t = new Dictionary<string, object?>();
            foreach (var tag in tags) t[tag.Key] = tag.Value;
            Measurements.Enqueue((instrument.Name, value, t));
        }

        public void Observe() => _listener.RecordObservableInstruments();

        public List<(double Value, Dictionary<string, object?> Tags)> Of(string instrument, MemorySystem system) =>
            Measurements.Where(m => m.Instrument == instrument && Equals(m.Tags["system"], system.Telemetry.SystemTag.Value))
                        .Select(m => (m.Value, m.Tags)).ToList();

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public void Counters_and_gauges_report_what_the_statistics_say()
    {
        var (system, device) = Create(deviceBytes: 4 * MiB);
        using var _ = system;
        using var recorder = new Recorder();
        using var region = system.Reserve(4 * MiB);
        Fill(region, 0, 2 * MiB, seed: 3);
        region.Migrate(0, MiB, device).ThrowIfIncomplete();
        using (region.Pin(MiB, Page))
            Assert.Equal(1UL, region.Migrate(MiB, Page, device).PagesPinned);
        var stats = system.GetStatistics();
        recorder.Observe();

        double Value(string instrument, string? key = null, string? tag = null) =>
            recorder.Of(instrument, system).Single(m => key is null || Equals(m.Tags[key], tag)).Value;
        Assert.Equal(stats.FirstTouchFaults, (ulong)Value("cdmusermem.faults", "kind", "first_touch"));
        Assert.Equal(256UL, (ulong)Value("cdmusermem.pages.migrated"));
        Assert.Equal(stats.BytesCopied, (ulong)Value("cdmusermem.bytes.copied"));
        Assert.Equal(1UL, (ulong)Value("cdmusermem.refusals", "reason", "pinned"));
        Assert.Equal(0UL, (ulong)Value("cdmusermem.refusals", "reason", "mapping_budget"));
        Assert.Equal(stats.MappingsInUse, (ulong)Value("cdmusermem.mappings.in_use"));
        Assert.Equal(MiB, (ulong)Value("cdmusermem.node.used", "node", "dev0"));
        Assert.Equal(3 * MiB, (ulong)Value("cdmusermem.node.free", "node", "dev0"));
        Assert.DoesNotContain(recorder.Of("cdmusermem.node.free", system), m => Equals(m.Tags["node"], "host"));
        Assert.Equal(device.GetUsage().UsedBytes, (ulong)Value("cdmusermem.node.used", "node", "dev0"));
    }

    [Fact]
    public void Latency_histograms_replay_every_native_event_once()
    {
        var (system, device) = Create();
        using var _ = system;
        using var recorder = new Recorder();
        using var region = system.Reserve(4 * MiB, new RegionOptions { ReadaheadPages = 0 });
        Fill(region, 0, 2 * MiB, seed: 4);
        region.Migrate(0, 2 * MiB, device).ThrowIfIncomplete();
        ulong faults = system.GetLatency(LatencyKind.FaultService).Count;
        Assert.True(faults > 0);

        // The exporter's timer may be mid-export (a direct call then skips): export until both caught up.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(20) &&
               ((ulong)recorder.Of("cdmusermem.fault.service_time", system).Count < faults ||
                recorder.Of("cdmusermem.migration.batch_time", system).Count < 1))
        {
            MemoryMetrics.Export();
            Thread.Sleep(10);
        }
        MemoryMetrics.Export();
        Assert.Equal(faults, system.GetLatency(LatencyKind.FaultService).Count);
        var served = recorder.Of("cdmusermem.fault.service_time", system);
        Assert.Equal(faults, (ulong)served.Count);
        var p50 = system.GetLatency(LatencyKind.FaultService).P50.TotalMicroseconds;
        var median = served.Select(m => m.Value).Order().ElementAt(served.Count / 2);
        Assert.InRange(median, p50 * 0.8, p50 * 1.25);
        var batches = recorder.Of("cdmusermem.migration.batch_time", system);
        Assert.Single(batches);
        Assert.Equal("2MiB", batches[0].Tags["size"]);
    }

    [Fact]
    public void A_system_dropped_without_dispose_can_still_be_collected()
    {
        var weak = DropASystem();
        for (int i = 0; i < 10 && weak.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(weak.IsAlive, "the meter keeps an undisposed memory system alive");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static WeakReference DropASystem() => new(MemorySystem.Create());

    [Fact]
    public void A_disposed_system_leaves_the_meter()
    {
        using var recorder = new Recorder();
        var (system, _) = Create();
        var tag = system.Telemetry.SystemTag.Value;
        Assert.True(MemoryMetrics.IsRegistered(system.Telemetry));
        system.Dispose();
        Assert.False(MemoryMetrics.IsRegistered(system.Telemetry));
        recorder.Observe();
        MemoryMetrics.Export();
        Assert.DoesNotContain(recorder.Measurements, m => Equals(m.Tags.GetValueOrDefault("system"), tag));
    }
}
