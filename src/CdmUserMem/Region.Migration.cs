using System.Buffers;
using CdmUserMem.Interop;
using CdmUserMem.Telemetry;

namespace CdmUserMem;

public sealed unsafe partial class Region
{
    /// <summary>
    /// Moves the pages of a page-aligned range to <paramref name="target"/> at the same addresses, in batches,
    /// with the kernel's migration semantics: each page is detached from the region (an accessor waits in a
    /// fault for at most its batch's copy), copied on the copy engine, attached on the target and its waiters
    /// woken, all in one native call per batch. A page the kernel holds pinned is refused and left alone.
    /// </summary>
    /// <exception cref="DeviceCapacityExhaustedException">With <see cref="MigrationOptions.RequireCapacity"/>,
    /// the target lacks frames; nothing was changed.</exception>
    /// <exception cref="MigrationFailedException">The engine failed between batches; pages moved before stay
    /// moved (<see cref="MigrationFailedException.PartialResult"/>).</exception>
    public MigrationResult Migrate(ulong offset, ulong length, MemoryNode target, MigrationOptions? options = null)
        => Migrate(offset, length, target, options, CancellationToken.None);

    /// <summary>
    /// As <see cref="Migrate(ulong, ulong, MemoryNode, MigrationOptions?)"/>, checking
    /// <paramref name="cancellationToken"/> between batches.
    /// </summary>
    /// <exception cref="MigrationCanceledException">Cancelled; <see cref="MigrationCanceledException.PartialResult"/>
    /// says what moved before.</exception>
    public MigrationResult Migrate(ulong offset, ulong length, MemoryNode target, MigrationOptions? options, CancellationToken cancellationToken)
    {
        var request = Validate(offset, length, target, options);
        WaitForTurn(request, cancellationToken);
        MigrationResult result;
        try
        {
            result = MigrateLocked(request, cancellationToken);
        }
        finally
        {
            _migrationLock.Release();
        }
        return LogIfIncomplete(result);
    }

    /// <summary>Logs, once the region's migration lock is let go, pages a migration left behind.</summary>
    private MigrationResult LogIfIncomplete(MigrationResult result)
    {
        if (!result.IsComplete)
            Log.MigrationIncomplete(System.Telemetry.Logger, result.Target.Name, result.PagesNoCapacity, result.PagesPinned,
                                    result.PagesShared, result.PagesFailed, result.PagesBusy);
        return result;
    }

    /// <summary>
    /// Migrates asynchronously: a call queued behind another migration of this region waits without holding
    /// a thread, and each batch runs on the thread pool. Bad arguments throw here, not in the task.
    /// </summary>
    public Task<MigrationResult> MigrateAsync(ulong offset, ulong length, MemoryNode target, MigrationOptions? options = null,
                                              CancellationToken cancellationToken = default)
    {
        var request = Validate(offset, length, target, options);
        return MigrateQueuedAsync(request, cancellationToken);
    }

    /// <summary>Waits for the region's running migration; cancelled meanwhile, nothing was done.</summary>
    private void WaitForTurn(MigrationRequest request, CancellationToken cancellationToken)
    {
        try
        {
            _migrationLock.Wait(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            throw new MigrationCanceledException(new MigrationResult(request.Target), cancellationToken);
        }
    }

    internal readonly record struct MigrationRequest(ulong First, ulong Count, MemoryNode Target, MigrationOptions Options);

    private MigrationRequest Validate(ulong offset, ulong length, MemoryNode target, MigrationOptions? options)
    {
        options ??= MigrationOptions.Default;
        var (first, count) = PageRange(offset, length);
        System.ValidateMigrationTarget(target, nameof(target));
        if (options.BatchPages is 0 or > 65536)
            throw new ArgumentOutOfRangeException(nameof(options.BatchPages), options.BatchPages, "Batches must be 1 to 65536 pages.");
        ArgumentOutOfRangeException.ThrowIfNegative(options.BusyRetries, nameof(options.BusyRetries));
        return new MigrationRequest(first, count, target, options);
    }

    private MigrationResult MigrateLocked(MigrationRequest request, CancellationToken cancellationToken)
    {
        var (first, count, target, options) = request;
        bool addedRef = false;
        nint reservation = 0;
        var result = new MigrationResult(target);
        int batch = (int)Math.Min(options.BatchPages, count);
        byte[] outcomes = ArrayPool<byte>.Shared.Rent(batch);
        try
        {
            ThrowIfDisposed();
            _handle.DangerousAddRef(ref addedRef);
            if (options.RequireCapacity) reservation = ReserveFrames(first, count, target);
            nint region = _handle.DangerousGetHandle();
            for (ulong done = 0; done < count;)
            {
                if (cancellationToken.IsCancellationRequested) throw new MigrationCanceledException(result, cancellationToken);
                ThrowIfDisposed();
                ulong batchFirst = first + done, n = Math.Min((ulong)batch, count - done);
                MigrationBatch.Run(region, batchFirst, n, target, options, reservation, outcomes, result, batchFirst * PageSize,
                                   $"[{batchFirst * PageSize}, +{n * PageSize})");
                done += n;
            }
            return result;
        }
        finally
        {
            if (reservation != 0) CdmEngine.ReservationRelease(reservation);
            if (addedRef) _handle.DangerousRelease();
            ArrayPool<byte>.Shared.Return(outcomes);
        }
    }

    /// <summary>Reserves a target frame for every page of the range resident elsewhere, or throws.</summary>
    private nint ReserveFrames(ulong first, ulong count, MemoryNode target)
    {
        if (target.Kind == MemoryNodeKind.Host) return 0;
        ulong needed = 0;
        // Untouched pages need a frame too on a private node: they get zeroed device pages there.
        bool untouchedNeedFrames = target.Kind == MemoryNodeKind.PrivateDevice;
        foreach (var run in GetResidency(first * PageSize, count * PageSize))
            if (run.Node != target && (run.Node is not null || untouchedNeedFrames)) needed += run.Length / PageSize;
        // The group's limit is checked here, not reserved: a concurrent migration of the same group can still
        // take the room between this check and the batches.
        if (Group?.GetLimit(target) is ulong limit && Group.GetUsage(target) + needed * PageSize > limit)
            throw new DeviceCapacityExhaustedException(
                $"Group '{Group.Name}' may hold {limit} bytes on '{target.Name}' and holds {Group.GetUsage(target)}; the migration needs " +
                $"{needed * PageSize} more. Nothing was moved.");
        int rc = CdmEngine.Reserve(System.EngineHandle, target.Id, needed, out nint reservation);
        if (rc == -28)
        {
            var usage = target.GetUsage();
            throw new DeviceCapacityExhaustedException(
                $"Node '{target.Name}' has {usage.FreeBytes} bytes free (less what other migrations reserved) but the migration " +
                $"needs {needed * PageSize}; nothing was moved. Migrate a smaller range, move pages off the node first, or " +
                "create the node with more capacity.");
        }
        if (rc < 0) throw NativeErrors.ForErrno(rc, $"reserving {needed} frames on '{target.Name}'");
        return reservation;
    }
}
