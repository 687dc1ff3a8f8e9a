using System.Buffers;
using CdmUserMem.Interop;

namespace CdmUserMem;

public sealed unsafe partial class Region
{
    /// <summary>
    /// Moves the pages of a page-aligned range to <paramref name="target"/> at the same addresses, in batches:
    /// write-protect, copy on the copy engine, then commit (remap, wake) in one native call. Concurrent
    /// readers and writers keep running; a page a writer disturbs is retried, then reported busy.
    /// </summary>
    /// <exception cref="MappingBudgetExceededException">A batch would exceed the mapping budget; pages moved
    /// before it stay moved (see <see cref="MappingBudgetExceededException.PartialResult"/>), the rest are untouched.</exception>
    /// <exception cref="DeviceCapacityExhaustedException">With <see cref="MigrationOptions.RequireCapacity"/>,
    /// the target lacks frames; nothing was changed.</exception>
    public MigrationResult Migrate(ulong offset, ulong length, MemoryNode target, MigrationOptions? options = null)
        => Migrate(offset, length, target, options, CancellationToken.None);

    /// <summary>Runs <see cref="Migrate(ulong, ulong, MemoryNode, MigrationOptions?)"/> on the thread pool; cancellation is checked between batches.</summary>
    public Task<MigrationResult> MigrateAsync(ulong offset, ulong length, MemoryNode target, MigrationOptions? options = null,
                                              CancellationToken cancellationToken = default)
    {
        var (first, count) = PageRange(offset, length);
        System.ValidateNode(target, nameof(target));
        return Task.Run(() => Migrate(first * PageSize, count * PageSize, target, options, cancellationToken), cancellationToken);
    }

    private MigrationResult Migrate(ulong offset, ulong length, MemoryNode target, MigrationOptions? options, CancellationToken cancellationToken)
    {
        options ??= MigrationOptions.Default;
        var (first, count) = PageRange(offset, length);
        System.ValidateNode(target, nameof(target));
        if (options.BatchPages is 0 or > 65536)
            throw new ArgumentOutOfRangeException(nameof(options.BatchPages), options.BatchPages, "Batches must be 1 to 65536 pages.");
        ArgumentOutOfRangeException.ThrowIfNegative(options.BusyRetries, nameof(options.BusyRetries));

        _migrationLock.Wait(cancellationToken);
        bool addedRef = false;
        try
        {
            ThrowIfDisposed();
            _handle.DangerousAddRef(ref addedRef);
            if (options.RequireCapacity) CheckCapacity(first, count, target);
            return MigrateLocked(first, count, target, options, cancellationToken);
        }
        finally
        {
            if (addedRef) _handle.DangerousRelease();
            _migrationLock.Release();
        }
    }

    private MigrationResult MigrateLocked(ulong first, ulong count, MemoryNode target, MigrationOptions options, CancellationToken cancellationToken)
    {
        var result = new MigrationResult(target);
        int batch = (int)Math.Min(options.BatchPages, count);
        byte[] outcomes = ArrayPool<byte>.Shared.Rent(batch);
        nint region = _handle.DangerousGetHandle();
        try
        {
            for (ulong done = 0; done < count;)
            {
                cancellationToken.ThrowIfCancellationRequested();
                ThrowIfDisposed();
                ulong batchFirst = first + done, n = Math.Min((ulong)batch, count - done);
                int rc;
                ulong copied;
                fixed (byte* o = outcomes)
                    rc = CdmEngine.MigrateBatch(region, batchFirst, n, target.Id, (uint)options.BusyRetries, o, out copied);
                System.AddBytesCopied(copied);
                if (rc < 0)
                    throw new MigrationFailedException(
                        $"Migrating [{batchFirst * PageSize}, +{n * PageSize}) to '{target.Name}' failed: {NativeErrors.Describe(rc)}; " +
                        "its pages stayed on their source.", -rc);
                bool refused = false;
                for (ulong i = 0; i < n; i++)
                {
                    result.Add((batchFirst + i) * PageSize, (CdmOutcome)outcomes[i]);
                    refused |= outcomes[i] == (byte)CdmOutcome.MappingBudget;
                }
                if (refused)
                    throw new MappingBudgetExceededException(
                        $"Migrating [{first * PageSize}, +{count * PageSize}) to '{target.Name}' would exceed the mapping budget " +
                        $"of {System.Options.MappingBudget}; stopped at offset {batchFirst * PageSize}. Migrate larger aligned " +
                        $"ranges, or raise MemorySystemOptions.MappingBudget. {result}", result);
                done += n;
            }
            return result;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(outcomes);
        }
    }

    private void CheckCapacity(ulong first, ulong count, MemoryNode target)
    {
        if (target.Kind == MemoryNodeKind.Host) return;
        ulong needed = 0;
        foreach (var run in GetResidency(first * PageSize, count * PageSize))
            if (run.Node is not null && run.Node != target) needed += run.Length;
        var usage = target.GetUsage();
        if (needed > usage.FreeBytes)
            throw new DeviceCapacityExhaustedException(
                $"Node '{target.Name}' has {usage.FreeBytes} bytes free but the migration needs {needed}; nothing was moved. " +
                "Migrate a smaller range, move pages off the node first, or create the node with more capacity.");
    }
}
