using Microsoft.Extensions.Logging;

namespace CdmUserMem;

/// <summary>Settings of a <see cref="MemorySystem"/>.</summary>
public sealed record MemorySystemOptions
{
    /// <summary>
    /// Most mappings (VMAs) the library may hold at once. Kept far below vm.max_map_count (65530 by default),
    /// where mmap, malloc and thread creation start failing for the whole process.
    /// </summary>
    public uint MappingBudget { get; init; } = 16384;

    /// <summary>Threads that share one large migration copy, standing in for a DMA engine's channels.</summary>
    public int CopyChannels { get; init; } = 1;

    /// <summary>
    /// Ask for <see cref="FaultMode.UserModeOnly"/> even where full mode is allowed: faults raised inside
    /// system calls then fail with EFAULT instead of waiting (see <see cref="Region.Pin"/>).
    /// </summary>
    public bool UserModeOnly { get; init; }

    /// <summary>
    /// Record fault-service and migration latencies in the native engine (<see cref="MemorySystem.GetLatency"/>
    /// and the <c>CdmUserMem</c> meter's histograms): two clock reads per fault event and per migration batch.
    /// </summary>
    public bool RecordLatencies { get; init; } = true;

    /// <summary>
    /// Where the memory system logs what a user must know of (a degraded fault mode, an arena not locked,
    /// first touches that fell back to the host, mapping-budget refusals, incomplete migrations, fault-engine
    /// errors), under the category <c>CdmUserMem.MemorySystem</c>; null logs nothing.
    /// </summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>Settings of a reserved <see cref="Region"/>.</summary>
public sealed record RegionOptions
{
    /// <summary>Where a page lands on first touch; null means the host node.</summary>
    public MemoryNode? Placement { get; init; }

    /// <summary>Pages resolved per fault: the faulting page's aligned window of this many pages.</summary>
    public uint FaultAroundPages { get; init; } = 16;

    /// <summary>
    /// Pages resolved ahead of a sequential first-touch stream (a fault right after resident pages), on
    /// the engine's threads while the toucher runs, as the kernel reads ahead in files. They become
    /// resident on their placement node before they are touched; 0 turns readahead off.
    /// </summary>
    public uint ReadaheadPages { get; init; } = 512;

    /// <summary>The accounting group the region's pages are charged to (<see cref="MemorySystem.CreateGroup"/>), or null.</summary>
    public AccountingGroup? Group { get; init; }
}

/// <summary>Settings of one migration call.</summary>
public sealed record MigrationOptions
{
    public static MigrationOptions Default { get; } = new();

    /// <summary>Pages detached, copied and attached together in one native call.</summary>
    public uint BatchPages { get; init; } = 512;

    /// <summary>Extra attempts for pages that were being filled or migrated by someone else.</summary>
    public int BusyRetries { get; init; } = 3;

    /// <summary>
    /// Reserve, before starting, a frame on the target device node for every page of the range resident
    /// elsewhere, atomically against every other user of the node, and throw
    /// <see cref="DeviceCapacityExhaustedException"/> without changing anything when the node has too few.
    /// </summary>
    public bool RequireCapacity { get; init; }
}
