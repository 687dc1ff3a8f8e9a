using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using CdmUserMem;
using FsCheck;
using FsCheck.Fluent;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>NativeHeap: data kept across threads, migrations and GC storms; errors reported, never corrupting.</summary>
public unsafe partial class HeapTests
{
    private static void Stamp(byte* p, nuint size, ulong seed)
    {
        // Every byte of small blocks; first, last and one word per page of larger ones.
        if (size <= 4096) for (nuint i = 0; i < size; i++) p[i] = (byte)(seed + i);
        else
        {
            for (nuint i = 0; i < size; i += 4096) p[i] = (byte)(seed + i);
            p[size - 1] = (byte)(seed + size - 1);
        }
    }

    private static bool Intact(byte* p, nuint size, ulong seed)
    {
        if (size <= 4096)
        {
            for (nuint i = 0; i < size; i++) if (p[i] != (byte)(seed + i)) return false;
            return true;
        }
        for (nuint i = 0; i < size; i += 4096) if (p[i] != (byte)(seed + i)) return false;
        return p[size - 1] == (byte)(seed + size - 1);
    }

    private enum Op { Allocate, Free, Reallocate, GiveAway, MigrateAll }

    private static readonly Gen<(Op, int, int)> Steps =
        from op in Gen.Frequency((6, Gen.Constant(Op.Allocate)), (3, Gen.Constant(Op.Free)), (2, Gen.Constant(Op.Reallocate)),
                                 (2, Gen.Constant(Op.GiveAway)), (1, Gen.Constant(Op.MigrateAll)))
        from slot in Gen.Choose(0, 31)
        from size in Gen.Frequency((8, Gen.Choose(1, 512)), (3, Gen.Choose(513, 40_000)), (1, Gen.Choose(40_001, 3 << 20)))
        select (op, slot, size);

