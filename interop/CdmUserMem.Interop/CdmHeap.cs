using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>struct cdm_heap_options (cdm_heap.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CdmHeapOptions
{
    public int Placement;
    public uint Flags;
    public ulong SmallReserve;
    public ulong LargeReserve;
    public ulong RetentionBytes;
    public ulong HugeThreshold;
}

/// <summary>struct cdm_heap_stats.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CdmHeapStats
{
    public ulong LiveBytes;
    public ulong PeakBytes;
    public ulong SmallBytes;
    public ulong LargeBytes;
    public ulong HugeBytes;
    public ulong SpansInUse;
    public ulong FreeRetainedBytes;
    public ulong DiscardedBytes;
    public fixed ulong AllocationsByClass[CdmEngine.HeapClasses];
    public ulong LargeAllocations;
    public ulong HugeAllocations;
}

/// <summary>struct cdm_heap_range.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CdmHeapRange
{
    public nint Region;
    public nint Address;
    public ulong FirstPage;
    public ulong PageCount;
}

/// <summary>Bindings to the heaps of libcdmengine (cdm_heap.h).</summary>
internal static unsafe partial class CdmEngine
{
    public const int HeapSmallMax = 16384;
    public const int HeapClasses = 37;
    public const ulong HeapHugeDefault = 64UL << 20;
    public const int HeapMax = 16;
    public const uint HeapChecked = 1;

    public const int ErrorHeapForeign = -10007;
    public const int ErrorHeapDoubleFree = -10008;
    public const int ErrorHeapNotBlock = -10009;
    public const int ErrorHeapLimit = -10010;

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_create")]
    public static partial int HeapCreate(EngineSafeHandle engine, in CdmHeapOptions options, out nint heap);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_destroy")]
    public static partial int HeapDestroy(nint heap);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_malloc")]
    public static partial void* HeapMalloc(HeapSafeHandle heap, nuint bytes);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_calloc")]
    public static partial void* HeapCalloc(HeapSafeHandle heap, nuint count, nuint size);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_realloc")]
    public static partial void* HeapRealloc(HeapSafeHandle heap, void* p, nuint bytes);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_realloc_checked")]
    public static partial int HeapReallocChecked(HeapSafeHandle heap, void* p, nuint bytes, out void* result);

    /// <summary>While held, no huge allocation of the heap is unmapped: region pointers it handed out stay valid.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_hold")]
    public static partial void HeapHold(HeapSafeHandle heap);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_unhold")]
    public static partial void HeapUnhold(HeapSafeHandle heap);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_aligned_alloc")]
    public static partial void* HeapAlignedAlloc(HeapSafeHandle heap, nuint alignment, nuint bytes);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_free_checked")]
    public static partial int HeapFreeChecked(HeapSafeHandle heap, void* p);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_malloc_usable_size")]
    public static partial nuint HeapUsableSize(HeapSafeHandle heap, void* p);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_of")]
    public static partial nint HeapOf(void* p);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_locate")]
    public static partial int HeapLocate(HeapSafeHandle heap, void* p, out CdmHeapRange range);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_page_of")]
    public static partial int HeapPageOf(HeapSafeHandle heap, void* p, out CdmHeapRange range);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_ranges")]
    public static partial int HeapRanges(HeapSafeHandle heap, CdmHeapRange* ranges, int max);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_get_stats")]
    public static partial void HeapGetStats(HeapSafeHandle heap, out CdmHeapStats stats);

    [LibraryImport(LibraryName, EntryPoint = "cdm_heap_class_size")]
    public static partial uint HeapClassSize(int sizeClass);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_pin")]
    public static partial int RegionPinRaw(nint region, ulong firstPage, ulong pageCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_unpin")]
    public static partial int RegionUnpinRaw(nint region, ulong firstPage, ulong pageCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_residency")]
    public static partial int RegionResidencyRaw(nint region, ulong firstPage, ulong pageCount, sbyte* nodes);
}
