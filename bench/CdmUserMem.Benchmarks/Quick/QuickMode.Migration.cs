using System.Runtime.InteropServices;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>Effective GB/s of migrating cold 2 MiB pieces, against a cold memcpy of the same pieces.</summary>
    private static List<Figure> Migration2MiB()
    {
        var figures = new List<Figure>();
        const ulong Size = 256 * MiB, Piece = 2 * MiB;
        const int Pieces = (int)(Size / Piece);
        using var system = MemorySystem.Create();
        var device = system.AddCoherentDeviceNode("migration-device", Size);
        using var region = system.Reserve(Size);
        region.Prefault(0, Size);
        FillPages((byte*)region.Pointer, Size);
        var toDevice = new List<double>();
        var toHost = new List<double>();
        for (int i = 0; i < Pieces; i++)
            toDevice.Add(Piece / Sampler.Time(() => region.Migrate((ulong)i * Piece, Piece, device)) / 1e9);
        for (int i = 0; i < Pieces; i++)
            toHost.Add(Piece / Sampler.Time(() => region.Migrate((ulong)i * Piece, Piece, system.Host)) / 1e9);

        byte* src = Baseline.MapFresh(Size, memfd: false, out int srcFd), dst = Baseline.MapFresh(Size, memfd: false, out int dstFd);
        FillPages(src, Size);
        FillPages(dst, Size);
        var memcpy = new List<double>();
        for (int i = 0; i < Pieces; i++)
            memcpy.Add(Piece / Sampler.Time(() => NativeMemory.Copy(src + (ulong)i * Piece, dst + (ulong)i * Piece, (nuint)Piece)) / 1e9);
        Baseline.Unmap(src, Size, srcFd);
        Baseline.Unmap(dst, Size, dstFd);

        nint bare = Baseline.MigrationCreate(Size);
        var primitives = new List<double>();
        for (int i = 0; i < Pieces; i++)
            primitives.Add(Piece / Sampler.Time(() => Check(Baseline.MigrationMove(bare, (ulong)i * Piece, Piece))) / 1e9);
        Baseline.MigrationDestroy(bare);

        double coldMemcpy = Sampler.Median(memcpy);
        figures.Add(new Figure("2 MiB migration host→device, effective", "GB/s", Sampler.Median(toDevice), "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: 0.5, Pieces));
        figures.Add(new Figure("2 MiB migration device→host, effective", "GB/s", Sampler.Median(toHost), "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: null, Pieces));
        figures.Add(new Figure("2 MiB bare primitive sequence (for reference)", "GB/s", Sampler.Median(primitives), "cold memcpy", coldMemcpy,
            HigherIsBetter: true, TargetRatio: null, Pieces));
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
        var bare = new List<double>();
        for (int rep = 0; rep < Repetitions; rep++)
        {
            // Odd pages on the device, even pages on the host: one call then moves the scattered host pages.
            region.Migrate(0, Size, system.Host);
            for (ulong p = Page; p < Size; p += 2 * Page) region.Migrate(p, Page, device);
            ours.Add(Sampler.Time(() => region.Migrate(0, Size, device)) * 1e6 / Scattered);

            nint baseline = Baseline.MigrationCreate(Size);
            bare.Add(Sampler.Time(() =>
            {
                for (ulong p = 0; p < Size; p += 2 * Page) Check(Baseline.MigrationMove(baseline, p, Page));
            }) * 1e6 / Scattered);
            Baseline.MigrationDestroy(baseline);
        }
        figures.Add(new Figure("scattered 4 KiB host→device, batched, per page", "µs", Sampler.Median(ours),
            "bare primitive sequence per page", Sampler.Median(bare), HigherIsBetter: false, TargetRatio: 1.0, Repetitions * Scattered));
        return figures;
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
