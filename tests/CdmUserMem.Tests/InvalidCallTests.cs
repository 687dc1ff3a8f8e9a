using CdmUserMem;
using CdmUserMem.Interop;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>Every bad call throws a specific exception and leaves data, residency and accounting as they were.</summary>
public sealed class InvalidCallTests : IDisposable
{
    private readonly MemorySystem _system;
    private readonly MemoryNode _device;
    private readonly Region _region;

    public InvalidCallTests()
    {
        (_system, _device) = Create(deviceBytes: MiB);
        _region = _system.Reserve(4 * MiB);
        Fill(_region, 0, 4 * MiB, seed: 9);
        _region.Migrate(0, 512 * 1024, _device);
    }

    public void Dispose() => _system.Dispose();

    private (IReadOnlyList<ResidencyRun>, NodeUsage, MemoryStatistics, ulong) Snapshot() =>
        (_region.GetResidency(0, _region.Length), _device.GetUsage(), _system.GetStatistics(), _region.MappingCount);

    private void AssertUnchanged((IReadOnlyList<ResidencyRun> Runs, NodeUsage Usage, MemoryStatistics Stats, ulong Maps) before)
    {
        var after = Snapshot();
        Assert.Equal(before.Runs, after.Item1);
        Assert.Equal(before.Usage, after.Item2);
        Assert.Equal(before.Stats.PagesMigrated, after.Item3.PagesMigrated);
        Assert.Equal(before.Stats.MappingsInUse, after.Item3.MappingsInUse);
        Assert.Equal(before.Maps, after.Item4);
        Assert.Null(FirstMismatch(_region, 0, 4 * MiB, seed: 9));
    }

    public static TheoryData<ulong, ulong, Type> BadRanges => new()
    {
        { 1, Page, typeof(ArgumentException) },                          // unaligned offset
        { 0, Page + 1, typeof(ArgumentException) },                      // unaligned length
        { 0, 0, typeof(ArgumentException) },                             // empty
        { 4 * MiB, Page, typeof(ArgumentOutOfRangeException) },          // starts at the end
        { 4 * MiB - Page, 2 * Page, typeof(ArgumentOutOfRangeException) }, // runs past the end
        { ulong.MaxValue - Page + 1, 2 * Page, typeof(ArgumentOutOfRangeException) }, // offset + length overflows
    };

    [Theory]
    [MemberData(nameof(BadRanges))]
    public void Bad_ranges_throw_and_change_nothing(ulong offset, ulong length, Type expected)
    {
        var before = Snapshot();
        Assert.Throws(expected, () => _region.Migrate(offset, length, _device));
        Assert.Throws(expected, () => _region.Prefault(offset, length));
        Assert.Throws(expected, () => _region.GetResidency(offset, length));
        Assert.ThrowsAny<ArgumentException>(() => _region.MigrateAsync(offset, length, _device).GetAwaiter().GetResult());
        AssertUnchanged(before);
    }

    [Fact]
    public void Spans_outside_the_region_throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _region.AsSpan<ulong>(4 * MiB - 8, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => _region.AsSpan(ulong.MaxValue, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _region.NodeOf(4 * MiB));
    }

    [Fact]
    public void A_node_of_another_system_or_an_unknown_name_is_refused()
    {
        var (other, otherDevice) = Create(deviceBytes: MiB);
        using var _ = other;
        var before = Snapshot();
        var e = Assert.Throws<ArgumentException>(() => _region.Migrate(0, MiB, otherDevice));
        Assert.Contains("another memory system", e.Message);
        Assert.Throws<ArgumentException>(() => _system.Reserve(MiB, new RegionOptions { Placement = otherDevice }));
        Assert.Contains("dev0", Assert.Throws<ArgumentException>(() => _system.GetNode("gpu7")).Message);
        AssertUnchanged(before);
    }

    [Fact]
    public void Exhausted_capacity_with_RequireCapacity_throws_before_moving_anything()
    {
        var before = Snapshot();
        var e = Assert.Throws<DeviceCapacityExhaustedException>(() =>
            _region.Migrate(0, 4 * MiB, _device, new MigrationOptions { RequireCapacity = true }));
        Assert.Contains("nothing was moved", e.Message);
        AssertUnchanged(before);
        // Without it, the pages that fit move and the rest report NoCapacity.
        var partial = _region.Migrate(MiB, 3 * MiB, _device);
        Assert.Equal(MiB / Page - 128, partial.PagesMigrated);
        Assert.Throws<DeviceCapacityExhaustedException>(() => partial.ThrowIfIncomplete());
        Assert.Null(FirstMismatch(_region, 0, 4 * MiB, seed: 9));
    }

    [Fact]
    public void Bad_node_and_region_arguments_throw()
    {
        var before = Snapshot();
        Assert.Throws<ArgumentException>(() => _system.AddCoherentDeviceNode("x", 0));
        Assert.Throws<ArgumentException>(() => _system.AddCoherentDeviceNode("x", Page + 1));
        Assert.Throws<ArgumentException>(() => _system.AddCoherentDeviceNode("dev0", MiB));
        Assert.Throws<ArgumentOutOfRangeException>(() => _system.AddCoherentDeviceNode("x", MiB, distance: 5));
        Assert.Throws<ArgumentException>(() => _system.Reserve(0));
        Assert.Throws<ArgumentException>(() => _system.Reserve(Page - 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _system.Reserve(MiB, new RegionOptions { FaultAroundPages = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => _region.Migrate(0, MiB, _device, new MigrationOptions { BatchPages = 0 }));
        Assert.Throws<InsufficientMemoryException>(() => _system.AddCoherentDeviceNode("huge", 1UL << 46));
        Assert.Equal(2, _system.Nodes.Count);
        AssertUnchanged(before);
    }

    [Fact]
    public void Disposed_objects_throw_ObjectDisposedException()
    {
        var (system, device) = Create(deviceBytes: MiB);
        var region = system.Reserve(MiB);
        region.Dispose();
        region.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => region.Migrate(0, MiB, device));
        Assert.Throws<ObjectDisposedException>(() => region.AsSpan(0, 1));
        Assert.Throws<ObjectDisposedException>(() => region.Prefault(0, Page));
        Assert.Throws<ObjectDisposedException>(() => region.MappingCount);
        system.Dispose();
        Assert.Throws<ObjectDisposedException>(() => system.Reserve(MiB));
        Assert.Throws<ObjectDisposedException>(() => system.AddCoherentDeviceNode("dev9", MiB));
        Assert.Throws<ObjectDisposedException>(() => system.GetStatistics());
        Assert.Throws<ObjectDisposedException>(() => device.GetUsage());
    }

    [Fact]
    public void Missing_kernel_support_is_reported_with_what_to_do()
    {
        // The real refusal is exercised by the unprivileged test; this checks the messages for the cases a
        // test machine cannot produce (no CONFIG_USERFAULTFD, a pre-6.8 kernel without UFFDIO_MOVE).
        var none = NativeErrors.ForEngineCreate(CdmEngine.ErrorNoUserfaultfd, 0);
        Assert.IsType<UserfaultfdUnavailableException>(none);
        Assert.Contains("seccomp", none.Message);
        var old = NativeErrors.ForEngineCreate(CdmEngine.ErrorMissingFeature, CdmEngine.FeatureMove);
        Assert.Contains("UFFD_FEATURE_MOVE", old.Message);
        Assert.Contains("6.8", old.Message);
        Assert.IsType<MappingBudgetExceededException>(NativeErrors.ForErrno(CdmEngine.ErrorMappingBudget, "x"));
    }
}
