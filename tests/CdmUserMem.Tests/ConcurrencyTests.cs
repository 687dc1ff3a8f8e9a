using System.Runtime.CompilerServices;
using CdmUserMem;
using CdmUserMem.Interop;
using Xunit.Abstractions;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

public unsafe class ConcurrencyTests(ITestOutputHelper output)
{
    /// <summary>
    /// The deadlock invariant 1 guards against: threads blocked in first-touch faults from a method with no loop
    /// (so no GC poll) while GC.Collect runs in a loop and migrations run. A managed resolver hangs within ~1 s.
    /// </summary>
    [Fact]
    public void GC_storm_during_first_touch_and_migration_never_hangs()
    {
        var (system, device) = Create(deviceBytes: 8 * MiB);
        using var _ = system;
        var watchdog = new Watchdog();
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var workers = new List<Thread>();
        void Run(Action body)
        {
            var thread = new Thread(() =>
            {
                try { body(); }
                catch (Exception e) { failure ??= e; }
            }) { IsBackground = true };
            workers.Add(thread);
            thread.Start();
        }

        long touches = 0, collections = 0, migrations = 0;
        for (int t = 0; t < 2; t++)
        {
            var placement = t == 0 ? system.Host : device;
            Run(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    // A fresh region each round keeps every touch a first touch without growing memory.
                    using var region = system.Reserve(4 * MiB, new RegionOptions { Placement = placement, FaultAroundPages = 1 });
                    for (ulong p = 0; p < region.PageCount && !stop.IsCancellationRequested; p++)
                    {
                        TouchOnce((byte*)region.Pointer + p * Page, (byte)p);
                        watchdog.Tick();
                        Interlocked.Increment(ref touches);
                    }
                }
            });
        }
        using var shared = system.Reserve(2 * MiB);
        Fill(shared, 0, 2 * MiB, seed: 5);
        // Jit the migration path first: under a back-to-back GC loop, first-call compilation and tier-up
        // wait for gaps between collections (runtime behaviour, measured) and would only add noise.
        for (int i = 0; i < 40; i++) shared.Migrate(0, 2 * MiB, i % 2 == 0 ? device : system.Host);
        Run(() =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                shared.Migrate(0, 2 * MiB, i % 2 == 0 ? device : system.Host);
                Interlocked.Increment(ref migrations);
                watchdog.Tick();
            }
        });
        Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                Interlocked.Increment(ref collections);
            }
        });

        watchdog.Watch(TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(10), () => failure is not null);
        stop.Cancel();
        // Every worker finishes its round and ends before anything is disposed.
        foreach (var worker in workers) Assert.True(worker.Join(TimeSpan.FromSeconds(30)), "a worker did not end");
        Assert.Null(failure);
        output.WriteLine($"20 s GC storm: {touches} first touches, {collections} collections, {migrations} migrations of 2 MiB");
        // Every thread made progress: faults were served and migrations completed while the GC ran.
        Assert.True(touches > 1000 && collections > 100 && migrations >= 1, $"touches {touches}, collections {collections}, migrations {migrations}");
        Assert.Null(FirstMismatch(shared, 0, 2 * MiB, seed: 5));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TouchOnce(byte* address, byte value) => *address = value;

    /// <summary>Writers keep writing sequence numbers while the pages bounce between nodes; none is lost.</summary>
    [Fact]
    public void Concurrent_writers_lose_nothing_across_hundreds_of_migrations()
    {
        var (system, device) = Create();
        using var _ = system;
        const int Writers = 3, PagesEach = 8, Migrations = 400;
        ulong size = Writers * PagesEach * Page;
        using var region = system.Reserve(size);
        region.Prefault(0, size);
        var watchdog = new Watchdog();
        using var stop = new CancellationTokenSource();
        var lastWritten = new ulong[Writers][];
        string? lost = null;
        var writers = Enumerable.Range(0, Writers).Select(w => new Thread(() =>
        {
            // Each writer owns a word in each of its pages: read back what it wrote last, then write the next.
            var mine = lastWritten[w] = new ulong[PagesEach];
            ulong* words = (ulong*)region.Pointer;
            for (ulong seq = 1; !stop.IsCancellationRequested; seq++)
            {
                for (int p = 0; p < PagesEach; p++)
                {
                    ulong* slot = words + ((ulong)(w * PagesEach + p) * Page + (ulong)w * 64) / 8;
                    if (Volatile.Read(ref *slot) != mine[p]) { lost ??= $"writer {w} page {p}: read {*slot}, wrote {mine[p]}"; return; }
                    Volatile.Write(ref *slot, seq);
                    mine[p] = seq;
                }
                watchdog.Tick();
            }
        }) { IsBackground = true }).ToArray();
        foreach (var t in writers) t.Start();

        int done = 0;
        var migrator = new Thread(() =>
        {
            // At least Migrations, and on until a writer has met a detached page (it races the batch's
            // copy window, which is a few microseconds for these few pages).
            for (; (done < Migrations || (system.GetStatistics().FaultsWaitedOnMigration == 0 && done < 50 * Migrations)) && lost is null; done++)
            {
                // Alternate whole-range and half-range moves so runs split and merge.
                var target = done % 2 == 0 ? device : system.Host;
                ulong length = done % 4 < 2 ? size : size / 2;
                region.Migrate(0, length, target);
                watchdog.Tick();
            }
        }) { IsBackground = true };
        migrator.Start();
        watchdog.Watch(TimeSpan.FromSeconds(120), TimeSpan.FromSeconds(10), () => !migrator.IsAlive || lost is not null);
        stop.Cancel();
        foreach (var t in writers) Assert.True(t.Join(TimeSpan.FromSeconds(10)));
        Assert.True(migrator.Join(TimeSpan.FromSeconds(10)));
        Assert.Null(lost);
        Assert.True(done >= Migrations, $"{done} migrations");
        for (int w = 0; w < Writers; w++)
            for (int p = 0; p < PagesEach; p++)
                Assert.Equal(lastWritten[w][p], region.AsSpan<ulong>((ulong)(w * PagesEach + p) * Page + (ulong)w * 64, 1)[0]);
        var stats = system.GetStatistics();
        Assert.True(stats.FaultsWaitedOnMigration > 0, "writers never met a detached page: the test did not exercise the wait path");
        Assert.True(stats.PagesMigrated > Migrations);
    }

    /// <summary>A thread blocked in a system call on a fault in a region being disposed comes back.</summary>
    [Fact]
    public void Disposing_a_region_releases_threads_faulting_in_it()
    {
        var (system, _) = Create();
        using var __ = system;
        int fd = Libc.MemfdCreate("cdm-test-sink", Libc.MfdCloexec);
        Assert.True(fd >= 0);
        using var sink = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        for (int round = 0; round < 20; round++)
        {
            var region = system.Reserve(64 * MiB, new RegionOptions { FaultAroundPages = 1 });
            long calls = 0;
            using var started = new ManualResetEventSlim();
            var writer = new Thread(() =>
            {
                // write(2) reads the untouched pages from inside the kernel: in full mode each read faults
                // and waits for the engine; once the range is gone it gets EFAULT instead.
                for (ulong p = 0; p < 16384; p++)
                {
                    started.Set();
                    try { RandomAccess.Write(sink, new ReadOnlySpan<byte>((byte*)region.Pointer + p * Page, (int)Page), 0); }
                    catch (IOException) { return; }
                    Interlocked.Increment(ref calls);
                }
            }) { IsBackground = true };
            writer.Start();
            started.Wait();
            region.Dispose();
            Assert.True(writer.Join(TimeSpan.FromSeconds(10)), "a thread stayed blocked after its region was disposed");
        }
    }

    /// <summary>
    /// Scattered moves release their host pages together; pages a writer keeps on the host (busy) sit between
    /// them and must keep every write.
    /// </summary>
    [Fact]
    public void Scattered_migrations_keep_the_writes_of_pages_that_stay_on_the_host()
    {
        // A lost host page would leave a resident page with no backing: any read of it faults forever.
        // The body runs on its own thread so such a failure ends in bounded time.
        Exception? failure = null;
        var body = new Thread(() =>
        {
            try { ScatteredBody(); }
            catch (Exception e) { failure = e; }
        }) { IsBackground = true };
        body.Start();
        Assert.True(body.Join(TimeSpan.FromSeconds(60)), "scattered migrations hung: a host page lost its backing");
        if (failure is not null) throw new Xunit.Sdk.XunitException(failure.ToString());
    }

    private void ScatteredBody()
    {
        var (system, device) = Create(deviceBytes: 4 * MiB);
        using var _ = system;
        const int Pages = 64;
        using var region = system.Reserve(Pages * Page);
        region.Prefault(0, Pages * Page);
        ulong* words = (ulong*)region.Pointer;
        using var stop = new CancellationTokenSource();
        var last = new ulong[Pages];
        string? lost = null;
        // The writer hammers every fourth page, so many of the even pages a migration moves stay busy.
        var writer = new Thread(() =>
        {
            for (ulong seq = 1; !stop.IsCancellationRequested && lost is null; seq++)
                for (int p = 0; p < Pages; p += 4)
                {
                    ulong* slot = words + (ulong)p * Page / 8;
                    if (Volatile.Read(ref *slot) != last[p]) { lost = $"page {p}: read {*slot}, wrote {last[p]}"; return; }
                    Volatile.Write(ref *slot, seq);
                    last[p] = seq;
                }
        }) { IsBackground = true };
        writer.Start();
        var options = new MigrationOptions { BusyRetries = 0 };
        ulong busy = 0;
        for (int round = 0; round < 200 && lost is null; round++)
        {
            region.Migrate(0, Pages * Page, system.Host, options);
            for (ulong p = Page; p < Pages * Page; p += 2 * Page) region.Migrate(p, Page, device, options);
            busy += region.Migrate(0, Pages * Page, device, options).PagesBusy;
        }
        stop.Cancel();
        Assert.True(writer.Join(TimeSpan.FromSeconds(10)));
        Assert.Null(lost);
        for (int p = 0; p < Pages; p += 4) Assert.Equal(last[p], words[(ulong)p * Page / 8]);
        output.WriteLine($"{busy} busy pages over 200 scattered migrations");
    }
}
