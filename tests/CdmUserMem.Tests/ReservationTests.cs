using System.Runtime.InteropServices;
using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Contiguous reservations: free windows, compaction in the node and to the host, pins, mapping, unplug.</summary>
public unsafe class ReservationTests
{
    /// <summary>A 64-page node whose frames hold every other page of a 64-page region (32 frames used, scattered).</summary>
    private static (MemorySystem System, MemoryNode Device, Region Region) Fragmented(ulong pagesOnDevice = 64)
    {
        var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("dev", 64 * Page);
        var region = system.Reserve(pagesOnDevice * Page, new RegionOptions { Placement = device, FaultAroundPages = 1, ReadaheadPages = 0 });
        Fill(region, 0, pagesOnDevice * Page, seed: 11);
        for (ulong p = 0; p < pagesOnDevice; p += 2) region.Migrate(p * Page, Page, system.Host);
        return (system, device, region);
    }

    [Fact]
    public void A_free_window_is_reserved_as_is_and_never_used_by_placement()
    {
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("dev", 64 * Page);
        using var extent = device.ReserveContiguous(40 * Page);
        Assert.Equal(40 * Page, device.GetUsage().UsedBytes);
        Assert.Equal(0UL, extent.FrameOffset % Page);
        extent.AsSpan(0, (int)(40 * Page)).Fill(0x5A);
        Assert.True(extent.AsSpan(0, (int)(40 * Page)).IndexOfAnyExcept((byte)0x5A) < 0);
        // Placement gets the other 24 frames only.
        using var region = system.Reserve(64 * Page, new RegionOptions { Placement = device, ReadaheadPages = 0 });
        region.Prefault(0, 64 * Page);
        Assert.Equal(64 * Page, device.GetUsage().UsedBytes);
        Assert.Equal(24UL * Page, (ulong)region.GetResidency(0, 64 * Page).Where(r => r.Node == device).Sum(r => (long)r.Length));
        Assert.True(extent.AsSpan(0, (int)(40 * Page)).IndexOfAnyExcept((byte)0x5A) < 0);
        extent.Dispose();
        Assert.Equal(24 * Page, device.GetUsage().UsedBytes);
    }

