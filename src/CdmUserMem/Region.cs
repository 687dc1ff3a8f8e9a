using System.Runtime.CompilerServices;
using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>
/// One reserved virtual range of anonymous private memory whose pages fault in on first touch and move
/// between nodes at the same address. In <see cref="FaultMode.UserModeOnly"/>, hold a <see cref="Pin"/>
/// lease over memory handed to system calls.
/// </summary>
public sealed unsafe partial class Region : IDisposable
{
    public const uint PageSize = CdmEngine.PageSize;

    private readonly RegionSafeHandle _handle;
    private readonly SemaphoreSlim _migrationLock = new(1, 1);
    private volatile bool _disposed;

    internal Region(MemorySystem system, RegionSafeHandle handle, nint pointer, ulong length, MemoryNode placement, uint faultAround,
                    AccountingGroup? group = null)
    {
        Group = group;
        System = system;
        _handle = handle;
        Pointer = pointer;
        Length = length;
        Placement = placement;
        FaultAroundPages = faultAround;
        SetDefaultRule();
        if (group is not null)
        {
            int rc = CdmEngine.RegionSetGroup(handle, group.Id);
            if (rc < 0) throw NativeErrors.ForErrno(rc, $"putting the region into group '{group.Name}'");
        }
    }

    public MemorySystem System { get; }

    /// <summary>Start of the range. Valid until <see cref="Dispose"/>.</summary>
    public nint Pointer { get; }

    public ulong Length { get; }

    public ulong PageCount => Length / PageSize;

    /// <summary>Where pages land on first touch unless a migration placed them elsewhere.</summary>
    public MemoryNode Placement { get; }

    public uint FaultAroundPages { get; }

    /// <summary>The accounting group the region is charged to, or null.</summary>
    public AccountingGroup? Group { get; }

    public bool IsDisposed => _disposed;

