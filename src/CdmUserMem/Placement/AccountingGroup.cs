using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>
/// A set of regions accounted together, as a memory cgroup accounts its tasks' pages: exact usage on every
/// node, and per-device-node limits. A first touch that would take the group over a node's limit falls
/// back as if the node were full (<see cref="PlacementReason.GroupLimitFallback"/>; a Bind with every bound
/// node at its limit goes to the host as a last resort); a migration over it reports
/// <see cref="MigrationOutcome.NoCapacity"/> for the pages that do not fit.
/// </summary>
public sealed class AccountingGroup
{
    private readonly ulong?[] _limits = new ulong?[MemorySystem.MaxDeviceNodes + 1];

    internal AccountingGroup(MemorySystem system, uint id, string name)
    {
        System = system;
        Id = id;
        Name = name;
    }

    public MemorySystem System { get; }

    public string Name { get; }

    internal uint Id { get; }

    /// <summary>Limits the group to <paramref name="bytes"/> on a device node (null: no limit). A limit below the
    /// usage moves nothing: placements there are refused until usage falls under it.</summary>
    /// <exception cref="ArgumentException">The host (it is unbounded), or a node of another system.</exception>
    public void SetLimit(MemoryNode node, ulong? bytes)
    {
        System.ValidateNode(node, nameof(node));
        if (node.Kind == MemoryNodeKind.Host) throw new ArgumentException("The host is unbounded: limit device nodes only.", nameof(node));
        if (bytes is ulong whole && whole % CdmEngine.PageSize != 0)
            throw new ArgumentException($"A limit is a multiple of the page size ({CdmEngine.PageSize}); got {bytes}.", nameof(bytes));
        int rc = CdmEngine.GroupSetLimit(System.EngineHandle, Id, node.Id, bytes is ulong b ? b / CdmEngine.PageSize : ulong.MaxValue);
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"limiting group '{Name}' on node '{node.Name}'");
        _limits[node.Id] = bytes;
    }

    /// <summary>The group's limit on <paramref name="node"/>, or null for none.</summary>
    public ulong? GetLimit(MemoryNode node)
    {
        System.ValidateNode(node, nameof(node));
        return _limits[node.Id];
    }

    /// <summary>Bytes the group's regions hold on <paramref name="node"/> now.</summary>
    public ulong GetUsage(MemoryNode node)
    {
        System.ValidateNode(node, nameof(node));
        int rc = CdmEngine.GroupUsage(System.EngineHandle, Id, node.Id, out ulong frames);
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"reading the usage of group '{Name}'");
        return frames * CdmEngine.PageSize;
    }

    public override string ToString() => Name;
}
