using System.Runtime.InteropServices;
using CdmUserMem;
using Xunit.Abstractions;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>
/// Writers that are not CPU stores: the kernel writing through pinned pages (O_DIRECT reads,
/// process_vm_writev) and system calls writing into region memory, while the pages keep migrating.
/// </summary>
public unsafe class KernelWriterTests(ITestOutputHelper output)
{
    private const ulong Chunk = 64 * 1024;

    /// <summary>A file of 4 MiB whose every 8-byte word says where it is and which generation wrote it.</summary>
    private static string PatternFile(string name, int generations)
    {
        // Beside the test binaries, on the disk: /tmp may be a tmpfs, where O_DIRECT pins nothing.
        string path = Path.Combine(AppContext.BaseDirectory, $"cdm-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        var words = new ulong[4 * MiB / 8];
        using var file = File.Create(path);
        for (int g = 0; g < generations; g++)
        {
            for (int i = 0; i < words.Length; i++) words[i] = ((ulong)g << 48) | (uint)i;
            file.Write(MemoryMarshal.AsBytes(words.AsSpan()));
        }
        return path;
    }

    private static bool HoldsFileWords(byte* at, ulong fileOffset, ulong length)
    {
        var words = (ulong*)at;
        ulong perGeneration = 4 * MiB / 8, first = fileOffset / 8;
        for (ulong i = 0; i < length / 8; i++)
        {
            ulong index = first + i;
            if (words[i] != (((index / perGeneration) << 48) | (index % perGeneration))) return false;
        }
        return true;
    }

    /// <summary>Migrates a region between host and device until stopped, recording every outcome.</summary>
    private static Thread Migrator(Region region, MemoryNode device, MemoryNode host, CancellationToken stop, long[] outcomes, Action<Exception> fail)
    {
        var thread = new Thread(() =>
        {
            try
            {
                for (int i = 0; !stop.IsCancellationRequested; i++)
                {
                    var result = region.Migrate(0, region.Length, i % 2 == 0 ? device : host);
                    foreach (MigrationOutcome o in Enum.GetValues<MigrationOutcome>())
                        Interlocked.Add(ref outcomes[(int)o], (long)result.PagesWith(o));
                }
            }
            catch (Exception e) { fail(e); }
        }) { IsBackground = true };
        thread.Start();
        return thread;
    }

    [Fact]
    public void O_DIRECT_reads_into_migrating_pages_lose_nothing_and_pinned_pages_are_refused()
    {
        var (system, device) = Create(deviceBytes: 16 * MiB);
        using var _ = system;
        using var region = system.Reserve(2 * MiB);
        using var bystander = system.Reserve(2 * MiB);
        region.Prefault(0, region.Length);
        Fill(bystander, 0, bystander.Length, seed: 77);
        string path = PatternFile("odirect", generations: 4);
        int fd = TestNative.Open(path, TestNative.ORdOnly | TestNative.ODirect | TestNative.OCloexec, 0);
        TestNative.Check(fd >= 0, "open O_DIRECT");
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var outcomes = new long[16];
        var threads = new[]
        {
            Migrator(region, device, system.Host, stop.Token, outcomes, e => failure ??= e),
            Migrator(bystander, device, system.Host, stop.Token, new long[16], e => failure ??= e),
        };
        int reads = 0;
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(4);
            var random = new Random(3);
            while (DateTime.UtcNow < deadline && failure is null)
            {
                ulong at = (ulong)random.Next(0, (int)(region.Length / Chunk)) * Chunk;
                ulong fileOffset = (ulong)random.Next(0, (int)(16 * MiB / Chunk)) * Chunk;
                byte* target = (byte*)region.Pointer + at;
                nint n = TestNative.Pread(fd, target, (nuint)Chunk, (long)fileOffset);
                TestNative.Check(n == (nint)Chunk, $"O_DIRECT pread #{reads} ({n} bytes)");
                Assert.True(HoldsFileWords(target, fileOffset, Chunk), $"read #{reads} into +{at:x} lost data");
                reads++;
            }
        }
        finally
        {
            stop.Cancel();
            foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(30)));
            TestNative.Close(fd);
            File.Delete(path);
        }
        Assert.Null(failure);
        Assert.Null(FirstMismatch(bystander, 0, bystander.Length, seed: 77));
        var stats = system.GetStatistics();
        output.WriteLine($"{reads} O_DIRECT reads; outcomes: migrated {outcomes[(int)MigrationOutcome.Migrated]}, " +
                         $"pinned {outcomes[(int)MigrationOutcome.Pinned]}; waits on migration {stats.FaultsWaitedOnMigration}");
        Assert.True(reads > 100, $"only {reads} reads");
        Assert.Equal(0, outcomes[(int)MigrationOutcome.Failed]);
        Assert.True(outcomes[(int)MigrationOutcome.Pinned] > 0, "no read ever held a page while a migration tried to move it");
    }

    [Fact]
    public void Process_vm_writev_into_migrating_pages_loses_nothing()
    {
        var (system, device) = Create(deviceBytes: 16 * MiB);
        using var _ = system;
        using var region = system.Reserve(2 * MiB);
        region.Prefault(0, region.Length);
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var outcomes = new long[16];
        var migrator = Migrator(region, device, system.Host, stop.Token, outcomes, e => failure ??= e);
        var source = new ulong[Chunk / 8];
        int writes = 0;
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(3);
            var random = new Random(5);
            while (DateTime.UtcNow < deadline && failure is null)
            {
                ulong at = (ulong)random.Next(0, (int)(region.Length / Chunk)) * Chunk;
                for (int i = 0; i < source.Length; i++) source[i] = ((ulong)(uint)writes << 32) | (uint)i;
                fixed (ulong* s = source)
                {
                    var local = new TestNative.IoVec { Base = s, Length = (nuint)Chunk };
                    var remote = new TestNative.IoVec { Base = (byte*)region.Pointer + at, Length = (nuint)Chunk };
                    nint n = TestNative.ProcessVmWritev(Environment.ProcessId, &local, 1, &remote, 1, 0);
                    TestNative.Check(n == (nint)Chunk, $"process_vm_writev #{writes} ({n} bytes)");
                }
                Assert.True(region.AsSpan<ulong>(at, source.Length).SequenceEqual(source), $"write #{writes} to +{at:x} lost");
                writes++;
            }
        }
        finally
        {
            stop.Cancel();
            Assert.True(migrator.Join(TimeSpan.FromSeconds(30)));
        }
        Assert.Null(failure);
        output.WriteLine($"{writes} process_vm_writev calls; migrated {outcomes[(int)MigrationOutcome.Migrated]}, pinned {outcomes[(int)MigrationOutcome.Pinned]}");
        Assert.True(writes > 100);
        Assert.Equal(0, outcomes[(int)MigrationOutcome.Failed]);
    }

    /// <summary>
    /// UserModeOnly: a system call meeting a page that is not mapped fails with EFAULT. Under a pin lease
    /// the pages stay mapped, so reads into them never fail, while everything else keeps migrating.
    /// </summary>
    [Fact]
    public void In_user_mode_only_a_pinned_range_takes_pread_while_the_rest_migrates()
    {
        var (system, device) = Create(deviceBytes: 16 * MiB, new MemorySystemOptions { UserModeOnly = true });
        using var _ = system;
        Assert.Equal(FaultMode.UserModeOnly, system.FaultMode);
        using var region = system.Reserve(4 * MiB);
        region.Prefault(0, region.Length);
        string path = PatternFile("pread", generations: 1);
        int fd = TestNative.Open(path, TestNative.ORdOnly | TestNative.OCloexec, 0);
        TestNative.Check(fd >= 0, "open");
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var outcomes = new long[16];
        int reads = 0, unpinnedFaults = 0;
        using (var lease = region.Pin(0, MiB))
        {
            var migrator = Migrator(region, device, system.Host, stop.Token, outcomes, e => failure ??= e);
            try
            {
                var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(3);
                var random = new Random(7);
                while (DateTime.UtcNow < deadline && failure is null)
                {
                    ulong at = (ulong)random.Next(0, (int)(MiB / Chunk)) * Chunk, fileOffset = (ulong)random.Next(0, 64) * Chunk;
                    nint n = TestNative.Pread(fd, (byte*)region.Pointer + at, (nuint)Chunk, (long)fileOffset);
                    TestNative.Check(n == (nint)Chunk, $"pread #{reads} into the pinned range ({n} bytes)");
                    Assert.True(HoldsFileWords((byte*)region.Pointer + at, fileOffset, Chunk), $"read #{reads} lost data");
                    reads++;
                    // The same call into the unpinned, migrating part may meet a detached page (counted, not asserted).
                    nint m = TestNative.Pread(fd, (byte*)region.Pointer + 2 * MiB + at, (nuint)Chunk, (long)fileOffset);
                    if (m < 0 && Marshal.GetLastPInvokeError() == TestNative.Efault) unpinnedFaults++;
                }
            }
            finally
            {
                stop.Cancel();
                Assert.True(migrator.Join(TimeSpan.FromSeconds(30)));
                TestNative.Close(fd);
                File.Delete(path);
            }
            Assert.Null(failure);
            Assert.Equal(MiB / Page, (ulong)region.GetResidency(0, MiB).Where(r => r.Node == system.Host).Sum(r => (long)r.Length) / Page);
        }
        output.WriteLine($"{reads} reads into the pinned range, none failed; {unpinnedFaults} EFAULTs into the unpinned range; " +
                         $"pinned outcomes {outcomes[(int)MigrationOutcome.Pinned]}");
        Assert.True(reads > 100);
        Assert.True(outcomes[(int)MigrationOutcome.Pinned] > 0);
        // The lease is gone: the whole region migrates.
        Assert.True(region.Migrate(0, region.Length, device).IsComplete);
    }
}