    /// <summary>
    /// Random allocations, frees, reallocations, frees by another thread and whole-heap migrations, on three
    /// threads at once while a fourth forces garbage collections: every live byte holds what was written, and
    /// the heap's live-byte count matches the model's at the end.
    /// </summary>
    [Fact]
    public void Random_operations_over_threads_keep_every_live_byte()
    {
        var (system, device) = Create(deviceBytes: 64 * MiB);
        using var _ = system;
        Prop.ForAll(Gen.ListOf(Steps).Select(s => s.Take(150).ToArray()).ToArbitrary(), steps =>
        {
            using var heap = system.CreateHeap(new HeapOptions { Placement = device, Checked = true, RetentionBytes = 4 * MiB });
            var handoff = new ConcurrentQueue<(nint, nuint, ulong)>();
            var failures = new ConcurrentQueue<string>();
            var migrate = new Lock();
            using var stop = new CancellationTokenSource();
            var storm = new Thread(() => { while (!stop.IsCancellationRequested) { GC.Collect(); Thread.Sleep(1); } });
            storm.Start();
            var workers = Enumerable.Range(0, 3).Select(t => new Thread(() =>
            {
                var live = new (nint P, nuint Size, ulong Seed)?[32];
                ulong seed = (ulong)t * 1000;
                try
                {
                    foreach (var (op, slot, size) in steps)
                    {
                        seed++;
                        var cur = live[slot];
                        if (cur is { } held && !Intact((byte*)held.P, held.Size, held.Seed)) failures.Enqueue($"thread {t} slot {slot} corrupted before {op}");
                        switch (op)
                        {
                            case Op.Allocate when cur is null:
                                byte* p = (byte*)heap.Allocate((nuint)size);
                                Stamp(p, (nuint)size, seed);
                                live[slot] = ((nint)p, (nuint)size, seed);
                                break;
                            case Op.Free when cur is { } c:
                                heap.Free((void*)c.P);
                                live[slot] = null;
                                break;
                            case Op.Reallocate when cur is { } c:
                                byte* q = (byte*)heap.Reallocate((void*)c.P, (nuint)size);
                                nuint kept = Math.Min(c.Size, (nuint)size);
                                if (kept <= 4096 && c.Size <= 4096)
                                    for (nuint i = 0; i < kept; i++) if (q[i] != (byte)(c.Seed + i)) { failures.Enqueue($"realloc lost byte {i}"); break; }
                                Stamp(q, (nuint)size, seed);
                                live[slot] = ((nint)q, (nuint)size, seed);
                                break;
                            case Op.GiveAway when cur is { } c:
                                handoff.Enqueue(c);
                                live[slot] = null;
                                break;
                            case Op.GiveAway when handoff.TryDequeue(out var other):
                                if (!Intact((byte*)other.Item1, other.Item2, other.Item3)) failures.Enqueue("handed-off block corrupted");
                                heap.Free((void*)other.Item1);
                                break;
                            case Op.MigrateAll:
                                lock (migrate) heap.MigrateAll(slot % 2 == 0 ? device : system.Host);
                                break;
                        }
                    }
                    foreach (var c in live)
                        if (c is { } x)
                        {
                            if (!Intact((byte*)x.P, x.Size, x.Seed)) failures.Enqueue($"thread {t}: a block corrupted at the end");
                            heap.Free((void*)x.P);
                        }
                }
                catch (Exception e)
                {
                    failures.Enqueue($"thread {t}: {e}");
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            bool joined = workers.All(w => w.Join(TimeSpan.FromSeconds(60)));
            stop.Cancel();
            storm.Join();
            while (handoff.TryDequeue(out var left))
            {
                if (!Intact((byte*)left.Item1, left.Item2, left.Item3)) failures.Enqueue("a handed-off block corrupted at the end");
                heap.Free((void*)left.Item1);
            }
            Assert.True(joined, "a worker hung");
            Assert.Empty(failures);
            Assert.Equal(0UL, heap.GetStatistics(includeNodes: false).LiveBytes);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(25));
    }

    [Fact]
    public void Invalid_frees_throw_and_free_nothing()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap(new HeapOptions { Checked = true });
        byte* small = (byte*)heap.Allocate(100), large = (byte*)heap.Allocate(1 << 20);
        Stamp(small, 100, 1);
        Stamp(large, 1 << 20, 2);
        heap.Free(small);
        Assert.Equal(InvalidFreeReason.DoubleFree, Assert.Throws<InvalidFreeException>(() => heap.Free(small)).Reason);
        byte* again = (byte*)heap.Allocate(100);
        Assert.Equal(InvalidFreeReason.NotAnAllocation, Assert.Throws<InvalidFreeException>(() => heap.Free(again + 8)).Reason);
        Assert.Equal(InvalidFreeReason.NotAnAllocation, Assert.Throws<InvalidFreeException>(() => heap.Free(large + 4096)).Reason);
        byte* local = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc(64);
        Assert.Equal(InvalidFreeReason.Foreign, Assert.Throws<InvalidFreeException>(() => heap.Free(local)).Reason);
        Assert.Equal(InvalidFreeReason.Foreign, Assert.Throws<InvalidFreeException>(() => heap.Reallocate(local, 10)).Reason);
        System.Runtime.InteropServices.NativeMemory.Free(local);
        Assert.True(Intact(large, 1 << 20, 2), "a refused free changed the extent");
        heap.Free(large);
        Assert.Equal(InvalidFreeReason.DoubleFree, Assert.Throws<InvalidFreeException>(() => heap.Free(large)).Reason);
        heap.Free(again);
        Assert.Equal(0UL, heap.GetStatistics(includeNodes: false).LiveBytes);

        // Another heap's pointer is foreign here.
        using var other = system.CreateHeap();
        void* theirs = other.Allocate(64);
        Assert.Equal(InvalidFreeReason.Foreign, Assert.Throws<InvalidFreeException>(() => heap.Free(theirs)).Reason);
        Assert.Same(other, system.FindHeap(theirs));
        other.Free(theirs);

        heap.Dispose();
        Assert.Throws<ObjectDisposedException>(() => heap.Allocate(10));
        Assert.Throws<ObjectDisposedException>(() => heap.Free(again));
        Assert.False(heap.Contains(again));
    }

    [Fact]
    public void Large_allocations_migrate_alone_under_the_same_pointer()
    {
        var (system, device) = Create(deviceBytes: 32 * MiB);
        using var _ = system;
        using var heap = system.CreateHeap();
        byte* a = (byte*)heap.Allocate(4 << 20), b = (byte*)heap.Allocate(4 << 20);
        byte* small = (byte*)heap.Allocate(48);
        Stamp(a, 4 << 20, 3);
        Stamp(b, 4 << 20, 4);
        Stamp(small, 48, 5);
        Assert.Same(system.Host, heap.NodeOf(a));
        var moved = heap.Migrate(a, device);
        Assert.Equal(1024UL, moved.PagesMigrated);
        Assert.Same(device, heap.NodeOf(a));
        Assert.Same(device, heap.NodeOf(a + (4 << 20) - 1));
        Assert.Same(system.Host, heap.NodeOf(b));
        Assert.True(Intact(a, 4 << 20, 3) && Intact(b, 4 << 20, 4) && Intact(small, 48, 5));
        var stats = heap.GetStatistics();
        Assert.Equal(4UL << 20, stats.BytesPerNode[device]);
        Assert.Equal(8UL << 20, stats.LargeBytes);
        Assert.Equal(48UL, stats.SmallBytes);
        Assert.Equal(1UL, stats.AllocationsBySizeClass.Single(c => c.SizeClass == 48).Allocations);

        heap.MigrateAll(device).ThrowIfIncomplete();
        Assert.Same(device, heap.NodeOf(b));
        Assert.Same(device, heap.NodeOf(small));
        heap.MigrateAll(system.Host).ThrowIfIncomplete();
        Assert.True(Intact(a, 4 << 20, 3) && Intact(b, 4 << 20, 4) && Intact(small, 48, 5));
        Assert.Equal(0UL, device.GetUsage().UsedBytes);

        // A huge allocation is a region of its own, and migrates the same way.
        byte* huge = (byte*)heap.Allocate(64 << 20);
        Stamp(huge, 64 << 20, 6);
        Assert.Equal(8192UL, heap.Migrate(huge, device).PagesMigrated);
        Assert.True(Intact(huge, 64 << 20, 6));
        Assert.Equal(1UL, heap.GetStatistics(includeNodes: false).HugeAllocations);
        heap.Free(huge);
        heap.Free(a);
        heap.Free(b);
        heap.Free(small);
        Assert.Equal(0UL, heap.GetStatistics(includeNodes: false).LiveBytes);
    }

    [Fact]
    public void A_pinned_rental_is_refused_by_migration_until_unpinned()
    {
        var (system, device) = Create();
        using var _ = system;
        using var heap = system.CreateHeap();
        using var owner = heap.Rent<long>(100_000);
        var span = owner.Memory.Span;
        for (int i = 0; i < span.Length; i++) span[i] = i * 3L;
        var manager = (HeapMemoryManager<long>)owner;
        using (var pin = owner.Memory.Pin())
        {
            var refused = heap.Migrate(manager.Pointer, device);
            Assert.True(refused.PagesPinned >= 195, refused.ToString());
            Assert.Equal(0UL, refused.PagesMigrated);
        }
        Assert.True(heap.Migrate(manager.Pointer, device).IsComplete);
        for (int i = 0; i < span.Length; i++) Assert.Equal(i * 3L, span[i]);
    }

    private static NativeHeap? HeapOf(MemorySystem system, ReadOnlyMemory<byte> segment)
    {
        fixed (byte* s = segment.Span) return system.FindHeap(s);
    }

    [Fact]
    public void A_buffer_over_2_GiB_is_reached_through_windows()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap();
        using var buffer = heap.AllocateBuffer((nuint)(3UL << 30));
        Assert.Equal((nuint)(3UL << 30), buffer.Length);
        var high = buffer.GetSpan<ulong>((nuint)((3UL << 30) / 8 - 2), 2);
        high[1] = 0xC0FFEE;
        buffer.GetSpan(0, 8)[0] = 1;
        Assert.Equal(0xC0FFEEUL, buffer.GetSpan<ulong>((nuint)((3UL << 30) / 8 - 1), 1)[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.GetSpan<ulong>((nuint)((3UL << 30) / 8 - 1), 2));
        Assert.Same(system.Host, buffer.NodeOf(0));
        Assert.Null(buffer.NodeOf((nuint)(1UL << 30)));
    }

    [Fact]
    public void Freed_memory_beyond_the_retention_is_given_back_and_reads_zeros()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap(new HeapOptions { RetentionBytes = 2 * MiB });
        var blocks = Enumerable.Range(0, 4).Select(_ => (nint)heap.Allocate((nuint)(4 * MiB))).ToList();
        foreach (var b in blocks) new Span<byte>((void*)b, (int)(4 * MiB)).Fill(0xAB);
        foreach (var b in blocks) heap.Free((void*)b);
        var stats = heap.GetStatistics(includeNodes: false);
        Assert.True(stats.FreeRetainedBytes <= 2 * MiB, $"{stats.FreeRetainedBytes} retained");
        Assert.True(stats.DiscardedBytes >= 14 * MiB, $"{stats.DiscardedBytes} discarded");
        byte* zeroed = (byte*)heap.AllocateZeroed(4 * 1024, 1024);
        for (int i = 0; i < 4 << 20; i += 4096) Assert.Equal(0, zeroed[i]);
    }

    /// <summary>Memory a device heap gives back returns its frames to the node (and the group is uncharged):
    /// reused, it is placed on the node again by its first touch, and reads zeros.</summary>
    [Fact]
    public void Freed_memory_of_a_device_heap_gives_its_frames_back_to_the_node()
    {
        var (system, device) = Create(deviceBytes: 32 * MiB);
        using var __ = system;
        using var heap = system.CreateHeap(new HeapOptions { Placement = device, RetentionBytes = 1 });
        var blocks = Enumerable.Range(0, 4).Select(_ => (nint)heap.Allocate((nuint)(4 * MiB))).ToList();
        foreach (var b in blocks) new Span<byte>((void*)b, (int)(4 * MiB)).Fill(0xAB);
        Assert.True(device.GetUsage().UsedBytes >= 16 * MiB);
        foreach (var b in blocks) heap.Free((void*)b);
        Assert.True(device.GetUsage().UsedBytes < MiB, $"{device.GetUsage().UsedBytes} bytes of frames kept after the discard");
        byte* again = (byte*)heap.AllocateZeroed(4 * 1024, 1024);
        for (int i = 0; i < 4 << 20; i += 4096) Assert.Equal(0, again[i]);
        new Span<byte>(again, 4 << 20).Fill(0x5C);
        Assert.Same(device, heap.NodeOf(again));
        Assert.True(device.GetUsage().UsedBytes >= 4 * MiB);
        heap.Free(again);
    }

    /// <summary>Memory that fell back to the host while the device was full goes to the device when it is reused
    /// after a discard: discarded pages follow the heap's placement again, not the node they happened to be on.</summary>
    [Fact]
    public void Discarded_memory_that_fell_back_returns_to_the_device_when_reused()
    {
        var (system, device) = Create(deviceBytes: 8 * MiB);
        using var __ = system;
        using var heap = system.CreateHeap(new HeapOptions { Placement = device, RetentionBytes = 1 });
        var blocks = Enumerable.Range(0, 4).Select(_ => (nint)heap.Allocate((nuint)(4 * MiB))).ToList();
        foreach (var b in blocks) new Span<byte>((void*)b, (int)(4 * MiB)).Fill(0xAB);
        var fellBack = blocks.Where(b => heap.NodeOf((void*)b) == system.Host).ToHashSet();
        Assert.NotEmpty(fellBack); // 16 MiB on an 8 MiB device
        foreach (var b in blocks) heap.Free((void*)b);
        Assert.True(device.GetUsage().UsedBytes < MiB);
        // The same sizes again: the heap hands the same extents back. Touch only those that had fallen back.
        var reused = Enumerable.Range(0, 4).Select(_ => (nint)heap.Allocate((nuint)(4 * MiB))).ToList();
        var touched = reused.Where(fellBack.Contains).ToList();
        Assert.NotEmpty(touched);
        foreach (var b in touched) new Span<byte>((void*)b, (int)(4 * MiB)).Fill(0xCD);
        Assert.All(touched, b => Assert.Same(device, heap.NodeOf((void*)b)));
        foreach (var b in reused) heap.Free((void*)b);
    }
}

public unsafe class HeapEdgeTests
{
    /// <summary>Zeroed allocations read zeros even on reused extents a concurrent migration held while they were discarded.</summary>
    [Fact]
    public void Zeroed_allocations_read_zeros_while_the_heap_migrates()
    {
        var (system, device) = Create(deviceBytes: 64 * MiB);
        using var _ = system;
        using var heap = system.CreateHeap(new HeapOptions { RetentionBytes = 1 });
        using var stop = new CancellationTokenSource();
        var migrator = new Thread(() =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++) heap.MigrateAll(i % 2 == 0 ? device : system.Host);
        });
        migrator.Start();
        int dirty = 0;
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            for (int round = 0; round < 400 && clock.Elapsed < TimeSpan.FromSeconds(8); round++)
            {
                byte* used = (byte*)heap.Allocate((nuint)MiB);
                new Span<byte>(used, (int)MiB).Fill(0xAB);
                heap.Free(used);
                byte* zeroed = (byte*)heap.AllocateZeroed(1, (nuint)MiB);
                for (int i = 0; i < (int)MiB; i += 512) if (zeroed[i] != 0) { dirty++; break; }
                heap.Free(zeroed);
            }
        }
        finally
        {
            stop.Cancel();
            migrator.Join();
        }
        Assert.Equal(0, dirty);
    }

