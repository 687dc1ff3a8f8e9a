using BenchmarkDotNet.Attributes;

namespace CdmUserMem.Benchmarks.Suites;

/// <summary>
/// Migrations of 4 KiB, 64 KiB and 2 MiB, contiguous or scattered (every other page, moved by one batched
/// call), host→device and back, synchronous and asynchronous, against the bare primitive sequence.
/// Each invocation moves a different slot, so every migration starts from the same state.
/// </summary>
[Config(typeof(SuiteConfig))]
[InvocationCount(Slots)]
public class MigrationBenchmarks
{
    private const int Slots = 16;
    private MemorySystem _system = null!;
    private MemoryNode _device = null!;
    private Region _region = null!;
    private nint _bare;
    private int _slot;

    [Params(4096UL, 65536UL, 2097152UL)]
    public ulong Bytes { get; set; }

    [Params(false, true)]
    public bool Scattered { get; set; }

    /// <summary>Each slot spans twice the moved bytes when scattered: the other pages already sit on the device.</summary>
    private ulong Span => Scattered ? 2 * Bytes : Bytes;

    private ulong SlotOffset(int slot) => (ulong)slot * 2 * Bytes;

    [GlobalSetup]
    public void GlobalSetup()
    {
        ulong size = Slots * 2 * Bytes;
        // Scattered 2 MiB slots hold ~16k alternating pieces: more than the default budget, far below max_map_count.
        _system = MemorySystem.Create(new MemorySystemOptions { MappingBudget = 24576 });
        _device = _system.AddCoherentDeviceNode("bench-device", size);
        _region = _system.Reserve(size);
        _region.Prefault(0, size);
    }

    [GlobalCleanup]
    public void GlobalCleanup() => _system.Dispose();

    /// <summary>Everything on the host, then for scattered slots every odd page on the device.</summary>
    private void Layout(MemoryNode home, MemoryNode away)
    {
        _slot = 0;
        _region.Migrate(0, _region.Length, home);
        if (!Scattered) return;
        for (int s = 0; s < Slots; s++)
            for (ulong p = Region.PageSize; p < Span; p += 2 * Region.PageSize)
                _region.Migrate(SlotOffset(s) + p, Region.PageSize, away);
    }

    [IterationSetup(Targets = new[] { nameof(HostToDevice), nameof(HostToDeviceAsync) })]
    public void OnHost() => Layout(_system.Host, _device);

    [IterationSetup(Targets = new[] { nameof(DeviceToHost) })]
    public void OnDevice() => Layout(_device, _system.Host);

    [IterationSetup(Targets = new[] { nameof(BarePrimitiveSequence) })]
    public void BareSetup()
    {
        _slot = 0;
        if (_bare != 0) Baseline.MigrationDestroy(_bare);
        _bare = Baseline.MigrationCreate(Slots * 2 * Bytes);
    }

    [Benchmark]
    public MigrationResult HostToDevice() => _region.Migrate(SlotOffset(_slot++), Span, _device);

    [Benchmark]
    public MigrationResult HostToDeviceAsync() => _region.MigrateAsync(SlotOffset(_slot++), Span, _device).GetAwaiter().GetResult();

    [Benchmark]
    public MigrationResult DeviceToHost() => _region.Migrate(SlotOffset(_slot++), Span, _system.Host);

    /// <summary>Write-protect, copy, MAP_FIXED, re-register, wake, per piece (per page when scattered).</summary>
    [Benchmark(Baseline = true)]
    public int BarePrimitiveSequence()
    {
        ulong slot = SlotOffset(_slot++);
        if (!Scattered) return Baseline.MigrationMove(_bare, slot, Bytes);
        int rc = 0;
        for (ulong p = 0; p < Span; p += 2 * Region.PageSize) rc |= Baseline.MigrationMove(_bare, slot + p, Region.PageSize);
        return rc;
    }
}
