using System.Runtime.InteropServices;
using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>Turns native engine return codes into exceptions that say what to do.</summary>
internal static class NativeErrors
{
    public static string Describe(int rc) => rc switch
    {
        CdmEngine.ErrorNoUserfaultfd => "userfaultfd is unavailable",
        CdmEngine.ErrorMissingFeature => "userfaultfd lacks a required feature",
        CdmEngine.ErrorMappingBudget => "the mapping budget is exhausted",
        CdmEngine.ErrorForked => "the memory system belongs to the parent process",
        CdmEngine.ErrorNodeLimit => $"at most {CdmEngine.MaxNodes} device nodes exist per memory system",
        CdmEngine.ErrorPinned => $"a page already holds {CdmEngine.MaxPins} pins",
        _ => $"{Marshal.GetPInvokeErrorMessage(-rc)} (errno {-rc})",
    };

    public static Exception ForEngineCreate(int rc, ulong missingFeatures) => rc switch
    {
        CdmEngine.ErrorNoUserfaultfd => new UserfaultfdUnavailableException(
            "userfaultfd(2) is not available to this process. CdmUserMem needs a Linux kernel built with " +
            "CONFIG_USERFAULTFD (6.8 or newer) and a seccomp profile that allows the userfaultfd syscall " +
            "(container runtimes often block it: allow it, or run with --security-opt seccomp=unconfined)."),
        CdmEngine.ErrorMissingFeature => new UserfaultfdUnavailableException(
            $"userfaultfd lacks features CdmUserMem needs ({FeatureNames(missingFeatures)}). UFFDIO_MOVE, which " +
            "migrates pages without copying them twice and refuses pages the kernel holds pinned, arrived in " +
            "Linux 6.8: upgrade the kernel."),
        _ => ForErrno(rc, "creating the fault engine"),
    };

    public static Exception ForErrno(int rc, string what) => rc switch
    {
        CdmEngine.ErrorMappingBudget => new MappingBudgetExceededException(
            $"{what} would exceed the mapping budget; raise MemorySystemOptions.MappingBudget or free regions."),
        CdmEngine.ErrorForked => new ForkedProcessException(
            $"{what} failed: this process is a fork() child of the one that created the memory system. The child " +
            "owns a private copy of every region's memory; create a new MemorySystem to manage memory here."),
        CdmEngine.ErrorNodeLimit => new NodeLimitExceededException(
            $"{what} failed: a memory system holds at most {MemorySystem.MaxDeviceNodes} device nodes."),
        CdmEngine.ErrorPinned => new InvalidOperationException($"{what} failed: {Describe(rc)}."),
        -12 => new InsufficientMemoryException($"{what} failed: the kernel is out of memory or address space (ENOMEM)."),
        -1 or -13 => new UnauthorizedAccessException($"{what} failed: {Describe(rc)}."),
        _ => new IOException($"{what} failed: {Describe(rc)}."),
    };

    private static string FeatureNames(ulong missing)
    {
        var names = new List<string>();
        if ((missing & CdmEngine.FeatureMove) != 0) names.Add("UFFD_FEATURE_MOVE");
        return names.Count == 0 ? $"0x{missing:x}" : string.Join(", ", names);
    }
}
