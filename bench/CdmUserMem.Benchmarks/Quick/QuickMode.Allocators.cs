using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    private const string Jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    private const string Mimalloc = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2";

    /// <summary>
    /// The allocator workloads (bench/native/allocbench) once per allocator, chosen by LD_PRELOAD: glibc
    /// (none), jemalloc, mimalloc and CdmUserMem's libcdmmalloc.so; runs alternate, three each, medians.
    /// Then NativeHeap against NativeMemory from C#.
    /// </summary>
    private static List<Figure> Allocators()
    {
        var figures = new List<Figure>();
        string bench = Path.Combine(AppContext.BaseDirectory, "allocbench");
        string cdm = Path.Combine(AppContext.BaseDirectory, "libcdmmalloc.so");
        var allocators = new List<(string Name, string? Preload)> { ("glibc", null), ("CdmUserMem", cdm) };
        foreach (var (name, path) in new[] { ("jemalloc", Jemalloc), ("mimalloc", Mimalloc) })
        {
            if (File.Exists(path)) allocators.Add((name, path));
            else Console.WriteLine($"  {name} not installed ({path}): apt-get install libjemalloc2 libmimalloc2.0");
        }
        const int Repetitions = 3;
        var results = new Dictionary<(string, string), double>();
        foreach (string workload in new[] { "small", "xthread", "churn", "realloc", "large", "pareto" })
        {
            var samples = allocators.ToDictionary(a => a.Name, _ => new List<double>());
            for (int rep = 0; rep < Repetitions; rep++)
                foreach (var a in allocators) samples[a.Name].Add(RunAllocBench(bench, workload, a.Preload));
            foreach (var a in allocators) results[(workload, a.Name)] = Sampler.Median(samples[a.Name]);
        }
        double Ours(string w) => results[(w, "CdmUserMem")];
        bool Has(string a) => allocators.Any(x => x.Name == a);
        void Versus(string w, string figure, string unit, string baseline, bool higher, double? target)
        {
            if (Has(baseline))
                figures.Add(new Figure(figure, unit, Ours(w), baseline, results[(w, baseline)], higher, target, Repetitions));
        }
        void VersusBest(string w, string figure, string unit, bool higher, double? target)
        {
            var best = allocators.Where(a => a.Name != "CdmUserMem").OrderBy(a => higher ? -results[(w, a.Name)] : results[(w, a.Name)]).First();
            figures.Add(new Figure(figure, unit, Ours(w), $"best of glibc, jemalloc, mimalloc ({best.Name})", results[(w, best.Name)], higher, target, Repetitions));
        }
        Versus("small", "small malloc+free, 16-256 B", "ns", "mimalloc", false, 1.2);
        Versus("small", "small malloc+free, 16-256 B", "ns", "glibc", false, null);
        Versus("small", "small malloc+free, 16-256 B", "ns", "jemalloc", false, null);
        Versus("xthread", "cross-thread frees, producer → consumer", "objects/s", "glibc", true, 1.0);
        VersusBest("xthread", "cross-thread frees, producer → consumer", "objects/s", true, null);
        Versus("churn", "thread churn, 2000 small pairs a thread", "threads/s", "glibc", true, null);
        Versus("realloc", "realloc growth 16 B → 32 MiB (×1.3)", "s", "glibc", false, null);
        Versus("large", "5-25 MiB blocks malloc + zero-fill + free", "s", "glibc", false, 1.2);
        Versus("large", "5-25 MiB blocks malloc + zero-fill + free", "s", "jemalloc", false, null);
        Versus("large", "5-25 MiB blocks malloc + zero-fill + free", "s", "mimalloc", false, null);
        VersusBest("pareto", "Pareto mix of sizes, 20000 live", "pairs/s", true, 0.8);
        figures.Add(ManagedHeapFigure());
        return figures;
    }

    private static double RunAllocBench(string bench, string workload, string? preload)
    {
        var start = new ProcessStartInfo(bench, workload) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (preload is not null) start.Environment["LD_PRELOAD"] = preload;
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string errors = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)) || process.ExitCode != 0)
            throw new InvalidOperationException($"allocbench {workload} under {preload ?? "glibc"} failed: {errors}");
        return double.Parse(output.Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>NativeHeap.Allocate + Free from C#, against NativeMemory.Alloc + Free: the .NET surface.</summary>
    private static Figure ManagedHeapFigure()
    {
        const int Rounds = 2_000_000, Live = 64, Repetitions = 5;
        using var system = MemorySystem.Create();
        using var heap = system.CreateHeap();
        var ring = new nint[Live];
        double Run(Func<nuint, nint> allocate, Action<nint> free)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < Rounds; i++)
            {
                int k = i & (Live - 1);
                if (ring[k] != 0) free(ring[k]);
                ring[k] = allocate((nuint)(16 + ((i * 37) & 15) * 16));
            }
            double ns = Stopwatch.GetElapsedTime(start).TotalNanoseconds / Rounds;
            for (int k = 0; k < Live; k++) { if (ring[k] != 0) free(ring[k]); ring[k] = 0; }
            return ns;
        }
        var ours = new List<double>();
        var native = new List<double>();
        for (int rep = 0; rep < Repetitions; rep++)
        {
            ours.Add(Run(n => (nint)heap.Allocate(n), p => heap.Free((void*)p)));
            native.Add(Run(n => (nint)NativeMemory.Alloc(n), p => NativeMemory.Free((void*)p)));
        }
        return new Figure("NativeHeap.Allocate + Free from C#, 16-256 B", "ns", Sampler.Median(ours), "NativeMemory.Alloc + Free (glibc)",
            Sampler.Median(native), HigherIsBetter: false, TargetRatio: null, Repetitions);
    }
}
