namespace CdmUserMem;

/// <summary>Counters of one <see cref="MemorySystem"/> since it was created.</summary>
public readonly record struct MemoryStatistics
{
    /// <summary>First-touch faults the native engine served.</summary>
    public ulong FirstTouchFaults { get; init; }

    /// <summary>Write faults on pages under migration (each aborts that page's migration).</summary>
    public ulong WriteProtectFaults { get; init; }

    public ulong PagesZeroFilledOnHost { get; init; }

    public ulong PagesFirstTouchedOnDevice { get; init; }

    /// <summary>First touches placed on a device that landed on the host (device full, or mapping budget).</summary>
    public ulong FirstTouchFallbacks { get; init; }

    public ulong PagesMigrated { get; init; }

    /// <summary>Page migrations a concurrent writer aborted (then retried, or reported busy).</summary>
    public ulong MigrationsAborted { get; init; }

    public ulong BytesCopied { get; init; }

    public ulong MappingBudgetRefusals { get; init; }

    public ulong MappingsInUse { get; init; }

    public ulong MappingBudget { get; init; }

    /// <summary>Pages resolved ahead of a sequential first-touch stream (resident on their placement node).</summary>
    public ulong PagesReadAhead { get; init; }
}
