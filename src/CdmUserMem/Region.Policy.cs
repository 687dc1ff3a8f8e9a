using CdmUserMem.Interop;

namespace CdmUserMem;

public sealed unsafe partial class Region
{
    private readonly List<PolicyRule> _rules = new(); // by id; rule 0 is the default over the whole region
    private readonly Lock _policySync = new();

    /// <summary>Rule 0: the default policy over the whole region, handed to the engine before any touch.</summary>
    private void SetDefaultRule()
    {
        var rule = PolicyRule.Compile(System, 0, 0, PageCount, MemoryPolicy.Default, Placement);
        int rc = CdmEngine.RegionSetDefaultPlan(_handle, rule.Plan);
        if (rc < 0) throw NativeErrors.ForErrno(rc, "setting the region's default fallback order");
        _rules.Add(rule);
    }

    /// <summary>Sets the policy of the whole region (see <see cref="SetPolicy(ulong, ulong, MemoryPolicy)"/>).</summary>
    public void SetPolicy(MemoryPolicy policy) => SetPolicy(0, Length, policy);

    /// <summary>
    /// Sets the placement policy of a page-aligned range, as mbind(2) does: it overrides what earlier calls set
    /// there and applies to the range's first touches from now on; pages already resident stay where they are
    /// until <see cref="Rebalance"/> moves them. Fallback orders are taken from the topology now.
    /// </summary>
    /// <exception cref="ArgumentException">A node of another system or a removed node.</exception>
    /// <exception cref="InvalidOperationException">The region has had 16,777,215 policies set.</exception>
    public void SetPolicy(ulong offset, ulong length, MemoryPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var (first, count) = PageRange(offset, length);
        foreach (var node in policy.Nodes) System.ValidatePlacementNode(node, nameof(policy));
        lock (_policySync)
        {
            if (_rules.Count > CdmEngine.MaxRule)
                throw new InvalidOperationException($"A region takes at most {CdmEngine.MaxRule} policies; reserve a new one.");
            var rule = PolicyRule.Compile(System, (uint)_rules.Count, first, count, policy, Placement);
            sbyte* pattern = stackalloc sbyte[rule.Pattern.Length];
            for (int i = 0; i < rule.Pattern.Length; i++) pattern[i] = (sbyte)rule.Pattern[i].Id;
            int rc = CdmEngine.RegionSetPolicy(_handle, first, count, pattern, (uint)rule.Pattern.Length, rule.Plan, rule.Id);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"setting {policy} on [{offset}, +{length})");
            _rules.Add(rule);
        }
    }

    /// <summary>The policy that applies to the page at <paramref name="offset"/> now: the last one set over it.</summary>
    public MemoryPolicy GetPolicy(ulong offset)
    {
        ThrowIfDisposed();
        if (offset >= Length) throw new ArgumentOutOfRangeException(nameof(offset), $"Offset {offset} lies outside the region's {Length} bytes.");
        return RuleOf(offset / PageSize).Policy;
    }

    private PolicyRule RuleOf(ulong page)
    {
        lock (_policySync)
        {
            for (int i = _rules.Count - 1; i > 0; i--)
                if (_rules[i].Covers(page)) return _rules[i];
            return _rules[0];
        }
    }

    private PolicyRule RuleById(uint id)
    {
        lock (_policySync) return _rules[(int)id];
    }

    /// <summary>
    /// Where the page at <paramref name="offset"/> is and why: which rule placed it, the target it chose,
    /// the fallback order, and whether a fallback was taken because nodes were full or exclusive.
    /// </summary>
    public PagePlacement ExplainPlacement(ulong offset)
    {
        ThrowIfDisposed();
        if (offset >= Length) throw new ArgumentOutOfRangeException(nameof(offset), $"Offset {offset} lies outside the region's {Length} bytes.");
        ulong page = offset / PageSize;
        int rc = CdmEngine.RegionExplain(_handle, page, out int state, out int nodeId, out uint ruleId, out int why);
        if (rc < 0) throw NativeErrors.ForErrno(rc, "explaining a placement");
        var reason = (CdmWhy)why switch
        {
            CdmWhy.Untouched => PlacementReason.Untouched,
            CdmWhy.Target => PlacementReason.PolicyTarget,
            CdmWhy.Fallback => PlacementReason.Fallback,
            CdmWhy.LastResort => PlacementReason.LastResort,
            CdmWhy.Migrated => PlacementReason.Migrated,
            CdmWhy.Rebalanced => PlacementReason.Rebalanced,
            CdmWhy.Demoted => PlacementReason.Demoted,
            CdmWhy.Compacted => PlacementReason.Compacted,
            CdmWhy.GroupLimit => PlacementReason.GroupLimitFallback,
            CdmWhy.CpuFault => PlacementReason.BroughtBack,
            _ => PlacementReason.Drained,
        };
        // An explicit migration or a drain names no rule: the page's policy is the one that applies now.
        var rule = reason is PlacementReason.Untouched or PlacementReason.PolicyTarget or PlacementReason.Fallback or PlacementReason.LastResort
                       or PlacementReason.Rebalanced or PlacementReason.GroupLimitFallback
            ? RuleById(ruleId)
            : RuleOf(page);
        var node = System.NodeById(nodeId);
        var target = reason == PlacementReason.Untouched ? node : rule.TargetOf(page);
        string where = $"page at offset {offset} of region 0x{Pointer:x}";
        string ruleText = rule.Id == 0
            ? $"the region's default policy (placement '{Placement.Name}')"
            : $"rule {rule.Id}: {rule.Policy} over [{rule.FirstPage * PageSize}, +{rule.PageCount * PageSize})";
        string order = rule.Order.Length == 0 ? "none" : string.Join(", ", rule.Order.Select(n => n.Name));
        string text = reason switch
        {
            PlacementReason.Untouched => target == node && rule.TargetOf(page) != node
                ? $"{where} is untouched; an explicit migration placed it: its first touch goes to '{node.Name}' (then {order}); {ruleText}"
                : $"{where} is untouched; its first touch goes to '{node.Name}' (then {order}); {ruleText}",
            PlacementReason.PolicyTarget => $"{where} is on '{node.Name}', its target, placed at first touch by {ruleText}",
            PlacementReason.Fallback => $"{where} is on '{node.Name}': at first touch its target '{target.Name}' had no room" +
                                        Skipped(rule, target, node) + $"; {ruleText}",
            PlacementReason.GroupLimitFallback => $"{where} is on '{node.Name}': at first touch its group '{Group?.Name}' was at its limit on " +
                                                  $"'{target.Name}'" + Skipped(rule, target, node) + $"; {ruleText}",
            PlacementReason.LastResort => $"{where} is on the host as a last resort: at first touch no node of its order ('{target.Name}', {order}) had room; {ruleText}",
            PlacementReason.Migrated => $"{where} is on '{node.Name}', moved there by an explicit migration; the policy now is {ruleText}",
            PlacementReason.Rebalanced => $"{where} is on '{node.Name}', moved there by a rebalance applying {ruleText}",
            PlacementReason.Demoted => $"{where} is on '{node.Name}', demoted there by pressure (its node was over its high watermark and it " +
                                       $"was among the least recently placed pages there); the policy now is {ruleText}",
            PlacementReason.BroughtBack => $"{where} is on '{node.Name}', brought back from a private node when the CPU touched it; the policy now is {ruleText}",
            PlacementReason.Compacted => $"{where} is on '{node.Name}', moved there to make room for a contiguous reservation; the policy now is {ruleText}",
            _ => $"{where} is on '{node.Name}', drained there when its node was removed; the policy now is {ruleText}",
        };
        if (state == 1) text += " (being filled now)";
        else if (state == 3) text += " (being migrated now)";
        return new PagePlacement(offset, reason == PlacementReason.Untouched ? null : node, target, reason, rule.Policy,
                                 rule.FirstPage * PageSize, rule.PageCount * PageSize, rule.Order, text);
    }

    /// <summary>Which nodes a fallback passed over on its way to <paramref name="landed"/>, and which exclusive ones it never considered.</summary>
    private string Skipped(PolicyRule rule, MemoryNode target, MemoryNode landed)
    {
        var passed = rule.Order.TakeWhile(n => n != landed).Where(n => n != target).Select(n => n.Name).ToList();
        var exclusive = System.Nodes.Where(n => n.IsExclusive && !rule.Policy.Names(n) && n != Placement).Select(n => n.Name).ToList();
        string text = passed.Count > 0 ? $", nor had {string.Join(", ", passed.Select(n => $"'{n}'"))}" : "";
        if (exclusive.Count > 0) text += $" (exclusive {string.Join(", ", exclusive.Select(n => $"'{n}'"))} never taken as a fallback)";
        return text;
    }

    /// <summary>
    /// Applies the policies of a page-aligned range to its resident pages, as mbind(2) with MPOL_MF_MOVE: a
    /// page not where its policy allows (its target; any named node for Bind and PreferredMany) is migrated
    /// there, keeping its address and data; one whose target lacks room tries the policy's other named nodes
    /// (Bind, PreferredMany) or stays. Pinned pages stay and are counted. Untouched pages need nothing.
    /// </summary>
    public RebalanceResult Rebalance(ulong offset, ulong length)
    {
        var (first, count) = PageRange(offset, length);
        var request = new MigrationRequest(first, count, System.Host, MigrationOptions.Default);
        WaitForTurn(request, CancellationToken.None);
        bool addedRef = false;
        var result = new RebalanceResult();
        try
        {
            ThrowIfDisposed();
            _handle.DangerousAddRef(ref addedRef);
            const int Chunk = 512;
            sbyte* nodes = stackalloc sbyte[Chunk];
            byte* outcomes = stackalloc byte[Chunk];
            for (ulong done = 0; done < count;)
            {
                ulong n = Math.Min(Chunk, count - done), start = first + done;
                int rc = CdmEngine.RegionResidency(_handle, start, n, nodes);
                if (rc < 0) throw NativeErrors.ForErrno(rc, "reading residency");
                for (ulong i = 0; i < n;)
                {
                    ulong page = start + i;
                    if (nodes[i] < 0) { result.Untouched(); i++; continue; }
                    var rule = RuleOf(page);
                    if (rule.Allows(page, System.NodeById(nodes[i]))) { result.InPlace(); i++; continue; }
                    // A run of pages with one rule and one target, none allowed where it is.
                    var target = rule.TargetOf(page);
                    ulong j = i + 1;
                    while (j < n && nodes[j] >= 0 && RuleOf(start + j) == rule && rule.TargetOf(start + j) == target &&
                           !rule.Allows(start + j, System.NodeById(nodes[j])))
                        j++;
                    RebalanceRun(rule, page, j - i, outcomes, result);
                    i = j;
                }
                done += n;
            }
            return result;
        }
        finally
        {
            if (addedRef) _handle.DangerousRelease();
            _migrationLock.Release();
        }
    }

    /// <summary>Moves [page, +count) to the rule's rebalance targets in turn, each taking what it has room for.</summary>
    private void RebalanceRun(PolicyRule rule, ulong page, ulong count, byte* outcomes, RebalanceResult result)
    {
        var left = new List<(ulong First, ulong Count)> { (page, count) };
        foreach (var target in rule.RebalanceTargets(page))
        {
            var next = new List<(ulong, ulong)>();
            foreach (var (first, n) in left)
            {
                int rc = CdmEngine.MigrateBatchWhy(_handle.DangerousGetHandle(), first, n, target.Id, (uint)MigrationOptions.Default.BusyRetries, 0,
                                                   (int)CdmWhy.Rebalanced, rule.Id, outcomes);
                if (rc < 0)
                    throw new MigrationFailedException($"Rebalancing [{first * PageSize}, +{n * PageSize}) to '{target.Name}' failed: " +
                                                       $"{NativeErrors.Describe(rc)}; so far: {result}", -rc);
                for (ulong k = 0; k < n;)
                {
                    if ((CdmOutcome)outcomes[k] != CdmOutcome.NoCapacity)
                    {
                        var o = (MigrationOutcome)outcomes[k];
                        if (o == MigrationOutcome.Migrated) result.Moved(target);
                        else if (o is MigrationOutcome.AlreadyThere or MigrationOutcome.Placed) result.InPlace();
                        else result.Left(o);
                        k++;
                        continue;
                    }
                    ulong m = k;
                    while (m < n && (CdmOutcome)outcomes[m] == CdmOutcome.NoCapacity) m++;
                    next.Add((first + k, m - k));
                    k = m;
                }
            }
            left = next;
            if (left.Count == 0) return;
        }
        foreach (var (_, n) in left)
            for (ulong k = 0; k < n; k++) result.Left(MigrationOutcome.NoCapacity);
    }
}
