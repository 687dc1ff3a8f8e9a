using CdmUserMem.Interop;
using CdmUserMem.Telemetry;

namespace CdmUserMem;

/// <summary>How the kernel lets the fault engine handle faults.</summary>
public enum FaultMode
{
    /// <summary>Every fault waits for the engine, including faults raised inside system calls.</summary>
    Full,
    /// <summary>
    /// UFFD_USER_MODE_ONLY (what an unprivileged process gets while vm.unprivileged_userfaultfd=0 and
    /// /dev/userfaultfd is not open to it): a system call that reads or writes a page that is not mapped
    /// at that moment (untouched, or detached by a running migration) fails with EFAULT instead of waiting.
    /// Hold a <see cref="Region.Pin"/> lease over memory handed to the kernel.
    /// </summary>
    UserModeOnly,
}

/// <summary>
/// A heterogeneous memory system: the host node, coherent device nodes, and the regions whose pages move
/// between them. One native fault-service thread serves every region of the system.
/// </summary>
public sealed partial class MemorySystem : IDisposable
{
    /// <summary>Most device nodes one memory system holds (node ids 1 to 63).</summary>
    public const int MaxDeviceNodes = CdmEngine.MaxNodes;

    private readonly EngineSafeHandle _engine;
    private readonly int _ownerProcessId = Environment.ProcessId;
    private volatile MemoryNode[] _nodes;
    private readonly HashSet<Region> _regions = new();
    private readonly HashSet<ContiguousReservation> _reservations = new();
    private readonly Dictionary<nint, NativeHeap> _heaps = new();
    private readonly Lock _sync = new();
    private volatile bool _disposed;

    private MemorySystem(EngineSafeHandle engine, uint mode, MemorySystemOptions options)
    {
        _engine = engine;
        FaultMode = (mode & CdmEngine.ModeUserOnly) != 0 ? FaultMode.UserModeOnly : FaultMode.Full;
        UserfaultfdSource = (mode & CdmEngine.ModeDevUserfaultfd) != 0 ? "/dev/userfaultfd" : "userfaultfd(2)";
        IsMemoryLocked = (mode & CdmEngine.ModeLocked) != 0;
        Options = options;
        CopyEngine = new CopyEngine(this, options.CopyChannels);
        Host = new MemoryNode(this, CdmEngine.HostNode, "host", MemoryNodeKind.Host, 0, 10, isPinned: false, pinFailure: null);
        _nodes = [Host];
        Topology = new MemoryTopology(this);
        Telemetry = new SystemTelemetry(this, options.LoggerFactory);
        if (FaultMode == FaultMode.UserModeOnly && !options.UserModeOnly) Log.DegradedFaultMode(Telemetry.Logger, UserfaultfdSource);
        MemoryMetrics.Register(Telemetry);
    }