    [Fact]
    public void Compaction_moves_pages_to_other_frames_of_the_node_keeping_their_data()
    {
        var (system, device, region) = Fragmented();
        using var _ = system;
        using var __ = region;
        Assert.Equal(32 * Page, device.GetUsage().UsedBytes);
        using var extent = device.ReserveContiguous(32 * Page);
        // 32 frames for the extent, 32 for the pages, which all stayed on the node.
        Assert.Equal(64 * Page, device.GetUsage().UsedBytes);
        for (ulong p = 1; p < 64; p += 2) Assert.Same(device, region.NodeOf(p * Page));
        var stats = system.GetStatistics();
        Assert.True(stats.PagesCompacted > 0);
        Assert.Contains(Enumerable.Range(0, 32), p => region.ExplainPlacement((ulong)(2 * p + 1) * Page).Reason == PlacementReason.Compacted);
        Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 11));
    }

    [Fact]
    public void Compaction_moves_to_the_next_node_what_the_node_has_no_room_for()
    {
        var (system, device, region) = Fragmented();
        using var _ = system;
        using var __ = region;
        // 32 pages on the node; 48 frames wanted: at most 16 pages keep frames on the node.
        using var extent = device.ReserveContiguous(48 * Page);
        ulong onDevice = (ulong)region.GetResidency(0, 64 * Page).Where(r => r.Node == device).Sum(r => (long)r.Length) / Page;
        Assert.Equal(64 * Page, device.GetUsage().UsedBytes);
        Assert.Equal(16UL, onDevice);
        var moved = Enumerable.Range(0, 32).Select(p => region.ExplainPlacement((ulong)(2 * p + 1) * Page)).Where(e => e.Node == system.Host).ToList();
        Assert.Equal(16, moved.Count);
        Assert.All(moved, e => Assert.Equal(PlacementReason.Compacted, e.Reason));
        Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 11));
    }

    [Fact]
    public void Pinned_pages_block_compaction_and_the_error_names_them()
    {
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("dev", 64 * Page);
        using var region = system.Reserve(64 * Page, new RegionOptions { Placement = device, FaultAroundPages = 1, ReadaheadPages = 0 });
        Fill(region, 0, 64 * Page, seed: 12);
        var pins = Enumerable.Range(0, 8).Select(i => region.Pin((ulong)(i * 8 + 3) * Page, Page)).ToList();
        var before = region.GetResidency(0, 64 * Page);
        var blocked = Assert.Throws<CompactionBlockedException>(() => device.ReserveContiguous(16 * Page));
        Assert.NotEmpty(blocked.PinnedPages);
        Assert.All(blocked.PinnedPages, a => Assert.Equal(3, (int)((ulong)(a - region.Pointer) / Page % 8)));
        Assert.Contains($"0x{blocked.PinnedPages[0]:x}", blocked.Message);
        Assert.Equal(before, region.GetResidency(0, 64 * Page));
        Assert.Equal(64 * Page, device.GetUsage().UsedBytes);
        // A window between pins is fine.
        using (var small = device.ReserveContiguous(7 * Page))
            Assert.Equal(7 * Page, small.Length);
        foreach (var pin in pins) pin.Dispose();
        using var big = device.ReserveContiguous(16 * Page);
        Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 12));
    }

    [Fact]
    public void An_extent_is_mapped_where_the_caller_asks_and_unmapped_on_release()
    {
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("dev", 64 * Page);
        // A free address: where a region was, once it is gone.
        using var region = system.Reserve(16 * Page);
        nint address;
        using (var gone = system.Reserve(64 * Page)) address = gone.Pointer + (nint)(8 * Page);
        Assert.Throws<ArgumentException>(() => device.ReserveContiguous(4 * Page, region.Pointer + (nint)Page));
        Assert.Throws<ArgumentException>(() => device.ReserveContiguous(4 * Page, region.Pointer + 1));
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        var extent = device.ReserveContiguous(16 * Page, address);
        Assert.Equal(address, extent.Pointer);
        Assert.Equal(16 * Page, device.GetUsage().UsedBytes);
        new Span<byte>((void*)address, (int)(16 * Page)).Fill(7);
        Assert.Contains(File.ReadLines("/proc/self/maps"), l => l.StartsWith($"{address:x}-"));
        extent.Dispose();
        Assert.DoesNotContain(File.ReadLines("/proc/self/maps"), l => l.StartsWith($"{address:x}-"));
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        // The data went with the mapping: a new extent over the same frames starts zeroed.
        using var again = device.ReserveContiguous(64 * Page);
        Assert.Equal(64 * Page, device.GetUsage().UsedBytes);
        Assert.True(again.AsSpan(0, (int)(64 * Page)).IndexOfAnyExcept((byte)0) < 0);
    }

    /// <summary>Writers keep writing to pages while compaction moves them to other frames; none is lost.</summary>
    [Fact]
    public void Concurrent_writers_lose_nothing_across_compactions()
    {
        var (system, device, region) = Fragmented();
        using var _ = system;
        using var __ = region;
        using var stop = new CancellationTokenSource();
        var last = new ulong[64];
        string? lost = null;
        var writer = new Thread(() =>
        {
            ulong* words = (ulong*)region.Pointer;
            for (ulong seq = 1; !stop.IsCancellationRequested; seq++)
                for (int p = 1; p < 64; p += 2)
                {
                    ulong* slot = words + (ulong)p * Page / 8 + 1;
                    if (Volatile.Read(ref *slot) != last[p] && last[p] != 0) { lost ??= $"page {p}: read {*slot}, wrote {last[p]}"; return; }
                    Volatile.Write(ref *slot, seq);
                    last[p] = seq;
                }
        }) { IsBackground = true };
        writer.Start();
        const int Rounds = 30;
        for (int round = 0; round < Rounds && lost is null; round++)
        {
            // The same layout every round: all 64 pages on frames 0-63 in order, then the even ones away, so
            // any 32-frame window holds 16 written pages that compaction must move within the node.
            region.Migrate(0, 64 * Page, system.Host);
            region.Migrate(0, 64 * Page, device);
            for (ulong p = 0; p < 64; p += 2) region.Migrate(p * Page, Page, system.Host);
            ulong before = system.GetStatistics().PagesCompacted;
            using (device.ReserveContiguous(32 * Page))
                Assert.Equal(16UL, system.GetStatistics().PagesCompacted - before);
        }
        stop.Cancel();
        Assert.True(writer.Join(TimeSpan.FromSeconds(10)));
        Assert.Null(lost);
        for (int p = 1; p < 64; p += 2) Assert.Equal(last[p], region.AsSpan<ulong>((ulong)p * Page + 8, 1)[0]);
    }

    [Fact]
    public void Invalid_reservations_throw_and_a_node_with_one_cannot_be_unplugged()
    {
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("dev", 64 * Page);
        Assert.Throws<ArgumentException>(() => system.Host.ReserveContiguous(Page));
        Assert.Throws<ArgumentException>(() => device.ReserveContiguous(0));
        Assert.Throws<ArgumentException>(() => device.ReserveContiguous(Page + 1));
        Assert.Throws<DeviceCapacityExhaustedException>(() => device.ReserveContiguous(65 * Page));
        using var first = device.ReserveContiguous(40 * Page);
        Assert.Throws<DeviceCapacityExhaustedException>(() => device.ReserveContiguous(40 * Page));
        Assert.Equal(40 * Page, device.GetUsage().UsedBytes);
        var busy = Assert.Throws<NodeBusyException>(() => system.RemoveNode(device));
        Assert.Contains("contiguous reservations", busy.Message);
        Assert.True(device.IsOnline);
        first.Dispose();
        first.Dispose();
        Assert.Throws<ObjectDisposedException>(() => first.AsSpan(0, 1));
        system.RemoveNode(device);
        Assert.Throws<ArgumentException>(() => device.ReserveContiguous(Page));
    }

    /// <summary>A user that discards its own reservation's memory leaves holes in the arena: released, the frames
    /// are refilled before placement reuses them (the fault thread zeroes free frames in place, and a hole there
    /// would make it fault on itself: every fault of the engine would hang).</summary>
    [Fact]
    public void Frames_of_a_discarded_reservation_are_refilled_before_they_are_reused()
    {
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("dev", 64 * Page);
        var extent = device.ReserveContiguous(64 * Page);
        const int MADV_DONTNEED = 4, MADV_DONTNEED_LOCKED = 24;
        Assert.Equal(0, TestNative.Madvise(extent.Pointer, (nuint)(64 * Page), system.IsMemoryLocked ? MADV_DONTNEED_LOCKED : MADV_DONTNEED));
        extent.Dispose();
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        using var region = system.Reserve(64 * Page, new RegionOptions { Placement = device, ReadaheadPages = 0 });
        var touch = Task.Run(() => Fill(region, 0, 64 * Page, seed: 13));
        Assert.True(touch.Wait(TimeSpan.FromSeconds(20)), "first touches on the refilled frames hung");
        Assert.Equal(64 * Page, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 13));
    }
}
