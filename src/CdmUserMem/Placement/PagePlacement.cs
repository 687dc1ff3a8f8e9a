namespace CdmUserMem;

/// <summary>Why a page is where it is.</summary>
public enum PlacementReason
{
    /// <summary>Not touched yet: <see cref="PagePlacement.Target"/> is where its first touch goes first.</summary>
    Untouched,
    /// <summary>Its first touch landed on the node its policy chose.</summary>
    PolicyTarget,
    /// <summary>Its first touch fell back: the target, and every node before this one in the fallback order, had no room.</summary>
    Fallback,
    /// <summary>No node of the policy's order had room (a Bind whose nodes were all full): the host served the
    /// first touch, since a fault must be served.</summary>
    LastResort,
    /// <summary>An explicit <see cref="Region.Migrate(ulong, ulong, MemoryNode, MigrationOptions?)"/> put it here.</summary>
    Migrated,
    /// <summary><see cref="Region.Rebalance"/> moved it here to apply its policy.</summary>
    Rebalanced,
    /// <summary>Moved here when the node it was on was removed (<see cref="MemorySystem.RemoveNode"/>).</summary>
    Drained,
    /// <summary>Demoted here by pressure: the node it was on was over its high watermark and it was among the
    /// least recently placed pages there (<see cref="MemoryNode.EnablePressure"/>).</summary>
    Demoted,
    /// <summary>Moved off a frame a contiguous reservation needed (<see cref="MemoryNode.ReserveContiguous"/>).</summary>
    Compacted,
    /// <summary>Its first touch fell back: the target had room, but the region's <see cref="AccountingGroup"/> was
    /// at its limit there.</summary>
    GroupLimitFallback,
    /// <summary>Brought back from a private device node because the CPU touched it.</summary>
    BroughtBack,
}

/// <summary>
/// Where one page is and why: the rule (the policy and the range it was set on) that placed it, the target
/// that rule chose, the fallback order it had, and a sentence saying so.
/// </summary>
public sealed record PagePlacement(
    ulong Offset,
    MemoryNode? Node,
    MemoryNode Target,
    PlacementReason Reason,
    MemoryPolicy Policy,
    ulong PolicyOffset,
    ulong PolicyLength,
    IReadOnlyList<MemoryNode> FallbackOrder,
    string Explanation)
{
    public override string ToString() => Explanation;
}
