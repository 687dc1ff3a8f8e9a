using BenchmarkDotNet.Attributes;

namespace CdmUserMem.Benchmarks.Suites;

/// <summary>Sequential first-touch sweeps of a fresh 16 MiB range: per page, against the kernel's own first touch.</summary>
[Config(typeof(SuiteConfig))]
[InvocationCount(1)]
public unsafe class FirstTouchBenchmarks
{
    private const ulong Size = 16UL << 20;
    private const int Pages = (int)(Size / Region.PageSize);
    private MemorySystem _system = null!;
    private MemoryNode _device = null!;
    private Region? _region;
    private byte* _kernel;
    private int _kernelFd;

    [Params(1u, 16u, 64u)]
    public uint FaultAround { get; set; }

    [Params(false, true)]
    public bool OnDevice { get; set; }

    [GlobalSetup]
    public void GlobalSetup()
    {
        _system = MemorySystem.Create();
        _device = _system.AddCoherentDeviceNode("bench-device", Size);
    }

    [GlobalCleanup]
    public void GlobalCleanup() => _system.Dispose();

    [IterationSetup(Targets = new[] { nameof(CdmUserMemSweep) })]
    public void ReserveRegion() =>
        _region = _system.Reserve(Size, new RegionOptions { FaultAroundPages = FaultAround, Placement = OnDevice ? _device : _system.Host });

    [IterationCleanup(Targets = new[] { nameof(CdmUserMemSweep) })]
    public void ReleaseRegion() => _region!.Dispose();

    [IterationSetup(Targets = new[] { nameof(KernelAnonymousSweep) })]
    public void MapAnonymous() => _kernel = Baseline.MapFresh(Size, memfd: false, out _kernelFd);

    [IterationSetup(Targets = new[] { nameof(KernelMemfdSweep) })]
    public void MapMemfd() => _kernel = Baseline.MapFresh(Size, memfd: true, out _kernelFd);

    [IterationCleanup(Targets = new[] { nameof(KernelAnonymousSweep), nameof(KernelMemfdSweep) })]
    public void Unmap() => Baseline.Unmap(_kernel, Size, _kernelFd);

    [Benchmark(OperationsPerInvoke = Pages)]
    public void CdmUserMemSweep() => Sweep((byte*)_region!.Pointer);

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public void KernelAnonymousSweep() => Sweep(_kernel);

    [Benchmark(OperationsPerInvoke = Pages)]
    public void KernelMemfdSweep() => Sweep(_kernel);

    private static void Sweep(byte* area)
    {
        for (ulong o = 0; o < Size; o += Region.PageSize) Baseline.Touch(area + o);
    }
}
