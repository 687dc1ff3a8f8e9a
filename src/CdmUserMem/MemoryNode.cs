using CdmUserMem.Interop;

namespace CdmUserMem;

public enum MemoryNodeKind
{
    /// <summary>Pageable system memory.</summary>
    Host,
    /// <summary>A fixed arena, populated at creation and locked where allowed, whose frames the CPU maps
    /// directly: device memory that stays CPU-coherent.</summary>
    CoherentDevice,
    /// <summary>Device memory the CPU cannot map (the kernel's device-private memory): pages migrated there
    /// are unmapped, and a CPU touch brings them back (see <see cref="MemorySystem.AddPrivateDeviceNode"/>).</summary>
    PrivateDevice,
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

    private NodeWatermarks? _watermarks;
    private readonly Lock _pressureSync = new(); // the engine's setting and _watermarks change together

    /// <summary>
    /// Whether a long-term pin (<see cref="Region.PinLongTerm"/>) first migrates the node's pages to the host,
    /// as the kernel migrates pages out of ZONE_MOVABLE and CMA before a FOLL_LONGTERM pin, so that a pin held
    /// for a long time never keeps device (or exclusive) memory busy, nor blocks compaction or unplug. Off by
    /// default; short-term pins (<see cref="Region.Pin"/>) never migrate.
    /// </summary>
    public bool MigrateOnLongTermPin { get; set; }

    /// <summary>The pressure watermarks, or null while pressure is off (the default).</summary>
    public NodeWatermarks? Watermarks => _watermarks;

