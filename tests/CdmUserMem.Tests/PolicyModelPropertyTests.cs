using CdmUserMem;
using FsCheck;
using FsCheck.Fluent;
using Xunit.Abstractions;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

/// <summary>
/// Random topologies (device nodes with random capacities, distances and exclusive flags) and random
/// sequences of first touches, policy changes, migrations, rebalances, pins, unplugs, demotions (pressure's
/// mechanism, run on request so the model can order it), contiguous reservations and an accounting group's
/// limit against a plain model: after every step each page is where the model says, for the reason it says,
/// holds its data, and every node's usage and the group's are the model's counts. Every outcome the model
/// predicts (a throw, a refusal) happens. Compaction picks frames the model does not track: after a
/// reservation the model checks what may have moved (only pages of that node, only to it or down its
/// fallback order, each saying so) and takes the engine's residency from there.
/// </summary>
public class PolicyModelPropertyTests(ITestOutputHelper output)
{
    private const int Pages = 48;

    private sealed record DeviceSpec(int Capacity, int Distance, bool Exclusive, bool Private);

    private sealed record Scenario(DeviceSpec[] Devices, int[] Distances, int Placement, int GroupNode, int GroupLimit, Step[] Steps)
    {
        public override string ToString() =>
            $"devices [{string.Join(", ", Devices.Select(d => $"{d.Capacity}p d{d.Distance}{(d.Exclusive ? " excl" : "")}{(d.Private ? " private" : "")}"))}], " +
            $"placement {Placement}, group limit {GroupLimit} on {GroupNode}, steps: {string.Join("; ", Steps.Select(s => s.ToString()))}";
    }

    private enum Op { Touch, SetPolicy, Migrate, Rebalance, Pin, UnpinAll, Remove, Demote, Reserve, Release }

    private sealed record Step(Op Op, int First, int Count, int Kind, int[] Nodes, int[] Weights, byte Value)
    {
        public override string ToString() => $"{Op}[{First},+{Count}) k{Kind} n[{string.Join(",", Nodes)}] w[{string.Join(",", Weights)}]";
    }

    private static Gen<Step> Steps =>
        from op in Gen.Frequency((5, Gen.Constant(Op.Touch)), (3, Gen.Constant(Op.SetPolicy)), (3, Gen.Constant(Op.Migrate)),
                                 (2, Gen.Constant(Op.Rebalance)), (3, Gen.Constant(Op.Pin)), (1, Gen.Constant(Op.UnpinAll)),
                                 (2, Gen.Constant(Op.Remove)), (2, Gen.Constant(Op.Demote)), (3, Gen.Constant(Op.Reserve)),
                                 (1, Gen.Constant(Op.Release)))
        from first in Gen.Choose(0, Pages - 1)
        from count in Gen.Choose(1, Math.Min(16, Pages - first))
        from kind in Gen.Frequency((3, Gen.Constant((int)MemoryPolicyKind.Bind)), (5, Gen.Choose(0, 5)))
        from nodes in Gen.ListOf(Gen.Frequency((1, Gen.Constant(0)), (4, Gen.Choose(1, 3)))).Select(l => l.Distinct().Take(3).ToArray())
        from weights in Gen.ArrayOf(Gen.Choose(1, 3), 3)
        from value in Gen.Choose(1, 255)
        select new Step(op, first, count, kind, nodes, weights, (byte)value);

    private static Gen<Scenario> Scenarios =>
        from devices in Gen.Choose(1, 3).SelectMany(n => Gen.ArrayOf(
            from capacity in Gen.Choose(2, 20)
            from distance in Gen.Choose(12, 60)
            from exclusive in Gen.Frequency((3, Gen.Constant(false)), (1, Gen.Constant(true)))
            from isPrivate in Gen.Frequency((2, Gen.Constant(false)), (1, Gen.Constant(true)))
            select new DeviceSpec(capacity, distance, exclusive, isPrivate), n))
        from distances in Gen.ArrayOf(Gen.Choose(0, 80), 3) // device pair distances; below 11 keeps the default
        from placement in Gen.Choose(0, 3)
        from groupNode in Gen.Choose(0, 3) // 0: no group
        from groupLimit in Gen.Choose(0, 12)
        from steps in Gen.ListOf(Steps).Select(l => l.Take(40).ToArray())
        select new Scenario(devices, distances, placement % (devices.Length + 1), groupNode % (devices.Length + 1), groupLimit, steps);

