using System.Runtime.InteropServices;

namespace CdmUserMem.Tests;

/// <summary>System calls the tests make on region memory as a real program would, and the native probes.</summary>
internal static unsafe partial class TestNative
{
    public const int ORdOnly = 0, OWrOnly = 1, ORdWr = 2, OCreat = 0x40, OTrunc = 0x200, ODirect = 0x4000, OCloexec = 0x80000;
    public const int MadvDontNeed = 4, MadvDontFork = 10, MadvDontNeedLocked = 24;
    public const int ProtRead = 1, ProtWrite = 2;
    public const int Efault = 14;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "pread", SetLastError = true)]
    public static partial nint Pread(int fd, void* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint Pwrite(int fd, void* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "close")]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "process_vm_writev", SetLastError = true)]
    public static partial nint ProcessVmWritev(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint address, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    public static partial int Mlock(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    public static partial int Munlock(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint address, nuint length, int protection);

    /// <summary>Forks; the child checks its copy of [base, +pages) and overwrites it with value (fork_probe.c).</summary>
    [LibraryImport("cdmtestnative", EntryPoint = "cdmtest_fork_write")]
    public static partial int ForkWrite(nint baseAddress, ulong pages, ulong touchedPages, byte value, out int childExit);

    /// <summary>Forks a child that holds a copy-on-write copy of everything until <see cref="Release"/>.</summary>
    [LibraryImport("cdmtestnative", EntryPoint = "cdmtest_fork_hold")]
    public static partial int ForkHold(out int holdFd);

    [LibraryImport("cdmtestnative", EntryPoint = "cdmtest_release")]
    public static partial int Release(int holdFd, int pid);

    /// <summary>Forks; the child calls fn(arg, 0, 1) and exits 0 if it returned expected (fork_probe.c).</summary>
    [LibraryImport("cdmtestnative", EntryPoint = "cdmtest_fork_call")]
    public static partial int ForkCall(nint fn, nint arg, int expected, out int childExit);

    public static void Check(bool ok, string what)
    {
        if (!ok) throw new InvalidOperationException($"{what} failed: errno {Marshal.GetLastPInvokeError()}");
    }
}
