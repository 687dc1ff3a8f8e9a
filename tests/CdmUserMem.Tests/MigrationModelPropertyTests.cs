using CdmUserMem;
using FsCheck;
using FsCheck.Fluent;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>
/// Random sequences of writes and migrations against a plain model: after every step each page holds what
/// the model says, lives where the model says, and the device's usage equals the model's count.
/// </summary>
public class MigrationModelPropertyTests
{
    private const int Pages = 64;

    private sealed record Step(int Kind, int First, int Count, int Node, byte Value);

    private static Gen<Step> Steps =>
        from kind in Gen.Choose(0, 2)
        from first in Gen.Choose(0, Pages - 1)
        from count in Gen.Choose(1, Pages - first)
        from node in Gen.Choose(0, 2)
        from value in Gen.Choose(1, 255)
        select new Step(kind, first, count, node, (byte)value);

    [Fact]
    public void Residency_data_and_capacity_follow_the_model()
    {
        var (system, dev0) = Create(deviceBytes: 40 * Page);
        using var _ = system;
        var dev1 = system.AddCoherentDeviceNode("dev1", 24 * Page);
        MemoryNode[] nodes = { system.Host, dev0, dev1 };

        Prop.ForAll(Gen.ListOf(Steps).Select(s => s.ToArray()).ToArbitrary(), steps =>
        {
            using var region = system.Reserve(Pages * Page, new RegionOptions { FaultAroundPages = 4, ReadaheadPages = 0 });
            var value = new byte[Pages];
            var node = new int?[Pages];
            var placed = new int[Pages]; // where an untouched page will land
            ulong[] capacity = { 0, dev0.CapacityBytes / Page, dev1.CapacityBytes / Page };

            // The engine resolves the faulting page's 4-page window: runs of untouched pages with one
            // placement, each on its device while frames last, the rest of the run on the host.
            void FirstTouch(int page)
            {
                int w = page - page % 4;
                for (int p = w; p < w + 4;)
                {
                    if (node[p] is not null) { p++; continue; }
                    int q = p;
                    while (q < w + 4 && node[q] is null && placed[q] == placed[p]) q++;
                    int target = placed[p];
                    long free = target == 0 ? 0 : (long)capacity[target] - node.Count(n => n == target);
                    for (int k = p; k < q; k++) node[k] = target != 0 && k - p < free ? target : 0;
                    p = q;
                }
            }
            foreach (var step in steps)
            {
                if (step.Kind < 2)
                {
                    for (int p = step.First; p < step.First + step.Count; p++)
                    {
                        if (node[p] is null) FirstTouch(p);
                        region.AsSpan((ulong)p * Page, (int)Page).Fill(step.Value);
                        value[p] = step.Value;
                    }
                }
                else
                {
                    // Expected, page by page: untouched pages are placed, pages on the target stay, others
                    // move while the target has frames (allocated before any source frame is freed).
                    var expected = new MigrationOutcome[Pages];
                    long free = step.Node == 0 ? long.MaxValue : (long)capacity[step.Node] - node.Count(n => n == step.Node);
                    for (int p = step.First; p < step.First + step.Count; p++)
                    {
                        if (node[p] is null) { expected[p] = MigrationOutcome.Placed; placed[p] = step.Node; }
                        else if (node[p] == step.Node) expected[p] = MigrationOutcome.AlreadyThere;
                        else if (free-- > 0) { expected[p] = MigrationOutcome.Migrated; node[p] = step.Node; }
                        else expected[p] = MigrationOutcome.NoCapacity;
                    }
                    var result = region.Migrate((ulong)step.First * Page, (ulong)step.Count * Page, nodes[step.Node]);
                    foreach (var run in result.Runs)
                        for (ulong o = run.Offset; o < run.Offset + run.Length; o += Page)
                            if (run.Outcome != expected[o / Page])
                                throw new InvalidOperationException($"{step}: page {o / Page} {run.Outcome}, model {expected[o / Page]}; {result}");
                    if (result.Runs.Sum(r => (long)r.Length) != step.Count * (long)Page) return false;
                }
                for (int p = 0; p < Pages; p++)
                {
                    if (region.NodeOf((ulong)p * Page)?.Id != node[p])
                        throw new InvalidOperationException($"after {step}: page {p} on {region.NodeOf((ulong)p * Page)?.Id}, model {node[p]}");
                    if (node[p] is not null && region.AsSpan((ulong)p * Page, (int)Page).IndexOfAnyExcept(value[p]) >= 0)
                        throw new InvalidOperationException($"after {step}: page {p} lost its data");
                }
                if (dev0.GetUsage().UsedBytes != (ulong)node.Count(n => n == 1) * Page)
                    throw new InvalidOperationException($"after {step}: dev0 uses {dev0.GetUsage().UsedBytes / Page}, model {node.Count(n => n == 1)}");
                if (dev1.GetUsage().UsedBytes != (ulong)node.Count(n => n == 2) * Page)
                    throw new InvalidOperationException($"after {step}: dev1 uses {dev1.GetUsage().UsedBytes / Page}, model {node.Count(n => n == 2)}");
            }
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(60));
    }
}