    /// <summary>Starts a memory system: opens a userfaultfd and starts the native fault-service thread.</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    /// <exception cref="UserfaultfdUnavailableException">The kernel refuses userfaultfd or lacks features.</exception>
    public static MemorySystem Create(MemorySystemOptions? options = null)
    {
        options ??= new MemorySystemOptions();
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("CdmUserMem runs on Linux (userfaultfd); Windows support is not built yet.");
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MappingBudget, 16u, nameof(options.MappingBudget));
        if (options.CopyChannels is < 1 or > 64)
            throw new ArgumentOutOfRangeException(nameof(options.CopyChannels), options.CopyChannels, "Copy channels must be 1 to 64.");
        int rc;
        nint engine;
        uint mode;
        ulong missing;
        try
        {
            uint flags = options.UserModeOnly ? CdmEngine.CreateUserModeOnly : 0;
            rc = CdmEngine.EngineCreate(options.MappingBudget, (uint)options.CopyChannels, flags, out engine, out mode, out missing);
        }
        catch (DllNotFoundException e)
        {
            throw new DllNotFoundException(
                "libcdmengine.so (CdmUserMem's native fault engine) was not found beside the application. It is " +
                "compiled by `dotnet build` of CdmUserMem.Interop, which needs gcc.", e);
        }
        if (rc < 0) throw NativeErrors.ForEngineCreate(rc, missing);
        var handle = new EngineSafeHandle(engine);
        if (!options.RecordLatencies) CdmEngine.LatencyEnable(handle, 0);
        return new MemorySystem(handle, mode, options);
    }

    public MemorySystemOptions Options { get; }

    public FaultMode FaultMode { get; }

    /// <summary>Where the engine's userfaultfd came from: "/dev/userfaultfd" (full mode for whoever may open
    /// it, without vm.unprivileged_userfaultfd) or "userfaultfd(2)".</summary>
    public string UserfaultfdSource { get; }

    /// <summary>
    /// Whether device arenas, and with them every region and staging area, are locked in RAM. Locking is
    /// all or nothing (UFFDIO_MOVE moves pages only between areas that are both locked or both not), so it
    /// needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK.
    /// </summary>
    public bool IsMemoryLocked { get; }

    /// <summary>The pageable host node (id 0).</summary>
    public MemoryNode Host { get; }

    /// <summary>Every node, the host first; nodes are only ever added, so a node's id indexes this list.</summary>
    public IReadOnlyList<MemoryNode> Nodes => _nodes;

    /// <summary>The copy engine migrations use, with <see cref="MemorySystemOptions.CopyChannels"/> channels.</summary>
    public CopyEngine CopyEngine { get; }

    /// <summary>This system's share of the <c>CdmUserMem</c> meter and its logger.</summary>
    internal SystemTelemetry Telemetry { get; }

    internal EngineSafeHandle EngineHandle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (Environment.ProcessId != _ownerProcessId)
                throw new ForkedProcessException("This process is a fork() child of the one that created the memory system: " +
                                                 "the child owns a private copy of the regions' memory, but not the engine.");
            return _engine;
        }
    }

    /// <summary>
    /// Adds a coherent device node: an arena of <paramref name="capacity"/> bytes of anonymous memory,
    /// populated now and locked with mlock where the process may lock everything (see
    /// <see cref="MemoryNode.IsPinned"/> and <see cref="IsMemoryLocked"/>).
    /// </summary>
    /// <exception cref="NodeLimitExceededException"><see cref="MaxDeviceNodes"/> device nodes exist already.</exception>
    /// <param name="name">A name unique in the system.</param>
    /// <param name="capacity">Arena bytes, a multiple of the page size.</param>
    /// <param name="distance">Distance from the host (10 is local); node-to-node distances default through the host.</param>
    /// <param name="exclusive">Never a fallback target: only policies that name it place pages there (see
    /// <see cref="MemoryNode.IsExclusive"/>).</param>
    public MemoryNode AddCoherentDeviceNode(string name, ulong capacity, int distance = 40, bool exclusive = false) =>
        AddDeviceNode(name, capacity, distance, exclusive, MemoryNodeKind.CoherentDevice);

    /// <summary>
    /// Adds a private device node, as the kernel's device-private memory: the CPU cannot map its memory, so a
    /// page migrated there is not mapped in its region; a CPU touch of it faults, and the engine copies it back
    /// to the nearest CPU-reachable node with room (<see cref="MemoryTopology.FallbackOrder"/>, the host
    /// last) and wakes the toucher. Only migrations put pages there: first touches, placements and policies
    /// never name it, and pins bring pages back first. A fork() child does not see pages resident there.
    /// </summary>
    public MemoryNode AddPrivateDeviceNode(string name, ulong capacity, int distance = 40, bool exclusive = false)
    {
        var node = AddDeviceNode(name, capacity, distance, exclusive, MemoryNodeKind.PrivateDevice);
        SendBackOrder(node);
        return node;
    }

    /// <summary>Tells the engine where a CPU touch brings a private node's pages: its fallback order now.</summary>
    internal unsafe void SendBackOrder(MemoryNode node)
    {
        var order = Topology.FallbackOrder(node);
        sbyte* ids = stackalloc sbyte[order.Count];
        for (int i = 0; i < order.Count; i++) ids[i] = (sbyte)order[i].Id;
        int rc = CdmEngine.NodeMakePrivate(EngineHandle, node.Id, ids, (uint)order.Count);
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"setting where private node '{node.Name}' returns pages");
    }

    private MemoryNode AddDeviceNode(string name, ulong capacity, int distance, bool exclusive, MemoryNodeKind kind)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (capacity == 0 || capacity % CdmEngine.PageSize != 0)
            throw new ArgumentException($"Capacity must be a positive multiple of the page size ({CdmEngine.PageSize}); got {capacity}.", nameof(capacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(distance, 10);
        // Node creation populates the whole arena: serialised, but it is the node list's own change.
        lock (_sync)
        {
            var engine = EngineHandle;
            if (_nodes.Any(n => n.Name == name))
                throw new ArgumentException($"A node named '{name}' already exists.", nameof(name));
            int rc = CdmEngine.NodeAdd(engine, capacity, out int id, out int pinned, out int mlockErrno);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"creating the {capacity}-byte arena of device node '{name}'");
            string? pinFailure = pinned != 0 ? null :
                "not locked: CdmUserMem locks arenas only together with every region (UFFDIO_MOVE moves pages only " +
                "between areas that are both locked or both not), which needs CAP_IPC_LOCK or an unlimited " +
                "RLIMIT_MEMLOCK (ulimit -l unlimited)";
            var node = new MemoryNode(this, id, name, kind, capacity, distance, pinned != 0, pinFailure, exclusive);
            if (pinFailure is not null) Log.ArenaNotPinned(Telemetry.Logger, name, capacity, pinFailure);
            _nodes = [.. _nodes, node];
            return node;
        }
    }

    /// <summary>The node with this name.</summary>
    /// <exception cref="ArgumentException">No such node.</exception>
    public MemoryNode GetNode(string name)
    {
        var nodes = _nodes;
        return nodes.FirstOrDefault(n => n.Name == name)
            ?? throw new ArgumentException($"No node named '{name}'; nodes: {string.Join(", ", (object[])nodes)}.", nameof(name));
    }

    /// <summary>Reserves a virtual range; nothing is populated until first touch.</summary>
    public Region Reserve(ulong size, RegionOptions? options = null)
    {
        options ??= new RegionOptions();
        if (size == 0 || size % CdmEngine.PageSize != 0)
            throw new ArgumentException($"Size must be a positive multiple of the page size ({CdmEngine.PageSize}); got {size}.", nameof(size));
        var placement = options.Placement ?? Host;
        ValidatePlacementNode(placement, nameof(options.Placement));
        if (options.FaultAroundPages is 0 or > 4096)
            throw new ArgumentOutOfRangeException(nameof(options.FaultAroundPages), options.FaultAroundPages, "Fault-around must be 1 to 4096 pages.");
        if (options.ReadaheadPages > 65536)
            throw new ArgumentOutOfRangeException(nameof(options.ReadaheadPages), options.ReadaheadPages, "Readahead must be 0 to 65536 pages.");
        if (options.Group is not null && !ReferenceEquals(options.Group.System, this))
            throw new ArgumentException($"Group '{options.Group.Name}' belongs to another memory system.", nameof(options));
        // The native call is short (mmap, register, table insert) and takes no managed lock.
        var engine = EngineHandle;
        int rc = CdmEngine.RegionCreate(engine, size, placement.Id, options.FaultAroundPages, options.ReadaheadPages, out nint handle, out ulong baseAddress);
        if (rc == CdmEngine.ErrorMappingBudget && Telemetry.Logger.IsEnabled(Microsoft.Extensions.Logging.LogLevel.Warning))
        {
            CdmEngine.EngineStats(engine, out var stats);
            Log.MappingBudgetRefused(Telemetry.Logger, size, Options.MappingBudget, stats.MappingsInUse);
        }
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"reserving a region of {size} bytes");
        var regionHandle = new RegionSafeHandle(handle, engine);
        Region region;
        try
        {
            region = new Region(this, regionHandle, (nint)baseAddress, size, placement, options.FaultAroundPages, options.Group);
        }
        catch
        {
            regionHandle.Dispose();
            throw;
        }
        bool disposed;
        lock (_sync)
        {
            disposed = _disposed;
            if (!disposed) _regions.Add(region);
        }
        if (disposed)
        {
            region.Dispose();
            throw new ObjectDisposedException(nameof(MemorySystem));
        }
        return region;
    }

    /// <summary>Creates a heap whose memory comes from this system's regions, placed on
    /// <see cref="HeapOptions.Placement"/> (the host by default).</summary>
    /// <exception cref="InvalidOperationException">16 heaps exist in the process already.</exception>
    public NativeHeap CreateHeap(HeapOptions? options = null)
    {
        options ??= new HeapOptions();
        var placement = options.Placement ?? Host;
        ValidatePlacementNode(placement, nameof(options.Placement));
        if (options.SmallReserveBytes == 0 || options.SmallReserveBytes % (64 * 1024) != 0)
            throw new ArgumentException("SmallReserveBytes must be a positive multiple of 64 KiB.", nameof(options));
        if (options.LargeReserveBytes == 0 || options.LargeReserveBytes % CdmEngine.PageSize != 0)
            throw new ArgumentException("LargeReserveBytes must be a positive multiple of the page size.", nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.HugeThresholdBytes, (ulong)CdmEngine.HeapSmallMax + 1, nameof(options.HugeThresholdBytes));
        var native = new CdmHeapOptions
        {
            Placement = placement.Id,
            Flags = options.Checked ? CdmEngine.HeapChecked : 0,
            SmallReserve = options.SmallReserveBytes,
            LargeReserve = options.LargeReserveBytes,
            // 0 would mean the native default: a retention of none is one byte.
            RetentionBytes = Math.Max(options.RetentionBytes, 1),
            HugeThreshold = options.HugeThresholdBytes,
        };
        var engine = EngineHandle;
        int rc = CdmEngine.HeapCreate(engine, native, out nint handle);
        if (rc == CdmEngine.ErrorHeapLimit)
            throw new InvalidOperationException($"A process holds at most {CdmEngine.HeapMax} heaps at once; dispose one first.");
        if (rc < 0) throw NativeErrors.ForErrno(rc, "creating a heap");
        var heap = new NativeHeap(this, new HeapSafeHandle(handle, engine), options, placement);
        lock (_sync) _heaps[handle] = heap;
        return heap;
    }

    /// <summary>The heap of this system holding <paramref name="pointer"/>, or null.</summary>
    public unsafe NativeHeap? FindHeap(void* pointer)
    {
        nint native = CdmEngine.HeapOf(pointer);
        lock (_sync) return native != 0 && _heaps.TryGetValue(native, out var heap) ? heap : null;
    }

    internal void OnHeapDisposed(NativeHeap heap)
    {
        lock (_sync)
            if (_heaps.TryGetValue(heap.NativeHandle, out var known) && ReferenceEquals(known, heap)) _heaps.Remove(heap.NativeHandle);
    }

    public MemoryStatistics GetStatistics()
    {
        CdmEngine.EngineStats(EngineHandle, out var s);
        return new MemoryStatistics
        {
            FirstTouchFaults = s.FaultsMissing,
            WriteProtectFaults = s.FaultsOnMigrating,
            FaultsWaitedOnMigration = s.FaultsOnMigrating,
            PagesZeroFilledOnHost = s.PagesZeroFilledHost,
            PagesFirstTouchedOnDevice = s.PagesFirstTouchDevice,
            FirstTouchFallbacks = s.FirstTouchFallbacks,
            PagesMigrated = s.PagesMigrated,
            MigrationsAborted = s.MigrationsAborted,
            BytesCopied = s.BytesCopied,
            MappingBudgetRefusals = s.BudgetRefusals,
            MappingsInUse = s.MappingsInUse,
            MappingBudget = s.MappingBudget,
            PagesReadAhead = s.PagesReadAhead,
            PagesRefusedPinned = s.PagesRefusedPinned,
            PagesRefusedShared = s.PagesRefusedShared,
            PagesUnshared = s.PagesUnshared,
            PagesDemoted = s.PagesDemoted,
            PagesCompacted = s.PagesCompacted,
            PrivateNodeFaults = s.PrivateFaults,
            PagesRefilled = s.PagesRefilled,
            FillErrors = s.FillErrors,
            FaultLoopErrors = s.FaultLoopErrors,
            MigrationDetachTime = TimeSpan.FromTicks((long)(s.MigrateNsDetach / 100)),
            MigrationCopyTime = TimeSpan.FromTicks((long)(s.MigrateNsCopy / 100)),
            MigrationAttachTime = TimeSpan.FromTicks((long)(s.MigrateNsAttach / 100)),
            MigrationReleaseTime = TimeSpan.FromTicks((long)(s.MigrateNsRelease / 100)),
        };
    }

    /// <summary>
    /// A snapshot of one latency histogram the native engine records (empty when
    /// <see cref="MemorySystemOptions.RecordLatencies"/> is off). Reading it never waits on a fault.
    /// </summary>
    public unsafe LatencyDistribution GetLatency(LatencyKind kind)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown latency kind.");
        var buckets = new ulong[CdmEngine.LatencyBuckets];
        ulong sum;
        fixed (ulong* p = buckets)
        {
            int rc = CdmEngine.LatencySnapshot(EngineHandle, (int)kind, p, (uint)buckets.Length, out sum);
            if (rc < 0) throw NativeErrors.ForErrno(rc, "reading a latency histogram");
        }
        return new LatencyDistribution(kind, buckets, sum);
    }

    /// <summary>Turns the native latency recording on or off at run time (benchmarks compare the two on one engine).</summary>
    internal void SetLatencyRecording(bool on) => CdmEngine.LatencyEnable(EngineHandle, on ? 1 : 0);

    /// <summary>Test-only fault injection: calls skip+1 to skip+times of a system call fail with errno.</summary>
    internal void InjectFault(CdmOp call, int errno, uint skip = 0, uint times = 1)
    {
        int rc = CdmEngine.Inject(EngineHandle, (int)call, errno, skip, times);
        if (rc < 0) throw NativeErrors.ForErrno(rc, "arming fault injection");
    }

    /// <summary>The node with an engine id; nodes are only ever added, so ids stay valid.</summary>
    internal MemoryNode NodeById(int id) => _nodes[id];

    internal void ValidateNode(MemoryNode node, string paramName)
    {
        ArgumentNullException.ThrowIfNull(node, paramName);
        if (!ReferenceEquals(node.System, this))
            throw new ArgumentException($"Node '{node.Name}' belongs to another memory system.", paramName);
    }

    /// <summary>As <see cref="ValidateNode"/>, and the node must still be online: a target for pages.</summary>
    internal void ValidatePlacementNode(MemoryNode node, string paramName)
    {
        ValidateMigrationTarget(node, paramName);
        if (node.Kind == MemoryNodeKind.PrivateDevice)
            throw new ArgumentException($"Node '{node.Name}' is private: the CPU cannot map it, so first touches cannot land there; " +
                                        "migrate pages to it instead.", paramName);
    }

    /// <summary>As <see cref="ValidateNode"/>, and the node must still be online: a target for migrations.</summary>
    internal void ValidateMigrationTarget(MemoryNode node, string paramName)
    {
        ValidateNode(node, paramName);
        if (!node.IsOnline) throw new ArgumentException($"Node '{node.Name}' was removed; it takes no pages.", paramName);
    }

    internal void OnReservationCreated(ContiguousReservation reservation)
    {
        bool disposed;
        lock (_sync)
        {
            disposed = _disposed;
            if (!disposed) _reservations.Add(reservation);
        }
        if (disposed)
        {
            reservation.Dispose();
            throw new ObjectDisposedException(nameof(MemorySystem));
        }
    }

    internal void OnReservationDisposed(ContiguousReservation reservation)
    {
        lock (_sync) _reservations.Remove(reservation);
    }

    internal void OnRegionDisposed(Region region)
    {
        lock (_sync) _regions.Remove(region);
    }

    /// <summary>Disposes every region, stops the fault thread, and releases the device arenas.</summary>
    public void Dispose()
    {
        Region[] regions;
        lock (_sync)
        {
            if (_disposed) return;
            _disposed = true;
            regions = _regions.ToArray();
        }
        MemoryMetrics.Unregister(Telemetry);
        NativeHeap[] heaps;
        lock (_sync) heaps = _heaps.Values.ToArray();
        foreach (var heap in heaps) heap.Dispose();
        ContiguousReservation[] reservations;
        lock (_sync) reservations = _reservations.ToArray();
        foreach (var reservation in reservations) reservation.Dispose();
        foreach (var region in regions) region.Dispose();
        _engine.Dispose();
    }
}
