using CdmUserMem.Interop;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace CdmUserMem.Telemetry;

/// <summary>
/// One memory system's side of the meter and the logs: the native latency buckets last exported, and the
/// counters last reported, so each export publishes only what is new.
/// </summary>
internal sealed unsafe class SystemTelemetry
{
    /// <summary>Events replayed into a histogram per bucket per export; the rest waits for the next one.</summary>
    private const ulong MaxReplayPerBucket = 1 << 16;

    private static int s_nextId;

    private static readonly string[] s_batchSizeTags = ["", "4KiB", "64KiB", "2MiB", "larger"];

    private readonly MemorySystem _system;
    private readonly ulong[][] _exported = new ulong[(int)CdmLatency.Count][];
    private readonly ulong[] _current = new ulong[CdmEngine.LatencyBuckets];
    private ulong _fallbacksReported, _loopErrorsReported, _fillErrorsReported;

    internal SystemTelemetry(MemorySystem system, ILoggerFactory? loggerFactory)
    {
        _system = system;
        Logger = loggerFactory?.CreateLogger("CdmUserMem.MemorySystem") ?? NullLogger.Instance;
        SystemTag = new("system", Interlocked.Increment(ref s_nextId));
        for (int i = 0; i < _exported.Length; i++) _exported[i] = new ulong[CdmEngine.LatencyBuckets];
    }

    public ILogger Logger { get; }

    /// <summary>Tells memory systems of one process apart in every measurement.</summary>
    public KeyValuePair<string, object?> SystemTag { get; }

    public bool TryReadStatistics(out MemoryStatistics statistics)
    {
        try
        {
            statistics = _system.GetStatistics();
            return true;
        }
        catch (Exception e) when (e is ObjectDisposedException or ForkedProcessException)
        {
            statistics = default;
            return false;
        }
    }

    public IEnumerable<(string Node, bool IsHost, NodeUsage Usage)> ReadNodeUsage()
    {
        foreach (var node in _system.Nodes)
        {
            NodeUsage usage;
            try
            {
                usage = node.GetUsage();
            }
            catch (Exception e) when (e is ObjectDisposedException or ForkedProcessException)
            {
                yield break;
            }
            yield return (node.Name, node.Kind == MemoryNodeKind.Host, usage);
        }
    }

    /// <summary>Publishes new latency events and logs what changed; called by one exporter at a time.</summary>
    public void Export()
    {
        try
        {
            ExportLatency(CdmLatency.Fault, MemoryMetrics.FaultServiceTime.Enabled);
            bool migrations = MemoryMetrics.MigrationBatchTime.Enabled;
            for (var kind = CdmLatency.MigratePage; kind < CdmLatency.Count; kind++) ExportLatency(kind, migrations);
            // Error is the highest level reported here: a logger taking any of them has it enabled.
            if (Logger.IsEnabled(LogLevel.Error)) ReportCounters();
        }
        catch (Exception e) when (e is ObjectDisposedException or ForkedProcessException)
        {
            // Disposed meanwhile: nothing more to publish.
        }
    }

    private void ExportLatency(CdmLatency kind, bool publish)
    {
        ulong[] exported = _exported[(int)kind];
        fixed (ulong* p = _current)
            if (CdmEngine.LatencySnapshot(_system.EngineHandle, (int)kind, p, (uint)_current.Length, out _) < 0) return;
        for (int i = 0; i < _current.Length; i++)
        {
            ulong fresh = _current[i] - exported[i];
            if (fresh == 0) continue;
            if (!publish)
            {
                exported[i] = _current[i];
                continue;
            }
            ulong replay = Math.Min(fresh, MaxReplayPerBucket);
            double microseconds = (LatencyDistribution.LowerBound(i) + LatencyDistribution.UpperBound(i)) / 2000.0;
            for (ulong n = 0; n < replay; n++)
            {
                if (kind == CdmLatency.Fault) MemoryMetrics.FaultServiceTime.Record(microseconds, SystemTag);
                else MemoryMetrics.MigrationBatchTime.Record(microseconds, SystemTag, new("size", s_batchSizeTags[(int)kind]));
            }
            exported[i] += replay;
        }
    }

    private void ReportCounters()
    {
        var s = _system.GetStatistics();
        if (s.FirstTouchFallbacks > _fallbacksReported)
            Log.FirstTouchFallbacks(Logger, s.FirstTouchFallbacks - _fallbacksReported, s.FirstTouchFallbacks);
        if (s.FaultLoopErrors > _loopErrorsReported || s.FillErrors > _fillErrorsReported)
            Log.FaultEngineErrors(Logger, s.FaultLoopErrors - _loopErrorsReported, s.FillErrors - _fillErrorsReported);
        _fallbacksReported = s.FirstTouchFallbacks;
        _loopErrorsReported = s.FaultLoopErrors;
        _fillErrorsReported = s.FillErrors;
    }
}
