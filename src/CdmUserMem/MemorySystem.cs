using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>How the kernel lets the fault engine handle faults.</summary>
public enum FaultMode
{
    /// <summary>Every fault waits for the engine, including faults raised inside system calls.</summary>
    Full,
    /// <summary>
    /// UFFD_USER_MODE_ONLY (what an unprivileged process gets while vm.unprivileged_userfaultfd=0): a system
    /// call that reads or writes an untouched page fails with EFAULT. Call <see cref="Region.Prefault"/> first.
    /// </summary>
    UserModeOnly,
}

/// <summary>
/// A heterogeneous memory system: the host node, coherent device nodes, and the regions whose pages move
/// between them. One native fault-service thread serves every region of the system.
/// </summary>
public sealed class MemorySystem : IDisposable
{
    private readonly EngineSafeHandle _engine;
    private readonly List<MemoryNode> _nodes = new();
    private readonly HashSet<Region> _regions = new();
    private readonly Lock _sync = new();
    private long _bytesCopied;
    private volatile bool _disposed;

    private MemorySystem(EngineSafeHandle engine, FaultMode mode, MemorySystemOptions options)
    {
        _engine = engine;
        FaultMode = mode;
        Options = options;
        CopyEngine = new CopyEngine(this, options.CopyChannels);
        Host = new MemoryNode(this, CdmEngine.HostNode, "host", MemoryNodeKind.Host, 0, 10, isPinned: false, pinFailure: null);
        _nodes.Add(Host);
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
            rc = CdmEngine.EngineCreate(options.MappingBudget, (uint)options.CopyChannels, out engine, out mode, out missing);
        }
        catch (DllNotFoundException e)
        {
            throw new DllNotFoundException(
                "libcdmengine.so (CdmUserMem's native fault engine) was not found beside the application. It is " +
                "compiled by `dotnet build` of CdmUserMem.Interop, which needs gcc.", e);
        }
        if (rc < 0) throw NativeErrors.ForEngineCreate(rc, missing);
        var faultMode = (mode & CdmEngine.ModeUserOnly) != 0 ? FaultMode.UserModeOnly : FaultMode.Full;
        return new MemorySystem(new EngineSafeHandle(engine), faultMode, options);
    }

    public MemorySystemOptions Options { get; }

    public FaultMode FaultMode { get; }

    /// <summary>The pageable host node (id 0).</summary>
    public MemoryNode Host { get; }

    public IReadOnlyList<MemoryNode> Nodes
    {
        get { lock (_sync) return _nodes.ToArray(); }
    }

    /// <summary>The copy engine migrations use, with <see cref="MemorySystemOptions.CopyChannels"/> channels.</summary>
    public CopyEngine CopyEngine { get; }

    internal EngineSafeHandle EngineHandle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _engine;
        }
    }

    /// <summary>
    /// Adds a coherent device node: a memfd arena of <paramref name="capacity"/> bytes, populated now and
    /// pinned with mlock where the process may (see <see cref="MemoryNode.IsPinned"/>).
    /// </summary>
    public MemoryNode AddCoherentDeviceNode(string name, ulong capacity, int distance = 40)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (capacity == 0 || capacity % CdmEngine.PageSize != 0)
            throw new ArgumentException($"Capacity must be a positive multiple of the page size ({CdmEngine.PageSize}); got {capacity}.", nameof(capacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(distance, 10);
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_nodes.Any(n => n.Name == name))
                throw new ArgumentException($"A node named '{name}' already exists.", nameof(name));
            int rc = CdmEngine.NodeAdd(_engine, capacity, out int id, out int pinned, out int mlockErrno);
            if (rc == -28) throw new InvalidOperationException($"A memory system holds at most {CdmEngine.MaxNodes} device nodes.");
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"creating the {capacity}-byte arena of device node '{name}'");
            string? pinFailure = pinned != 0 ? null :
                mlockErrno is 1 or 12 or 11
                    ? $"mlock refused ({NativeErrors.Describe(-mlockErrno)}): the arena exceeds RLIMIT_MEMLOCK; raise it (ulimit -l) or grant CAP_IPC_LOCK"
                    : $"mlock failed: {NativeErrors.Describe(-mlockErrno)}";
            var node = new MemoryNode(this, id, name, MemoryNodeKind.CoherentDevice, capacity, distance, pinned != 0, pinFailure);
            _nodes.Add(node);
            return node;
        }
    }

    /// <summary>The node with this name.</summary>
    /// <exception cref="ArgumentException">No such node.</exception>
    public MemoryNode GetNode(string name)
    {
        lock (_sync)
        {
            return _nodes.FirstOrDefault(n => n.Name == name)
                ?? throw new ArgumentException($"No node named '{name}'; nodes: {string.Join(", ", _nodes)}.", nameof(name));
        }
    }

    /// <summary>Reserves a virtual range; nothing is populated until first touch.</summary>
    public Region Reserve(ulong size, RegionOptions? options = null)
    {
        options ??= new RegionOptions();
        if (size == 0 || size % CdmEngine.PageSize != 0)
            throw new ArgumentException($"Size must be a positive multiple of the page size ({CdmEngine.PageSize}); got {size}.", nameof(size));
        var placement = options.Placement ?? Host;
        ValidateNode(placement, nameof(options.Placement));
        if (options.FaultAroundPages is 0 or > 4096)
            throw new ArgumentOutOfRangeException(nameof(options.FaultAroundPages), options.FaultAroundPages, "Fault-around must be 1 to 4096 pages.");
        if (options.ReadaheadPages > 65536)
            throw new ArgumentOutOfRangeException(nameof(options.ReadaheadPages), options.ReadaheadPages, "Readahead must be 0 to 65536 pages.");
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int rc = CdmEngine.RegionCreate(_engine, size, placement.Id, options.FaultAroundPages, options.ReadaheadPages, out nint handle, out ulong baseAddress);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"reserving a region of {size} bytes");
            var region = new Region(this, new RegionSafeHandle(handle, _engine), (nint)baseAddress, size, placement, options.FaultAroundPages);
            _regions.Add(region);
            return region;
        }
    }

    public MemoryStatistics GetStatistics()
    {
        CdmEngine.EngineStats(EngineHandle, out var s);
        return new MemoryStatistics
        {
            FirstTouchFaults = s.FaultsMissing,
            WriteProtectFaults = s.FaultsWriteProtect,
            PagesZeroFilledOnHost = s.PagesZeroFilledHost,
            PagesFirstTouchedOnDevice = s.PagesFirstTouchDevice,
            FirstTouchFallbacks = s.FirstTouchFallbacks,
            PagesMigrated = s.PagesMigrated,
            MigrationsAborted = s.MigrationsAborted,
            BytesCopied = (ulong)Interlocked.Read(ref _bytesCopied),
            MappingBudgetRefusals = s.BudgetRefusals,
            MappingsInUse = s.MappingsInUse,
            MappingBudget = s.MappingBudget,
            PagesReadAhead = s.PagesReadAhead,
        };
    }

    /// <summary>The node with an engine id; nodes are only ever added, so ids stay valid.</summary>
    internal MemoryNode NodeById(int id)
    {
        lock (_sync) return _nodes[id];
    }

    internal void AddBytesCopied(ulong bytes) => Interlocked.Add(ref _bytesCopied, (long)bytes);

    internal void ValidateNode(MemoryNode node, string paramName)
    {
        ArgumentNullException.ThrowIfNull(node, paramName);
        if (!ReferenceEquals(node.System, this))
            throw new ArgumentException($"Node '{node.Name}' belongs to another memory system.", paramName);
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
        foreach (var region in regions) region.Dispose();
        _engine.Dispose();
    }
}
