using CdmUserMem;
using Xunit.Abstractions;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>fork() without exec: the child works on its own copy and never changes the parent's memory.</summary>
public unsafe class ForkTests(ITestOutputHelper output)
{
    private static void FillPages(Region region, ulong pages)
    {
        for (ulong p = 0; p < pages; p++) region.AsSpan(p * Page, (int)Page).Fill((byte)(p % 251 + 1));
    }

    private static ulong? FirstChanged(Region region, ulong pages)
    {
        for (ulong p = 0; p < pages; p++)
            if (region.AsSpan(p * Page, (int)Page).IndexOfAnyExcept((byte)(p % 251 + 1)) >= 0) return p;
        return null;
    }

    [Fact]
    public void A_child_forked_during_migrations_writes_its_copy_and_the_parent_is_unchanged()
    {
        var (system, device) = Create(deviceBytes: 16 * MiB);
        using var _ = system;
        const ulong Pages = 1024, Touched = 768; // the last quarter stays untouched
        // No readahead: the last quarter must stay untouched while the first three are filled.
        using var region = system.Reserve(Pages * Page, new RegionOptions { ReadaheadPages = 0 });
        using var other = system.Reserve(2 * MiB);
        FillPages(region, Touched);
        Fill(other, 0, other.Length, seed: 9);
        region.Migrate(0, Touched / 2 * Page, device).ThrowIfIncomplete(); // half on the device at fork time

        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        long shared = 0, migrated = 0;
        var migrators = new[] { region, other }.Select(r => new Thread(() =>
        {
            try
            {
                for (int i = 0; !stop.IsCancellationRequested; i++)
                {
                    var result = r.Migrate(0, r.Length, i % 2 == 0 ? system.Host : device);
                    Interlocked.Add(ref shared, (long)result.PagesShared);
                    Interlocked.Add(ref migrated, (long)result.PagesMigrated);
                }
            }
            catch (Exception e) { failure ??= e; }
        }) { IsBackground = true }).ToArray();
        foreach (var t in migrators) t.Start();
        var exits = new List<int>();
        try
        {
            for (int round = 0; round < 10; round++)
            {
                int rc = TestNative.ForkWrite(region.Pointer, Pages, Touched, (byte)(0xC0 + round), out int childExit);
                Assert.Equal(0, rc);
                exits.Add(childExit);
                Thread.Sleep(20);
            }
        }
        finally
        {
            stop.Cancel();
            foreach (var t in migrators) Assert.True(t.Join(TimeSpan.FromSeconds(30)));
        }
        Assert.Null(failure);
        output.WriteLine($"child exits: {string.Join(",", exits)}; parent: migrated {migrated}, shared-refused {shared}");
        // 0: every child saw the parent's data at fork time and its own writes.
        Assert.All(exits, e => Assert.Equal(0, e));
        Assert.Null(FirstChanged(region, Touched));
        for (ulong p = Touched; p < Pages; p++) Assert.Null(region.NodeOf(p * Page)); // still untouched here
        Assert.True(region.AsSpan(Touched * Page, (int)((Pages - Touched) * Page)).IndexOfAnyExcept((byte)0) < 0);
        Assert.Null(FirstMismatch(other, 0, other.Length, seed: 9));
        Assert.True(migrated > 0);

        // With every child gone, every page moves again.
        var after = region.Migrate(0, Pages * Page, device);
        Assert.Equal(0UL, after.PagesShared);
        Assert.True(after.IsComplete, after.ToString());
        Assert.Null(FirstChanged(region, Touched));
    }

    /// <summary>
    /// While a child shares the pages copy-on-write the kernel refuses to move them; the engine breaks the
    /// sharing as a write would and moves this process's copy. The child keeps its own.
    /// </summary>
    [Fact]
    public void Copy_on_write_shared_pages_are_unshared_and_moved_while_the_child_lives()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(64 * Page);
        FillPages(region, 64);
        int pid = TestNative.ForkHold(out int hold);
        Assert.True(pid > 0, $"fork failed: {pid}");
        MigrationResult whileShared;
        try
        {
            whileShared = region.Migrate(0, 64 * Page, device);
        }
        finally
        {
            Assert.Equal(0, TestNative.Release(hold, pid));
        }
        output.WriteLine($"while shared: {whileShared}; {system.GetStatistics().PagesUnshared} pages unshared");
        Assert.True(whileShared.IsComplete, whileShared.ToString());
        Assert.Equal(64UL, system.GetStatistics().PagesUnshared);
        Assert.All(region.GetResidency(0, 64 * Page), r => Assert.Same(device, r.Node));
        Assert.Null(FirstChanged(region, 64));
        Assert.True(region.Migrate(0, 64 * Page, system.Host).IsComplete);
        Assert.Null(FirstChanged(region, 64));
    }

    /// <summary>A child's calls into the engine are refused (its threads live in the parent) instead of
    /// acting on the parent's state; the managed side turns the code into ForkedProcessException.</summary>
    [Fact]
    public void The_engine_refuses_a_forked_child()
    {
        var (system, _) = Create();
        using var __ = system;
        using var region = system.Reserve(MiB);
        var handle = typeof(Region).GetField("_handle", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        nint native = ((System.Runtime.InteropServices.SafeHandle)handle.GetValue(region)!).DangerousGetHandle();
        nint populate = System.Runtime.InteropServices.NativeLibrary.GetExport(
            System.Runtime.InteropServices.NativeLibrary.Load("libcdmengine.so", typeof(MemorySystem).Assembly, null), "cdm_region_populate");
        Assert.Equal(0, TestNative.ForkCall(populate, native, CdmUserMem.Interop.CdmEngine.ErrorForked, out int childExit));
        Assert.Equal(0, childExit);
        Assert.Null(region.NodeOf(0)); // the child's call changed nothing here
        Assert.IsType<ForkedProcessException>(NativeErrors.ForErrno(CdmUserMem.Interop.CdmEngine.ErrorForked, "x"));
    }
}
