using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace CdmUserMem.Benchmarks.Suites;

/// <summary>
/// In-process short runs: the native engine and baselines load from beside this build, and every suite
/// finishes in minutes on a 2-vCPU VM. Ratios come from the [Benchmark(Baseline = true)] of each class.
/// </summary>
public sealed class SuiteConfig : ManualConfig
{
    public SuiteConfig()
    {
        AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance));
        WithOption(ConfigOptions.JoinSummary, false);
    }
}
