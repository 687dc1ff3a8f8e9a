namespace CdmUserMem.Interop;

internal static partial class CdmEngine
{
    public const uint PageSize = 4096;
    public const int HostNode = 0;
    public const int MaxNodes = 63;
    public const int MaxPins = 4095;
    public const int MaxPlans = 65535;
    public const int MaxRule = 16777215;
    public const int MaxGroups = 256;

    // Error codes beyond negative errno values (cdm_engine.h).
    public const int ErrorNoUserfaultfd = -10001;
    public const int ErrorMissingFeature = -10002;
    public const int ErrorMappingBudget = -10003;
    public const int ErrorForked = -10004;
    public const int ErrorNodeLimit = -10005;
    public const int ErrorPinned = -10006;
    public const int ErrorPlanLimit = -10007;
    public const int ErrorNoRoom = -10008;

    public const uint CreateUserModeOnly = 1;

    /// <summary>UFFD_USER_MODE_ONLY: a fault raised inside a system call returns EFAULT instead of waiting.</summary>
    public const uint ModeUserOnly = 1;
    /// <summary>The descriptor came from /dev/userfaultfd.</summary>
    public const uint ModeDevUserfaultfd = 2;
    /// <summary>Arenas, staging and regions are mlocked.</summary>
    public const uint ModeLocked = 4;

    /// <summary>Buckets per power of two in a latency histogram, and buckets in all (cdm_engine.h).</summary>
    public const int LatencySubBuckets = 8;
    public const int LatencyBuckets = 320;

    /// <summary>UFFD_FEATURE_MOVE (linux/userfaultfd.h).</summary>
    public const ulong FeatureMove = 1UL << 10;
}

/// <summary>Per-page migration outcomes (enum cdm_outcome).</summary>
internal enum CdmOutcome : byte
{
    None = 0,
    Migrated = 1,
    AlreadyThere = 2,
    Busy = 3,
    NoCapacity = 4,
    Placed = 5,
    MappingBudget = 6,
    Pending = 7,
    Failed = 8,
    Pinned = 9,
    Shared = 10,
}

/// <summary>How a page got where it is (enum cdm_why).</summary>
internal enum CdmWhy
{
    Untouched = 0,
    Target = 1,
    Fallback = 2,
    LastResort = 3,
    Migrated = 4,
    Rebalanced = 5,
    Drained = 6,
    Demoted = 7,
    Compacted = 8,
    GroupLimit = 9,
    CpuFault = 10,
}

/// <summary>System calls the engine's fault injection can fail (enum cdm_op).</summary>
internal enum CdmOp
{
    Move = 0,
    Copy = 1,
    ZeroPage = 2,
    Wake = 3,
    Register = 4,
    Mmap = 5,
    Madvise = 6,
    Poll = 7,
    Read = 8,
    Mlock = 9,
    Count = 10,
}

/// <summary>Latency histograms the engine records (enum cdm_latency).</summary>
internal enum CdmLatency
{
    Fault = 0,
    MigratePage = 1,
    Migrate64K = 2,
    Migrate2M = 3,
    MigrateLarger = 4,
    Count = 5,
}
