using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

public class DataIntegrityTests
{
    [Theory]
    [InlineData(1 * Page)]
    [InlineData(1 * MiB)]
    [InlineData(8 * MiB + 3 * Page)]
    public void Data_survives_migration_to_device_and_back(ulong size)
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(size);
        Fill(region, 0, size, seed: 1);
        Assert.All(region.GetResidency(0, size), run => Assert.Same(system.Host, run.Node));

        var toDevice = region.Migrate(0, size, device);
        Assert.Equal(size / Page, toDevice.PagesMigrated);
        Assert.True(toDevice.IsComplete);
        Assert.Equal(new[] { new ResidencyRun(0, size, device) }, region.GetResidency(0, size));
        Assert.Equal(size, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, size, seed: 1));

        // Written in place on the device: coherent, no migration.
        Fill(region, 0, size, seed: 2);
        Assert.Equal(size / Page, system.GetStatistics().PagesMigrated);

        var toHost = region.Migrate(0, size, system.Host);
        Assert.Equal(size / Page, toHost.PagesMigrated);
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, size, seed: 2));
        Assert.Equal(1UL, region.MappingCount);
    }

    [Fact]
    public void Device_placement_resolves_first_touch_on_the_device_with_zeros()
    {
        var (system, device) = Create();
        using var _ = system;
        // Leave stale data in the device's frames, then free them: a new first touch must still read zeros.
        using (var dirty = system.Reserve(MiB, new RegionOptions { Placement = device }))
        {
            dirty.AsSpan(0, (int)MiB).Fill(0xAB);
        }
        Assert.Equal(0UL, device.GetUsage().UsedBytes);

        ulong touchedBefore = system.GetStatistics().PagesFirstTouchedOnDevice;
        using var region = system.Reserve(4 * MiB, new RegionOptions { Placement = device, FaultAroundPages = 64, ReadaheadPages = 0 });
        Assert.Null(region.NodeOf(0));
        var span = region.AsSpan(0, (int)(2 * MiB));
        Assert.True(span.IndexOfAnyExcept((byte)0) < 0);
        Assert.Same(device, region.NodeOf(0));
        Assert.Same(device, region.NodeOf(2 * MiB - Page));
        Assert.Null(region.NodeOf(3 * MiB));
        Assert.Equal(2 * MiB, device.GetUsage().UsedBytes);
        Assert.Equal(2 * MiB / Page, system.GetStatistics().PagesFirstTouchedOnDevice - touchedBefore);
        // Device frames are moved into the region's own mapping: it stays one VMA.
        Assert.Equal(1UL, region.MappingCount);
        Assert.Equal(1, KernelMappingsIn(region.Pointer, region.Length));
    }

    [Fact]
    public void A_region_larger_than_4_GiB_is_sparse_and_migrates_at_any_offset()
    {
        var (system, device) = Create();
        using var _ = system;
        ulong size = 6UL << 30;
        using var region = system.Reserve(size);
        ulong[] offsets = { 0, (4UL << 30) + 17 * Page, size - 2 * MiB };
        foreach (var o in offsets) Fill(region, o, 2 * MiB, seed: o);
        foreach (var o in offsets) Assert.True(region.Migrate(o, 2 * MiB, device).IsComplete);
        foreach (var o in offsets)
        {
            Assert.Same(device, region.NodeOf(o));
            Assert.Null(FirstMismatch(region, o, 2 * MiB, seed: o));
        }
        Assert.Null(region.NodeOf(2UL << 30));
        Assert.Equal(6 * MiB, device.GetUsage().UsedBytes);
        foreach (var o in offsets) region.Migrate(o, 2 * MiB, system.Host);
        foreach (var o in offsets) Assert.Null(FirstMismatch(region, o, 2 * MiB, seed: o));
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
    }

    [Fact]
    public void Untouched_pages_are_placed_not_copied_and_land_on_the_target()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(MiB);
        var result = region.Migrate(0, MiB, device);
        Assert.Equal(MiB / Page, result.PagesPlaced);
        Assert.Equal(0UL, result.PagesMigrated);
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        region.AsSpan(Page, 8)[0] = 42;
        Assert.Same(device, region.NodeOf(Page));
        Assert.Equal(42, region.AsSpan(Page, 8)[0]);
    }

    [Fact]
    public void Freed_device_frames_are_reused_and_capacity_is_exact()
    {
        var (system, device) = Create(deviceBytes: 2 * MiB);
        using var _ = system;
        using var region = system.Reserve(4 * MiB);
        Fill(region, 0, 4 * MiB, seed: 7);
        for (int round = 0; round < 3; round++)
        {
            var result = region.Migrate(0, 4 * MiB, device);
            Assert.Equal(2 * MiB / Page, result.PagesMigrated);
            Assert.Equal(2 * MiB / Page, result.PagesNoCapacity);
            Assert.Equal(new NodeUsage(2 * MiB, 2 * MiB), device.GetUsage());
            region.Migrate(0, 4 * MiB, system.Host);
            Assert.Equal(0UL, device.GetUsage().UsedBytes);
        }
        Assert.Null(FirstMismatch(region, 0, 4 * MiB, seed: 7));
    }

    [Fact]
    public async Task Async_migration_moves_the_same_pages()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(2 * MiB);
        Fill(region, 0, 2 * MiB, seed: 3);
        var result = await region.MigrateAsync(MiB, MiB, device);
        Assert.Equal(MiB / Page, result.PagesMigrated);
        Assert.Equal(new[] { new ResidencyRun(0, MiB, system.Host), new ResidencyRun(MiB, MiB, device) }, region.GetResidency(0, 2 * MiB));
        Assert.Null(FirstMismatch(region, 0, 2 * MiB, seed: 3));
    }

    [Fact]
    public void Prefaulted_memory_can_be_handed_to_system_calls()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(MiB, new RegionOptions { Placement = device });
        region.Prefault(0, 256 * 1024);
        Assert.Same(device, region.NodeOf(0));
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, Enumerable.Range(0, 256 * 1024).Select(i => (byte)(i * 7)).ToArray());
            using (var file = File.OpenHandle(path))
                Assert.Equal(256 * 1024, RandomAccess.Read(file, region.AsSpan(0, 256 * 1024), 0));
            var span = region.AsSpan(0, 256 * 1024);
            for (int i = 0; i < span.Length; i++) Assert.Equal((byte)(i * 7), span[i]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Migration_to_a_second_device_node_moves_frames_between_arenas()
    {
        var (system, device) = Create();
        using var _ = system;
        var second = system.AddCoherentDeviceNode("dev1", 4 * MiB, distance: 60);
        using var region = system.Reserve(MiB);
        Fill(region, 0, MiB, seed: 11);
        region.Migrate(0, MiB, device);
        Assert.Equal(MiB / Page, region.Migrate(0, MiB, second).PagesMigrated);
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        Assert.Equal(MiB, second.GetUsage().UsedBytes);
        Assert.Same(second, region.NodeOf(0));
        Assert.Null(FirstMismatch(region, 0, MiB, seed: 11));
        Assert.Same(second, system.GetNode("dev1"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sequential_first_touch_reads_ahead_within_its_bound_with_zeros(bool onDevice)
    {
        var (system, device) = Create(deviceBytes: 16 * MiB);
        using var _ = system;
        var placement = onDevice ? device : system.Host;
        using var region = system.Reserve(16 * MiB, new RegionOptions { Placement = placement, FaultAroundPages = 16, ReadaheadPages = 256 });
        const ulong Touched = 4 * MiB;
        for (ulong o = 0; o < Touched; o += Page)
        {
            var word = region.AsSpan<ulong>(o, 1);
            Assert.Equal(0UL, word[0]);
            word[0] = o;
        }
        var stats = system.GetStatistics();
        Assert.True(stats.PagesReadAhead > 0, "a sequential sweep never triggered readahead");
        Assert.True(stats.FirstTouchFaults < Touched / Page / 16, $"{stats.FirstTouchFaults} faults: readahead did not spare any");
        // Never more than one readahead window (plus the fault-around window) beyond what was touched.
        ulong resident = (ulong)region.GetResidency(0, region.Length).Where(r => r.Node is not null).Sum(r => (long)r.Length);
        Assert.InRange(resident, Touched, Touched + (256 + 16) * Page);
        Assert.All(region.GetResidency(0, Touched), run => Assert.Same(placement, run.Node));
        for (ulong o = 0; o < Touched; o += Page) Assert.Equal(o, region.AsSpan<ulong>(o, 1)[0]);
    }
}
