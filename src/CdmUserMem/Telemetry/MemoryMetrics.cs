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
    /// <summary>Weak: a memory system its owner dropped without disposing stays collectable, and its handles'
    /// finalizers still release the engine.</summary>
    private static WeakReference<SystemTelemetry>[] s_systems = [];
    private static Timer? s_timer;
    private static readonly Lock s_exporting = new();

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
        s_meter.CreateObservableCounter("cdmusermem.pages.demoted", () => Each(static (s, t) =>
            [Measure(s.PagesDemoted, t)]), "{page}", "Pages demoted off device nodes over their high watermark.");
        s_meter.CreateObservableCounter("cdmusermem.pages.compacted", () => Each(static (s, t) =>
            [Measure(s.PagesCompacted, t)]), "{page}", "Pages moved off frames contiguous reservations needed.");
        s_meter.CreateObservableCounter("cdmusermem.first_touch.fallbacks", () => Each(static (s, t) =>
            [Measure(s.FirstTouchFallbacks, t)]), "{page}", "First touches that landed on another node than their target (it had no room).");
        s_meter.CreateObservableGauge("cdmusermem.mappings.in_use", () => Each(static (s, t) =>
            [Measure(s.MappingsInUse, t)]), "{mapping}", "Mappings (VMAs) the memory system holds.");
        s_meter.CreateObservableGauge("cdmusermem.node.used", () => EachNode(static u => u.UsedBytes),
            "By", "Bytes resident on each node.");
        s_meter.CreateObservableGauge("cdmusermem.node.free", () => EachNode(static u => u.FreeBytes, devicesOnly: true),
            "By", "Free bytes of each device node's arena (the host is unbounded and not reported).");
    }

    internal static void Register(SystemTelemetry system)
    {
        lock (s_sync)
        {
            s_systems = [.. Live().Select(t => new WeakReference<SystemTelemetry>(t)), new WeakReference<SystemTelemetry>(system)];
            s_timer ??= new Timer(static _ => Export(fromTimer: true), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        }
    }

    internal static void Unregister(SystemTelemetry system)
    {
        lock (s_sync)
        {
            s_systems = Live().Where(s => s != system).Select(t => new WeakReference<SystemTelemetry>(t)).ToArray();
            if (s_systems.Length == 0)
            {
                s_timer?.Dispose();
                s_timer = null;
            }
        }
    }

    internal static bool IsRegistered(SystemTelemetry system) => Live().Contains(system);

    /// <summary>Replays new latency events into the histograms and reports what the logs must say; the timer
    /// runs it every second (skipping a tick while an export is still running), tests call it directly (and
    /// wait for a running one). Nothing escapes it: a throwing logger or listener costs its own report only.</summary>
    internal static void Export(bool fromTimer = false)
    {
        if (fromTimer)
        {
            if (!s_exporting.TryEnter()) return;
        }
        else
        {
            s_exporting.Enter();
        }
        try
        {
            foreach (var system in Live())
            {
                try
                {
                    system.Export();
                }
                catch (Exception) when (fromTimer)
                {
                    // A user's logger or listener threw: an exception on a timer thread would end the process.
                }
            }
        }
        finally
        {
            s_exporting.Exit();
        }
    }

    private static IEnumerable<SystemTelemetry> Live()
    {
        foreach (var weak in s_systems)
            if (weak.TryGetTarget(out var system)) yield return system;
    }

    private static IEnumerable<Measurement<long>> Each(Func<MemoryStatistics, KeyValuePair<string, object?>, Measurement<long>[]> read)
    {
        foreach (var system in Live())
            if (system.TryReadStatistics(out var stats))
                foreach (var m in read(stats, system.SystemTag)) yield return m;
    }

    private static IEnumerable<Measurement<long>> EachNode(Func<NodeUsage, ulong> value, bool devicesOnly = false)
    {
        foreach (var system in Live())
            foreach (var (node, isHost, usage) in system.ReadNodeUsage())
                if (!(devicesOnly && isHost)) yield return new Measurement<long>((long)value(usage), system.SystemTag, new("node", node));
    }

    private static Measurement<long> Measure(ulong value, KeyValuePair<string, object?> system) => new((long)value, system);

    private static Measurement<long> Measure(ulong value, KeyValuePair<string, object?> system, string key, string tag) =>
        new((long)value, system, new(key, tag));
}
