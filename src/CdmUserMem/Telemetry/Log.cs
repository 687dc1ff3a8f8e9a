using Microsoft.Extensions.Logging;

namespace CdmUserMem.Telemetry;

/// <summary>The events a user of a memory system must know of; each checks IsEnabled before formatting.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, EventName = "DegradedFaultMode", Level = LogLevel.Warning,
        Message = "userfaultfd runs in user-mode-only mode ({Source}): a system call that touches a page not mapped at that moment fails with EFAULT; hold Region.Pin leases over memory handed to the kernel")]
    public static partial void DegradedFaultMode(ILogger logger, string source);

    [LoggerMessage(EventId = 2, EventName = "ArenaNotPinned", Level = LogLevel.Warning,
        Message = "Device node '{Node}' ({CapacityBytes} bytes) is {Reason}")]
    public static partial void ArenaNotPinned(ILogger logger, string node, ulong capacityBytes, string reason);

    [LoggerMessage(EventId = 3, EventName = "FirstTouchFallbacks", Level = LogLevel.Warning,
        Message = "{Pages} first touches placed on a device node landed on the host instead (device full) since the last report; {Total} in all")]
    public static partial void FirstTouchFallbacks(ILogger logger, ulong pages, ulong total);

    [LoggerMessage(EventId = 4, EventName = "MigrationIncomplete", Level = LogLevel.Information,
        Message = "Migration to '{Node}' left pages on their source: {NoCapacity} found no free frame, {Pinned} pinned, {Shared} shared with a child, {Failed} failed, {Busy} busy")]
    public static partial void MigrationIncomplete(ILogger logger, string node, ulong noCapacity, ulong pinned, ulong shared, ulong failed, ulong busy);

    [LoggerMessage(EventId = 5, EventName = "MappingBudgetRefused", Level = LogLevel.Warning,
        Message = "Reserving a region of {Bytes} bytes was refused: the mapping budget ({Budget} mappings, {InUse} in use) is exhausted")]
    public static partial void MappingBudgetRefused(ILogger logger, ulong bytes, ulong budget, ulong inUse);

    [LoggerMessage(EventId = 6, EventName = "FaultEngineErrors", Level = LogLevel.Error,
        Message = "The fault thread survived {LoopErrors} poll/read errors and retried {FillErrors} fills the kernel refused since the last report")]
    public static partial void FaultEngineErrors(ILogger logger, ulong loopErrors, ulong fillErrors);
}
