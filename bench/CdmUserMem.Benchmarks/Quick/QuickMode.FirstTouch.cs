using System.Diagnostics;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>
    /// One first-touch fault, resolver idle in poll: ours vs a bare native resolver placed the same way. The
    /// toucher runs on CPU 0; each resolver thread is created pinned to the CPU named, so both are placed
    /// alike (on a VM a cross-CPU wake-up alone costs tens of microseconds).
    /// </summary>
    private static List<Figure> FirstTouchLatency(List<Distribution> distributions)
    {
        var figures = new List<Figure>();
        foreach (int resolverCpu in Environment.ProcessorCount > 1 ? new[] { 0, 1 } : new[] { 0 })
        {
            const int Rounds = 5, TouchesPerRound = 400;
            const ulong Size = 64 * MiB;
            var ours = new List<double>();
            var bare = new List<double>();
            try
            {
                for (int round = 0; round < Rounds; round++)
                {
                    Baseline.PinCurrentThread(resolverCpu);
                    var system = MemorySystem.Create();
                    nint resolver = Baseline.ResolverCreate(Size, 1);
                    Baseline.PinCurrentThread(0);
                    using (system)
                    using (var region = system.Reserve(Size, new RegionOptions { FaultAroundPages = 1 }))
                        TouchLatencies((byte*)region.Pointer, TouchesPerRound, ours);
                    TouchLatencies(Baseline.ResolverBase(resolver), TouchesPerRound, bare);
                    Baseline.ResolverDestroy(resolver);
                }
            }
            finally
            {
                Baseline.UnpinCurrentThread();
            }
            string placement = resolverCpu == 0 ? "resolver on the toucher's CPU" : "resolver on another CPU";
            distributions.Add(Distribution.FromSamples($"single-page first touch seen by the toucher, {placement}", ours));
            figures.Add(new Figure($"single-page first-touch fault latency, {placement}", "µs", Sampler.Median(ours),
                "bare native uffd resolver", Sampler.Median(bare), HigherIsBetter: false, TargetRatio: 1.2, ours.Count));
        }
        return figures;
    }

    private static void TouchLatencies(byte* area, int touches, List<double> samples)
    {
        for (int i = 0; i < touches; i++)
        {
            // Spread the touches so none shares a page table page's warm cache lines with the last.
            byte* page = area + (ulong)i * 16 * Page;
            long start = Stopwatch.GetTimestamp();
            Baseline.Touch(page);
            samples.Add(Sampler.Microseconds(start, Stopwatch.GetTimestamp()));
        }
    }

    /// <summary>Pages per second of a sequential first-touch sweep, against the kernel's own first touch.</summary>
    private static List<Figure> SequentialSweep()
    {
        var figures = new List<Figure>();
        const int Repetitions = 5;
        const ulong Size = 64 * MiB;
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("sweep-device", Size);
        double Kernel(bool memfd) => Sampler.Median(Enumerable.Range(0, Repetitions).Select(_ =>
        {
            byte* p = Baseline.MapFresh(Size, memfd, out int fd);
            double seconds = Sampler.Time(() => Sweep(p, Size));
            Baseline.Unmap(p, Size, fd);
            return Size / Page / seconds;
        }));
        double Ours(uint faultAround, MemoryNode placement) => Sampler.Median(Enumerable.Range(0, Repetitions).Select(_ =>
        {
            using var region = system.Reserve(Size, new RegionOptions { FaultAroundPages = faultAround, Placement = placement });
            return Size / Page / Sampler.Time(() => Sweep((byte*)region.Pointer, Size));
        }));

        double anonymous = Kernel(memfd: false), memfd = Kernel(memfd: true);
        foreach (uint fa in new uint[] { 1, 16, 64 })
        {
            double ours = Ours(fa, system.Host);
            figures.Add(new Figure($"sequential sweep, fault-around {fa}, host", "pages/s", ours, "kernel anonymous first touch", anonymous,
                HigherIsBetter: true, TargetRatio: fa == 64 ? 1.5 : null, Repetitions));
            if (fa == 64)
                figures.Add(new Figure("sequential sweep, fault-around 64, host", "pages/s", ours, "kernel memfd MAP_SHARED first touch", memfd,
                    HigherIsBetter: true, TargetRatio: null, Repetitions));
        }
        figures.Add(new Figure("sequential sweep, fault-around 64, device", "pages/s", Ours(64, device), "kernel anonymous first touch", anonymous,
            HigherIsBetter: true, TargetRatio: null, Repetitions));
        return figures;
    }

    private static void Sweep(byte* area, ulong size)
    {
        for (ulong o = 0; o < size; o += Page) Baseline.Touch(area + o);
    }
}
