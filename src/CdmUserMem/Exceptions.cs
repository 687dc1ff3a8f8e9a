namespace CdmUserMem;

/// <summary>The kernel cannot give CdmUserMem the userfaultfd it needs (missing, blocked, or lacking features).</summary>
public sealed class UserfaultfdUnavailableException : PlatformNotSupportedException
{
    public UserfaultfdUnavailableException(string message) : base(message) { }
}

/// <summary>An operation would create more mappings than the memory system's budget allows; nothing was changed.</summary>
public sealed class MappingBudgetExceededException : InvalidOperationException
{
    public MappingBudgetExceededException(string message, MigrationResult? partialResult = null) : base(message)
        => PartialResult = partialResult;

    /// <summary>For a migration: what was done before the refusal (those pages stay migrated).</summary>
    public MigrationResult? PartialResult { get; }
}

/// <summary>
/// A device node has too few free frames for an operation that asked for all or nothing; nothing was
/// changed. It is a capacity refusal of one node, not the process running out of memory.
/// </summary>
public sealed class DeviceCapacityExhaustedException : InvalidOperationException
{
    public DeviceCapacityExhaustedException(string message, MigrationResult? partialResult = null) : base(message)
        => PartialResult = partialResult;

    /// <summary>For <see cref="MigrationResult.ThrowIfIncomplete"/>: the migration's result.</summary>
    public MigrationResult? PartialResult { get; }
}

/// <summary>A memory system already holds <see cref="MemorySystem.MaxDeviceNodes"/> device nodes.</summary>
public sealed class NodeLimitExceededException : InvalidOperationException
{
    public NodeLimitExceededException(string message) : base(message) { }
}

/// <summary>
/// A migration could not go on: a system call failed in a way that is not a per-page outcome. Pages
/// migrated before it stay migrated (<see cref="PartialResult"/>); the failing batch's pages stayed on
/// their source.
/// </summary>
public sealed class MigrationFailedException : IOException
{
    public MigrationFailedException(string message, int errno, MigrationResult? partialResult = null) : base(message)
    {
        Errno = errno;
        PartialResult = partialResult;
    }

    public int Errno { get; }

    public MigrationResult? PartialResult { get; }
}

/// <summary>A migration was cancelled between batches; <see cref="PartialResult"/> says what moved before.</summary>
public sealed class MigrationCanceledException : OperationCanceledException
{
    public MigrationCanceledException(MigrationResult partialResult, CancellationToken token)
        : base($"Migration to '{partialResult.Target.Name}' cancelled between batches; done so far: {partialResult}", token)
        => PartialResult = partialResult;

    public MigrationResult PartialResult { get; }
}

/// <summary>The memory system was created by the parent of this process: a forked child may use its
/// regions' memory (its own copy) but not the system's engine, whose threads live in the parent.</summary>
public sealed class ForkedProcessException : InvalidOperationException
{
    public ForkedProcessException(string message) : base(message) { }
}

/// <summary>A node could not be removed: some of its pages cannot move. The node stays online holding them.</summary>
public sealed class NodeBusyException : InvalidOperationException
{
    public NodeBusyException(string message, MemoryNode node, ulong pagesLeft, nint firstBlockedPage, bool pinned) : base(message)
    {
        Node = node;
        PagesLeft = pagesLeft;
        FirstBlockedPage = firstBlockedPage;
        IsPinned = pinned;
    }

    public MemoryNode Node { get; }

    /// <summary>Frames of the node still in use.</summary>
    public ulong PagesLeft { get; }

    /// <summary>Address of the first page that could not move.</summary>
    public nint FirstBlockedPage { get; }

    /// <summary>True when pins held pages back; false when no node had room for them.</summary>
    public bool IsPinned { get; }
}

/// <summary>
/// A contiguous reservation could not be made: every window of frames large enough holds pinned pages
/// (<see cref="PinnedPages"/> names some), which compaction must not move. Nothing was reserved; pages
/// compaction moved before it found out stay where they went.
/// </summary>
public sealed class CompactionBlockedException : InvalidOperationException
{
    public CompactionBlockedException(string message, IReadOnlyList<nint> pinnedPages) : base(message) => PinnedPages = pinnedPages;

    /// <summary>Addresses of pinned pages in the window compaction would have used (up to 16).</summary>
    public IReadOnlyList<nint> PinnedPages { get; }
}
