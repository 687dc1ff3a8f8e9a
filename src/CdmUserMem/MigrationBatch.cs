using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>One native migration batch of a region's pages, its outcomes added to a result: what regions and
/// heaps both loop over.</summary>
internal static unsafe class MigrationBatch
{
    /// <summary>Migrates pages [<paramref name="firstPage"/>, +<paramref name="count"/>) of a region and records
    /// page i's outcome at <paramref name="byteOffset"/> + i pages.</summary>
    /// <exception cref="MigrationFailedException">The engine failed; the batch's pages stayed on their source.</exception>
    public static void Run(nint region, ulong firstPage, ulong count, MemoryNode target, MigrationOptions options, nint reservation,
                           byte[] outcomes, MigrationResult result, ulong byteOffset, string what)
    {
        int rc;
        fixed (byte* o = outcomes)
            rc = CdmEngine.MigrateBatch(region, firstPage, count, target.Id, (uint)options.BusyRetries, reservation, o);
        if (rc < 0)
            throw new MigrationFailedException(
                $"Migrating {what} to '{target.Name}' failed: {NativeErrors.Describe(rc)}; its pages stayed on their source. " +
                $"Done before it: {result}", -rc, result);
        for (ulong i = 0; i < count; i++) result.Add(byteOffset + i * Region.PageSize, (CdmOutcome)outcomes[i]);
    }
}
