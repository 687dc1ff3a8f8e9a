namespace CdmUserMem;

/// <summary>Settings of a <see cref="NativeHeap"/>.</summary>
public sealed record HeapOptions
{
    /// <summary>Where the heap's pages land on first touch; null means the host. When a device node is full,
    /// first touches fall back to the host (the only fallback until placement policies exist).</summary>
    public MemoryNode? Placement { get; init; }

    /// <summary>Track every small block, so that a double free or a pointer into the middle of a block is
    /// reported (<see cref="InvalidFreeException"/>) instead of corrupting the heap. Extents and foreign
    /// pointers are always checked.</summary>
    public bool Checked { get; init; }

    /// <summary>Freed memory kept populated for reuse; beyond it, freed spans and extents are discarded
    /// (their next touch reads zeros) but keep their addresses for reuse.</summary>
    public ulong RetentionBytes { get; init; } = 256UL << 20;

    /// <summary>Address space reserved for small blocks (64 KiB spans); nothing is populated until used.</summary>
    public ulong SmallReserveBytes { get; init; } = 16UL << 30;

    /// <summary>Address space reserved for page-aligned extents (allocations over 16 KiB).</summary>
    public ulong LargeReserveBytes { get; init; } = 64UL << 30;

    /// <summary>Allocations from this size get a region of their own.</summary>
    public ulong HugeThresholdBytes { get; init; } = 64UL << 20;
}

/// <summary>Why a <see cref="NativeHeap.Free"/> was refused; nothing was freed.</summary>
public enum InvalidFreeReason
{
    /// <summary>The pointer is not inside this heap.</summary>
    Foreign,
    /// <summary>The block or extent is not allocated: freed already.</summary>
    DoubleFree,
    /// <summary>The pointer is inside the heap but not where an allocation starts.</summary>
    NotAnAllocation,
}

/// <summary>A free or reallocation of a pointer the heap did not hand out, or handed out and took back.</summary>
public sealed class InvalidFreeException : InvalidOperationException
{
    public InvalidFreeException(string message, InvalidFreeReason reason) : base(message) => Reason = reason;

    public InvalidFreeReason Reason { get; }
}

/// <summary>Counters of one heap.</summary>
public sealed record HeapStatistics
{
    /// <summary>Bytes allocated and not freed (small blocks count their size class).</summary>
    public ulong LiveBytes { get; init; }
    /// <summary>The most live bytes seen when a span, extent or huge region was taken.</summary>
    public ulong PeakBytes { get; init; }
    public ulong SmallBytes { get; init; }
    public ulong LargeBytes { get; init; }
    public ulong HugeBytes { get; init; }
    public ulong SpansInUse { get; init; }
    /// <summary>Freed memory kept populated for reuse.</summary>
    public ulong FreeRetainedBytes { get; init; }
    /// <summary>Freed memory given back beyond the retention.</summary>
    public ulong DiscardedBytes { get; init; }
    /// <summary>Small allocations made, by size class (class size in bytes, count).</summary>
    public IReadOnlyList<(uint SizeClass, ulong Allocations)> AllocationsBySizeClass { get; init; } = [];
    public ulong LargeAllocations { get; init; }
    public ulong HugeAllocations { get; init; }
    /// <summary>Resident bytes of the heap's used address ranges on each node (whole pages; freed but
    /// retained memory counts too).</summary>
    public IReadOnlyDictionary<MemoryNode, ulong> BytesPerNode { get; init; } = new Dictionary<MemoryNode, ulong>();
}
