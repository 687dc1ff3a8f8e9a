using System.Diagnostics;
using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Pressure: nodes over their high watermark demote their least recently placed pages in the background.</summary>
public unsafe class PressureTests
{
    private static (MemorySystem System, MemoryNode Hbm, MemoryNode Cxl) Tiered()
    {
        var system = MemorySystem.Create();
        var hbm = system.AddCoherentDeviceNode("hbm", 64 * Page, distance: 15, exclusive: true);
        var cxl = system.AddCoherentDeviceNode("cxl", 100 * Page, distance: 40);
        return (system, hbm, cxl);
    }

    /// <summary>Waits up to 10 s for a condition the background thread brings about.</summary>
    private static void Eventually(Func<bool> condition, Func<string> what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(10)) throw new TimeoutException(what());
            Thread.Sleep(5);
        }
    }

    [Fact]
    public void A_node_over_its_high_watermark_demotes_its_least_recently_placed_pages_to_the_low_one()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        cxl.EnablePressure(); // 90 % / 70 %: 90 and 70 frames
        Assert.Equal([system.Host], cxl.Watermarks!.DemotionOrder);
        using var region = system.Reserve(100 * Page, new RegionOptions { Placement = cxl, FaultAroundPages = 1, ReadaheadPages = 0 });
        // The first ten pages are pinned: never demoted however old.
        using var pin = region.Pin(0, 10 * Page);
        Fill(region, 10 * Page, 90 * Page, seed: 1);
        Eventually(() => cxl.GetUsage().UsedBytes <= 90 * Page && system.GetStatistics().PagesDemoted >= 10,
                   () => $"cxl holds {cxl.GetUsage().UsedBytes / Page} pages, {system.GetStatistics().PagesDemoted} demoted");
        Assert.Equal(0UL, hbm.GetUsage().UsedBytes); // exclusive: never a demotion target
        var placements = Enumerable.Range(0, 100).Select(p => region.ExplainPlacement((ulong)p * Page)).ToArray();
        for (int p = 0; p < 10; p++) Assert.Same(cxl, placements[p].Node);
        var demoted = placements.Select((e, p) => (e, p)).Where(x => x.e.Reason == PlacementReason.Demoted).Select(x => x.p).ToArray();
        var stayed = placements.Select((e, p) => (e, p)).Where(x => x.p >= 10 && x.e.Node == cxl).Select(x => x.p).ToArray();
        Assert.NotEmpty(demoted);
        Assert.All(demoted, p => Assert.Same(system.Host, placements[p].Node));
        // Least recently placed first: every demoted page was touched before every page that stayed.
        Assert.True(demoted.Max() < stayed.Min(), $"demoted {string.Join(",", demoted)}; stayed from {stayed.Min()}");
        Assert.Contains("demoted there by pressure", placements[demoted[0]].Explanation);
        Assert.Null(FirstMismatch(region, 10 * Page, 90 * Page, seed: 1));
        // Off: nothing more is demoted.
        cxl.DisablePressure();
        Assert.Null(cxl.Watermarks);
        ulong before = system.GetStatistics().PagesDemoted;
        region.Migrate(0, 100 * Page, cxl);
        Thread.Sleep(300);
        Assert.Equal(before, system.GetStatistics().PagesDemoted);
        Assert.Equal(100 * Page, cxl.GetUsage().UsedBytes);
    }

    /// <summary>Writers keep writing to pages that pressure demotes from under them, over and over; none is lost.</summary>
    [Fact]
    public void Concurrent_writers_lose_nothing_while_pressure_demotes_their_pages()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        cxl.EnablePressure(0.8, 0.5);
        const int Writers = 2, PagesEach = 16;
        ulong size = Writers * PagesEach * Page;
        using var region = system.Reserve(size, new RegionOptions { Placement = cxl });
        region.Prefault(0, size);
        using var writers = new SequenceWriters(region, Writers, PagesEach);
        // Each round: the written pages move back to cxl, then newer pages fill it past the high watermark, so
        // the written pages (now the least recently placed) are demoted again under the writers.
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        for (; rounds < 30 && writers.Lost is null && clock.Elapsed < TimeSpan.FromSeconds(30); rounds++)
        {
            ulong demotedBefore = system.GetStatistics().PagesDemoted;
            region.Migrate(0, size, cxl);
            using var filler = system.Reserve(60 * Page, new RegionOptions { Placement = cxl, ReadaheadPages = 0 });
            filler.Prefault(0, 60 * Page);
            Eventually(() => system.GetStatistics().PagesDemoted > demotedBefore || writers.Lost is not null, () => $"round {rounds}: nothing demoted");
        }
        writers.StopAndVerify();
        Assert.True(rounds >= 5, $"{rounds} rounds");
        Assert.Equal(0UL, hbm.GetUsage().UsedBytes);
    }

    [Fact]
    public void Invalid_pressure_settings_throw_and_change_nothing()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        Assert.Throws<InvalidOperationException>(() => system.Host.EnablePressure());
        Assert.Throws<ArgumentOutOfRangeException>(() => cxl.EnablePressure(1.5, 0.7));
        Assert.Throws<ArgumentOutOfRangeException>(() => cxl.EnablePressure(0.5, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => cxl.EnablePressure(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => cxl.EnablePressure(double.NaN, 0.1));
        Assert.Null(cxl.Watermarks);
        system.RemoveNode(hbm);
        Assert.Throws<InvalidOperationException>(() => hbm.EnablePressure());
        // Nothing was turned on: a full node stays full.
        using var region = system.Reserve(100 * Page, new RegionOptions { Placement = cxl });
        region.Prefault(0, 100 * Page);
        Thread.Sleep(300);
        Assert.Equal(100 * Page, cxl.GetUsage().UsedBytes);
        Assert.Equal(0UL, system.GetStatistics().PagesDemoted);
    }
}
