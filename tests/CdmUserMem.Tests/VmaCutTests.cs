using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>
/// madvise, mlock and mprotect on parts of a region split its VMA; fault-around windows then cross
/// boundaries the kernel refuses to fill across. Every first touch must still return, with zeros.
/// </summary>
public unsafe class VmaCutTests
{
    [Fact]
    public void First_touches_across_every_cut_return_and_read_zeros()
    {
        var (system, device) = Create(deviceBytes: 8 * MiB);
        using var _ = system;
        foreach (var placement in new[] { system.Host, device })
        {
            using var region = system.Reserve(4 * MiB, new RegionOptions { Placement = placement, FaultAroundPages = 64, ReadaheadPages = 0 });
            nint b = region.Pointer;
            // Cuts that do not start or end on a fault-around window.
            TestNative.Check(TestNative.Madvise(b + (nint)(3 * Page), (nuint)(5 * Page), TestNative.MadvDontFork) == 0, "madvise");
            TestNative.Check(TestNative.Mlock(b + (nint)(70 * Page), (nuint)(9 * Page)) == 0, "mlock");
            TestNative.Check(TestNative.Munlock(b + (nint)(200 * Page), (nuint)(3 * Page)) == 0, "munlock");
            TestNative.Check(TestNative.Mprotect(b + (nint)(300 * Page), (nuint)(7 * Page), TestNative.ProtRead) == 0, "mprotect");
            Assert.True(region.MappingCount >= 5, $"{region.MappingCount} mappings: the cuts did not split the region");

            // Touch every page from two threads, writers everywhere but the read-only cut.
            var watchdog = new Watchdog();
            Exception? failure = null;
            var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
            {
                try
                {
                    for (ulong p = (ulong)t; p < region.PageCount; p += 2)
                    {
                        byte* at = (byte*)b + p * Page;
                        if (*at != 0) throw new InvalidOperationException($"page {p} did not read zero");
                        if (p < 300 || p >= 307) *at = (byte)(p | 1);
                        watchdog.Tick();
                    }
                }
                catch (Exception e) { failure ??= e; }
            }) { IsBackground = true }).ToArray();
            foreach (var t in threads) t.Start();
            watchdog.Watch(TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(10), () => threads.All(t => !t.IsAlive));
            foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(1)), "a first touch never returned");
            Assert.Null(failure);
            for (ulong p = 0; p < region.PageCount; p++)
            {
                byte want = p is >= 300 and < 307 ? (byte)0 : (byte)(p | 1);
                Assert.Equal(want, ((byte*)b)[p * Page]);
                Assert.NotNull(region.NodeOf(p * Page));
            }
            // Prefault and migrations over the cuts return too; what cannot move says so.
            region.Prefault(0, region.Length);
            var target = placement == device ? system.Host : device;
            var result = region.Migrate(0, region.Length, target);
            Assert.Equal(region.PageCount, result.PagesTotal);
            for (ulong p = 0; p < region.PageCount; p++)
            {
                byte want = p is >= 300 and < 307 ? (byte)0 : (byte)(p | 1);
                Assert.Equal(want, ((byte*)b)[p * Page]);
            }
            TestNative.Check(TestNative.Mprotect(b + (nint)(300 * Page), (nuint)(7 * Page), TestNative.ProtRead | TestNative.ProtWrite) == 0, "mprotect");
        }
    }

    [Fact]
    public void A_discarded_page_reads_zeros_again_on_its_node()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(64 * Page);
        Fill(region, 0, 64 * Page, seed: 4);
        region.Migrate(0, 32 * Page, device).ThrowIfIncomplete();
        // The application throws two pages away, one on each node, as it may with any anonymous memory
        // (a locked region takes the _LOCKED form of the advice).
        int advice = system.IsMemoryLocked ? TestNative.MadvDontNeedLocked : TestNative.MadvDontNeed;
        TestNative.Check(TestNative.Madvise(region.Pointer + (nint)(5 * Page), (nuint)Page, advice) == 0, "madvise");
        TestNative.Check(TestNative.Madvise(region.Pointer + (nint)(40 * Page), (nuint)Page, advice) == 0, "madvise");
        Assert.True(region.AsSpan(5 * Page, (int)Page).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(region.AsSpan(40 * Page, (int)Page).IndexOfAnyExcept((byte)0) < 0);
        Assert.Same(device, region.NodeOf(5 * Page));
        Assert.Same(system.Host, region.NodeOf(40 * Page));
        Assert.Equal(2UL, system.GetStatistics().PagesRefilled);
        // Both still migrate, with what they hold now.
        region.AsSpan(5 * Page, 8).Fill(0x11);
        Assert.True(region.Migrate(0, 64 * Page, system.Host).IsComplete);
        Assert.Equal(0x11, region.AsSpan(5 * Page, 1)[0]);
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, 5 * Page, seed: 4));
        Assert.Null(FirstMismatch(region, 41 * Page, 23 * Page, seed: 4));
    }
}
