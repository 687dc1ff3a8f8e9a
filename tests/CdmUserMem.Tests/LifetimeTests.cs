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
        for (int i = 0; i < 5; i++) Cycle(i); // warm the runtime's own pools and threads
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int fds = OpenDescriptors(), maps = Mappings();
        for (int i = 0; i < 200; i++) Cycle(i);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(fds, OpenDescriptors());
        // The runtime may map a little on its own; a leak here would be 200 or more.
        Assert.InRange(Mappings(), maps - 20, maps + 20);
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
