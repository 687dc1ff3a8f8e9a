using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Accounting groups: exact usage per node, limits turning placements away, and bad calls.</summary>
public class AccountingGroupTests
{
    [Fact]
    public void Usage_is_exact_across_touches_migrations_and_disposal_and_limits_turn_placements_away()
    {
        using var system = MemorySystem.Create();
        var dev = system.AddCoherentDeviceNode("dev", 256 * Page);
        var group = system.CreateGroup("tenant-a");
        group.SetLimit(dev, 40 * Page);
        Assert.Equal(40 * Page, group.GetLimit(dev));
        using var a = system.Reserve(32 * Page, new RegionOptions { Placement = dev, Group = group, ReadaheadPages = 0 });
        using var b = system.Reserve(32 * Page, new RegionOptions { Placement = dev, Group = group, ReadaheadPages = 0 });
        using var outsider = system.Reserve(64 * Page, new RegionOptions { Placement = dev, ReadaheadPages = 0 });
        Fill(a, 0, 32 * Page, seed: 1);
        Fill(b, 0, 32 * Page, seed: 2);
        Fill(outsider, 0, 64 * Page, seed: 3);
        // The group holds 40 pages on dev (its limit), the rest of its 64 pages on the host; the outsider is not limited.
        Assert.Equal(40 * Page, group.GetUsage(dev));
        Assert.Equal(24 * Page, group.GetUsage(system.Host));
        Assert.Equal(104 * Page, dev.GetUsage().UsedBytes);
        var limited = b.ExplainPlacement(31 * Page);
        Assert.Equal(PlacementReason.GroupLimitFallback, limited.Reason);
        Assert.Contains("group 'tenant-a' was at its limit on 'dev'", limited.Explanation);
        // A migration over the limit moves what fits and reports the rest.
        b.Migrate(0, 32 * Page, system.Host);
        Assert.Equal(32UL * Page, group.GetUsage(dev));
        var back = b.Migrate(0, 32 * Page, dev);
        Assert.Equal(8UL, back.PagesMigrated);
        Assert.Equal(24UL, back.PagesNoCapacity);
        Assert.Equal(40 * Page, group.GetUsage(dev));
        // Raising the limit lets it in; disposal uncharges everything.
        group.SetLimit(dev, null);
        Assert.True(b.Migrate(0, 32 * Page, dev).IsComplete);
        Assert.Equal(64 * Page, group.GetUsage(dev));
        Assert.Equal(0UL, group.GetUsage(system.Host));
        Assert.Null(FirstMismatch(a, 0, 32 * Page, seed: 1));
        Assert.Null(FirstMismatch(b, 0, 32 * Page, seed: 2));
        a.Dispose();
        b.Dispose();
        Assert.Equal(0UL, group.GetUsage(dev));
        Assert.Equal(0UL, group.GetUsage(system.Host));
    }

    [Fact]
    public void Invalid_group_calls_throw_and_change_nothing()
    {
        using var system = MemorySystem.Create();
        using var other = MemorySystem.Create();
        var dev = system.AddCoherentDeviceNode("dev", 64 * Page);
        var group = system.CreateGroup("g");
        Assert.Throws<ArgumentException>(() => group.SetLimit(system.Host, Page));
        Assert.Throws<ArgumentException>(() => group.SetLimit(dev, Page + 1));
        Assert.Throws<ArgumentException>(() => group.SetLimit(other.Host, Page));
        Assert.Throws<ArgumentException>(() => other.Reserve(Page, new RegionOptions { Group = group }));
        Assert.Throws<ArgumentException>(() => system.CreateGroup(" "));
        Assert.Null(group.GetLimit(dev));
        // None of the refused limits took: the group fills the node.
        using (var region = system.Reserve(64 * Page, new RegionOptions { Placement = dev, Group = group, ReadaheadPages = 0 }))
        {
            region.Prefault(0, 64 * Page);
            Assert.Equal(64 * Page, group.GetUsage(dev));
        }
        for (int i = 2; i < 256; i++) system.CreateGroup($"g{i}");
        Assert.Throws<InvalidOperationException>(() => system.CreateGroup("one too many"));
    }

    [Fact]
    public void Compaction_moves_a_group_at_its_limit_within_the_node_without_charging_it_twice()
    {
        using var system = MemorySystem.Create();
        var dev = system.AddCoherentDeviceNode("dev", 64 * Page);
        var group = system.CreateGroup("full");
        group.SetLimit(dev, 32 * Page);
        // Another region takes every frame, then gives back the odd ones: the group's 32 pages land on them.
        using var region = system.Reserve(32 * Page, new RegionOptions { Placement = dev, Group = group, FaultAroundPages = 1, ReadaheadPages = 0 });
        using (var other = system.Reserve(64 * Page, new RegionOptions { Placement = dev, FaultAroundPages = 1, ReadaheadPages = 0 }))
        {
            other.Prefault(0, 64 * Page);
            for (ulong p = 1; p < 64; p += 2) other.Migrate(p * Page, Page, system.Host);
            Fill(region, 0, 32 * Page, seed: 5);
        }
        Assert.Equal(32 * Page, group.GetUsage(dev));
        Assert.Equal(32 * Page, dev.GetUsage().UsedBytes);
        using var extent = dev.ReserveContiguous(32 * Page);
        // The group stays at its limit on dev: its pages moved to other frames of the node, not to the host.
        Assert.Equal(32 * Page, group.GetUsage(dev));
        Assert.Equal(64 * Page, dev.GetUsage().UsedBytes);
        Assert.True(system.GetStatistics().PagesCompacted >= 16);
        Assert.Equal(0UL, group.GetUsage(system.Host));
        Assert.Null(FirstMismatch(region, 0, 32 * Page, seed: 5));
    }
}
