using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

public class MappingBudgetTests
{
    /// <summary>Migration moves pages between areas with UFFDIO_MOVE: no VMA is ever split or added.</summary>
    [Fact]
    public void Scattered_migrations_keep_the_region_one_mapping()
    {
        var (system, device) = Create(deviceBytes: 4 * MiB, new MemorySystemOptions { MappingBudget = 64 });
        using var _ = system;
        using var region = system.Reserve(4 * MiB);
        Fill(region, 0, 4 * MiB, seed: 21);
        ulong before = system.GetStatistics().MappingsInUse;
        int processMappings = Mappings();
        // Every other page on the device, in reverse so no two device frames are contiguous.
        for (ulong p = 4 * MiB - 2 * Page; p < 4 * MiB; p -= 2 * Page)
            Assert.Equal(1UL, region.Migrate(p, Page, device).PagesMigrated);
        Assert.Equal(MiB * 2, device.GetUsage().UsedBytes);
        Assert.Equal(1UL, region.MappingCount);
        Assert.Equal(1, KernelMappingsIn(region.Pointer, region.Length));
        Assert.Equal(before, system.GetStatistics().MappingsInUse);
        Assert.InRange(Mappings(), processMappings - 8, processMappings + 8);
        Assert.Null(FirstMismatch(region, 0, 4 * MiB, seed: 21));

        Fill(region, 0, 4 * MiB, seed: 22);
        region.Migrate(0, 4 * MiB, system.Host).ThrowIfIncomplete();
        Assert.True(region.Migrate(0, 4 * MiB, device).IsComplete);
        Assert.Equal(1UL, region.MappingCount);
        Assert.Null(FirstMismatch(region, 0, 4 * MiB, seed: 22));
    }

    /// <summary>What can still add mappings (regions, nodes) is counted, and refused past the budget.</summary>
    [Fact]
    public void Regions_and_nodes_beyond_the_budget_are_refused_and_change_nothing()
    {
        // The engine holds 2 (staging, zeros); each region 2 (range, page table); each node 1 (arena).
        var system = MemorySystem.Create(new MemorySystemOptions { MappingBudget = 16 });
        using var _ = system;
        var regions = new List<Region>();
        var refused = Assert.Throws<MappingBudgetExceededException>(() =>
        {
            for (int i = 0; i < 100; i++) regions.Add(system.Reserve(MiB));
        });
        Assert.Contains("mapping budget", refused.Message);
        Assert.Equal(7, regions.Count);
        Assert.Equal(16UL, system.GetStatistics().MappingsInUse);
        Assert.Throws<MappingBudgetExceededException>(() => system.AddCoherentDeviceNode("dev0", MiB));
        Assert.Single(system.Nodes);
        Assert.Equal(2UL, system.GetStatistics().MappingBudgetRefusals);
        // The regions made before the refusal work, and freeing one makes room again.
        foreach (var r in regions) r.AsSpan(0, 8).Fill(3);
        regions[0].Dispose();
        Assert.Equal(14UL, system.GetStatistics().MappingsInUse);
        var device = system.AddCoherentDeviceNode("dev0", MiB);
        Assert.Equal(1UL, regions[1].Migrate(0, Page, device).PagesMigrated);
        Assert.Equal(3, regions[1].AsSpan(0, 1)[0]);
        foreach (var r in regions) r.Dispose();
    }
}
