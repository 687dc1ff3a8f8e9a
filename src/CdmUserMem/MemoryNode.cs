using CdmUserMem.Interop;

namespace CdmUserMem;

public enum MemoryNodeKind
{
    /// <summary>Pageable system memory.</summary>
    Host,
    /// <summary>A fixed arena, populated at creation and locked where allowed, whose frames the CPU maps
    /// directly: device memory that stays CPU-coherent.</summary>
    CoherentDevice,
}

/// <summary>Frames in use on a node. The host node is unbounded: its capacity reads 0.</summary>
public readonly record struct NodeUsage(ulong UsedBytes, ulong CapacityBytes)
{
    public ulong FreeBytes => CapacityBytes == 0 ? 0 : CapacityBytes - UsedBytes;
}

/// <summary>A NUMA-like memory node: the host, or a coherent device with its own arena.</summary>
public sealed class MemoryNode
{
    private volatile bool _removed;

    internal MemoryNode(MemorySystem system, int id, string name, MemoryNodeKind kind, ulong capacity, int distance,
                        bool isPinned, string? pinFailure, bool isExclusive = false)
    {
        IsExclusive = isExclusive;
        System = system;
        Id = id;
        Name = name;
        Kind = kind;
        CapacityBytes = capacity;
        Distance = distance;
        IsPinned = isPinned;
        PinFailure = pinFailure;
    }

    public MemorySystem System { get; }

    /// <summary>Engine node index: 0 is the host.</summary>
    public int Id { get; }

    public string Name { get; }

    public MemoryNodeKind Kind { get; }

    /// <summary>Arena size in bytes; 0 for the host node.</summary>
    public ulong CapacityBytes { get; }

    /// <summary>Relative access cost, as in the ACPI SLIT: 10 is local.</summary>
    public int Distance { get; }

    /// <summary>
    /// An exclusive node is never a fallback target: only a policy (or a placement, or a migration) that names
    /// it puts pages there; interleave and preferred-many policies use it only when they name it.
    /// </summary>
    public bool IsExclusive { get; }

    /// <summary>False once <see cref="MemorySystem.RemoveNode"/> has drained and removed the node.</summary>
    public bool IsOnline => !_removed;

    internal void MarkRemoved() => _removed = true;

    /// <summary>Whether the arena is locked in RAM with mlock (see <see cref="MemorySystem.IsMemoryLocked"/>).</summary>
    public bool IsPinned { get; }

    /// <summary>Why the arena is not locked (an ordinary user's bounded RLIMIT_MEMLOCK), or null.</summary>
    public string? PinFailure { get; }

    public NodeUsage GetUsage()
    {
        var engine = System.EngineHandle;
        int rc = CdmEngine.NodeUsage(engine, Id, out ulong used, out ulong total);
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"reading the usage of node '{Name}'");
        return new NodeUsage(used * CdmEngine.PageSize, total * CdmEngine.PageSize);
    }

    public override string ToString() => Name;
}
