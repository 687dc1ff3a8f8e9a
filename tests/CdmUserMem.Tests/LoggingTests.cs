using System.Collections.Concurrent;
using CdmUserMem;
using CdmUserMem.Telemetry;
using Microsoft.Extensions.Logging;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>What a memory system logs through Microsoft.Extensions.Logging, and that it costs nothing off.</summary>
public class LoggingTests
{
    private sealed class CapturingLoggerFactory(LogLevel minimum) : ILoggerFactory, ILogger
    {
        public readonly ConcurrentQueue<(LogLevel Level, string Event, string Message)> Entries = new();
        public int EnabledChecks;
        public string? Category;

        public ILogger CreateLogger(string categoryName)
        {
            Category = categoryName;
            return this;
        }

        public void AddProvider(ILoggerProvider provider) { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel)
        {
            Interlocked.Increment(ref EnabledChecks);
            return logLevel >= minimum;
        }

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= minimum) Entries.Enqueue((logLevel, eventId.Name ?? "", formatter(state, exception)));
        }

        public void Dispose() { }
    }

    [Fact]
    public void Incomplete_migrations_budget_refusals_and_fallbacks_are_logged()
    {
        var log = new CapturingLoggerFactory(LogLevel.Information);
        var (system, device) = Create(deviceBytes: MiB, new MemorySystemOptions { LoggerFactory = log, MappingBudget = 16 });
        using var _ = system;
        Assert.Equal("CdmUserMem.MemorySystem", log.Category);
        // Readahead off: background readahead would go on placing pages (and counting fallbacks) after the fill returns.
        using var region = system.Reserve(4 * MiB, new RegionOptions { Placement = device, ReadaheadPages = 0 });

        // A pinned page stays: the migration says so.
        Fill(region, 0, MiB / 2, seed: 5);
        using (region.Pin(0, Page))
            Assert.Equal(1UL, region.Migrate(0, Page, system.Host).PagesPinned);
        var incomplete = Assert.Single(log.Entries, e => e.Event == "MigrationIncomplete");
        Assert.Contains("1 pinned", incomplete.Message);
        Assert.Contains("'host'", incomplete.Message);

        // The device holds 1 MiB: first touches past it land on the host, reported once per export.
        Fill(region, MiB / 2, 2 * MiB, seed: 6);
        ulong fallbacks = system.GetStatistics().FirstTouchFallbacks;
        Assert.True(fallbacks > 0);
        // The exporter's timer may have reported part of them already: the reports add up, and the last names the total.
        MemoryMetrics.Export();
        var fell = log.Entries.Where(e => e.Event == "FirstTouchFallbacks").ToList();
        Assert.NotEmpty(fell);
        Assert.All(fell, e => Assert.Equal(LogLevel.Warning, e.Level));
        Assert.Equal(fallbacks, fell.Aggregate(0UL, (sum, e) => sum + ulong.Parse(e.Message.Split(' ')[0])));
        Assert.Contains($"{fallbacks} in all", fell[^1].Message);

        // Regions past the mapping budget are refused, and the refusal is logged with the budget.
        var regions = new List<Region>();
        try
        {
            Assert.Throws<MappingBudgetExceededException>(() => { while (regions.Count < 100) regions.Add(system.Reserve(MiB)); });
        }
        finally
        {
            foreach (var r in regions) r.Dispose();
        }
        var refused = Assert.Single(log.Entries, e => e.Event == "MappingBudgetRefused");
        Assert.Contains("(16 mappings", refused.Message);
        Assert.Null(FirstMismatch(region, MiB / 2, 2 * MiB, seed: 6));
    }

    [Fact]
    public void A_disabled_logger_is_asked_and_never_written()
    {
        var log = new CapturingLoggerFactory(LogLevel.None);
        var (system, device) = Create(deviceBytes: MiB, new MemorySystemOptions { LoggerFactory = log });
        using var _ = system;
        using var region = system.Reserve(2 * MiB, new RegionOptions { Placement = device });
        Fill(region, 0, 2 * MiB, seed: 7);
        using (region.Pin(0, Page))
            region.Migrate(0, Page, system.Host);
        MemoryMetrics.Export();
        Assert.True(log.EnabledChecks > 0);
        Assert.Empty(log.Entries);
    }
}
