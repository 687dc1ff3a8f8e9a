using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>struct cdm_stats.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CdmStats
{
    public ulong FaultsMissing;
    public ulong FaultsWriteProtect;
    public ulong PagesZeroFilledHost;
    public ulong PagesFirstTouchDevice;
    public ulong FirstTouchFallbacks;
    public ulong PagesMigrated;
    public ulong MigrationsAborted;
    public ulong BudgetRefusals;
    public ulong MappingsInUse;
    public ulong MappingBudget;
    public ulong PagesReadAhead;
}
