using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>Bindings to libcdmengine, the native fault engine built from interop/native.</summary>
internal static unsafe partial class CdmEngine
{
    public const string LibraryName = "cdmengine";

    [LibraryImport(LibraryName, EntryPoint = "cdm_engine_create")]
    public static partial int EngineCreate(ulong mappingBudget, uint copyChannels, uint flags, out nint engine, out uint mode, out ulong missingFeatures);

    [LibraryImport(LibraryName, EntryPoint = "cdm_engine_destroy")]
    public static partial void EngineDestroy(nint engine);

    [LibraryImport(LibraryName, EntryPoint = "cdm_engine_stats")]
    public static partial void EngineStats(EngineSafeHandle engine, out CdmStats stats);

    [LibraryImport(LibraryName, EntryPoint = "cdm_latency_enable")]
    public static partial void LatencyEnable(EngineSafeHandle engine, int on);

    /// <summary>Copies one latency histogram; reads relaxed atomics only, so it never waits on a fault.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_latency_snapshot")]
    public static partial int LatencySnapshot(EngineSafeHandle engine, int which, ulong* buckets, uint bucketCount, out ulong sumNanoseconds);

    [LibraryImport(LibraryName, EntryPoint = "cdm_inject")]
    public static partial int Inject(EngineSafeHandle engine, int op, int errno, uint skip, uint times);

    [LibraryImport(LibraryName, EntryPoint = "cdm_node_add")]
    public static partial int NodeAdd(EngineSafeHandle engine, ulong capacityBytes, out int node, out int pinned, out int mlockErrno);

    [LibraryImport(LibraryName, EntryPoint = "cdm_node_usage")]
    public static partial int NodeUsage(EngineSafeHandle engine, int node, out ulong usedFrames, out ulong totalFrames);

    [LibraryImport(LibraryName, EntryPoint = "cdm_reserve")]
    public static partial int Reserve(EngineSafeHandle engine, int node, ulong frames, out nint reservation);

    [LibraryImport(LibraryName, EntryPoint = "cdm_reservation_release")]
    public static partial void ReservationRelease(nint reservation);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_create")]
    public static partial int RegionCreate(EngineSafeHandle engine, ulong size, int placement, uint faultAround, uint readaheadPages, out nint region, out ulong baseAddress);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_destroy")]
    public static partial int RegionDestroy(nint region);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_populate")]
    public static partial int RegionPopulate(RegionSafeHandle region, ulong firstPage, ulong pageCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_pin")]
    public static partial int RegionPin(RegionSafeHandle region, ulong firstPage, ulong pageCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_unpin")]
    public static partial int RegionUnpin(RegionSafeHandle region, ulong firstPage, ulong pageCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_residency")]
    public static partial int RegionResidency(RegionSafeHandle region, ulong firstPage, ulong pageCount, sbyte* nodes);

    /// <summary>Migrates one batch in a single native call (claim, detach, copy, attach, release, retry busy pages).</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_migrate_batch")]
    public static partial int MigrateBatch(nint region, ulong firstPage, ulong pageCount, int target, uint busyRetries, nint reservation, byte* outcomes);

    /// <summary>Copies on the engine's copy channels.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_copy")]
    public static partial void Copy(EngineSafeHandle engine, void* destination, void* source, ulong bytes);

    /// <summary>Copies on the calling thread: non-temporal AVX-512/AVX2 for large aligned blocks, memcpy otherwise.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_copy_block")]
    [SuppressGCTransition]
    public static partial void CopyBlockSmall(void* destination, void* source, ulong bytes);

    [LibraryImport(LibraryName, EntryPoint = "cdm_copy_block")]
    public static partial void CopyBlock(void* destination, void* source, ulong bytes);

    /// <summary>2: AVX-512, 1: AVX2, 0: memcpy only.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_copy_isa")]
    public static partial int CopyInstructionSet();

    [LibraryImport(LibraryName, EntryPoint = "cdm_abi_sizeof_stats")]
    public static partial uint AbiSizeOfStats();

    [LibraryImport(LibraryName, EntryPoint = "cdm_abi_describe")]
    public static partial nint AbiDescribe();
}
