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
}

/// <summary>struct cdm_run: one contiguous run a migration copies, between engine views.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CdmRun
{
    public ulong FirstPage;
    public ulong PageCount;
    public ulong SourceAddress;
    public ulong DestinationAddress;
    public ulong SourceFrame;
    public ulong DestinationFrame;
    public int SourceNode;
    public int DestinationNode;
}
