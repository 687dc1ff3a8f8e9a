using CdmUserMem;
using CdmUserMem.Interop;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>
/// Every system call the engine makes, failed on purpose: the operation ends with its exception or
/// outcome, nothing hangs, and data and accounting are as before.
/// </summary>
public unsafe class FaultInjectionTests
{
    private const int ENOMEM = 12, EIO = 5, EFAULT = 14, EINVAL = 22, EAGAIN = 11;

    /// <summary>Runs a touch on another thread and fails the test if it does not return in time.</summary>
    private static void Returns(Action action, string what)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { action(); }
            catch (Exception e) { failure = e; }
        }) { IsBackground = true };
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(20)), $"{what} never returned");
        Assert.Null(failure);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_refused_first_touch_fill_is_retried_until_it_succeeds(bool write)
    {
        var (system, _) = Create();
        using var __ = system;
        using var region = system.Reserve(MiB, new RegionOptions { FaultAroundPages = 16, ReadaheadPages = 0 });
        // Writers are filled with UFFDIO_COPY, readers with UFFDIO_ZEROPAGE: each refused three times.
        system.InjectFault(write ? CdmOp.Copy : CdmOp.ZeroPage, ENOMEM, skip: 0, times: 3);
        byte* at = (byte*)region.Pointer + 5 * Page;
        Returns(() =>
        {
            if (write) *at = 42;
            else Assert.Equal(0, *at);
        }, "the first touch");
        Assert.Equal(write ? 42 : 0, *at);
        // Readers are retried as writers (a real page serves both), so only the first ZEROPAGE is refused.
        var stats = system.GetStatistics();
        Assert.True(stats.FillErrors >= (write ? 3UL : 1UL), $"{stats.FillErrors} fill errors");
        Assert.Same(system.Host, region.NodeOf(5 * Page));
        Assert.Equal(16UL * Page, system.Host.GetUsage().UsedBytes);
    }

    [Fact]
    public void A_refused_device_first_touch_lands_on_the_host()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(MiB, new RegionOptions { Placement = device, FaultAroundPages = 8, ReadaheadPages = 0 });
        system.InjectFault(CdmOp.Move, EIO, skip: 0, times: 1);
        Returns(() => region.AsSpan(0, 4)[0] = 7, "the device first touch");
        Assert.Equal(7, region.AsSpan(0, 1)[0]);
        Assert.Same(system.Host, region.NodeOf(0));
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        Assert.Equal(8UL, system.GetStatistics().FirstTouchFallbacks);
    }

    /// <summary>One page, so detach and attach are one move each: the failing one is chosen exactly.</summary>
    [Theory]
    [InlineData(0u, EIO)]     // detach: the page never leaves
    [InlineData(1u, EIO)]     // attach: the detached page is put back
    [InlineData(0u, EFAULT)]
    [InlineData(1u, ENOMEM)]
    public void A_failed_move_leaves_the_page_on_its_source_with_its_data(uint skip, int errno)
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(64 * Page);
        Fill(region, 0, 64 * Page, seed: 1);
        foreach (var (target, source) in new[] { (device, system.Host), (system.Host, device) })
        {
            ulong deviceBefore = device.GetUsage().UsedBytes, hostBefore = system.Host.GetUsage().UsedBytes;
            system.InjectFault(CdmOp.Move, errno, skip, times: 1);
            var result = region.Migrate(7 * Page, Page, target);
            Assert.Equal(1UL, result.PagesFailed);
            Assert.Same(source, region.NodeOf(7 * Page));
            Assert.Equal(deviceBefore, device.GetUsage().UsedBytes);
            Assert.Equal(hostBefore, system.Host.GetUsage().UsedBytes);
            Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 1));
            // The next attempt moves it, and the rest.
            Assert.True(region.Migrate(0, 64 * Page, target).IsComplete);
            Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 1));
        }
        Assert.Equal(skip == 1 ? 2UL : 0UL, system.GetStatistics().MigrationsAborted);
    }

    [Fact]
    public void A_device_to_host_copy_that_fails_puts_the_frames_back()
    {
        var (system, device) = Create();
        using var _ = system;
        // No host-to-device move ever ran in this system, so there are no spare host pages: device-to-host
        // attaches with UFFDIO_COPY.
        using var region = system.Reserve(32 * Page, new RegionOptions { Placement = device });
        Fill(region, 0, 32 * Page, seed: 2);
        system.InjectFault(CdmOp.Copy, EIO, skip: 0, times: 1);
        var result = region.Migrate(0, 32 * Page, system.Host);
        Assert.Equal(new MigrationRun(0, Page, MigrationOutcome.Failed), result.Runs[0]);
        Assert.Same(device, region.NodeOf(0));
        Assert.Equal(32UL * Page - result.PagesMigrated * Page, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, 32 * Page, seed: 2));
        Assert.True(region.Migrate(0, 32 * Page, system.Host).IsComplete);
        Assert.Null(FirstMismatch(region, 0, 32 * Page, seed: 2));
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
    }

    /// <summary>Past its spare-page bound a host-to-device move frees staged host pages with madvise; when
    /// that fails, the slots keep their pages and are never reused, and the migration is unaffected.</summary>
    [Fact]
    public void Failing_staging_releases_and_wakes_change_no_result()
    {
        var (system, device) = Create(deviceBytes: 48 * MiB);
        using var _ = system;
        const ulong Size = 40 * MiB; // more than the 32 MiB of spare host pages the engine keeps
        using var region = system.Reserve(Size);
        Fill(region, 0, Size, seed: 3);
        system.InjectFault(CdmOp.Madvise, EIO, skip: 0, times: 1000);
        system.InjectFault(CdmOp.Wake, EIO, skip: 0, times: 1000);
        for (int i = 0; i < 4; i++)
        {
            Assert.True(region.Migrate(0, Size, i % 2 == 0 ? device : system.Host).IsComplete);
            Assert.Null(FirstMismatch(region, 0, Size, seed: 3));
        }
        Returns(() => Fill(region, 0, Size, seed: 4), "writes after failed wakes");
        Assert.Null(FirstMismatch(region, 0, Size, seed: 4));
    }

    [Fact]
    public void The_fault_thread_survives_poll_and_read_errors()
    {
        var (system, _) = Create();
        using var __ = system;
        using var region = system.Reserve(MiB, new RegionOptions { FaultAroundPages = 1, ReadaheadPages = 0 });
        system.InjectFault(CdmOp.Poll, EINVAL, skip: 0, times: 5);
        system.InjectFault(CdmOp.Read, EIO, skip: 0, times: 5);
        Returns(() =>
        {
            for (ulong p = 0; p < 32; p++) region.AsSpan(p * Page, 1)[0] = (byte)p;
        }, "first touches while poll and read fail");
        Assert.True(system.GetStatistics().FaultLoopErrors >= 5);
        for (ulong p = 0; p < 32; p++) Assert.Equal((byte)p, region.AsSpan(p * Page, 1)[0]);
    }

    [Theory]
    [InlineData((int)CdmOp.Mmap, ENOMEM, typeof(InsufficientMemoryException))]
    [InlineData((int)CdmOp.Register, EINVAL, typeof(IOException))]
    [InlineData((int)CdmOp.Madvise, EAGAIN, typeof(IOException))]
    public void A_region_or_node_the_kernel_refuses_throws_and_leaves_nothing_behind(int op, int errno, Type expected)
    {
        var call = (CdmOp)op;
        var (system, device) = Create();
        using var _ = system;
        var before = system.GetStatistics().MappingsInUse;
        int mappings = Mappings(), descriptors = OpenDescriptors();
        system.InjectFault(call, errno, skip: 0, times: 1);
        Assert.IsType(expected, Record.Exception(() => system.Reserve(MiB)));
        system.InjectFault(call, errno, skip: 0, times: 1);
        Assert.IsType(expected, Record.Exception(() => system.AddCoherentDeviceNode("dev1", MiB)));
        Assert.Equal(before, system.GetStatistics().MappingsInUse);
        Assert.Equal(2, system.Nodes.Count);
        Assert.InRange(Mappings(), mappings - 4, mappings + 4);
        Assert.Equal(descriptors, OpenDescriptors());
        // Afterwards both work.
        using var region = system.Reserve(MiB, new RegionOptions { Placement = device });
        region.AsSpan(0, 8).Fill(1);
        Assert.Same(device, region.NodeOf(0));
        Assert.Equal("dev1", system.AddCoherentDeviceNode("dev1", MiB).Name);
    }

    [Fact]
    public void A_region_the_kernel_refuses_to_lock_throws_when_memory_is_locked()
    {
        var (system, _) = Create();
        using var __ = system;
        if (!system.IsMemoryLocked) return; // nothing is locked: mlock is never called
        var before = system.GetStatistics().MappingsInUse;
        system.InjectFault(CdmOp.Mlock, ENOMEM, skip: 0, times: 1);
        Assert.Throws<InsufficientMemoryException>(() => system.Reserve(MiB));
        Assert.Equal(before, system.GetStatistics().MappingsInUse);
    }
}
