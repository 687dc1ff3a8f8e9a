using System.Diagnostics.Metrics;

namespace CdmUserMem.Telemetry;

/// <summary>
/// The <c>CdmUserMem</c> meter: counters and gauges read from every live memory system when a listener
/// asks, and histograms replayed from the native engine's latency buckets once a second. Every read is a
/// copy of native counters (relaxed atomics), so no listener, and no GC, ever waits on a fault.
/// </summary>
internal static class MemoryMetrics
{
    public const string MeterName = "CdmUserMem";

    private static readonly Meter s_meter = new(MeterName, typeof(MemoryMetrics).Assembly.GetName().Version?.ToString(3));
    private static readonly Lock s_sync = new();
    private static SystemTelemetry[] s_systems = [];
    private static Timer? s_timer;
    private static int s_exporting;

    internal static readonly Histogram<double> FaultServiceTime = s_meter.CreateHistogram<double>(
        "cdmusermem.fault.service_time", "us", "Fault service time: from the fault thread reading a fault that resolves pages (first touch, refill) to waking its toucher.");

    internal static readonly Histogram<double> MigrationBatchTime = s_meter.CreateHistogram<double>(
        "cdmusermem.migration.batch_time", "us", "Time of one native migration batch, by batch size.");

    static MemoryMetrics()
    {
        s_meter.CreateObservableCounter("cdmusermem.faults", () => Each(static (s, t) =>
        [
            Measure(s.FirstTouchFaults, t, "kind", "first_touch"),
            Measure(s.FaultsWaitedOnMigration, t, "kind", "waited_on_migration"),
            Measure(s.PagesRefilled, t, "kind", "refill"),
        ]), "{fault}", "Faults the engine served, by kind.");
        s_meter.CreateObservableCounter("cdmusermem.pages.read_ahead", () => Each(static (s, t) =>
            [Measure(s.PagesReadAhead, t)]), "{page}", "Pages resolved ahead of a sequential first-touch stream.");
        s_meter.CreateObservableCounter("cdmusermem.pages.migrated", () => Each(static (s, t) =>
            [Measure(s.PagesMigrated, t)]), "{page}", "Pages migrated between nodes.");
        s_meter.CreateObservableCounter("cdmusermem.bytes.copied", () => Each(static (s, t) =>
            [Measure(s.BytesCopied, t)]), "By", "Bytes the copy engine copied for migrations.");
        s_meter.CreateObservableCounter("cdmusermem.migrations.aborted", () => Each(static (s, t) =>
            [Measure(s.MigrationsAborted, t)]), "{page}", "Page migrations undone after a system call failed.");
        s_meter.CreateObservableCounter("cdmusermem.refusals", () => Each(static (s, t) =>
        [
            Measure(s.PagesRefusedPinned, t, "reason", "pinned"),
            Measure(s.PagesRefusedShared, t, "reason", "shared"),
            Measure(s.MappingBudgetRefusals, t, "reason", "mapping_budget"),
        ]), "{refusal}", "Migrations refused (pages pinned or shared with a child) and mapping-budget refusals.");
        s_meter.CreateObservableCounter("cdmusermem.first_touch.fallbacks", () => Each(static (s, t) =>
            [Measure(s.FirstTouchFallbacks, t)]), "{page}", "First touches placed on a device that landed on the host.");
        s_meter.CreateObservableGauge("cdmusermem.mappings.in_use", () => Each(static (s, t) =>
            [Measure(s.MappingsInUse, t)]), "{mapping}", "Mappings (VMAs) the memory system holds.");
        s_meter.CreateObservableGauge("cdmusermem.node.used", () => EachNode(static u => u.UsedBytes),
            "By", "Bytes resident on each node.");
        s_meter.CreateObservableGauge("cdmusermem.node.free", () => EachNode(static u => u.FreeBytes),
            "By", "Free bytes of each device node's arena (the host is unbounded and reports 0).");
    }

    internal static void Register(SystemTelemetry system)
    {
        lock (s_sync)
        {
            s_systems = [.. s_systems, system];
            s_timer ??= new Timer(static _ => Export(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        }
    }

    internal static void Unregister(SystemTelemetry system)
    {
        lock (s_sync)
        {
            s_systems = s_systems.Where(s => s != system).ToArray();
            if (s_systems.Length == 0)
            {
                s_timer?.Dispose();
                s_timer = null;
            }
        }
    }

    /// <summary>Replays new latency events into the histograms and reports what the logs must say; the timer
    /// runs it every second, tests call it directly. Overlapping calls skip.</summary>
    internal static void Export()
    {
        if (Interlocked.Exchange(ref s_exporting, 1) != 0) return;
        try
        {
            foreach (var system in s_systems) system.Export();
        }
        finally
        {
            Volatile.Write(ref s_exporting, 0);
        }
    }

    private static IEnumerable<Measurement<long>> Each(Func<MemoryStatistics, KeyValuePair<string, object?>, Measurement<long>[]> read)
    {
        foreach (var system in s_systems)
            if (system.TryReadStatistics(out var stats))
                foreach (var m in read(stats, system.SystemTag)) yield return m;
    }

    private static IEnumerable<Measurement<long>> EachNode(Func<NodeUsage, ulong> value)
    {
        foreach (var system in s_systems)
            foreach (var (node, usage) in system.ReadNodeUsage())
                yield return new Measurement<long>((long)value(usage), system.SystemTag, new("node", node));
    }

    private static Measurement<long> Measure(ulong value, KeyValuePair<string, object?> system) => new((long)value, system);

    private static Measurement<long> Measure(ulong value, KeyValuePair<string, object?> system, string key, string tag) =>
        new((long)value, system, new(key, tag));
}
