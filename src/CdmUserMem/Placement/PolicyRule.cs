using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>
/// One policy as set on a range of a region, compiled for the engine: the target of page i is
/// Pattern[i % Pattern.Length]; a first touch whose target has no room tries Order in turn, and the host
/// serves what none has room for. An order starts with the rule's own targets, so a page an explicit
/// migration aimed elsewhere falls back to where its rule would have put it. Rule 0 of a region is its default policy over the whole region.
/// </summary>
internal sealed record PolicyRule(uint Id, ulong FirstPage, ulong PageCount, MemoryPolicy Policy, MemoryNode[] Pattern, MemoryNode[] Order,
                                  uint Plan)
{
    public bool Covers(ulong page) => page >= FirstPage && page - FirstPage < PageCount;

    public MemoryNode TargetOf(ulong page) => Pattern[(int)(page % (ulong)Pattern.Length)];

    /// <summary>Nodes a rebalance leaves a page on: any named node for Bind and PreferredMany, else its target.</summary>
    public bool Allows(ulong page, MemoryNode node) => Policy.Kind is MemoryPolicyKind.Bind or MemoryPolicyKind.PreferredMany
        ? Policy.Names(node)
        : TargetOf(page) == node;

    /// <summary>Where a rebalance may put a page not allowed where it is: its target, then (Bind and
    /// PreferredMany) the other named nodes by distance.</summary>
    public IEnumerable<MemoryNode> RebalanceTargets(ulong page)
    {
        var target = TargetOf(page);
        yield return target;
        if (Policy.Kind is MemoryPolicyKind.Bind or MemoryPolicyKind.PreferredMany)
            foreach (var node in Order)
                if (node != target && Policy.Names(node) && node.IsOnline) yield return node;
    }

    /// <summary>Compiles <paramref name="policy"/> for a region whose placement is <paramref name="placement"/>.</summary>
    public static unsafe PolicyRule Compile(MemorySystem system, uint id, ulong firstPage, ulong pageCount, MemoryPolicy policy, MemoryNode placement)
    {
        var topology = system.Topology;
        var host = system.Host;
        MemoryNode[] pattern, order;
        switch (policy.Kind)
        {
            case MemoryPolicyKind.Default:
                pattern = [placement];
                order = [placement, .. topology.FallbackOrder(placement)];
                break;
            case MemoryPolicyKind.Preferred:
                pattern = [policy.Nodes[0]];
                order = [policy.Nodes[0], .. topology.FallbackOrder(policy.Nodes[0])];
                break;
            case MemoryPolicyKind.PreferredMany:
            {
                var named = topology.ByDistance(host, policy.Nodes);
                pattern = [named[0]];
                order = [.. named, .. topology.FallbackOrder(named[0]).Where(n => !policy.Names(n))];
                break;
            }
            case MemoryPolicyKind.Bind:
            {
                var named = topology.ByDistance(host, policy.Nodes);
                pattern = [named[0]];
                order = [named[0], .. topology.ByDistance(named[0], named.Skip(1))];
                break;
            }
            default: // Interleave, WeightedInterleave
            {
                var rest = system.Nodes.Where(n => n.IsOnline && !n.IsExclusive && n.Kind != MemoryNodeKind.PrivateDevice && !policy.Names(n));
                pattern = policy.Nodes.SelectMany((n, i) => Enumerable.Repeat(n, policy.Weights[i])).ToArray();
                order = [.. policy.Nodes, .. topology.ByDistance(host, rest)];
                break;
            }
        }
        uint plan = 0;
        if (order.Length > 0)
        {
            sbyte* ids = stackalloc sbyte[order.Length];
            for (int i = 0; i < order.Length; i++) ids[i] = (sbyte)order[i].Id;
            int rc = CdmEngine.PlanCreate(system.EngineHandle, ids, (uint)order.Length, out plan);
            if (rc == CdmEngine.ErrorPlanLimit)
                throw new InvalidOperationException($"The engine holds {CdmEngine.MaxPlans} distinct fallback orders already.");
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"creating the fallback order of {policy}");
        }
        return new PolicyRule(id, firstPage, pageCount, policy, pattern, order, plan);
    }
}
