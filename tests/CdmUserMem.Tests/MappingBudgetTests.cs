using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

public class MappingBudgetTests
{
    [Fact]
    public void Fragmenting_migrations_hit_the_budget_and_the_region_keeps_working()
    {
        var (system, device) = Create(deviceBytes: 4 * MiB, new MemorySystemOptions { MappingBudget = 64 });
        using var _ = system;
        using var region = system.Reserve(4 * MiB);
        Fill(region, 0, 4 * MiB, seed: 21);
        // Every other page on the device: each costs two more mappings, until the budget refuses.
        MappingBudgetExceededException? refused = null;
        ulong moved = 0;
        for (ulong p = 0; p < 4 * MiB && refused is null; p += 2 * Page)
        {
            try { moved += region.Migrate(p, Page, device).PagesMigrated; }
            catch (MappingBudgetExceededException e) { refused = e; }
        }
        Assert.NotNull(refused);
        Assert.Contains("mapping budget", refused!.Message);
        var stats = system.GetStatistics();
        Assert.True(stats.MappingsInUse <= 64, $"{stats.MappingsInUse} mappings in use");
        Assert.True(stats.MappingBudgetRefusals > 0);
        Assert.Equal(moved * Page, device.GetUsage().UsedBytes);
        // Our count matches the kernel's VMAs for the region.
        Assert.Equal((int)region.MappingCount, KernelMappingsIn(region.Pointer, region.Length));

        // The region still works: data intact, writes land, and moving everything back merges the mappings.
        Assert.Null(FirstMismatch(region, 0, 4 * MiB, seed: 21));
        Fill(region, 0, 4 * MiB, seed: 22);
        region.Migrate(0, 4 * MiB, system.Host).ThrowIfIncomplete();
        Assert.Equal(1UL, region.MappingCount);
        Assert.Equal(1, KernelMappingsIn(region.Pointer, region.Length));
        Assert.True(region.Migrate(0, 4 * MiB, device).IsComplete);
        Assert.Equal(1UL, region.MappingCount);
        Assert.Null(FirstMismatch(region, 0, 4 * MiB, seed: 22));
    }

    [Fact]
    public void Device_first_touch_beyond_the_budget_falls_back_to_the_host()
    {
        var (system, device) = Create(deviceBytes: 4 * MiB, new MemorySystemOptions { MappingBudget = 24 });
        using var _ = system;
        using var region = system.Reserve(4 * MiB, new RegionOptions { Placement = device, FaultAroundPages = 1 });
        // Touch every other page in reverse so frames cannot extend a neighbour's run: each costs mappings.
        for (ulong p = 4 * MiB - 2 * Page; p < 4 * MiB; p -= 2 * Page) region.AsSpan(p, 1)[0] = 7;
        var stats = system.GetStatistics();
        Assert.True(stats.FirstTouchFallbacks > 0);
        Assert.True(stats.MappingsInUse <= 24);
        Assert.Equal((int)region.MappingCount, KernelMappingsIn(region.Pointer, region.Length));
        for (ulong p = 0; p < 4 * MiB; p += 2 * Page) Assert.Equal(7, region.AsSpan(p, 1)[0]);
    }
}