    [Fact]
    public void Every_alignment_is_honoured_on_absolute_addresses()
    {
        var (system, _) = Create();
        using var __ = system;
        // Reserves that are not multiples of 2 MiB: the kernel then aligns the mappings to nothing past a page.
        using var heap = system.CreateHeap(new HeapOptions { SmallReserveBytes = 5 * 64 * 1024 * 1024, LargeReserveBytes = 3UL << 30 | 12288 });
        foreach (nuint alignment in new nuint[] { 8, 16, 32, 64, 4096, 16384, 65536, 1 << 21, 1 << 22 })
            foreach (nuint size in new nuint[] { 1, 8, 100, 5000, 70_000, 3 << 20 })
            {
                byte* p = (byte*)heap.Allocate(size, alignment);
                Assert.True((nuint)p % alignment == 0, $"{size} bytes aligned to {alignment}: 0x{(nuint)p:x}");
                p[0] = 1;
                p[size - 1] = 2;
                heap.Free(p);
            }
        Assert.Throws<ArgumentException>(() => heap.Allocate(10, 24));
    }

    [Fact]
    public void Sizes_past_the_address_space_are_refused()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap();
        Assert.Throws<OutOfMemoryException>(() => heap.Allocate(nuint.MaxValue - 10));
        Assert.Throws<OutOfMemoryException>(() => heap.Allocate(nuint.MaxValue - 10, 1 << 22));
        Assert.Throws<OutOfMemoryException>(() => heap.AllocateZeroed(nuint.MaxValue / 2, 4));
        void* fine = heap.Allocate(100);
        Assert.Throws<OutOfMemoryException>(() => heap.Reallocate(fine, nuint.MaxValue - 10));
        heap.Free(fine);
        Assert.Equal(0UL, heap.GetStatistics(includeNodes: false).LiveBytes);
    }

    [Fact]
    public void Reallocating_what_is_not_an_allocation_throws_and_changes_nothing()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap(new HeapOptions { Checked = true });
        byte* large = (byte*)heap.Allocate(100_000), small = (byte*)heap.Allocate(40);
        Assert.Equal(InvalidFreeReason.NotAnAllocation, Assert.Throws<InvalidFreeException>(() => heap.Reallocate(large + 4096, 200_000)).Reason);
        Assert.Equal(InvalidFreeReason.NotAnAllocation, Assert.Throws<InvalidFreeException>(() => heap.Reallocate(small + 8, 64)).Reason);
        heap.Free(large);
        heap.Free(small);
        Assert.Equal(InvalidFreeReason.DoubleFree, Assert.Throws<InvalidFreeException>(() => heap.Reallocate(large, 200_000)).Reason);
        Assert.Equal(InvalidFreeReason.DoubleFree, Assert.Throws<InvalidFreeException>(() => heap.Reallocate(small, 64)).Reason);
        // The refused reallocation of the freed extent did not take it back: it is handed out once.
        var seen = new HashSet<nint>();
        for (int i = 0; i < 4; i++) Assert.True(seen.Add((nint)heap.Allocate(100_000)));
    }

    [Fact]
    public void Unpinning_after_dispose_and_a_huge_free_during_statistics_are_harmless()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap(new HeapOptions { HugeThresholdBytes = 1 << 20 });
        var owner = heap.Rent<byte>(4096);
        var handle = owner.Memory.Pin();
        owner.Dispose();
        handle.Dispose();
        using var stop = new CancellationTokenSource();
        var reader = new Thread(() => { while (!stop.IsCancellationRequested) heap.GetStatistics(); });
        reader.Start();
        for (int i = 0; i < 200; i++)
        {
            byte* huge = (byte*)heap.Allocate(2 << 20);
            huge[0] = 1;
            heap.Free(huge);
        }
        stop.Cancel();
        reader.Join();
    }
}
