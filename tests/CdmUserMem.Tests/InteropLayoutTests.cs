using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CdmUserMem.Interop;

namespace CdmUserMem.Tests;

/// <summary>The managed mirror of cdm_engine.h matches the header the engine was built from.</summary>
public class InteropLayoutTests
{
    private static Dictionary<string, string> NativeAbi() =>
        Marshal.PtrToStringUTF8(CdmEngine.AbiDescribe())!.Split(';').Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);

    [Fact]
    public void Structs_match_the_native_abi()
    {
        Assert.Equal(CdmEngine.AbiSizeOfStats(), (uint)Unsafe.SizeOf<CdmStats>());
        Assert.Equal(NativeAbi()["sizeof(cdm_stats)"], Unsafe.SizeOf<CdmStats>().ToString());
        Assert.Equal(Unsafe.SizeOf<CdmStats>(), typeof(CdmStats).GetFields().Length * 8);
        Assert.Equal(NativeAbi()["sizeof(cdm_heap_options)"], Unsafe.SizeOf<CdmHeapOptions>().ToString());
        Assert.Equal(NativeAbi()["sizeof(cdm_heap_stats)"], Unsafe.SizeOf<CdmHeapStats>().ToString());
        Assert.Equal(NativeAbi()["sizeof(cdm_heap_range)"], Unsafe.SizeOf<CdmHeapRange>().ToString());
    }

    [Fact]
    public void Every_constant_matches_the_header()
    {
        var native = NativeAbi();
        var managed = new Dictionary<string, string>
        {
            ["CDM_PAGE_SIZE"] = CdmEngine.PageSize.ToString(),
            ["CDM_E_HEAP_FOREIGN"] = CdmEngine.ErrorHeapForeign.ToString(),
            ["CDM_E_HEAP_DOUBLE_FREE"] = CdmEngine.ErrorHeapDoubleFree.ToString(),
            ["CDM_E_HEAP_NOT_BLOCK"] = CdmEngine.ErrorHeapNotBlock.ToString(),
            ["CDM_E_HEAP_LIMIT"] = CdmEngine.ErrorHeapLimit.ToString(),
            ["CDM_HEAP_SMALL_MAX"] = CdmEngine.HeapSmallMax.ToString(),
            ["CDM_HEAP_CLASSES"] = CdmEngine.HeapClasses.ToString(),
            ["CDM_HEAP_HUGE_DEFAULT"] = CdmEngine.HeapHugeDefault.ToString(),
            ["CDM_HEAP_MAX"] = CdmEngine.HeapMax.ToString(),
            ["CDM_HEAP_CHECKED"] = CdmEngine.HeapChecked.ToString(),
            ["CDM_LAT_FAULT"] = ((int)CdmLatency.Fault).ToString(),
            ["CDM_LAT_MIGRATE_PAGE"] = ((int)CdmLatency.MigratePage).ToString(),
            ["CDM_LAT_MIGRATE_64K"] = ((int)CdmLatency.Migrate64K).ToString(),
            ["CDM_LAT_MIGRATE_2M"] = ((int)CdmLatency.Migrate2M).ToString(),
            ["CDM_LAT_MIGRATE_LARGER"] = ((int)CdmLatency.MigrateLarger).ToString(),
            ["CDM_LAT_COUNT"] = ((int)CdmLatency.Count).ToString(),
            ["CDM_LAT_SUB_BUCKETS"] = CdmEngine.LatencySubBuckets.ToString(),
            ["CDM_LAT_BUCKETS"] = CdmEngine.LatencyBuckets.ToString(),
            ["CDM_HOST_NODE"] = CdmEngine.HostNode.ToString(),
            ["CDM_MAX_NODES"] = CdmEngine.MaxNodes.ToString(),
            ["CDM_MAX_PINS"] = CdmEngine.MaxPins.ToString(),
            ["CDM_E_NO_USERFAULTFD"] = CdmEngine.ErrorNoUserfaultfd.ToString(),
            ["CDM_E_MISSING_FEATURE"] = CdmEngine.ErrorMissingFeature.ToString(),
            ["CDM_E_MAPPING_BUDGET"] = CdmEngine.ErrorMappingBudget.ToString(),
            ["CDM_E_FORKED"] = CdmEngine.ErrorForked.ToString(),
            ["CDM_E_NODE_LIMIT"] = CdmEngine.ErrorNodeLimit.ToString(),
            ["CDM_E_PINNED"] = CdmEngine.ErrorPinned.ToString(),
            ["CDM_E_PLAN_LIMIT"] = CdmEngine.ErrorPlanLimit.ToString(),
            ["CDM_E_NO_ROOM"] = CdmEngine.ErrorNoRoom.ToString(),
            ["CDM_MAX_PLANS"] = CdmEngine.MaxPlans.ToString(),
            ["CDM_MAX_RULE"] = CdmEngine.MaxRule.ToString(),
            ["CDM_MAX_GROUPS"] = CdmEngine.MaxGroups.ToString(),
            ["CDM_CREATE_USER_MODE_ONLY"] = CdmEngine.CreateUserModeOnly.ToString(),
            ["CDM_MODE_USER_ONLY"] = CdmEngine.ModeUserOnly.ToString(),
            ["CDM_MODE_DEV_USERFAULTFD"] = CdmEngine.ModeDevUserfaultfd.ToString(),
            ["CDM_MODE_LOCKED"] = CdmEngine.ModeLocked.ToString(),
            ["CDM_UFFD_FEATURE_MOVE"] = CdmEngine.FeatureMove.ToString(),
        };
        foreach (CdmOutcome o in Enum.GetValues<CdmOutcome>())
            managed["CDM_OUT_" + Snake(o.ToString())] = ((int)o).ToString();
        foreach (CdmWhy o in Enum.GetValues<CdmWhy>())
            managed["CDM_WHY_" + Snake(o.ToString())] = ((int)o).ToString();
        foreach (CdmOp o in Enum.GetValues<CdmOp>())
            managed["CDM_OP_" + Snake(o.ToString())] = ((int)o).ToString();
        foreach (var (name, value) in managed)
        {
            Assert.True(native.ContainsKey(name), $"{name} is not in cdm_engine.h");
            Assert.True(native[name] == value, $"{name}: header {native[name]}, managed {value}");
        }
        Assert.Equal(native.Keys.Where(k => k.StartsWith("CDM_")).OrderBy(k => k), managed.Keys.OrderBy(k => k));
        // The public outcome enum is the native one, value for value.
        foreach (MigrationOutcome o in Enum.GetValues<MigrationOutcome>())
            Assert.Equal(o.ToString(), ((CdmOutcome)(byte)o).ToString());
    }

    private static string Snake(string name) => name switch
    {
        "ZeroPage" => "ZEROPAGE",
        _ => string.Concat(name.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : c.ToString())).ToUpperInvariant(),
    };
}
