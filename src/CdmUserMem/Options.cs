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
}

/// <summary>Settings of one migration call.</summary>
public sealed record MigrationOptions
{
    public static MigrationOptions Default { get; } = new();

    /// <summary>Pages write-protected, copied and committed together.</summary>
    public uint BatchPages { get; init; } = 512;

    /// <summary>Extra attempts for pages whose migration a concurrent writer disturbed.</summary>
    public int BusyRetries { get; init; } = 3;

    /// <summary>
    /// Check before starting that the target device node has a free frame for every page that needs one,
    /// and throw <see cref="DeviceCapacityExhaustedException"/> without changing anything when it has not.
    /// </summary>
    public bool RequireCapacity { get; init; }
}
