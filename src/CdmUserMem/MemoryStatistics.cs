namespace CdmUserMem;

/// <summary>Counters of one <see cref="MemorySystem"/> since it was created.</summary>
public readonly record struct MemoryStatistics
{
    /// <summary>First-touch faults the native engine served.</summary>
    public ulong FirstTouchFaults { get; init; }

    /// <summary>Faults on pages detached by a running migration: each waited in the kernel for at most its
    /// batch's copy (as an access waits on a kernel migration entry).</summary>
    public ulong FaultsWaitedOnMigration { get; init; }

    /// <summary>The name this counter had while migrations write-protected pages: now
    /// <see cref="FaultsWaitedOnMigration"/>.</summary>
    public ulong WriteProtectFaults { get; init; }

    public ulong PagesZeroFilledOnHost { get; init; }

    public ulong PagesFirstTouchedOnDevice { get; init; }

    /// <summary>First touches placed on a device that landed on the host (device full, or mapping budget).</summary>
    public ulong FirstTouchFallbacks { get; init; }

    public ulong PagesMigrated { get; init; }

    /// <summary>Page migrations undone after a system call failed mid-way (the page went back to its source).</summary>
    public ulong MigrationsAborted { get; init; }

    public ulong BytesCopied { get; init; }

    public ulong MappingBudgetRefusals { get; init; }

    public ulong MappingsInUse { get; init; }

    public ulong MappingBudget { get; init; }

    /// <summary>Pages resolved ahead of a sequential first-touch stream (resident on their placement node).</summary>
    public ulong PagesReadAhead { get; init; }

    /// <summary>Page migrations refused because the kernel (O_DIRECT, io_uring, RDMA...) or a
    /// <see cref="Region.Pin"/> lease held the page.</summary>
    public ulong PagesRefusedPinned { get; init; }

    /// <summary>Page migrations refused because the page is shared copy-on-write with a forked child and the
    /// sharing could not be broken.</summary>
    public ulong PagesRefusedShared { get; init; }

    /// <summary>Pages shared copy-on-write with a forked child (or not written since one exited) whose sharing
    /// a migration broke, as a write would, so they could move; the child keeps its own copy.</summary>
    public ulong PagesUnshared { get; init; }

    /// <summary>Pages demoted off nodes over their high watermark (<see cref="MemoryNode.EnablePressure"/>).</summary>
    public ulong PagesDemoted { get; init; }

    /// <summary>Pages moved off frames a contiguous reservation needed (<see cref="MemoryNode.ReserveContiguous"/>).</summary>
    public ulong PagesCompacted { get; init; }

    /// <summary>CPU touches of pages resident on private device nodes, each bringing its page back to a CPU-reachable node.</summary>
    public ulong PrivateNodeFaults { get; init; }

    /// <summary>Resident pages the application discarded (madvise MADV_DONTNEED) and touched again: zeros.</summary>
    public ulong PagesRefilled { get; init; }

    /// <summary>First-touch fills the kernel refused; the engine retried them (the toucher waited meanwhile).</summary>
    public ulong FillErrors { get; init; }

    /// <summary>poll/read errors the fault thread survived.</summary>
    public ulong FaultLoopErrors { get; init; }

    /// <summary>Time migrations spent detaching sources (UFFDIO_MOVE out of regions), summed.</summary>
    public TimeSpan MigrationDetachTime { get; init; }

    /// <summary>Time migrations spent copying, summed.</summary>
    public TimeSpan MigrationCopyTime { get; init; }

    /// <summary>Time migrations spent attaching destinations and waking waiters, summed.</summary>
    public TimeSpan MigrationAttachTime { get; init; }

    /// <summary>Time migrations spent releasing sources, summed.</summary>
    public TimeSpan MigrationReleaseTime { get; init; }
}