    /// <summary>
    /// Mappings (VMAs) the kernel holds for the range now, read from /proc/self/maps. Migration never
    /// changes it: pages move between areas without splitting them. Only the application's own madvise,
    /// mlock or mprotect of part of the range does.
    /// </summary>
    public ulong MappingCount
    {
        get
        {
            ThrowIfDisposed();
            ulong lo = (ulong)Pointer, hi = lo + Length, count = 0;
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                int dash = line.IndexOf('-'), space = line.IndexOf(' ');
                ulong start = Convert.ToUInt64(line[..dash], 16), end = Convert.ToUInt64(line[(dash + 1)..space], 16);
                if (start < hi && end > lo) count++;
            }
            return count;
        }
    }

    /// <summary>A window of <paramref name="count"/> elements of <typeparamref name="T"/> at a byte offset.</summary>
    public Span<T> AsSpan<T>(ulong byteOffset, int count) where T : unmanaged
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ulong bytes = (ulong)count * (ulong)sizeof(T);
        if (byteOffset > Length || bytes > Length - byteOffset)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"[{byteOffset}, +{bytes}) lies outside the region's {Length} bytes.");
        return new Span<T>((void*)(Pointer + (nint)byteOffset), count);
    }

    public Span<byte> AsSpan(ulong byteOffset, int length) => AsSpan<byte>(byteOffset, length);

    /// <summary>
    /// Resolves every untouched page of the range now, on its placement node, in steps (a fault on a page
    /// of the range waits for one step, never for the whole call). A migration may still detach the pages
    /// later: to hand memory to system calls in <see cref="FaultMode.UserModeOnly"/>, hold a <see cref="Pin"/>.
    /// </summary>
    public void Prefault(ulong offset, ulong length)
    {
        var (first, count) = PageRange(offset, length);
        int rc = CdmEngine.RegionPopulate(_handle, first, count);
        if (rc < 0) throw NativeErrors.ForErrno(rc, "prefaulting");
    }

    /// <summary>
    /// Resolves the range and keeps every page of it where it is until the lease is disposed: migrations
    /// report those pages <see cref="MigrationOutcome.Pinned"/> and leave them mapped. Hold one around
    /// memory handed to the kernel (read, pread, recv, O_DIRECT, io_uring): a system call never meets a
    /// detached page, so it never fails with EFAULT in <see cref="FaultMode.UserModeOnly"/> and never waits in
    /// full mode. Leases nest (up to 4095 per page).
    /// </summary>
    public PinLease Pin(ulong offset, ulong length)
    {
        var (first, count) = PageRange(offset, length);
        int rc = CdmEngine.RegionPin(_handle, first, count);
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"pinning [{offset}, +{length})");
        return new PinLease(this, first, count);
    }

    /// <summary>
    /// A pin meant to be held for long (an RDMA registration, a buffer handed to a device for the life of a
    /// session): pages on nodes with <see cref="MemoryNode.MigrateOnLongTermPin"/> are migrated to the host
    /// first, then the range is pinned as <see cref="Pin"/> does. Pages elsewhere stay where they are.
    /// </summary>
    /// <exception cref="InvalidOperationException">Pages could not be moved off such a node: pinned already (a
    /// short-term pin or the kernel holds them), or moved back each time.</exception>
    public PinLease PinLongTerm(ulong offset, ulong length)
    {
        _ = PageRange(offset, length);
        for (int attempt = 0; ; attempt++)
        {
            // Move first (a pinned page cannot move), pin, then check nothing came back meanwhile.
            foreach (var run in GetResidency(offset, length))
                if (run.Node is { MigrateOnLongTermPin: true })
                    Migrate(run.Offset, run.Length, System.Host);
            var lease = Pin(offset, length);
            var left = GetResidency(offset, length).FirstOrDefault(r => r.Node is { MigrateOnLongTermPin: true });
            if (left.Node is null) return lease;
            lease.Dispose();
            if (attempt == 8)
                throw new InvalidOperationException(
                    $"A long-term pin of [{offset}, +{length}) could not move [{left.Offset}, +{left.Length}) off node '{left.Node.Name}': " +
                    "it is pinned already, or something keeps moving it back.");
        }
    }

    internal void Unpin(ulong first, ulong count)
    {
        if (_disposed) return; // the pins went with the region
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            CdmEngine.RegionUnpin(_handle, first, count);
        }
        catch (ObjectDisposedException)
        {
            // Disposed concurrently: its pages are gone, and so are their pins.
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    /// <summary>The node holding the page at <paramref name="offset"/>, or null while it is untouched.</summary>
    public MemoryNode? NodeOf(ulong offset)
    {
        ThrowIfDisposed();
        if (offset >= Length) throw new ArgumentOutOfRangeException(nameof(offset), $"Offset {offset} lies outside the region's {Length} bytes.");
        sbyte node;
        CdmEngine.RegionResidency(_handle, offset / PageSize, 1, &node);
        return node < 0 ? null : System.NodeById(node);
    }

    /// <summary>Which node holds each page of the range, as runs; a run with a null node is untouched.</summary>
    public IReadOnlyList<ResidencyRun> GetResidency(ulong offset, ulong length)
    {
        var (first, count) = PageRange(offset, length);
        var runs = new List<ResidencyRun>();
        const int Chunk = 4096;
        sbyte* nodes = stackalloc sbyte[Chunk];
        for (ulong done = 0; done < count;)
        {
            ulong n = Math.Min(Chunk, count - done);
            int rc = CdmEngine.RegionResidency(_handle, first + done, n, nodes);
            if (rc < 0) throw NativeErrors.ForErrno(rc, "reading residency");
            for (ulong i = 0; i < n; i++)
            {
                MemoryNode? node = nodes[i] < 0 ? null : System.NodeById(nodes[i]);
                ulong pageOffset = (first + done + i) * PageSize;
                if (runs.Count > 0 && runs[^1].Node == node && runs[^1].Offset + runs[^1].Length == pageOffset)
                    runs[^1] = runs[^1] with { Length = runs[^1].Length + PageSize };
                else
                    runs.Add(new ResidencyRun(pageOffset, PageSize, node));
            }
            done += n;
        }
        return runs;
    }

    /// <summary>Releases the range, its host pages and the device frames it holds (moved back to their arenas first).</summary>
    /// <remarks>Threads blocked on a fault in the range are woken; touching the range afterwards is undefined.</remarks>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // Wait out a running batch: it holds pages detached until it attaches them.
        _migrationLock.Wait();
        try
        {
            _handle.Dispose();
        }
        finally
        {
            _migrationLock.Release();
        }
        System.OnRegionDisposed(this);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Validates a page-aligned, non-empty byte range inside the region and returns it in pages.</summary>
    private (ulong First, ulong Count) PageRange(ulong offset, ulong length)
    {
        ThrowIfDisposed();
        if (offset % PageSize != 0)
            throw new ArgumentException($"Offset {offset} is not a multiple of the page size ({PageSize}).", nameof(offset));
        if (length == 0 || length % PageSize != 0)
            throw new ArgumentException($"Length {length} is not a positive multiple of the page size ({PageSize}).", nameof(length));
        if (offset > Length || length > Length - offset)
            throw new ArgumentOutOfRangeException(nameof(length), $"[{offset}, +{length}) lies outside the region's {Length} bytes.");
        return (offset / PageSize, length / PageSize);
    }
}

/// <summary>A run of pages on one node; <see cref="Node"/> is null for pages never touched.</summary>
public readonly record struct ResidencyRun(ulong Offset, ulong Length, MemoryNode? Node);

/// <summary>Keeps a range of a region where it is (see <see cref="Region.Pin"/>); dispose to release.</summary>
public sealed class PinLease : IDisposable
{
    private readonly Region _region;
    private readonly ulong _first, _count;
    private int _released;

    internal PinLease(Region region, ulong first, ulong count)
    {
        _region = region;
        _first = first;
        _count = count;
    }

    public ulong Offset => _first * Region.PageSize;

    public ulong Length => _count * Region.PageSize;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _region.Unpin(_first, _count);
    }
}
