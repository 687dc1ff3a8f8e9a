using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Topology, placement policies, exclusive nodes, explanations and hot-unplug, one behaviour each.</summary>
public unsafe class PolicyTests
{
    /// <summary>Host, an exclusive near "hbm" of 32 pages and a farther "cxl" of 64 pages.</summary>
    private static (MemorySystem System, MemoryNode Hbm, MemoryNode Cxl) Tiered()
    {
        var system = MemorySystem.Create();
        var hbm = system.AddCoherentDeviceNode("hbm", 32 * Page, distance: 15, exclusive: true);
        var cxl = system.AddCoherentDeviceNode("cxl", 64 * Page, distance: 40);
        return (system, hbm, cxl);
    }

    private static void Touch(Region region, ulong offset, ulong length)
    {
        for (ulong p = offset; p < offset + length; p += Page) region.AsSpan<ulong>(p, 1)[0] = p;
    }

    [Fact]
    public void Topology_prints_like_numactl_and_orders_fallback_by_distance()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        string table = system.Topology.ToString();
        Assert.StartsWith("available: 3 nodes (0-2)\n", table);
        Assert.Contains("node 1 (hbm) kind: coherent-device, exclusive\n", table);
        Assert.Contains("node 1 size: 128 KB\n", table);
        Assert.Contains("node 2 free: 256 KB\n", table);
        Assert.Contains("node distances:\nnode    0   1   2\n   0:  10  15  40\n   1:  15  10  45\n   2:  40  45  10\n", table);
        system.Topology.SetDistance(hbm, cxl, 30);
        Assert.Equal(30, system.Topology.Distance(cxl, hbm));
        Assert.Contains("   1:  15  10  30\n", system.Topology.ToString());
        // Exclusive nodes are never in a fallback order; the host always is.
        Assert.Equal([system.Host], system.Topology.FallbackOrder(cxl));
        Assert.Equal([system.Host, cxl], system.Topology.FallbackOrder(hbm));
        Assert.Equal([cxl], system.Topology.FallbackOrder(system.Host));
    }

    [Fact]
    public void Interleave_places_page_by_page_and_weighted_interleave_by_weight()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        using var region = system.Reserve(64 * Page, new RegionOptions { ReadaheadPages = 0 });
        region.SetPolicy(0, 32 * Page, MemoryPolicy.Interleave(system.Host, cxl));
        region.SetPolicy(32 * Page, 32 * Page, MemoryPolicy.WeightedInterleave((cxl, 3), (hbm, 1)));
        Touch(region, 0, 64 * Page);
        for (ulong p = 0; p < 32; p++) Assert.Same(p % 2 == 0 ? system.Host : cxl, region.NodeOf(p * Page));
        // Pattern index is the page's index in the region: pages 32..63 cycle cxl, cxl, cxl, hbm.
        for (ulong p = 32; p < 64; p++) Assert.Same(p % 4 == 3 ? hbm : cxl, region.NodeOf(p * Page));
        Assert.Equal(8 * Page, hbm.GetUsage().UsedBytes);
        Assert.Equal(PlacementReason.PolicyTarget, region.ExplainPlacement(35 * Page).Reason);
        Assert.Contains("WeightedInterleave(cxl:3, hbm:1)", region.ExplainPlacement(35 * Page).Explanation);
    }

    [Fact]
    public void An_exclusive_node_never_receives_a_fallback_page_under_pressure()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        // Everything prefers cxl (64 pages) while hbm is the nearest node with room: none of it may go there.
        using var region = system.Reserve(256 * Page, new RegionOptions { Placement = cxl, ReadaheadPages = 0 });
        using var other = system.Reserve(64 * Page, new RegionOptions { ReadaheadPages = 0 });
        other.SetPolicy(MemoryPolicy.PreferredMany(cxl, system.Host));
        Touch(region, 0, 256 * Page);
        Touch(other, 0, 64 * Page);
        Assert.Equal(0UL, hbm.GetUsage().UsedBytes);
        Assert.Equal(64 * Page, cxl.GetUsage().UsedBytes);
        var fell = region.ExplainPlacement(200 * Page);
        Assert.Equal(PlacementReason.Fallback, fell.Reason);
        Assert.Same(system.Host, fell.Node);
        Assert.Contains("its target 'cxl' had no room", fell.Explanation);
        Assert.Contains("exclusive 'hbm' never taken as a fallback", fell.Explanation);
        // Named, it is used; Bind with every bound node full falls to the host as a last resort, and says so.
        using var bound = system.Reserve(40 * Page, new RegionOptions { ReadaheadPages = 0 });
        bound.SetPolicy(MemoryPolicy.Bind(hbm));
        Touch(bound, 0, 40 * Page);
        Assert.Equal(32 * Page, hbm.GetUsage().UsedBytes);
        var last = bound.ExplainPlacement(39 * Page);
        Assert.Equal(PlacementReason.LastResort, last.Reason);
        Assert.Contains("last resort", last.Explanation);
    }

    [Fact]
    public void A_range_policy_overrides_and_rebalance_moves_resident_pages_to_it()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        using var region = system.Reserve(32 * Page, new RegionOptions { ReadaheadPages = 0 });
        Fill(region, 0, 32 * Page, seed: 3);
        region.SetPolicy(MemoryPolicy.Preferred(cxl));
        region.SetPolicy(8 * Page, 8 * Page, MemoryPolicy.Bind(hbm));
        Assert.Equal(MemoryPolicyKind.Bind, region.GetPolicy(8 * Page).Kind);
        Assert.Equal(MemoryPolicyKind.Preferred, region.GetPolicy(16 * Page).Kind);
        // Resident pages stay until a rebalance.
        Assert.Same(system.Host, region.NodeOf(0));
        var result = region.Rebalance(0, 32 * Page);
        Assert.True(result.IsComplete, result.ToString());
        Assert.Equal(24UL, result.MovedTo[cxl]);
        Assert.Equal(8UL, result.MovedTo[hbm]);
        Assert.Same(hbm, region.NodeOf(8 * Page));
        Assert.Same(cxl, region.NodeOf(31 * Page));
        Assert.Equal(PlacementReason.Rebalanced, region.ExplainPlacement(9 * Page).Reason);
        Assert.Null(FirstMismatch(region, 0, 32 * Page, seed: 3));
        // A second rebalance has nothing to do.
        Assert.Equal(0UL, region.Rebalance(0, 32 * Page).PagesMoved);
        // A pinned page stays and is counted.
        region.SetPolicy(MemoryPolicy.Default);
        using (region.Pin(0, Page))
        {
            var pinned = region.Rebalance(0, 32 * Page);
            Assert.Equal(1UL, pinned.PagesPinned);
            Assert.Same(cxl, region.NodeOf(0));
        }
    }

    [Fact]
    public void Invalid_policy_topology_and_unplug_calls_throw_and_change_nothing()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        using var other = MemorySystem.Create();
        using var region = system.Reserve(16 * Page, new RegionOptions { ReadaheadPages = 0 });
        region.SetPolicy(MemoryPolicy.Preferred(cxl));
        Fill(region, 0, 8 * Page, seed: 4);
        string before = string.Join("|", Enumerable.Range(0, 16).Select(p => region.ExplainPlacement((ulong)p * Page).Explanation));

        Assert.Throws<ArgumentException>(() => MemoryPolicy.Bind());
        Assert.Throws<ArgumentException>(() => MemoryPolicy.Interleave(cxl, cxl));
        Assert.Throws<ArgumentException>(() => MemoryPolicy.PreferredMany(cxl, other.Host));
        Assert.Throws<ArgumentNullException>(() => MemoryPolicy.Preferred(null!));
        Assert.Throws<ArgumentException>(() => MemoryPolicy.WeightedInterleave());
        Assert.Throws<ArgumentException>(() => MemoryPolicy.WeightedInterleave((cxl, 0)));
        Assert.Throws<ArgumentException>(() => MemoryPolicy.WeightedInterleave((cxl, -2), (hbm, 1)));
        Assert.Throws<ArgumentException>(() => MemoryPolicy.WeightedInterleave((cxl, 4000), (hbm, 100)));
        Assert.Throws<ArgumentException>(() => region.SetPolicy(MemoryPolicy.Preferred(other.Host)));
        Assert.Throws<ArgumentException>(() => region.SetPolicy(1, Page, MemoryPolicy.Default));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.SetPolicy(15 * Page, 2 * Page, MemoryPolicy.Default));
        Assert.Throws<ArgumentException>(() => system.Topology.SetDistance(cxl, cxl, 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => system.Topology.SetDistance(cxl, hbm, 10));
        Assert.Throws<ArgumentException>(() => system.Topology.SetDistance(cxl, other.Host, 20));
        Assert.Throws<ArgumentException>(() => system.RemoveNode(system.Host));
        Assert.Throws<ArgumentException>(() => system.RemoveNode(other.Host));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.ExplainPlacement(16 * Page));

        Assert.Equal(before, string.Join("|", Enumerable.Range(0, 16).Select(p => region.ExplainPlacement((ulong)p * Page).Explanation)));
        Assert.Equal(MemoryPolicyKind.Preferred, region.GetPolicy(0).Kind);
        Assert.Equal(45, system.Topology.Distance(cxl, hbm));
        Assert.Null(FirstMismatch(region, 0, 8 * Page, seed: 4));

        // A removed node takes no policy, placement or migration, and cannot be removed twice.
        region.Migrate(0, 8 * Page, system.Host);
        system.RemoveNode(hbm);
        Assert.Throws<ArgumentException>(() => region.SetPolicy(MemoryPolicy.Bind(hbm)));
        Assert.Throws<ArgumentException>(() => region.Migrate(0, Page, hbm));
        Assert.Throws<ArgumentException>(() => system.Reserve(Page, new RegionOptions { Placement = hbm }));
        Assert.Throws<ArgumentException>(() => system.RemoveNode(hbm));
        Assert.Contains("node 1 (hbm) kind: coherent-device, exclusive, removed\n", system.Topology.ToString());
    }

    /// <summary>Writers keep writing sequence numbers to pages on a node while it is unplugged; none is lost.</summary>
    [Fact]
    public void Unplugging_a_node_under_concurrent_writers_loses_nothing()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        const int Writers = 3, PagesEach = 16;
        ulong size = Writers * PagesEach * Page;
        using var region = system.Reserve(size, new RegionOptions { Placement = cxl });
        region.Prefault(0, size);
        Assert.Equal(size, cxl.GetUsage().UsedBytes);
        using var writers = new SequenceWriters(region, Writers, PagesEach);
        Thread.Sleep(20);
        system.RemoveNode(cxl);
        // Then plug and unplug fresh nodes under the same writers, the region moved onto each first.
        int unplugs = 1;
        for (; unplugs < 40 && writers.Lost is null; unplugs++)
        {
            var node = system.AddCoherentDeviceNode($"hot{unplugs}", size);
            region.Migrate(0, size, node);
            system.RemoveNode(node);
            Assert.Equal(0UL, node.GetUsage().UsedBytes);
        }
        writers.StopAndVerify();
        Assert.True(system.GetStatistics().PagesMigrated >= (ulong)unplugs * Writers * PagesEach);
        Assert.False(cxl.IsOnline);
        Assert.Equal(0UL, cxl.GetUsage().UsedBytes);
        for (int p = 0; p < Writers * PagesEach; p++)
        {
            Assert.Equal(PlacementReason.Drained, region.ExplainPlacement((ulong)p * Page).Reason);
            Assert.Same(system.Host, region.NodeOf((ulong)p * Page));
        }
        // First touches aimed at the removed node fall back; a node added now is used.
        using var later = system.Reserve(4 * Page, new RegionOptions { Placement = hbm, ReadaheadPages = 0 });
        var dev = system.AddCoherentDeviceNode("dev", 16 * Page);
        later.SetPolicy(2 * Page, 2 * Page, MemoryPolicy.Preferred(dev));
        Touch(later, 0, 4 * Page);
        Assert.Same(hbm, later.NodeOf(0));
        Assert.Same(dev, later.NodeOf(3 * Page));
    }

    [Fact]
    public void Unplug_is_refused_while_a_page_is_pinned_and_the_node_stays_usable()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        using var region = system.Reserve(16 * Page, new RegionOptions { Placement = cxl, ReadaheadPages = 0 });
        Fill(region, 0, 16 * Page, seed: 8);
        var busy = default(NodeBusyException);
        using (region.Pin(5 * Page, Page))
            busy = Assert.Throws<NodeBusyException>(() => system.RemoveNode(cxl));
        Assert.True(busy.IsPinned);
        Assert.Equal(1UL, busy.PagesLeft);
        Assert.Equal(region.Pointer + (nint)(5 * Page), busy.FirstBlockedPage);
        Assert.Contains("pinned", busy.Message);
        Assert.True(cxl.IsOnline);
        Assert.Same(cxl, region.NodeOf(5 * Page));
        Assert.Same(system.Host, region.NodeOf(0)); // the others moved before the refusal, and stay moved
        Assert.Null(FirstMismatch(region, 0, 16 * Page, seed: 8));
        // Still usable: placements and migrations land there, and with the pin gone the removal succeeds.
        region.Migrate(0, 4 * Page, cxl).ThrowIfIncomplete();
        system.RemoveNode(cxl);
        Assert.Null(FirstMismatch(region, 0, 16 * Page, seed: 8));
    }

    [Fact]
    public void A_long_term_pin_moves_pages_off_nodes_that_ask_for_it_first()
    {
        var (system, hbm, cxl) = Tiered();
        using var _ = system;
        hbm.MigrateOnLongTermPin = true;
        using var region = system.Reserve(32 * Page, new RegionOptions { Placement = hbm, ReadaheadPages = 0 });
        Fill(region, 0, 16 * Page, seed: 21); // 16 resident on hbm, 16 untouched aimed there
        region.SetPolicy(24 * Page, 8 * Page, MemoryPolicy.Preferred(cxl));
        using (var lease = region.PinLongTerm(0, 32 * Page))
        {
            for (ulong p = 0; p < 24; p++) Assert.Same(system.Host, region.NodeOf(p * Page));
            for (ulong p = 24; p < 32; p++) Assert.Same(cxl, region.NodeOf(p * Page)); // cxl does not ask: pinned in place
            Assert.Equal(0UL, hbm.GetUsage().UsedBytes);
            Assert.Equal(32UL, region.Migrate(0, 32 * Page, hbm).PagesPinned);
            Assert.Null(FirstMismatch(region, 0, 16 * Page, seed: 21));
        }
        // A short-term pin never migrates.
        region.Migrate(0, 8 * Page, hbm);
        using (region.Pin(0, 8 * Page)) Assert.Same(hbm, region.NodeOf(0));
        // A page pinned short-term on such a node cannot be moved for a long-term pin: the call says so.
        using (region.Pin(0, Page))
            Assert.Throws<InvalidOperationException>(() => region.PinLongTerm(0, 2 * Page));
        Assert.Null(FirstMismatch(region, 0, 16 * Page, seed: 21));
    }

    private static ulong ResidentBytes() =>
        ulong.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;

    [Fact]
    public void Unplug_drains_heaps_too_and_gives_the_arena_memory_back()
    {
        using var system = MemorySystem.Create();
        var dev = system.AddCoherentDeviceNode("dev", 64 * MiB);
        using var heap = system.CreateHeap(new HeapOptions { Placement = dev });
        byte* block = (byte*)heap.Allocate((nuint)(4 * MiB), 4096);
        new Span<byte>(block, (int)(4 * MiB)).Fill(0x77);
        Assert.Same(dev, heap.NodeOf(block));
        ulong before = ResidentBytes();
        system.RemoveNode(dev);
        ulong after = ResidentBytes();
        Assert.Same(system.Host, heap.NodeOf(block));
        Assert.True(new Span<byte>(block, (int)(4 * MiB)).IndexOfAnyExcept((byte)0x77) < 0);
        // The arena's 64 MiB go back (a locked one by MADV_DONTNEED_LOCKED), less the 4 MiB the heap's block now holds on the host.
        Assert.True(before > after && before - after > 48 * MiB, $"resident {before >> 20} MiB before, {after >> 20} MiB after");
        heap.Free(block);
    }
}
