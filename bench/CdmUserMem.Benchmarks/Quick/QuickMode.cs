using System.Diagnostics;
using System.Runtime.InteropServices;

namespace CdmUserMem.Benchmarks.Quick;

/// <summary>
/// The reduced set: every target figure with its baseline measured in the same process and run, printed as a
/// table and written to bench/results. Arenas and host memory are warmed first (on a VM, memory the host has
/// not backed yet costs ~8x more on first touch).
/// </summary>
internal static unsafe partial class QuickMode
{
    private const ulong MiB = 1UL << 20;
    private const ulong Page = Region.PageSize;

    public static int Run(string resultsDirectory)
    {
        var clock = Stopwatch.StartNew();
        string machine = $"{Environment.ProcessorCount} CPUs, {RuntimeInformation.OSDescription}, copy engine {CopyEngine.InstructionSet}";
        Console.WriteLine($"CdmUserMem quick benchmarks on {machine}");
        Console.Write("warming 2 GiB of host memory... ");
        Console.WriteLine($"{Sampler.Time(() => WarmHostMemory(2048 * MiB)):F1} s");

        var figures = new List<Figure>();
        var distributions = new List<Distribution>();
        figures.AddRange(SequentialSweep());
        figures.AddRange(Migration2MiB());
        figures.AddRange(ScatteredMigration());
        figures.AddRange(CopyEngineFigures());
        figures.AddRange(MetricsOverhead(distributions));
        figures.AddRange(Allocators());
        figures.AddRange(PolicyFigures());
        var sizes = MigrationBySize();
        // Last and on a thread of its own: it pins CPUs, and threads created meanwhile inherit the mask.
        var latency = new List<Figure>();
        var pinned = new Thread(() => latency.AddRange(FirstTouchLatency(distributions)));
        pinned.Start();
        pinned.Join();
        figures.AddRange(latency);

        Report.Print(figures, distributions, sizes, Console.Out);
        Report.Write(figures, distributions, sizes, resultsDirectory, machine);
        var plots = Plots.Write(resultsDirectory, figures, distributions, sizes);
        Console.WriteLine($"\nwrote {Path.Combine(resultsDirectory, "quick.json")}, quick.md and {string.Join(", ", plots.Select(Path.GetFileName))} " +
                          $"in {clock.Elapsed.TotalSeconds:F0} s");
        return 0;
    }

    /// <summary>Runs one group of figures (by name) and prints it: for working on one figure, not for reference runs.</summary>
    public static int RunOnly(string group)
    {
        var groups = new Dictionary<string, Func<List<Figure>>>
        {
            ["policy"] = PolicyFigures,
            ["allocators"] = Allocators,
            ["migration"] = Migration2MiB,
            ["sweep"] = SequentialSweep,
            ["observability"] = () => MetricsOverhead([]),
        };
        if (!groups.TryGetValue(group, out var run))
        {
            Console.Error.WriteLine($"unknown group '{group}'; groups: {string.Join(", ", groups.Keys)}");
            return 2;
        }
        WarmHostMemory(1024 * MiB);
        Report.Print(run(), [], [], Console.Out);
        return 0;
    }

    /// <summary>Touches then releases fresh anonymous memory so the hypervisor backs the guest's free pages.</summary>
    private static void WarmHostMemory(ulong size)
    {
        byte* p = Baseline.MapFresh(size, memfd: false, out int fd);
        for (ulong o = 0; o < size; o += Page) p[o] = 1;
        Baseline.Unmap(p, size, fd);
    }
}
