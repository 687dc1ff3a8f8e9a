using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

public class LifetimeTests
{
    private static void Cycle(int i)
    {
        var (system, device) = Create(deviceBytes: MiB);
        using var _ = system;
        using var region = system.Reserve(2 * MiB, new RegionOptions { Placement = i % 2 == 0 ? system.Host : device });
        Fill(region, 0, MiB, seed: (ulong)i);
        region.Migrate(0, MiB, i % 2 == 0 ? device : system.Host);
        Assert.Null(FirstMismatch(region, 0, MiB, seed: (ulong)i));
        // Left undisposed on purpose: disposing the system must release it.
        system.Reserve(MiB).AsSpan(0, 1)[0] = 1;
    }

    [Fact]
    public void Create_dispose_cycles_return_descriptors_and_mappings_to_their_starting_counts()
    {
        // Warm up first: glibc caches thread stacks and grows per-thread malloc arenas, and the runtime
        // opens a few descriptors of its own; measured here, both stop growing within ~400 cycles.
        for (int i = 0; i < 300; i++) Cycle(i);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int fds = OpenDescriptors(), maps = Mappings();
        for (int i = 0; i < 300; i++) Cycle(i);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        // A leak of one descriptor or mapping per cycle would show 300 or more.
        Assert.InRange(OpenDescriptors(), fds - 3, fds + 3);
        Assert.InRange(Mappings(), maps - 12, maps + 12);
    }

    [Fact]
    public void Disposing_the_system_releases_every_region_and_mapping_count()
    {
        var (system, device) = Create(deviceBytes: MiB);
        var a = system.Reserve(MiB);
        var b = system.Reserve(MiB, new RegionOptions { Placement = device });
        b.AsSpan(0, (int)MiB).Fill(1);
        Assert.Equal(MiB, device.GetUsage().UsedBytes);
        system.Dispose();
        Assert.True(a.IsDisposed);
        Assert.True(b.IsDisposed);
        Assert.Equal(0, KernelMappingsIn(a.Pointer, MiB));
    }
}
