using CdmUserMem.Interop;

namespace CdmUserMem;

public sealed partial class MemorySystem
{
    private readonly Lock _nodeRemoval = new();

    /// <summary>The nodes and their distances; prints like <c>numactl --hardware</c>.</summary>
    public MemoryTopology Topology { get; }

    /// <summary>Creates an accounting group (see <see cref="AccountingGroup"/>); a system holds at most 255.</summary>
    /// <exception cref="InvalidOperationException">255 groups exist already.</exception>
    public AccountingGroup CreateGroup(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        int rc = CdmEngine.GroupCreate(EngineHandle, out uint id);
        if (rc == -28) throw new InvalidOperationException($"A memory system holds at most {CdmEngine.MaxGroups - 1} accounting groups.");
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"creating group '{name}'");
        return new AccountingGroup(this, id, name);
    }

    /// <summary>
    /// Hot-unplugs a device node: takes it offline (nothing new lands there: first touches aimed at it fall
    /// back, migrations to it are refused), migrates every page of every region and heap off it to its
    /// fallback order (<see cref="MemoryTopology.FallbackOrder"/>, the host last) without losing a write, and
    /// gives its arena's memory back. Its id stays taken; <see cref="MemoryNode.IsOnline"/> turns false.
    /// </summary>
    /// <exception cref="ArgumentException">The host, a node of another system, or one removed already.</exception>
    /// <exception cref="NodeBusyException">Pages could not move (pinned, or no room anywhere): the node stays
    /// online and usable, holding those pages; pages moved before stay moved.</exception>
    public unsafe void RemoveNode(MemoryNode node)
    {
        ValidateMigrationTarget(node, nameof(node));
        if (node.Kind == MemoryNodeKind.Host) throw new ArgumentException("The host node cannot be removed.", nameof(node));
        lock (_nodeRemoval)
        {
            if (!node.IsOnline) throw new ArgumentException($"Node '{node.Name}' was removed already.", nameof(node));
            var order = Topology.FallbackOrder(node);
            sbyte* ids = stackalloc sbyte[order.Count];
            for (int i = 0; i < order.Count; i++) ids[i] = (sbyte)order[i].Id;
            int rc = CdmEngine.NodeDrain(EngineHandle, node.Id, ids, (uint)order.Count, out ulong left, out ulong blocked);
            if (rc == CdmEngine.ErrorPinned || rc == CdmEngine.ErrorNoRoom)
            {
                string why = rc == CdmEngine.ErrorPinned
                    ? "pinned (a Region.Pin lease, or the kernel: O_DIRECT, io_uring, RDMA)"
                    : $"without room on any of {string.Join(", ", order.Select(n => $"'{n.Name}'"))}";
                throw new NodeBusyException(
                    $"Node '{node.Name}' cannot be removed: {left} of its pages are {why}; the first is at 0x{blocked:x}. The node " +
                    "stays online with them; release them (or make room) and try again.", node, left, (nint)blocked,
                    rc == CdmEngine.ErrorPinned);
            }
            if (rc == -16) // EBUSY
                throw new NodeBusyException($"Node '{node.Name}' cannot be removed: {left} of its frames are in contiguous reservations; " +
                                            "release them first. Nothing was moved.", node, left, 0, pinned: false);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"draining node '{node.Name}'");
            node.MarkRemoved();
        }
    }
}