    /// <summary>What the runs covered, so that a generator that stopped producing a case shows.</summary>
    private sealed class Coverage
    {
        public readonly Dictionary<string, int> Seen = new();
        public void Add(string what) => Seen[what] = Seen.GetValueOrDefault(what) + 1;
    }

    [Fact]
    public void Placement_reasons_data_and_usage_follow_the_model()
    {
        var coverage = new Coverage();
        // Hand-made scenarios first, one for each case random draws reach only rarely; then random ones.
        foreach (var seed in Seeds) Run(seed, coverage);
        Prop.ForAll(Scenarios.ToArbitrary(), scenario =>
        {
            Run(scenario, coverage);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
        output.WriteLine(string.Join(", ", coverage.Seen.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} {kv.Value}")));
        foreach (var what in new[] { "Fallback", "LastResort", "PolicyTarget", "Rebalanced", "Drained", "Migrated", "removed", "remove refused",
                                     "exclusive node", "Demoted", "GroupLimitFallback", "reserved", "reservation blocked", "Compacted", "brought back" })
            Assert.True(coverage.Seen.GetValueOrDefault(what) > 0, $"no run covered {what}: {string.Join(", ", coverage.Seen)}");
    }

    private static Step S(Op op, int first, int count, int node = 0, int kind = 0) => new(op, first, count, kind, [node], [1, 1, 1], 7);

    private static readonly int[] NoDistances = [0, 0, 0];

    /// <summary>Scenarios that reach, for sure, what random draws reach only now and then.</summary>
    private static readonly Scenario[] Seeds =
    [
        // A private node's pages come back when touched.
        new([new(8, 20, false, true)], NoDistances, 0, 0, 0, [S(Op.Touch, 0, 4), S(Op.Migrate, 0, 4, node: 1), S(Op.Touch, 0, 4)]),
        // A Bind to a full node ends on the host as a last resort.
        new([new(2, 20, false, false)], NoDistances, 0, 0, 0, [S(Op.SetPolicy, 0, 8, node: 1, kind: (int)MemoryPolicyKind.Bind), S(Op.Touch, 0, 8)]),
        // A pinned page blocks the only window and the unplug; unpinned, the node goes.
        new([new(8, 20, false, false)], NoDistances, 1, 0, 0,
            [S(Op.Touch, 0, 8), S(Op.Pin, 3, 1), S(Op.Reserve, 0, 8, node: 1), S(Op.Remove, 0, 1, node: 1), S(Op.UnpinAll, 0, 1), S(Op.Remove, 0, 1, node: 1)]),
        // Two pages moved away leave no 6-frame window free: compaction moves two pages within the node.
        new([new(16, 20, false, false)], NoDistances, 1, 0, 0, [S(Op.Touch, 0, 12), S(Op.Migrate, 0, 2, node: 0), S(Op.Reserve, 0, 6, node: 1)]),
        // A group limit of two pages on the region's node.
        new([new(8, 20, false, false)], NoDistances, 1, 1, 2, [S(Op.Touch, 0, 4)]),
    ];

    /// <summary>The model's placement rule: the same one the policy documentation states, written independently.</summary>
    private sealed record ModelRule(MemoryPolicyKind Kind, int[] Named, int[] Pattern, int[] Order)
    {
        public int TargetOf(int page) => Pattern[page % Pattern.Length];
        public bool Allows(int page, int node) =>
            Kind is MemoryPolicyKind.Bind or MemoryPolicyKind.PreferredMany ? Named.Contains(node) : TargetOf(page) == node;
    }

    private static void Run(Scenario scenario, Coverage coverage)
    {
        using var system = MemorySystem.Create();
        var nodes = new List<MemoryNode> { system.Host };
        var specs = scenario.Devices;
        for (int i = 0; i < specs.Length; i++)
            nodes.Add(specs[i].Private
                ? system.AddPrivateDeviceNode($"d{i + 1}", (ulong)specs[i].Capacity * Page, specs[i].Distance, specs[i].Exclusive)
                : system.AddCoherentDeviceNode($"d{i + 1}", (ulong)specs[i].Capacity * Page, specs[i].Distance, specs[i].Exclusive));
        int n = nodes.Count;
        var distance = new int[n, n];
        for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            distance[a, b] = a == b ? 10 : a == 0 ? specs[b - 1].Distance : b == 0 ? specs[a - 1].Distance : specs[a - 1].Distance + specs[b - 1].Distance - 10;
        int pair = 0;
        for (int a = 1; a < n; a++)
        for (int b = a + 1; b < n; b++, pair++)
            if (scenario.Distances[pair % 3] >= 11)
            {
                system.Topology.SetDistance(nodes[a], nodes[b], scenario.Distances[pair % 3]);
                distance[a, b] = distance[b, a] = scenario.Distances[pair % 3];
            }
        var online = Enumerable.Repeat(true, n).ToArray();
        bool Exclusive(int id) => id > 0 && specs[id - 1].Exclusive;
        bool Private(int id) => id > 0 && specs[id - 1].Private;
        int[] ByDistance(int from, IEnumerable<int> ids) => ids.OrderBy(i => distance[from, i]).ThenBy(i => i).ToArray();
        int[] Fallback(int from) => ByDistance(from, Enumerable.Range(0, n).Where(i => i != from && online[i] && !Exclusive(i) && !Private(i)));

        ModelRule Compile(MemoryPolicyKind kind, int[] named, int[] weights, int placement)
        {
            switch (kind)
            {
                case MemoryPolicyKind.Default: return new(kind, named, [placement], [placement, .. Fallback(placement)]);
                case MemoryPolicyKind.Preferred: return new(kind, named, [named[0]], [named[0], .. Fallback(named[0])]);
                case MemoryPolicyKind.PreferredMany:
                {
                    var s = ByDistance(0, named);
                    return new(kind, named, [s[0]], [.. s, .. Fallback(s[0]).Where(i => !named.Contains(i))]);
                }
                case MemoryPolicyKind.Bind:
                {
                    var s = ByDistance(0, named);
                    return new(kind, named, [s[0]], [s[0], .. ByDistance(s[0], s.Skip(1))]);
                }
                default:
                    return new(kind, named, named.SelectMany((id, i) => Enumerable.Repeat(id, weights[i])).ToArray(),
                               [.. named, .. ByDistance(0, Enumerable.Range(0, n).Where(i => online[i] && !Exclusive(i) && !Private(i) && !named.Contains(i)))]);
            }
        }

        int placementId = online[scenario.Placement] && !Private(scenario.Placement) ? scenario.Placement : 0;
        int groupNode = scenario.GroupNode;
        var group = groupNode == 0 ? null : system.CreateGroup("model");
        group?.SetLimit(nodes[groupNode], (ulong)scenario.GroupLimit * Page);
        using var region = system.Reserve(Pages * Page, new RegionOptions
        {
            Placement = nodes[placementId], FaultAroundPages = 1, ReadaheadPages = 0, Group = group,
        });
        var rules = new List<(ModelRule Rule, int First, int Count)> { (Compile(MemoryPolicyKind.Default, [], [], placementId), 0, Pages) };
        var node = new int?[Pages];
        var target = Enumerable.Repeat(placementId, Pages).ToArray(); // untouched: where the first touch goes first
        var ruleOf = new int[Pages];                                   // untouched: the rule its first touch follows
        var reason = new PlacementReason[Pages];
        var value = new byte[Pages];
        var pins = new int[Pages];
        var leases = new List<PinLease>();
        var stamp = new long?[Pages]; // placement order; null where a compaction may have re-placed the page unseen
        long clock = 0;
        var extents = new List<ContiguousReservation>();
        long ExtentPages(int id) => extents.Where(x => x.Node.Id == id).Sum(x => (long)(x.Length / Page));
        bool GroupLimited(int id) => id == groupNode && node.Count(x => x == id) >= scenario.GroupLimit;
        long Free(int id)
        {
            if (id == 0) return long.MaxValue;
            if (!online[id]) return 0;
            long free = specs[id - 1].Capacity - node.Count(x => x == id) - ExtentPages(id);
            return id == groupNode ? Math.Min(free, scenario.GroupLimit - node.Count(x => x == id)) : free;
        }
        void Place(int p, int at, PlacementReason why)
        {
            node[p] = at;
            reason[p] = why;
            stamp[p] = clock++;
        }
        int CurrentRule(int page)
        {
            for (int i = rules.Count - 1; i > 0; i--)
                if (page >= rules[i].First && page < rules[i].First + rules[i].Count) return i;
            return 0;
        }

        // A CPU touch of a page on a private node copies it to the first node of that node's order with room.
        void BringBack(int p)
        {
            int from = node[p]!.Value;
            Place(p, Fallback(from).First(o => o == 0 || Free(o) > 0), PlacementReason.BroughtBack);
            coverage.Add("brought back");
        }

        void FirstTouch(int p)
        {
            var rule = rules[ruleOf[p]].Rule;
            int t = target[p];
            if (t == 0 || (!Private(t) && Free(t) > 0))
            {
                Place(p, t, PlacementReason.PolicyTarget);
                return;
            }
            var fell = !Private(t) && GroupLimited(t) ? PlacementReason.GroupLimitFallback : PlacementReason.Fallback;
            foreach (int o in rule.Order)
            {
                if (o == t) continue;
                if (!Private(o) && Free(o) > 0)
                {
                    Place(p, o, fell);
                    return;
                }
            }
            Place(p, 0, PlacementReason.LastResort);
        }

        try
        {
            foreach (var step in scenario.Steps)
            {
                var named = step.Nodes.Where(i => i < n).ToArray();
                switch (step.Op)
                {
                    case Op.Touch:
                        for (int p = step.First; p < step.First + step.Count; p++)
                        {
                            if (node[p] is null) FirstTouch(p);
                            else if (Private(node[p]!.Value)) BringBack(p);
                            region.AsSpan((ulong)p * Page, (int)Page).Fill(step.Value);
                            value[p] = step.Value;
                        }
                        break;
                    case Op.SetPolicy:
                    {
                        var kind = (MemoryPolicyKind)step.Kind;
                        if (kind == MemoryPolicyKind.Preferred) named = named.Take(1).ToArray();
                        if (kind != MemoryPolicyKind.Default && named.Length == 0) named = [0];
                        if (kind == MemoryPolicyKind.Default) named = [];
                        var policy = kind switch
                        {
                            MemoryPolicyKind.Default => MemoryPolicy.Default,
                            MemoryPolicyKind.Bind => MemoryPolicy.Bind(named.Select(i => nodes[i]).ToArray()),
                            MemoryPolicyKind.Preferred => MemoryPolicy.Preferred(nodes[named[0]]),
                            MemoryPolicyKind.PreferredMany => MemoryPolicy.PreferredMany(named.Select(i => nodes[i]).ToArray()),
                            MemoryPolicyKind.Interleave => MemoryPolicy.Interleave(named.Select(i => nodes[i]).ToArray()),
                            _ => MemoryPolicy.WeightedInterleave(named.Select((i, k) => (nodes[i], step.Weights[k])).ToArray()),
                        };
                        if (named.Any(i => !online[i] || Private(i)))
                        {
                            Assert.Throws<ArgumentException>(() => region.SetPolicy((ulong)step.First * Page, (ulong)step.Count * Page, policy));
                            break;
                        }
                        region.SetPolicy((ulong)step.First * Page, (ulong)step.Count * Page, policy);
                        var weights = kind == MemoryPolicyKind.WeightedInterleave ? step.Weights : Enumerable.Repeat(1, 3).ToArray();
                        rules.Add((Compile(kind, named, weights, placementId), step.First, step.Count));
                        for (int p = step.First; p < step.First + step.Count; p++)
                            if (node[p] is null)
                            {
                                ruleOf[p] = rules.Count - 1;
                                target[p] = rules[^1].Rule.TargetOf(p);
                            }
                        break;
                    }
                    case Op.Migrate:
                    {
                        int to = step.Nodes.Length > 0 ? step.Nodes[0] % n : 0;
                        if (!online[to])
                        {
                            Assert.Throws<ArgumentException>(() => region.Migrate((ulong)step.First * Page, (ulong)step.Count * Page, nodes[to]));
                            break;
                        }
                        var expected = new MigrationOutcome[Pages];
                        long free = Free(to);
                        for (int p = step.First; p < step.First + step.Count; p++)
                        {
                            if (node[p] is null && Private(to))
                            {
                                // An untouched page gets a zeroed page on a private node, as migrate_vma gives one.
                                if (free-- > 0) { expected[p] = MigrationOutcome.Migrated; Place(p, to, PlacementReason.Migrated); }
                                else expected[p] = MigrationOutcome.NoCapacity;
                            }
                            else if (node[p] is null) { expected[p] = MigrationOutcome.Placed; target[p] = to; }
                            else if (node[p] == to) expected[p] = MigrationOutcome.AlreadyThere;
                            else if (pins[p] > 0) expected[p] = MigrationOutcome.Pinned;
                            else if (free-- > 0) { expected[p] = MigrationOutcome.Migrated; Place(p, to, PlacementReason.Migrated); }
                            else expected[p] = MigrationOutcome.NoCapacity;
                        }
                        var result = region.Migrate((ulong)step.First * Page, (ulong)step.Count * Page, nodes[to]);
                        foreach (var run in result.Runs)
                            for (ulong o = run.Offset; o < run.Offset + run.Length; o += Page)
                                if (run.Outcome != expected[o / Page])
                                    throw new InvalidOperationException($"{step}: page {o / Page} {run.Outcome}, model {expected[o / Page]}");
                        break;
                    }
                    case Op.Rebalance:
                    {
                        ulong moved = 0, pinned = 0, full = 0;
                        for (int p = step.First; p < step.First + step.Count; p++)
                        {
                            if (node[p] is not int at) continue;
                            var rule = rules[CurrentRule(p)].Rule;
                            if (rule.Allows(p, at)) continue;
                            if (pins[p] > 0) { pinned++; continue; }
                            int t = rule.TargetOf(p);
                            var candidates = rule.Kind is MemoryPolicyKind.Bind or MemoryPolicyKind.PreferredMany
                                ? new[] { t }.Concat(rule.Order.Where(o => o != t && rule.Named.Contains(o) && online[o]))
                                : [t];
                            int? dest = candidates.Cast<int?>().FirstOrDefault(c => Free(c!.Value) > 0);
                            if (dest is null) { full++; continue; }
                            Place(p, dest.Value, PlacementReason.Rebalanced);
                            moved++;
                        }
                        var result = region.Rebalance((ulong)step.First * Page, (ulong)step.Count * Page);
                        if (result.PagesMoved != moved || result.PagesPinned != pinned || result.PagesNoCapacity != full)
                            throw new InvalidOperationException($"{step}: {result}; model moved {moved}, pinned {pinned}, no capacity {full}");
                        break;
                    }
                    case Op.Pin:
                        for (int p = step.First; p < step.First + step.Count; p++)
                        {
                            if (node[p] is null) FirstTouch(p);
                            else if (Private(node[p]!.Value)) BringBack(p);
                            pins[p]++;
                        }
                        leases.Add(region.Pin((ulong)step.First * Page, (ulong)step.Count * Page));
                        break;
                    case Op.UnpinAll:
                        foreach (var lease in leases) lease.Dispose();
                        leases.Clear();
                        Array.Clear(pins);
                        break;
                    case Op.Remove:
                    {
                        int victim = step.Nodes.Length > 0 ? step.Nodes[0] % n : 0;
                        if (victim == 0 || !online[victim])
                        {
                            Assert.Throws<ArgumentException>(() => system.RemoveNode(nodes[victim]));
                            break;
                        }
                        if (ExtentPages(victim) > 0)
                        {
                            Assert.False(Assert.Throws<NodeBusyException>(() => system.RemoveNode(nodes[victim])).IsPinned);
                            break;
                        }
                        var order = Fallback(victim);
                        online[victim] = false;
                        bool blocked = false;
                        for (int p = 0; p < Pages; p++)
                        {
                            if (node[p] != victim) continue;
                            if (pins[p] > 0) { blocked = true; continue; }
                            Place(p, order.First(o => Free(o) > 0), PlacementReason.Drained);
                        }
                        if (blocked)
                        {
                            online[victim] = true;
                            var busy = Assert.Throws<NodeBusyException>(() => system.RemoveNode(nodes[victim]));
                            Assert.True(busy.IsPinned);
                            Assert.True(nodes[victim].IsOnline);
                            coverage.Add("remove refused");
                        }
                        else
                        {
                            system.RemoveNode(nodes[victim]);
                            Assert.False(nodes[victim].IsOnline);
                            coverage.Add("removed");
                        }
                        break;
                    }
                    case Op.Demote:
                    {
                        int from = step.Nodes.Length > 0 ? step.Nodes[0] % n : 0;
                        if (from == 0 || !online[from])
                        {
                            Assert.Throws<InvalidOperationException>(() => nodes[from].Demote((ulong)step.Count * Page));
                            break;
                        }
                        var candidates = Enumerable.Range(0, Pages).Where(p => node[p] == from && pins[p] == 0).ToArray();
                        var order = Fallback(from);
                        ulong demoted = nodes[from].Demote((ulong)step.Count * Page) / Page;
                        if (candidates.Any(p => stamp[p] is null))
                        {
                            // A compaction re-placed some of them in an order the model cannot know: take the engine's word for which went.
                            foreach (int p in candidates)
                            {
                                var now = region.ExplainPlacement((ulong)p * Page);
                                if (now.Reason == PlacementReason.Demoted && now.Node?.Id != from)
                                {
                                    Assert.Contains(now.Node!.Id, order);
                                    Place(p, now.Node.Id, PlacementReason.Demoted);
                                }
                            }
                            if ((ulong)candidates.Count(p => node[p] != from) != demoted)
                                throw new InvalidOperationException($"{step}: demoted {demoted}, pages that left {candidates.Count(p => node[p] != from)}");
                            break;
                        }
                        var coldest = candidates.OrderBy(p => stamp[p]).Take(step.Count).OrderBy(p => p).ToArray();
                        foreach (int p in coldest) Place(p, order.First(o => Free(o) > 0), PlacementReason.Demoted);
                        if (demoted != (ulong)coldest.Length)
                            throw new InvalidOperationException($"{step}: demoted {demoted}, model {coldest.Length}");
                        break;
                    }
                    case Op.Reserve:
                    {
                        int on = step.Nodes.Length > 0 ? step.Nodes[0] % n : 0;
                        if (on == 0 || !online[on] || Private(on))
                        {
                            Assert.Throws<ArgumentException>(() => nodes[on].ReserveContiguous((ulong)step.Count * Page));
                            break;
                        }
                        var before = Enumerable.Range(0, Pages).Select(p => region.ExplainPlacement((ulong)p * Page)).ToArray();
                        var order = Fallback(on);
                        try
                        {
                            extents.Add(nodes[on].ReserveContiguous((ulong)step.Count * Page));
                            coverage.Add("reserved");
                        }
                        catch (CompactionBlockedException blocked)
                        {
                            Assert.Contains(Enumerable.Range(0, Pages), p => node[p] == on && pins[p] > 0);
                            Assert.All(blocked.PinnedPages, a => Assert.True(pins[(int)((ulong)(a - region.Pointer) / Page)] > 0));
                            coverage.Add("reservation blocked");
                        }
                        catch (DeviceCapacityExhaustedException)
                        {
                            // Only other extents (or a size over the capacity) leave no window at all.
                            Assert.True(step.Count > specs[on - 1].Capacity || ExtentPages(on) > 0, $"{step}: refused with room");
                        }
                        for (int p = 0; p < Pages; p++)
                        {
                            var now = region.ExplainPlacement((ulong)p * Page);
                            if (now.Node == before[p].Node && now.Reason == before[p].Reason) continue;
                            // Moved by the compaction: off this node only, to it or down its order, saying so.
                            if (node[p] != on || pins[p] > 0 || now.Reason != PlacementReason.Compacted || (now.Node!.Id != on && !order.Contains(now.Node.Id)))
                                throw new InvalidOperationException($"{step}: page {p} went from {before[p]} to {now}");
                            node[p] = now.Node.Id;
                            reason[p] = PlacementReason.Compacted;
                            stamp[p] = null;
                        }
                        break;
                    }
                    case Op.Release:
                        if (extents.Count > 0)
                        {
                            var extent = extents[step.First % extents.Count];
                            extent.Dispose();
                            extents.Remove(extent);
                        }
                        break;
                }
                for (int p = 0; p < Pages; p++)
                {
                    var placement = region.ExplainPlacement((ulong)p * Page);
                    if (placement.Node?.Id != node[p])
                        throw new InvalidOperationException($"after {step}: page {p} on {placement.Node?.Id}, model {node[p]}: {placement}");
                    if (node[p] is null ? placement.Target.Id != target[p] : placement.Reason != reason[p])
                        throw new InvalidOperationException($"after {step}: page {p} {placement.Reason} → {placement.Target.Id}, model {reason[p]} → {target[p]}: {placement}");
                    // (Reading a page on a private node would bring it back: it is checked once it is back.)
                    if (node[p] is int at && !Private(at) && region.AsSpan((ulong)p * Page, (int)Page).IndexOfAnyExcept(value[p]) >= 0)
                        throw new InvalidOperationException($"after {step}: page {p} lost its data");
                }
                for (int p = 0; p < Pages; p++)
                    if (node[p] is int on)
                    {
                        coverage.Add(reason[p].ToString());
                        if (Exclusive(on)) coverage.Add("exclusive node");
                    }
                for (int id = 1; id < n; id++)
                    if (nodes[id].GetUsage().UsedBytes != (ulong)(node.Count(x => x == id) + ExtentPages(id)) * Page)
                        throw new InvalidOperationException($"after {step}: node {id} uses {nodes[id].GetUsage().UsedBytes / Page}, model {node.Count(x => x == id)} + extents {ExtentPages(id)}");
                if (group is not null)
                    for (int id = 0; id < n; id++)
                        if (group.GetUsage(nodes[id]) != (ulong)node.Count(x => x == id) * Page)
                            throw new InvalidOperationException($"after {step}: the group uses {group.GetUsage(nodes[id]) / Page} on {id}, model {node.Count(x => x == id)}");
            }
        }
        catch (Exception e) when (e is not InvalidOperationException || e.Message.StartsWith("after") == false)
        {
            throw new InvalidOperationException($"{scenario}: {e.Message}", e);
        }
        finally
        {
            foreach (var lease in leases) lease.Dispose();
            foreach (var extent in extents) extent.Dispose();
        }
    }
}
