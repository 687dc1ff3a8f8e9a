using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>struct cdm_stats.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CdmStats
{
    public ulong FaultsMissing;
    public ulong FaultsOnMigrating;
    public ulong PagesZeroFilledHost;
    public ulong PagesFirstTouchDevice;
    public ulong FirstTouchFallbacks;
    public ulong PagesMigrated;
    public ulong MigrationsAborted;
    public ulong BudgetRefusals;
    public ulong MappingsInUse;
    public ulong MappingBudget;
    public ulong PagesReadAhead;
    public ulong PagesRefusedPinned;
    public ulong PagesRefusedShared;
    public ulong PagesRefilled;
    public ulong FillErrors;
    public ulong FaultLoopErrors;
    public ulong BytesCopied;
    public ulong MigrateNsDetach;
    public ulong MigrateNsCopy;
    public ulong MigrateNsAttach;
    public ulong MigrateNsRelease;
    public ulong PagesUnshared;
    public ulong PagesDemoted;
    public ulong PagesCompacted;
    public ulong PrivateFaults;
}
