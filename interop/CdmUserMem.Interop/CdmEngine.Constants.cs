namespace CdmUserMem.Interop;

public static partial class CdmEngine
{
    public const uint PageSize = 4096;
    public const int HostNode = 0;
    public const int MaxNodes = 63;

    // Error codes beyond negative errno values (cdm_engine.h).
    public const int ErrorNoUserfaultfd = -10001;
    public const int ErrorMissingFeature = -10002;
    public const int ErrorMappingBudget = -10003;

    /// <summary>UFFD_USER_MODE_ONLY: a fault raised inside a system call returns EFAULT instead of waiting.</summary>
    public const uint ModeUserOnly = 1;

    // userfaultfd feature bits the engine needs (linux/userfaultfd.h).
    public const ulong FeatureMissingShmem = 1UL << 5;
    public const ulong FeatureWriteProtectShmem = 1UL << 12;
}

/// <summary>Per-page migration outcomes (enum cdm_outcome).</summary>
public enum CdmOutcome : byte
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
}
