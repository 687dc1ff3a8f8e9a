using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>What became of a page a migration was asked to move.</summary>
public enum MigrationOutcome : byte
{
    /// <summary>Copied and remapped: it now lives on the target node.</summary>
    Migrated = CdmOutcome.Migrated,
    /// <summary>It already lived on the target node.</summary>
    AlreadyThere = CdmOutcome.AlreadyThere,
    /// <summary>Writers kept disturbing it through every retry; it stays where it was.</summary>
    Busy = CdmOutcome.Busy,
    /// <summary>The target node had no free frame; it stays where it was.</summary>
    NoCapacity = CdmOutcome.NoCapacity,
    /// <summary>Never touched: nothing to copy, and its first touch will land on the target.</summary>
    Placed = CdmOutcome.Placed,
    /// <summary>Moving it would have exceeded the mapping budget; it stays where it was.</summary>
    MappingBudget = CdmOutcome.MappingBudget,
    /// <summary>A system call failed; it stays where it was.</summary>
    Failed = CdmOutcome.Failed,
}

/// <summary>A run of pages with one outcome.</summary>
public readonly record struct MigrationRun(ulong Offset, ulong Length, MigrationOutcome Outcome);

/// <summary>The per-page outcome of a migration, as counts and as runs.</summary>
public sealed class MigrationResult
{
    private readonly ulong[] _pages = new ulong[(int)CdmOutcome.Failed + 1];
    private readonly List<MigrationRun> _runs = new();

    internal MigrationResult(MemoryNode target) => Target = target;

    public MemoryNode Target { get; }

    public IReadOnlyList<MigrationRun> Runs => _runs;

    public ulong PagesMigrated => _pages[(int)MigrationOutcome.Migrated];
    public ulong PagesAlreadyThere => _pages[(int)MigrationOutcome.AlreadyThere];
    public ulong PagesPlaced => _pages[(int)MigrationOutcome.Placed];
    public ulong PagesBusy => _pages[(int)MigrationOutcome.Busy];
    public ulong PagesNoCapacity => _pages[(int)MigrationOutcome.NoCapacity];
    public ulong PagesMappingBudget => _pages[(int)MigrationOutcome.MappingBudget];
    public ulong PagesFailed => _pages[(int)MigrationOutcome.Failed];

    /// <summary>True when every page is on the target node or placed there for its first touch.</summary>
    public bool IsComplete => PagesBusy + PagesNoCapacity + PagesMappingBudget + PagesFailed == 0;

    public ulong PagesWith(MigrationOutcome outcome) => _pages[(int)outcome];

    /// <summary>Throws unless <see cref="IsComplete"/>, naming what held pages back.</summary>
    public MigrationResult ThrowIfIncomplete()
    {
        if (PagesNoCapacity > 0)
            throw new DeviceCapacityExhaustedException($"{PagesNoCapacity} pages found no free frame on node '{Target.Name}'. {this}");
        if (PagesMappingBudget > 0)
            throw new MappingBudgetExceededException($"{PagesMappingBudget} pages would have exceeded the mapping budget. {this}", this);
        if (!IsComplete) throw new InvalidOperationException($"Migration to '{Target.Name}' incomplete: {this}");
        return this;
    }

    internal void Add(ulong pageOffset, CdmOutcome outcome)
    {
        var o = (MigrationOutcome)outcome;
        _pages[(int)o]++;
        if (_runs.Count > 0 && _runs[^1].Outcome == o && _runs[^1].Offset + _runs[^1].Length == pageOffset)
            _runs[^1] = _runs[^1] with { Length = _runs[^1].Length + Region.PageSize };
        else
            _runs.Add(new MigrationRun(pageOffset, Region.PageSize, o));
    }

    public override string ToString() =>
        $"migrated {PagesMigrated}, already there {PagesAlreadyThere}, placed {PagesPlaced}, busy {PagesBusy}, " +
        $"no capacity {PagesNoCapacity}, mapping budget {PagesMappingBudget}, failed {PagesFailed} (pages)";
}
