namespace CdmUserMem;

// Apart from the unsafe parts of Region: an async method may not run in an unsafe context.
public sealed partial class Region
{
    private async Task<MigrationResult> MigrateQueuedAsync(MigrationRequest request, CancellationToken cancellationToken)
    {
        try
        {
            await _migrationLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new MigrationCanceledException(new MigrationResult(request.Target), cancellationToken);
        }
        MigrationResult result;
        try
        {
            // The batches block in native code: run them off the caller's context.
            await Task.Yield();
            result = MigrateLocked(request, cancellationToken);
        }
        finally
        {
            _migrationLock.Release();
        }
        return LogIfIncomplete(result);
    }
}
