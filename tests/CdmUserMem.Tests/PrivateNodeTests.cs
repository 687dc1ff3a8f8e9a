using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Private device nodes: pages there are unmapped, and a CPU touch brings them back.</summary>
public unsafe class PrivateNodeTests
{
    /// <summary>Whether the page at addr is mapped now (/proc/self/pagemap bit 63).</summary>
    private static bool Present(nint addr)
    {
        using var pagemap = File.OpenRead("/proc/self/pagemap");
        pagemap.Position = (long)((ulong)addr / Page * 8);
        Span<byte> entry = stackalloc byte[8];
        pagemap.ReadExactly(entry);
        return (BitConverter.ToUInt64(entry) >> 63) != 0;
    }

    [Fact]
    public void Pages_on_a_private_node_are_unmapped_and_a_CPU_touch_brings_them_back_intact()
    {
        using var system = MemorySystem.Create();
        var cxl = system.AddCoherentDeviceNode("cxl", 16 * Page, distance: 30);
        var gpu = system.AddPrivateDeviceNode("gpu", 64 * Page, distance: 60);
        Assert.Equal(MemoryNodeKind.PrivateDevice, gpu.Kind);
        Assert.Equal([system.Host, cxl], system.Topology.FallbackOrder(gpu)); // by default distances go through the host
        system.Topology.SetDistance(gpu, cxl, 20);
        Assert.Equal([cxl, system.Host], system.Topology.FallbackOrder(gpu));
        Assert.Contains("node 2 (gpu) kind: private-device", system.Topology.ToString());
        using var region = system.Reserve(32 * Page, new RegionOptions { ReadaheadPages = 0 });
        Fill(region, 0, 32 * Page, seed: 31);
        Assert.True(region.Migrate(0, 32 * Page, gpu).IsComplete);
        Assert.Equal(32 * Page, gpu.GetUsage().UsedBytes);
        for (ulong p = 0; p < 32; p++)
        {
            Assert.Same(gpu, region.NodeOf(p * Page));
            Assert.False(Present(region.Pointer + (nint)(p * Page)), $"page {p} is mapped");
        }
        // Reading faults each page back: the nearest CPU-reachable node with room first (cxl, 16 pages), then the host.
        Assert.Null(FirstMismatch(region, 0, 32 * Page, seed: 31));
        Assert.Equal(32UL, system.GetStatistics().PrivateNodeFaults);
        Assert.Equal(0UL, gpu.GetUsage().UsedBytes);
        Assert.Equal(16 * Page, cxl.GetUsage().UsedBytes);
        var back = region.ExplainPlacement(20 * Page);
        Assert.Equal(PlacementReason.BroughtBack, back.Reason);
        Assert.Contains("brought back from a private node", back.Explanation);
        // Private to private via another private node, and back by migration (no fault).
        var gpu2 = system.AddPrivateDeviceNode("gpu2", 64 * Page, distance: 70);
        region.Migrate(0, 32 * Page, gpu);
        region.Migrate(0, 32 * Page, gpu2);
        region.Migrate(0, 32 * Page, system.Host);
        Assert.Equal(32UL, system.GetStatistics().PrivateNodeFaults);
        Assert.Null(FirstMismatch(region, 0, 32 * Page, seed: 31));
        // A pin brings pages back first: pinned memory is handed to system calls.
        region.Migrate(0, 4 * Page, gpu);
        using (region.Pin(0, 4 * Page))
            for (ulong p = 0; p < 4; p++) Assert.True(Present(region.Pointer + (nint)(p * Page)));
        // Disposal returns the frames of pages still there.
        region.Migrate(8 * Page, 8 * Page, gpu);
        region.Dispose();
        Assert.Equal(0UL, gpu.GetUsage().UsedBytes);
    }

    [Fact]
    public void Writers_lose_nothing_while_pages_bounce_to_a_private_node_under_a_GC_storm()
    {
        using var system = MemorySystem.Create();
        var gpu = system.AddPrivateDeviceNode("gpu", 256 * Page);
        const int Writers = 2, PagesEach = 16;
        ulong size = Writers * PagesEach * Page;
        using var region = system.Reserve(size);
        region.Prefault(0, size);
        using var writers = new SequenceWriters(region, Writers, PagesEach, yieldBetweenRounds: true);
        using var stop = new CancellationTokenSource();
        var storm = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                _ = new byte[64 * 1024];
                GC.Collect(0);
            }
        }) { IsBackground = true };
        storm.Start();
        int migrations = 0;
        var migrator = new Thread(() =>
        {
            for (; migrations < 400 && writers.Lost is null; migrations++)
            {
                region.Migrate(0, size, gpu);
                writers.Watchdog.Tick();
            }
        }) { IsBackground = true };
        migrator.Start();
        writers.Watchdog.Watch(TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(10), () => !migrator.IsAlive || writers.Lost is not null);
        Assert.True(migrator.Join(TimeSpan.FromSeconds(10)));
        stop.Cancel();
        Assert.True(storm.Join(TimeSpan.FromSeconds(10)));
        writers.StopAndVerify();
        Assert.True(system.GetStatistics().PrivateNodeFaults > 0, "no writer ever met a page on the private node");
    }

    [Fact]
    public void A_private_node_takes_no_first_touch_policy_reservation_or_heap()
    {
        using var system = MemorySystem.Create();
        var gpu = system.AddPrivateDeviceNode("gpu", 64 * Page);
        using var region = system.Reserve(8 * Page);
        Assert.Throws<ArgumentException>(() => system.Reserve(Page, new RegionOptions { Placement = gpu }));
        Assert.Throws<ArgumentException>(() => region.SetPolicy(MemoryPolicy.Preferred(gpu)));
        Assert.Throws<ArgumentException>(() => gpu.ReserveContiguous(Page));
        Assert.Throws<ArgumentException>(() => system.CreateHeap(new HeapOptions { Placement = gpu }));
        using var heap = system.CreateHeap();
        void* block = heap.Allocate(64 * 1024, 8);
        Assert.Throws<ArgumentException>(() => heap.Migrate(block, gpu));
        heap.Free(block);
        Assert.DoesNotContain(gpu, system.Topology.FallbackOrder(system.Host));
        // Untouched pages migrated there get zeroed device pages, as migrate_vma gives them; a touch brings one back.
        Assert.Equal(8UL, region.Migrate(0, 8 * Page, gpu).PagesMigrated);
        Assert.Equal(8 * Page, gpu.GetUsage().UsedBytes);
        Assert.Same(gpu, region.NodeOf(0));
        Assert.True(region.AsSpan(0, (int)Page).IndexOfAnyExcept((byte)0) < 0);
        Assert.Same(system.Host, region.NodeOf(0));
        Assert.Equal(1UL, system.GetStatistics().PrivateNodeFaults);
        // Demotion and unplug move pages off it.
        Fill(region, 0, 8 * Page, seed: 4);
        region.Migrate(0, 8 * Page, gpu);
        Assert.Equal(4 * Page, gpu.Demote(4 * Page));
        system.RemoveNode(gpu);
        Assert.Null(FirstMismatch(region, 0, 8 * Page, seed: 4));
        // The fill brought the other seven back; the migration, demotion and drain after it took no fault.
        Assert.Equal(8UL, system.GetStatistics().PrivateNodeFaults);
    }
}