    /// <summary>
    /// Turns pressure (oversubscription handling) on: while more than <paramref name="high"/> of the node is in
    /// use, or when a first touch or migration finds it full, a background thread demotes its coldest pages
    /// to the next node by distance (<see cref="MemoryTopology.FallbackOrder"/>, taken now: never an exclusive
    /// node) until <paramref name="low"/> is in use. Cold means least recently placed: first touched or
    /// migrated there longest ago (the engine tracks no access hotness). Pinned pages never move.
    /// </summary>
    /// <exception cref="InvalidOperationException">The host node, or a removed node.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Not 0 &lt; low &lt; high ≤ 1.</exception>
    public unsafe void EnablePressure(double high = 0.9, double low = 0.7)
    {
        if (Kind == MemoryNodeKind.Host) throw new InvalidOperationException("The host node is unbounded: it has no pressure to relieve.");
        if (!IsOnline) throw new InvalidOperationException($"Node '{Name}' was removed.");
        if (!(high > 0 && high <= 1)) throw new ArgumentOutOfRangeException(nameof(high), high, "The high watermark is a fraction in (0, 1].");
        if (!(low >= 0 && low < high)) throw new ArgumentOutOfRangeException(nameof(low), low, "The low watermark is a fraction below the high one.");
        ulong frames = CapacityBytes / CdmEngine.PageSize;
        ulong highFrames = Math.Max(1, (ulong)(frames * high)), lowFrames = Math.Min((ulong)(frames * low), highFrames - 1);
        var order = System.Topology.FallbackOrder(this);
        sbyte* ids = stackalloc sbyte[order.Count];
        for (int i = 0; i < order.Count; i++) ids[i] = (sbyte)order[i].Id;
        lock (_pressureSync)
        {
            int rc = CdmEngine.NodeSetPressure(System.EngineHandle, Id, highFrames, lowFrames, ids, (uint)order.Count);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"turning pressure on for node '{Name}'");
            _watermarks = new NodeWatermarks(high, low, order);
        }
    }

    /// <summary>
    /// Reserves <paramref name="bytes"/> of contiguous frames of this node for explicit use, as CMA does: when
    /// no free window is that large, the window with the fewest movable pages is compacted (its pages move
    /// to other frames of the node, else to the next node by distance, keeping their addresses and data).
    /// Pinned pages block a window; when every window holds some, the call throws and names them. The extent
    /// is mapped at <paramref name="address"/> when one is given (page-aligned, free), else where it lies in
    /// the node's arena.
    /// </summary>
    /// <exception cref="CompactionBlockedException">Pinned pages in every window; nothing reserved.</exception>
    /// <exception cref="DeviceCapacityExhaustedException">No window that large (capacity, other reservations).</exception>
    /// <exception cref="ArgumentException">Not a device node, a removed one, a bad size or address, or an address in use.</exception>
    public unsafe ContiguousReservation ReserveContiguous(ulong bytes, nint address = 0)
    {
        if (Kind == MemoryNodeKind.Host) throw new ArgumentException("The host node has no frames to reserve; reserve on a device node.");
        if (Kind == MemoryNodeKind.PrivateDevice) throw new ArgumentException($"Node '{Name}' is private: the CPU cannot map a reservation there.");
        if (!IsOnline) throw new ArgumentException($"Node '{Name}' was removed.");
        if (bytes == 0 || bytes % CdmEngine.PageSize != 0)
            throw new ArgumentException($"Size must be a positive multiple of the page size ({CdmEngine.PageSize}); got {bytes}.", nameof(bytes));
        if (address % (nint)CdmEngine.PageSize != 0 || address < 0)
            throw new ArgumentException($"Address 0x{address:x} is not page-aligned.", nameof(address));
        var order = System.Topology.FallbackOrder(this);
        sbyte* ids = stackalloc sbyte[order.Count];
        for (int i = 0; i < order.Count; i++) ids[i] = (sbyte)order[i].Id;
        const int Room = 16;
        ulong* blocked = stackalloc ulong[Room];
        uint blockedCount = Room;
        var engine = System.EngineHandle;
        int rc = CdmEngine.ExtentReserve(engine, Id, bytes / CdmEngine.PageSize, ids, (uint)order.Count, (ulong)address,
                                         out nint extent, out ulong firstFrame, out ulong mapped, blocked, ref blockedCount);
        if (rc == CdmEngine.ErrorPinned)
        {
            var pages = new nint[blockedCount];
            for (int i = 0; i < pages.Length; i++) pages[i] = (nint)blocked[i];
            throw new CompactionBlockedException(
                $"No {bytes}-byte window of node '{Name}' is free of pinned pages; pinned: {string.Join(", ", pages.Select(p => $"0x{p:x}"))}. " +
                "Release those pins (or wait for the kernel's I/O on them) and try again; nothing was reserved.", pages);
        }
        if (rc == -28) // ENOSPC
            throw new DeviceCapacityExhaustedException(
                $"Node '{Name}' has no {bytes}-byte window of frames that compaction could free: its capacity is {CapacityBytes} bytes and " +
                "other contiguous reservations (or pages in flight) fragment it.");
        if (rc == -17) // EEXIST: something is mapped there
            throw new ArgumentException($"[0x{address:x}, +{bytes}) is not free to map.", nameof(address));
        if (rc == -11) // EAGAIN
            throw new InvalidOperationException($"Pages in every window of node '{Name}' stayed busy (being filled or migrated) " +
                                                "through four attempts; nothing was reserved. Try again.");
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"reserving {bytes} contiguous bytes of node '{Name}'");
        var reservation = new ContiguousReservation(this, new ExtentSafeHandle(extent, engine), firstFrame * CdmEngine.PageSize, bytes, (nint)mapped);
        System.OnReservationCreated(reservation);
        return reservation;
    }

    /// <summary>
    /// Demotes up to <paramref name="bytes"/> of the node's coldest (least recently placed) unpinned pages now,
    /// to the next node by distance with room, as writing to a cgroup's memory.reclaim reclaims on request.
    /// Returns the bytes demoted.
    /// </summary>
    /// <exception cref="InvalidOperationException">The host node, or a removed node.</exception>
    public unsafe ulong Demote(ulong bytes)
    {
        if (Kind == MemoryNodeKind.Host) throw new InvalidOperationException("The host node is the last tier: nothing to demote to.");
        if (!IsOnline) throw new InvalidOperationException($"Node '{Name}' was removed.");
        var order = System.Topology.FallbackOrder(this);
        sbyte* ids = stackalloc sbyte[order.Count];
        for (int i = 0; i < order.Count; i++) ids[i] = (sbyte)order[i].Id;
        int rc = CdmEngine.NodeDemote(System.EngineHandle, Id, bytes / CdmEngine.PageSize, ids, (uint)order.Count, out ulong demoted);
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"demoting pages of node '{Name}'");
        return demoted * CdmEngine.PageSize;
    }

    /// <summary>Turns pressure off: nothing is demoted any more.</summary>
    public unsafe void DisablePressure()
    {
        if (Kind == MemoryNodeKind.Host) return;
        lock (_pressureSync)
        {
            int rc = CdmEngine.NodeSetPressure(System.EngineHandle, Id, 0, 0, null, 0);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"turning pressure off for node '{Name}'");
            _watermarks = null;
        }
    }

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

/// <summary>A node's pressure watermarks (fractions of its capacity) and where it demotes to.</summary>
public sealed record NodeWatermarks(double High, double Low, IReadOnlyList<MemoryNode> DemotionOrder);
