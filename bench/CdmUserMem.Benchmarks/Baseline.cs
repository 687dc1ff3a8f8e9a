using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CdmUserMem.Interop;

namespace CdmUserMem.Benchmarks;

/// <summary>Bindings to libcdmbaseline (bench/native/baseline.c) and the kernel's own first touch.</summary>
internal static unsafe partial class Baseline
{
    private const string LibraryName = "cdmbaseline";

    /// <summary>A memfd range whose missing faults a bare native resolver thread fills with zero pages.</summary>
    [LibraryImport(LibraryName, EntryPoint = "bl_resolver_create")]
    public static partial nint ResolverCreate(ulong size, ulong windowPages);

    [LibraryImport(LibraryName, EntryPoint = "bl_resolver_base")]
    public static partial byte* ResolverBase(nint resolver);

    [LibraryImport(LibraryName, EntryPoint = "bl_resolver_destroy")]
    public static partial void ResolverDestroy(nint resolver);

    /// <summary>A populated memfd range and a second memfd to move pieces into with the bare primitive sequence.</summary>
    [LibraryImport(LibraryName, EntryPoint = "bl_migration_create")]
    public static partial nint MigrationCreate(ulong size);

    /// <summary>Write-protect, copy, MAP_FIXED, re-register, wake.</summary>
    [LibraryImport(LibraryName, EntryPoint = "bl_migration_move")]
    public static partial int MigrationMove(nint migration, ulong offset, ulong length);

    [LibraryImport(LibraryName, EntryPoint = "bl_migration_destroy")]
    public static partial void MigrationDestroy(nint migration);

    /// <summary>Maps fresh memory the kernel faults in itself: anonymous private, or a memfd shared.</summary>
    public static byte* MapFresh(ulong size, bool memfd, out int fd)
    {
        fd = -1;
        nint address;
        if (memfd)
        {
            fd = Libc.MemfdCreate("bench-kernel", Libc.MfdCloexec);
            Libc.Ftruncate(fd, (long)size);
            address = Libc.Mmap(0, (nuint)size, Libc.ProtRead | Libc.ProtWrite, Libc.MapShared, fd, 0);
        }
        else
        {
            address = Libc.Mmap(0, (nuint)size, Libc.ProtRead | Libc.ProtWrite, Libc.MapPrivate | Libc.MapAnonymous, -1, 0);
        }
        if (address == Libc.MapFailed) throw new InvalidOperationException($"mmap failed: {Marshal.GetLastPInvokeError()}");
        return (byte*)address;
    }

    public static void Unmap(byte* address, ulong size, int fd)
    {
        Libc.Munmap((nint)address, (nuint)size);
        if (fd >= 0) Libc.Close(fd);
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nuint size, ulong* mask);

    /// <summary>Pins the calling thread to one CPU; threads it creates afterwards inherit the mask.</summary>
    public static void PinCurrentThread(int cpu)
    {
        ulong mask = 1UL << cpu;
        if (SchedSetAffinity(0, sizeof(ulong), &mask) != 0)
            throw new InvalidOperationException($"sched_setaffinity failed: {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Lets the calling thread run on every CPU again.</summary>
    public static void UnpinCurrentThread()
    {
        ulong mask = Environment.ProcessorCount >= 64 ? ulong.MaxValue : (1UL << Environment.ProcessorCount) - 1;
        SchedSetAffinity(0, sizeof(ulong), &mask);
    }

    /// <summary>One store into a page, from a method with no loop: the shape of an application's first touch.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Touch(byte* address) => *address = 1;
}
