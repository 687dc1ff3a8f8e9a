using System.Diagnostics;
using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Pins, capacity reservations, cancellation and async behaviour, as the API documents them.</summary>
public class ApiContractTests
{
    [Fact]
    public void A_pin_lease_keeps_its_pages_where_they_are_until_disposed()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(64 * Page);
        Fill(region, 0, 32 * Page, seed: 6);
        var lease = region.Pin(8 * Page, 16 * Page); // half touched, half untouched: pinning resolves them
        using (var nested = region.Pin(8 * Page, 4 * Page))
        {
            var result = region.Migrate(0, 64 * Page, device);
            Assert.Equal(16UL, result.PagesPinned);
            Assert.Contains(new MigrationRun(8 * Page, 16 * Page, MigrationOutcome.Pinned), result.Runs);
            Assert.All(region.GetResidency(8 * Page, 16 * Page), r => Assert.Same(system.Host, r.Node));
        }
        // The nested lease is gone, the outer one holds.
        Assert.Equal(16UL, region.Migrate(0, 64 * Page, device).PagesPinned);
        lease.Dispose();
        lease.Dispose(); // idempotent
        var free = region.Migrate(0, 64 * Page, device);
        Assert.Equal(16UL, free.PagesMigrated);
        Assert.True(free.IsComplete);
        Assert.Null(FirstMismatch(region, 0, 8 * Page, seed: 6));
        Assert.Null(FirstMismatch(region, 24 * Page, 8 * Page, seed: 6));
        Assert.Equal(32UL, system.GetStatistics().PagesRefusedPinned);
    }

    [Fact]
    public void RequireCapacity_reserves_atomically_against_other_regions()
    {
        var (system, device) = Create(deviceBytes: 64 * Page);
        using var _ = system;
        using var a = system.Reserve(48 * Page);
        using var b = system.Reserve(48 * Page);
        Fill(a, 0, 48 * Page, seed: 1);
        Fill(b, 0, 48 * Page, seed: 2);
        var strict = new MigrationOptions { RequireCapacity = true, BatchPages = 4 };
        // Two all-or-nothing migrations race for 64 frames; each needs 48: exactly one wins, whole.
        var results = new MigrationResult?[2];
        var errors = new Exception?[2];
        var threads = new[] { a, b }.Select((r, i) => new Thread(() =>
        {
            try { results[i] = r.Migrate(0, 48 * Page, device, strict); }
            catch (Exception e) { errors[i] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(30)));
        Assert.Single(results, r => r is not null);
        Assert.Single(errors, e => e is DeviceCapacityExhaustedException);
        var winner = results.First(r => r is not null)!;
        Assert.Equal(48UL, winner.PagesMigrated);
        Assert.Equal(48UL * Page, device.GetUsage().UsedBytes);
        var loser = errors[0] is null ? b : a;
        Assert.All(loser.GetResidency(0, 48 * Page), r => Assert.Same(system.Host, r.Node));
        Assert.Null(FirstMismatch(a, 0, 48 * Page, seed: 1));
        Assert.Null(FirstMismatch(b, 0, 48 * Page, seed: 2));
        Assert.IsNotType<OutOfMemoryException>(errors.First(e => e is not null));
    }

    /// <summary>A frame drawn from a reservation and handed back unused (here: a page retried as busy)
    /// returns to the reservation, so the retry still finds its frame on an exactly full node.</summary>
    [Fact]
    public void A_reservation_keeps_the_frames_its_retries_need()
    {
        var (system, device) = Create(deviceBytes: 64 * Page);
        using var _ = system;
        using var region = system.Reserve(64 * Page);
        Fill(region, 0, 64 * Page, seed: 12);
        // The detach of page 0 meets a hole (as if the application had discarded it): it is retried as busy.
        system.InjectFault(CdmUserMem.Interop.CdmOp.Move, 2 /* ENOENT */, skip: 0, times: 2);
        var result = region.Migrate(0, 64 * Page, device, new MigrationOptions { RequireCapacity = true });
        Assert.True(result.IsComplete, result.ToString());
        Assert.Equal(64UL, result.PagesMigrated);
        Assert.Equal(64UL * Page, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, 64 * Page, seed: 12));
    }

    [Fact]
    public void Cancellation_between_batches_carries_the_partial_result()
    {
        var (system, device) = Create();
        using var _ = system;
        using var region = system.Reserve(4 * MiB);
        Fill(region, 0, 4 * MiB, seed: 8);
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var e = Assert.Throws<MigrationCanceledException>(() =>
            region.Migrate(0, 4 * MiB, device, new MigrationOptions { BatchPages = 16 }, cancel.Token));
        Assert.Equal(0UL, e.PartialResult.PagesTotal);
        Assert.Equal(0UL, device.GetUsage().UsedBytes);
        Assert.Null(FirstMismatch(region, 0, 4 * MiB, seed: 8));
    }

    [Fact]
    public async Task MigrateAsync_queues_without_threads_and_throws_bad_arguments_synchronously()
    {
        var (system, device) = Create(deviceBytes: 64 * MiB);
        using var _ = system;
        using var region = system.Reserve(32 * MiB);
        Fill(region, 0, 32 * MiB, seed: 9);
        // Thrown by the call itself, before any task exists.
        Task<MigrationResult>? none = null;
        Assert.IsType<ArgumentException>(Record.Exception(() => { none = region.MigrateAsync(1, Page, device); }));
        Assert.IsType<ArgumentOutOfRangeException>(Record.Exception(() => { none = region.MigrateAsync(0, 64 * MiB, device); }));
        Assert.IsType<ArgumentNullException>(Record.Exception(() => { none = region.MigrateAsync(0, Page, null!); }));
        Assert.Null(none);

        // Many queued migrations of one region: they wait for each other without holding pool threads.
        int threadsBefore = Process.GetCurrentProcess().Threads.Count;
        var tasks = Enumerable.Range(0, 64).Select(i => region.MigrateAsync(0, 32 * MiB, i % 2 == 0 ? device : system.Host)).ToArray();
        int threadsDuring = Process.GetCurrentProcess().Threads.Count;
        var results = await Task.WhenAll(tasks);
        Assert.All(results, r => Assert.True(r.IsComplete));
        Assert.True(threadsDuring - threadsBefore < 16, $"{threadsDuring - threadsBefore} threads were added for 64 queued migrations");
        Assert.Null(FirstMismatch(region, 0, 32 * MiB, seed: 9));

        // Cancelling a queued call ends it; the running one finishes.
        using var cancel = new CancellationTokenSource();
        var running = region.MigrateAsync(0, 32 * MiB, device);
        var queued = region.MigrateAsync(0, 32 * MiB, system.Host, cancellationToken: cancel.Token);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        Assert.True((await running).IsComplete);
    }

    [Fact]
    public void Node_limit_is_a_public_constant_with_its_own_exception()
    {
        using var system = MemorySystem.Create();
        for (int i = 0; i < MemorySystem.MaxDeviceNodes; i++) system.AddCoherentDeviceNode($"d{i}", Page);
        Assert.Throws<NodeLimitExceededException>(() => system.AddCoherentDeviceNode("one-too-many", Page));
        Assert.Equal(MemorySystem.MaxDeviceNodes + 1, system.Nodes.Count);
    }

    [Fact]
    public void More_regions_than_descriptors_can_exist()
    {
        using var system = MemorySystem.Create(new MemorySystemOptions { MappingBudget = 8192 });
        var regions = new List<Region>();
        try
        {
            for (int i = 0; i < 1500; i++) regions.Add(system.Reserve(Page));
            foreach (var r in regions) r.AsSpan(0, 1)[0] = 1;
            Assert.All(regions, r => Assert.Same(system.Host, r.NodeOf(0)));
        }
        finally
        {
            foreach (var r in regions) r.Dispose();
        }
    }
}
