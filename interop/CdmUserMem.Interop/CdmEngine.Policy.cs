using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

internal static unsafe partial class CdmEngine
{
    /// <summary>Interns a fallback order (nodes a first touch tries after its target); equal orders share an id.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_plan_create")]
    public static partial int PlanCreate(EngineSafeHandle engine, sbyte* nodes, uint count, out uint plan);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_set_default_plan")]
    public static partial int RegionSetDefaultPlan(RegionSafeHandle region, uint plan);

    /// <summary>Untouched pages of the range get target pattern[page % length], the plan and the rule.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_region_set_policy")]
    public static partial int RegionSetPolicy(RegionSafeHandle region, ulong firstPage, ulong pageCount, sbyte* pattern, uint patternLength,
                                              uint plan, uint rule);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_explain")]
    public static partial int RegionExplain(RegionSafeHandle region, ulong page, out int state, out int node, out uint rule, out int why);

    /// <summary>As MigrateBatch, recording why (Migrated or Rebalanced) and the rule on every page moved.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_migrate_batch_why")]
    public static partial int MigrateBatchWhy(nint region, ulong firstPage, ulong pageCount, int target, uint busyRetries, nint reservation,
                                              int why, uint rule, byte* outcomes);

    /// <summary>Demotes a node's least recently placed pages in the background while over high frames, down to low; high 0: off.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_node_set_pressure")]
    public static partial int NodeSetPressure(EngineSafeHandle engine, int node, ulong highFrames, ulong lowFrames, sbyte* order, uint orderLength);

    /// <summary>Reserves contiguous frames of a device node, compacting a window when none is free.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_extent_reserve")]
    public static partial int ExtentReserve(EngineSafeHandle engine, int node, ulong frames, sbyte* order, uint orderLength, ulong address,
                                            out nint extent, out ulong firstFrame, out ulong mapped, ulong* blocked, ref uint blockedCount);

    [LibraryImport(LibraryName, EntryPoint = "cdm_extent_release")]
    public static partial void ExtentRelease(nint extent);

    [LibraryImport(LibraryName, EntryPoint = "cdm_group_create")]
    public static partial int GroupCreate(EngineSafeHandle engine, out uint group);

    [LibraryImport(LibraryName, EntryPoint = "cdm_group_set_limit")]
    public static partial int GroupSetLimit(EngineSafeHandle engine, uint group, int node, ulong frames);

    [LibraryImport(LibraryName, EntryPoint = "cdm_group_usage")]
    public static partial int GroupUsage(EngineSafeHandle engine, uint group, int node, out ulong frames);

    [LibraryImport(LibraryName, EntryPoint = "cdm_region_set_group")]
    public static partial int RegionSetGroup(RegionSafeHandle region, uint group);

    /// <summary>Demotes the node's least recently placed unpinned pages now.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_node_demote")]
    public static partial int NodeDemote(EngineSafeHandle engine, int node, ulong frames, sbyte* order, uint orderLength, out ulong demoted);

    /// <summary>Makes a device node private: its pages are not mapped; a CPU touch brings one back down the order.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_node_make_private")]
    public static partial int NodeMakePrivate(EngineSafeHandle engine, int node, sbyte* order, uint orderLength);

    /// <summary>Takes a device node offline and migrates every page off it, in the given order of targets.</summary>
    [LibraryImport(LibraryName, EntryPoint = "cdm_node_drain")]
    public static partial int NodeDrain(EngineSafeHandle engine, int node, sbyte* order, uint orderLength, out ulong leftPages, out ulong blockedAddress);
}
