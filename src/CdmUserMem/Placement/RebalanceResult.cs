namespace CdmUserMem;

/// <summary>What a <see cref="Region.Rebalance"/> did, page by page, counted.</summary>
public sealed class RebalanceResult
{
    private readonly Dictionary<MemoryNode, ulong> _movedTo = new();

    /// <summary>Pages moved, by the node they moved to.</summary>
    public IReadOnlyDictionary<MemoryNode, ulong> MovedTo => _movedTo;

    public ulong PagesMoved { get; private set; }

    /// <summary>Resident pages already where their policy allows.</summary>
    public ulong PagesInPlace { get; private set; }

    /// <summary>Untouched pages: their policy applies at first touch; nothing to move.</summary>
    public ulong PagesUntouched { get; private set; }

    /// <summary>Pages left where they are because no allowed node had room.</summary>
    public ulong PagesNoCapacity { get; private set; }

    /// <summary>Pages the kernel or a <see cref="Region.Pin"/> lease holds (or shared with a forked child).</summary>
    public ulong PagesPinned { get; private set; }

    /// <summary>Pages being filled or migrated by someone else, or whose move failed.</summary>
    public ulong PagesBusyOrFailed { get; private set; }

    public bool IsComplete => PagesNoCapacity + PagesPinned + PagesBusyOrFailed == 0;

    internal void Moved(MemoryNode to)
    {
        PagesMoved++;
        _movedTo[to] = _movedTo.GetValueOrDefault(to) + 1;
    }

    internal void InPlace() => PagesInPlace++;
    internal void Untouched() => PagesUntouched++;

    internal void Left(MigrationOutcome outcome)
    {
        switch (outcome)
        {
            case MigrationOutcome.NoCapacity: PagesNoCapacity++; break;
            case MigrationOutcome.Pinned or MigrationOutcome.Shared: PagesPinned++; break;
            default: PagesBusyOrFailed++; break;
        }
    }

    public override string ToString() =>
        $"moved {PagesMoved} ({string.Join(", ", _movedTo.Select(kv => $"{kv.Value} to {kv.Key.Name}"))}), in place {PagesInPlace}, " +
        $"untouched {PagesUntouched}, no capacity {PagesNoCapacity}, pinned {PagesPinned}, busy or failed {PagesBusyOrFailed} (pages)";
}
