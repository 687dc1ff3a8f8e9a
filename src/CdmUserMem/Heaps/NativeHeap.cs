using System.Buffers;
using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>
/// A heap on CdmUserMem memory, for .NET and native code: small blocks from per-thread 64 KiB spans (no lock
/// on the fast path; a free from another thread is one atomic push), larger ones as page-aligned extents of
/// their own, huge ones as regions. Its pages fault in through the engine on their placement node, and an
/// allocation, or the whole heap, migrates between nodes without its addresses changing. Thread-safe.
/// Shaped like <see cref="System.Runtime.InteropServices.NativeMemory"/>: Allocate, Free, Reallocate.
/// </summary>
public sealed unsafe class NativeHeap : IDisposable
{
    private readonly HeapSafeHandle _handle;
    private readonly Lock _migrations = new();

    internal NativeHeap(MemorySystem system, HeapSafeHandle handle, HeapOptions options, MemoryNode placement)
    {
        System = system;
        _handle = handle;
        Options = options;
        Placement = placement;
    }

    public MemorySystem System { get; }

    public HeapOptions Options { get; }

    public MemoryNode Placement { get; }

    internal nint NativeHandle => _handle.DangerousGetHandle();

    private HeapSafeHandle Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle;
        }
    }

    /// <summary>Allocates <paramref name="bytes"/> (at least 1) aligned to <paramref name="alignment"/>
    /// (a power of two; 0 means the natural 16, or 8 for blocks of 8 bytes and less).</summary>
    /// <exception cref="OutOfMemoryException">The heap's reserved address space, or the machine, is exhausted.</exception>
    public void* Allocate(nuint bytes, nuint alignment = 0)
    {
        if (alignment != 0 && (alignment & (alignment - 1)) != 0)
            throw new ArgumentException($"Alignment must be a power of two; got {alignment}.", nameof(alignment));
        void* p = alignment <= 16 ? CdmEngine.HeapMalloc(Handle, bytes) : CdmEngine.HeapAlignedAlloc(Handle, alignment, bytes);
        return p != null ? p : throw new OutOfMemoryException($"Heap on '{Placement.Name}' could not allocate {bytes} bytes.");
    }

    /// <summary>Allocates <paramref name="count"/> × <paramref name="size"/> bytes, zeroed.</summary>
    public void* AllocateZeroed(nuint count, nuint size)
    {
        void* p = CdmEngine.HeapCalloc(Handle, count, size);
        return p != null ? p : throw new OutOfMemoryException($"Heap on '{Placement.Name}' could not allocate {count} × {size} bytes.");
    }

    /// <summary>Resizes an allocation, in place where it can (an extent grows into free pages after it);
    /// null allocates. The contents up to the smaller size are kept.</summary>
    public void* Reallocate(void* pointer, nuint bytes)
    {
        if (pointer == null) return Allocate(bytes);
        if (CdmEngine.HeapOf(pointer) != NativeHandle) throw InvalidFree(CdmEngine.ErrorHeapForeign, pointer, "reallocate");
        int rc = CdmEngine.HeapReallocChecked(Handle, pointer, bytes == 0 ? 1 : bytes, out void* p);
        if (rc == -12) throw new OutOfMemoryException($"Heap on '{Placement.Name}' could not reallocate to {bytes} bytes.");
        if (rc < 0) throw InvalidFree(rc, pointer, "reallocate");
        return p;
    }

    /// <summary>Frees an allocation of this heap; null does nothing.</summary>
    /// <exception cref="InvalidFreeException">Not an allocation of this heap, or freed already (small blocks:
    /// detected with <see cref="HeapOptions.Checked"/>); nothing was freed.</exception>
    public void Free(void* pointer)
    {
        if (pointer == null) return;
        int rc = CdmEngine.HeapFreeChecked(Handle, pointer);
        if (rc < 0) throw InvalidFree(rc, pointer, "free");
    }

    /// <summary>Bytes usable at an allocation (its size class, or whole pages).</summary>
    public nuint UsableSize(void* pointer) => CdmEngine.HeapUsableSize(Handle, pointer);

    /// <summary>Whether the pointer lies in this heap's memory.</summary>
    public bool Contains(void* pointer) => !_handle.IsClosed && CdmEngine.HeapOf(pointer) == NativeHandle;

    /// <summary>The node backing the page of <paramref name="pointer"/>, or null while it is untouched.</summary>
    public MemoryNode? NodeOf(void* pointer)
    {
        sbyte node;
        using (Hold())
        {
            var page = PageOf(pointer);
            int rc = CdmEngine.RegionResidencyRaw(page.Region, page.FirstPage, 1, &node);
            if (rc < 0) throw NativeErrors.ForErrno(rc, "reading the residency of a heap page");
        }
        return node < 0 ? null : System.NodeById(node);
    }

    /// <summary>Keeps the heap, and the regions of its huge allocations, mapped while native calls use
    /// region pointers it handed out (a free of a huge allocation waits meanwhile).</summary>
    private HeapHoldScope Hold() => new(this);

    private readonly ref struct HeapHoldScope
    {
        private readonly NativeHeap _heap;

        public HeapHoldScope(NativeHeap heap)
        {
            bool added = false;
            heap.Handle.DangerousAddRef(ref added);
            _heap = heap;
            CdmEngine.HeapHold(heap._handle);
        }

        public void Dispose()
        {
            CdmEngine.HeapUnhold(_heap._handle);
            _heap._handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Migrates the pages of one allocation to <paramref name="target"/> at the same addresses: an extent or
    /// huge allocation alone, a small block with the rest of its 64 KiB span. Result offsets are from the
    /// start of those pages.
    /// </summary>
    public MigrationResult Migrate(void* allocation, MemoryNode target, MigrationOptions? options = null)
    {
        // Not to a private node: the heap reuses freed memory it discarded, and relies on it reading zeros.
        System.ValidatePlacementNode(target, nameof(target));
        var result = new MigrationResult(target);
        ulong offset = 0;
        using (Hold()) MigrateRange(Locate(allocation), target, options ?? MigrationOptions.Default, result, ref offset);
        return result;
    }

    /// <summary>Migrates every page the heap has used (live, and freed but kept) to <paramref name="target"/>.</summary>
    public MigrationResult MigrateAll(MemoryNode target, MigrationOptions? options = null)
    {
        // Not to a private node: the heap reuses freed memory it discarded, and relies on it reading zeros.
        System.ValidatePlacementNode(target, nameof(target));
        var result = new MigrationResult(target);
        ulong offset = 0;
        using (Hold())
            foreach (var range in Ranges()) MigrateRange(range, target, options ?? MigrationOptions.Default, result, ref offset);
        return result;
    }

    /// <summary>Rents <paramref name="count"/> elements as an <see cref="IMemoryOwner{T}"/>, whose
    /// <c>Memory.Pin()</c> also pins the pages against migration; disposing the owner frees the memory.</summary>
    public IMemoryOwner<T> Rent<T>(int count) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return new HeapMemoryManager<T>(this, count);
    }

    /// <summary>An owned buffer of any size, with <see cref="Span{T}"/> windows for buffers over 2 GiB.</summary>
    public HeapBuffer AllocateBuffer(nuint bytes, nuint alignment = 0) => new(this, bytes, alignment);

    /// <summary>A <see cref="MemoryPool{T}"/> renting from this heap (System.IO.Pipelines accepts it).</summary>
    public MemoryPool<byte> AsMemoryPool() => new HeapMemoryPool(this);

    public HeapStatistics GetStatistics(bool includeNodes = true)
    {
        CdmEngine.HeapGetStats(Handle, out var s);
        var classes = new (uint, ulong)[CdmEngine.HeapClasses];
        for (int c = 0; c < classes.Length; c++) classes[c] = (CdmEngine.HeapClassSize(c), s.AllocationsByClass[c]);
        return new HeapStatistics
        {
            LiveBytes = s.LiveBytes,
            PeakBytes = s.PeakBytes,
            SmallBytes = s.SmallBytes,
            LargeBytes = s.LargeBytes,
            HugeBytes = s.HugeBytes,
            SpansInUse = s.SpansInUse,
            FreeRetainedBytes = s.FreeRetainedBytes,
            DiscardedBytes = s.DiscardedBytes,
            AllocationsBySizeClass = classes,
            LargeAllocations = s.LargeAllocations,
            HugeAllocations = s.HugeAllocations,
            BytesPerNode = includeNodes ? BytesPerNode() : new Dictionary<MemoryNode, ulong>(),
        };
    }

    /// <summary>Unmaps the heap: every allocation is gone, and pointers into it become foreign.</summary>
    public void Dispose()
    {
        lock (_migrations) _handle.Dispose();
        System.OnHeapDisposed(this);
    }

    internal void PinPages(void* pointer, nuint bytes, bool pin)
    {
        using var hold = Hold();
        var firstPage = PageOf(pointer);
        var lastPage = PageOf((byte*)pointer + Math.Max(bytes, 1) - 1);
        ulong first = firstPage.FirstPage, count = lastPage.FirstPage - first + 1;
        int rc = pin ? CdmEngine.RegionPinRaw(firstPage.Region, first, count) : CdmEngine.RegionUnpinRaw(firstPage.Region, first, count);
        if (rc < 0) throw NativeErrors.ForErrno(rc, pin ? "pinning heap pages" : "unpinning heap pages");
    }

    internal bool IsDisposed => _handle.IsClosed;

    private CdmHeapRange Locate(void* pointer)
    {
        int rc = CdmEngine.HeapLocate(Handle, pointer, out var range);
        if (rc < 0) throw InvalidFree(rc, pointer, "locate");
        if (range.Region == 0) throw new InvalidOperationException("The heap is on plain memory: it has no region to migrate or pin.");
        return range;
    }

    private CdmHeapRange PageOf(void* pointer)
    {
        int rc = CdmEngine.HeapPageOf(Handle, pointer, out var page);
        if (rc < 0) throw InvalidFree(rc, pointer, "locate");
        if (page.Region == 0) throw new InvalidOperationException("The heap is on plain memory: it has no region to migrate or pin.");
        return page;
    }

    private List<CdmHeapRange> Ranges()
    {
        var ranges = new CdmHeapRange[64];
        int n;
        fixed (CdmHeapRange* r = ranges) n = CdmEngine.HeapRanges(Handle, r, ranges.Length);
        if (n > ranges.Length)
        {
            ranges = new CdmHeapRange[n];
            fixed (CdmHeapRange* r = ranges) n = Math.Min(n, CdmEngine.HeapRanges(Handle, r, ranges.Length));
        }
        return ranges.Take(n).Where(r => r.Region != 0).ToList();
    }

    private Dictionary<MemoryNode, ulong> BytesPerNode()
    {
        var bytes = new Dictionary<MemoryNode, ulong>();
        const int Chunk = 1 << 16;
        var nodes = new sbyte[Chunk];
        using (Hold())
        {
            foreach (var range in Ranges())
                for (ulong done = 0; done < range.PageCount; done += Chunk)
                {
                    ulong n = Math.Min(Chunk, range.PageCount - done);
                    fixed (sbyte* p = nodes)
                        if (CdmEngine.RegionResidencyRaw(range.Region, range.FirstPage + done, n, p) < 0) continue;
                    for (ulong i = 0; i < n; i++)
                        if (nodes[i] >= 0)
                        {
                            var node = System.NodeById(nodes[i]);
                            bytes[node] = bytes.GetValueOrDefault(node) + Region.PageSize;
                        }
                }
        }
        return bytes;
    }

    /// <summary>Result offsets continue from <paramref name="offset"/> across the ranges of one call.</summary>
    private void MigrateRange(CdmHeapRange range, MemoryNode target, MigrationOptions options, MigrationResult result, ref ulong offset)
    {
        byte[] outcomes = ArrayPool<byte>.Shared.Rent((int)Math.Min(options.BatchPages, Math.Max(range.PageCount, 1)));
        bool added = false;
        lock (_migrations)
        {
            try
            {
                Handle.DangerousAddRef(ref added);
                for (ulong done = 0; done < range.PageCount;)
                {
                    ulong n = Math.Min((ulong)outcomes.Length, range.PageCount - done);
                    MigrationBatch.Run(range.Region, range.FirstPage + done, n, target, options, 0, outcomes, result,
                                       offset + done * Region.PageSize, $"heap pages at 0x{(ulong)range.Address + done * Region.PageSize:x}");
                    done += n;
                }
                offset += range.PageCount * Region.PageSize;
            }
            finally
            {
                if (added) _handle.DangerousRelease();
                ArrayPool<byte>.Shared.Return(outcomes);
            }
        }
    }

    private static InvalidFreeException InvalidFree(int rc, void* pointer, string what) => rc switch
    {
        CdmEngine.ErrorHeapDoubleFree => new InvalidFreeException($"Cannot {what} 0x{(nuint)pointer:x}: it is not allocated (freed already).", InvalidFreeReason.DoubleFree),
        CdmEngine.ErrorHeapNotBlock => new InvalidFreeException($"Cannot {what} 0x{(nuint)pointer:x}: it points inside the heap, not at the start of an allocation.", InvalidFreeReason.NotAnAllocation),
        _ => new InvalidFreeException($"Cannot {what} 0x{(nuint)pointer:x}: this heap did not allocate it.", InvalidFreeReason.Foreign),
    };
}
