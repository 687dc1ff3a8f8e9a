using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>Bindings to libcdmengine, the native fault engine built from interop/native.</summary>
public static unsafe partial class CdmEngine
{
    public const string LibraryName = "cdmengine";

    [LibraryImport(LibraryName, EntryPoint = "cdm_engine_create")]
    public static partial int EngineCreate(ulong mappingBudget, out nint engine, out uint mode, out ulong missingFeatures);

    [LibraryImport(LibraryName, EntryPoint = "cdm_engine_destroy")]
    public static partial void EngineDestroy(nint engine);

    [LibraryImport(LibraryName, EntryPoint = "cdm_engine_stats")]
    public static partial void EngineStats(EngineSafeHandle engine, out CdmStats stats);

    [LibraryImport(LibraryName, EntryPoint = "cdm_node_add")]
    public static partial int NodeAdd(EngineSafeHandle engine, ulong capacityBytes, out int node, out int pinned, out int mlockErrno);

    [LibraryImport(LibraryName, EntryPoint = "cdm_node_usage")]
    public static partial int NodeUsage(EngineSafeHandle engine, int node, out ulong usedFrames, out ulong totalFrames);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_create")]
    public static partial int RegionCreate(EngineSafeHandle engine, ulong size, int placement, uint faultAround, out nint region, out ulong baseAddress);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_destroy")]
    public static partial int RegionDestroy(nint region);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_populate")]
    public static partial int RegionPopulate(RegionSafeHandle region, ulong firstPage, ulong pageCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_residency")]
    public static partial int RegionResidency(RegionSafeHandle region, ulong firstPage, ulong pageCount, sbyte* nodes);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_pieces")]
    public static partial ulong RegionPieces(RegionSafeHandle region);

    /// <summary>Claims, allocates and write-protects; returns pages processed (a prefix of the range) or a negative error.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_migrate_prepare")]
    public static partial long MigratePrepare(nint region, ulong firstPage, ulong pageCount, int target, CdmRun* runs, uint maxRuns, out uint runCount, byte* outcomes);

    /// <summary>Commits copied runs in one native call; outcomes is indexed from the prepare call's first page.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_migrate_commit")]
    public static partial int MigrateCommit(nint region, ulong firstPage, CdmRun* runs, uint runCount, byte* outcomes);

    [LibraryImport(LibraryName, EntryPoint = "cdm_abi_sizeof_stats")]
    public static partial uint AbiSizeOfStats();

    [LibraryImport(LibraryName, EntryPoint = "cdm_abi_sizeof_run")]
    public static partial uint AbiSizeOfRun();
}
