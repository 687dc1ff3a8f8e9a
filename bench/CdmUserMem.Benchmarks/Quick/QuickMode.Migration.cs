using System.Runtime.InteropServices;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>
    /// Effective GB/s of migrating cold 2 MiB pieces, against a cold memcpy of the same pieces; the
    /// non-temporal copy floor, the per-step breakdown, and the same with a sibling thread running.
    /// </summary>
    private static List<Figure> Migration2MiB()
    {
        var figures = new List<Figure>();
        const ulong Size = 256 * MiB, Piece = 2 * MiB;
        const int Pieces = (int)(Size / Piece);
        using var system = MemorySystem.Create();
        var (region, device) = Migratable(system, Size, "migration-device");
        using var _ = region;

        (double ToDevice, double ToHost) Round()
        {
            var toDevice = new List<double>();
            var toHost = new List<double>();
            for (int i = 0; i < Pieces; i++)
                toDevice.Add(Piece / Sampler.Time(() => region.Migrate((ulong)i * Piece, Piece, device)) / 1e9);
            for (int i = 0; i < Pieces; i++)
                toHost.Add(Piece / Sampler.Time(() => region.Migrate((ulong)i * Piece, Piece, system.Host)) / 1e9);
            return (Sampler.Median(toDevice), Sampler.Median(toHost));
        }
        var before = system.GetStatistics();
        var (toDeviceGBs, toHostGBs) = Round();
        var after = system.GetStatistics();
        (double, double) withSibling;
        using (Sibling.Start()) withSibling = Round();

        byte* src = Baseline.MapFresh(Size, memfd: false, out int srcFd), dst = Baseline.MapFresh(Size, memfd: false, out int dstFd);
        FillPages(src, Size);
        FillPages(dst, Size);
        var memcpy = new List<double>();
        for (int i = 0; i < Pieces; i++)
            memcpy.Add(Piece / Sampler.Time(() => NativeMemory.Copy(src + (ulong)i * Piece, dst + (ulong)i * Piece, (nuint)Piece)) / 1e9);
        // Opposite direction so neither side is cache-warm from the memcpy pass.
        var streaming = new List<double>();
        for (int i = 0; i < Pieces; i++)
            streaming.Add(Piece / Sampler.Time(() => CopyEngine.CopyBlock(src + (ulong)i * Piece, dst + (ulong)i * Piece, (nuint)Piece)) / 1e9);
        Baseline.Unmap(src, Size, srcFd);
        Baseline.Unmap(dst, Size, dstFd);

        nint bare = Baseline.MigrationCreate(Size);
        var primitives = new List<double>();
        for (int i = 0; i < Pieces; i++)
            primitives.Add(Piece / Sampler.Time(() => Check(Baseline.MigrationMove(bare, (ulong)i * Piece, Piece))) / 1e9);
        Baseline.MigrationDestroy(bare);

        double coldMemcpy = Sampler.Median(memcpy);
        figures.Add(new Figure("2 MiB migration host→device, effective", "GB/s", toDeviceGBs, "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: 1.2, Pieces));
        figures.Add(new Figure("2 MiB migration device→host, effective", "GB/s", toHostGBs, "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: 1.2, Pieces));
        figures.Add(new Figure("2 MiB host→device, sibling thread running", "GB/s", withSibling.Item1, "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: null, Pieces));
        figures.Add(new Figure("2 MiB device→host, sibling thread running", "GB/s", withSibling.Item2, "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: null, Pieces));
        figures.Add(new Figure("2 MiB non-temporal copy, the floor", "GB/s", Sampler.Median(streaming), "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: null, Pieces));
        figures.Add(new Figure("2 MiB first design's primitive sequence", "GB/s", Sampler.Median(primitives), "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: null, Pieces));
        // Where a migration's time goes, summed over both directions of the first round, per 2 MiB piece.
        double pieces = 2.0 * Pieces, total = 2.0 * Pieces * Piece / ((toDeviceGBs + toHostGBs) / 2) / 1e3;
        foreach (var (step, time) in new[]
                 {
                     ("detach (UFFDIO_MOVE out)", after.MigrationDetachTime - before.MigrationDetachTime),
                     ("copy", after.MigrationCopyTime - before.MigrationCopyTime),
                     ("attach + wake", after.MigrationAttachTime - before.MigrationAttachTime),
                     ("release", after.MigrationReleaseTime - before.MigrationReleaseTime),
                 })
            figures.Add(new Figure($"2 MiB migration step: {step}", "µs", time.TotalMicroseconds / pieces, "whole migration", total / pieces,
                HigherIsBetter: false, TargetRatio: null, Pieces * 2));
        return figures;
    }

    /// <summary>Per-page time of migrating scattered 4 KiB pages in one batched call, against the bare sequence per page.</summary>
    private static List<Figure> ScatteredMigration()
    {
        var figures = new List<Figure>();
        const ulong Size = 8 * MiB;
        const int Repetitions = 5, Scattered = (int)(Size / Page / 2);
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("scatter-device", Size);
        using var region = system.Reserve(Size);
        FillPages((byte*)region.Pointer, Size);
        var ours = new List<double>();
        var sibling = new List<double>();
        var bare = new List<double>();
        double Scatter()
        {
            // Odd pages on the device, even pages on the host: one call then moves the scattered host pages.
            region.Migrate(0, Size, system.Host);
            for (ulong p = Page; p < Size; p += 2 * Page) region.Migrate(p, Page, device);
            return Sampler.Time(() => region.Migrate(0, Size, device)) * 1e6 / Scattered;
        }
        for (int rep = 0; rep < Repetitions; rep++)
        {
            ours.Add(Scatter());
            using (Sibling.Start()) sibling.Add(Scatter());

            nint baseline = Baseline.MigrationCreate(Size);
            bare.Add(Sampler.Time(() =>
            {
                for (ulong p = 0; p < Size; p += 2 * Page) Check(Baseline.MigrationMove(baseline, p, Page));
            }) * 1e6 / Scattered);
            Baseline.MigrationDestroy(baseline);
        }
        figures.Add(new Figure("scattered 4 KiB host→device, batched, per page", "µs", Sampler.Median(ours),
            "first design's primitive sequence per page", Sampler.Median(bare), HigherIsBetter: false, TargetRatio: 0.5, Repetitions * Scattered));
        figures.Add(new Figure("scattered 4 KiB host→device, sibling thread running", "µs", Sampler.Median(sibling),
            "first design's primitive sequence per page", Sampler.Median(bare), HigherIsBetter: false, TargetRatio: null, Repetitions * Scattered));
        return figures;
    }

    /// <summary>
    /// A populated, filled region of <paramref name="size"/> and a device node as large, after one round trip:
    /// device-to-host moves then find the spare host pages a steady state has.
    /// </summary>
    private static (Region Region, MemoryNode Device) Migratable(MemorySystem system, ulong size, string deviceName)
    {
        var device = system.AddCoherentDeviceNode(deviceName, size);
        var region = system.Reserve(size);
        region.Prefault(0, size);
        FillPages((byte*)region.Pointer, size);
        region.Migrate(0, size, device);
        region.Migrate(0, size, system.Host);
        return (region, device);
    }

    private static void FillPages(byte* p, ulong size)
    {
        for (ulong o = 0; o < size; o += Page) *(ulong*)(p + o) = o;
    }

    private static void Check(int rc)
    {
        if (rc < 0) throw new InvalidOperationException($"baseline migration failed: errno {-rc}");
    }
}
