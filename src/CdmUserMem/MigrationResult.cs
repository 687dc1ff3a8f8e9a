using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>What became of a page a migration was asked to move.</summary>
public enum MigrationOutcome : byte
{
    /// <summary>Detached, copied and attached: it now lives on the target node.</summary>
    Migrated = CdmOutcome.Migrated,
    /// <summary>It already lived on the target node.</summary>
    AlreadyThere = CdmOutcome.AlreadyThere,
    /// <summary>Being filled or migrated by someone else through every retry (or discarded by the application
    /// mid-way); it stays where it was.</summary>
    Busy = CdmOutcome.Busy,
    /// <summary>The target node had no free frame; it stays where it was.</summary>
    NoCapacity = CdmOutcome.NoCapacity,
    /// <summary>Never touched: nothing to copy, and its first touch will land on the target.</summary>
    Placed = CdmOutcome.Placed,
    /// <summary>Not produced any more (migration creates no mappings); kept for source compatibility.</summary>
    MappingBudget = CdmOutcome.MappingBudget,
    /// <summary>
    /// A system call failed, or the kernel refused the move (typically the application split the region with
    /// mprotect or mlock so the page's area no longer matches the target's); it stays where it was.
    /// </summary>
    Failed = CdmOutcome.Failed,
    /// <summary>
    /// Held where it is: by the kernel (O_DIRECT, io_uring fixed buffers, RDMA, process_vm_writev...: the
    /// kernel refuses to move a page it pins) or by a <see cref="Region.Pin"/> lease. It was not touched.
    /// </summary>
    Pinned = CdmOutcome.Pinned,
    /// <summary>
    /// Shared copy-on-write with a forked child, and the sharing could not be broken. (Normally a migration
    /// breaks it as a write would, with MADV_POPULATE_WRITE, and moves this process's copy; the child keeps
    /// its own: see <see cref="MemoryStatistics.PagesUnshared"/>.)
    /// </summary>
    Shared = CdmOutcome.Shared,
}

/// <summary>A run of pages with one outcome.</summary>
public readonly record struct MigrationRun(ulong Offset, ulong Length, MigrationOutcome Outcome);

/// <summary>The per-page outcome of a migration, as counts and as runs.</summary>
public sealed class MigrationResult
{
    private readonly ulong[] _pages = new ulong[(int)CdmOutcome.Shared + 1];
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
    public ulong PagesPinned => _pages[(int)MigrationOutcome.Pinned];
    public ulong PagesShared => _pages[(int)MigrationOutcome.Shared];

    /// <summary>Pages the result covers so far.</summary>
    public ulong PagesTotal
    {
        get
        {
            ulong total = 0;
            foreach (ulong pages in _pages) total += pages;
            return total;
        }
    }

    /// <summary>True when every page is on the target node or placed there for its first touch.</summary>
    public bool IsComplete => PagesBusy + PagesNoCapacity + PagesMappingBudget + PagesFailed + PagesPinned + PagesShared == 0;

    public ulong PagesWith(MigrationOutcome outcome) => _pages[(int)outcome];

    /// <summary>Throws unless <see cref="IsComplete"/>, naming what held pages back.</summary>
    public MigrationResult ThrowIfIncomplete()
    {
        if (PagesNoCapacity > 0)
            throw new DeviceCapacityExhaustedException($"{PagesNoCapacity} pages found no free frame on node '{Target.Name}'. {this}", this);
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
        $"no capacity {PagesNoCapacity}, failed {PagesFailed}, pinned {PagesPinned}, shared {PagesShared} (pages)";
}
