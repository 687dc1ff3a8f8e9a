namespace CdmUserMem;

/// <summary>The kinds of placement policy, in the vocabulary of Linux mempolicy (set_mempolicy(2), mbind(2)).</summary>
public enum MemoryPolicyKind
{
    /// <summary>The region's own placement node, falling back by distance (MPOL_DEFAULT).</summary>
    Default,
    /// <summary>Only the named nodes, nearest to the host first (MPOL_BIND).</summary>
    Bind,
    /// <summary>One node, falling back by distance from it (MPOL_PREFERRED).</summary>
    Preferred,
    /// <summary>The named nodes first, nearest to the host first, then by distance (MPOL_PREFERRED_MANY).</summary>
    PreferredMany,
    /// <summary>Page by page round-robin over the named nodes, by page index in the region (MPOL_INTERLEAVE).</summary>
    Interleave,
    /// <summary>Interleave in which a node with weight w takes w consecutive pages of each round (MPOL_WEIGHTED_INTERLEAVE).</summary>
    WeightedInterleave,
}

/// <summary>
/// Where first touches of a region (or of a page-aligned range of it) land, and where a rebalance moves its
/// pages. A policy names nodes; a node created exclusive is used only by a policy that names it.
/// </summary>
public sealed class MemoryPolicy
{
    /// <summary>Most pages in one round of a weighted interleave (the sum of the weights).</summary>
    public const int MaxInterleaveRound = 4096;

    private MemoryPolicy(MemoryPolicyKind kind, MemoryNode[] nodes, int[] weights)
    {
        Kind = kind;
        Nodes = nodes;
        Weights = weights;
    }

    public MemoryPolicyKind Kind { get; }

    /// <summary>The nodes the policy names, in the order given; empty for <see cref="Default"/>.</summary>
    public IReadOnlyList<MemoryNode> Nodes { get; }

    /// <summary>Consecutive pages each of <see cref="Nodes"/> takes per round of an interleave (1 but for a
    /// weighted interleave or an interleave in units).</summary>
    public IReadOnlyList<int> Weights { get; }

    /// <summary>The region's own placement node, falling back by distance.</summary>
    public static MemoryPolicy Default { get; } = new(MemoryPolicyKind.Default, [], []);

    /// <summary>Only <paramref name="nodes"/>: when none has room, the host serves the page as a last resort
    /// (a fault must be served), and the placement says so.</summary>
    public static MemoryPolicy Bind(params MemoryNode[] nodes) => Many(MemoryPolicyKind.Bind, nodes);

    /// <summary><paramref name="node"/>, falling back by distance from it (exclusive nodes never).</summary>
    public static MemoryPolicy Preferred(MemoryNode node) => Many(MemoryPolicyKind.Preferred, [node]);

    /// <summary>The nearest of <paramref name="nodes"/> with room, then the others by distance.</summary>
    public static MemoryPolicy PreferredMany(params MemoryNode[] nodes) => Many(MemoryPolicyKind.PreferredMany, nodes);

    /// <summary>Page i of the region on nodes[i % n]; a full node's page falls back to the next named node with room.</summary>
    public static MemoryPolicy Interleave(params MemoryNode[] nodes) => Many(MemoryPolicyKind.Interleave, nodes);

    /// <summary>
    /// Interleave in units of <paramref name="pagesPerNode"/> consecutive pages (Linux interleaves a
    /// transparent huge page whole, 512 pages, for the same reason): each unit's first touch is one native
    /// move of up to that many frames, where a per-page interleave pays one per page.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Units of under 1 page, or rounds over <see cref="MaxInterleaveRound"/> pages.</exception>
    public static MemoryPolicy Interleave(int pagesPerNode, params MemoryNode[] nodes)
    {
        var policy = Many(MemoryPolicyKind.Interleave, nodes);
        ArgumentOutOfRangeException.ThrowIfLessThan(pagesPerNode, 1);
        if ((long)pagesPerNode * nodes.Length > MaxInterleaveRound)
            throw new ArgumentOutOfRangeException(nameof(pagesPerNode), pagesPerNode,
                $"{nodes.Length} nodes of {pagesPerNode} pages make a round over {MaxInterleaveRound} pages.");
        return new MemoryPolicy(MemoryPolicyKind.Interleave, (MemoryNode[])policy.Nodes, Enumerable.Repeat(pagesPerNode, nodes.Length).ToArray());
    }

    /// <summary>Interleave by weight: each round gives a node as many consecutive pages as its weight.</summary>
    /// <exception cref="ArgumentException">No weights, a weight below 1, a node twice, or a round over
    /// <see cref="MaxInterleaveRound"/> pages.</exception>
    public static MemoryPolicy WeightedInterleave(params (MemoryNode Node, int Weight)[] weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Length == 0) throw new ArgumentException("A weighted interleave needs at least one node.", nameof(weights));
        long round = 0;
        foreach (var (node, weight) in weights)
        {
            ArgumentNullException.ThrowIfNull(node, nameof(weights));
            if (weight < 1) throw new ArgumentException($"The weight of node '{node.Name}' is {weight}; weights are 1 or more.", nameof(weights));
            round += weight;
        }
        if (round > MaxInterleaveRound)
            throw new ArgumentException($"The weights add up to {round} pages a round; at most {MaxInterleaveRound}.", nameof(weights));
        var nodes = weights.Select(w => w.Node).ToArray();
        CheckDistinct(nodes, nameof(weights));
        return new MemoryPolicy(MemoryPolicyKind.WeightedInterleave, nodes, weights.Select(w => w.Weight).ToArray());
    }

    private static MemoryPolicy Many(MemoryPolicyKind kind, MemoryNode[] nodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        if (nodes.Length == 0) throw new ArgumentException($"A {kind} policy needs at least one node.", nameof(nodes));
        foreach (var node in nodes) ArgumentNullException.ThrowIfNull(node, nameof(nodes));
        CheckDistinct(nodes, nameof(nodes));
        return new MemoryPolicy(kind, (MemoryNode[])nodes.Clone(), Enumerable.Repeat(1, nodes.Length).ToArray());
    }

    private static void CheckDistinct(MemoryNode[] nodes, string paramName)
    {
        var first = nodes[0].System;
        foreach (var node in nodes)
            if (!ReferenceEquals(node.System, first))
                throw new ArgumentException("A policy's nodes must belong to one memory system.", paramName);
        var twice = nodes.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new ArgumentException($"Node '{twice.Key.Name}' is named twice.", paramName);
    }

    /// <summary>Whether the policy names <paramref name="node"/>.</summary>
    public bool Names(MemoryNode node) => Nodes.Contains(node);

    public override string ToString() => Kind switch
    {
        MemoryPolicyKind.Default => "Default",
        MemoryPolicyKind.Interleave when Weights[0] > 1 => $"Interleave({string.Join(", ", Nodes.Select(n => n.Name))}; {Weights[0]} pages a node)",
        MemoryPolicyKind.WeightedInterleave => $"WeightedInterleave({string.Join(", ", Nodes.Select((n, i) => $"{n.Name}:{Weights[i]}"))})",
        _ => $"{Kind}({string.Join(", ", Nodes.Select(n => n.Name))})",
    };
}
