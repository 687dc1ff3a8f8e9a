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

/// <summary>A device node has too few free frames for an operation that asked for all or nothing.</summary>
public sealed class DeviceCapacityExhaustedException : OutOfMemoryException
{
    public DeviceCapacityExhaustedException(string message) : base(message) { }
}

/// <summary>A system call inside a migration failed; the pages it touched were returned to their source.</summary>
public sealed class MigrationFailedException : IOException
{
    public MigrationFailedException(string message, int errno) : base(message) => Errno = errno;

    public int Errno { get; }
}
