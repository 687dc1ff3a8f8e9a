namespace CdmUserMem;

// Apart from the unsafe parts of Region: an async method may not run in an unsafe context.
public sealed partial class Region
{
    private async Task<MigrationResult> MigrateQueuedAsync(MigrationRequest request, CancellationToken cancellationToken)
    {
        await _migrationLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // The batches block in native code: run them off the caller's context.
            await Task.Yield();
            return MigrateLocked(request, cancellationToken);
        }
        finally
        {
            _migrationLock.Release();
        }
    }
}
