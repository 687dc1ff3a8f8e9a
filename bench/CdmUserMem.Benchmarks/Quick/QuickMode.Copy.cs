namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>Copy engine vs Buffer.MemoryCopy: cold blocks streaming through 512 MiB, and a hot 4 KiB block.</summary>
    private static List<Figure> CopyEngineFigures()
    {
        var figures = new List<Figure>();
        const ulong Size = 512 * MiB;
        const int Repetitions = 3;
        byte* src = Baseline.MapFresh(Size, memfd: false, out int srcFd), dst = Baseline.MapFresh(Size, memfd: false, out int dstFd);
        FillPages(src, Size);
        FillPages(dst, Size);
        foreach (ulong block in new[] { 64 * 1024UL, 1 * MiB })
        {
            var ours = new List<double>();
            var buffer = new List<double>();
            for (int rep = 0; rep < Repetitions; rep++)
            {
                ours.Add(Size / Sampler.Time(() => { for (ulong o = 0; o < Size; o += block) CopyEngine.CopyBlock(dst + o, src + o, (nuint)block); }) / 1e9);
                buffer.Add(Size / Sampler.Time(() => { for (ulong o = 0; o < Size; o += block) Buffer.MemoryCopy(src + o, dst + o, block, block); }) / 1e9);
            }
            figures.Add(new Figure($"copy engine, cold {block / 1024} KiB blocks", "GB/s", Sampler.Median(ours), "Buffer.MemoryCopy",
                Sampler.Median(buffer), HigherIsBetter: true, TargetRatio: 1.2, Repetitions));
        }
        Baseline.Unmap(src, Size, srcFd);
        Baseline.Unmap(dst, Size, dstFd);

        const int Copies = 500_000;
        byte* hotSrc = stackalloc byte[4096 + 64], hotDst = stackalloc byte[4096 + 64];
        byte* s = (byte*)(((nuint)hotSrc + 63) & ~(nuint)63), d = (byte*)(((nuint)hotDst + 63) & ~(nuint)63);
        var hotOurs = new List<double>();
        var hotBuffer = new List<double>();
        for (int rep = 0; rep < 5; rep++)
        {
            hotOurs.Add(4096.0 * Copies / Sampler.Time(() => { for (int i = 0; i < Copies; i++) CopyEngine.CopyBlock(d, s, 4096); }) / 1e9);
            hotBuffer.Add(4096.0 * Copies / Sampler.Time(() => { for (int i = 0; i < Copies; i++) Buffer.MemoryCopy(s, d, 4096, 4096); }) / 1e9);
        }
        figures.Add(new Figure("copy engine, hot 4 KiB block", "GB/s", Sampler.Median(hotOurs), "Buffer.MemoryCopy", Sampler.Median(hotBuffer),
            HigherIsBetter: true, TargetRatio: 1.0, 5));
        return figures;
    }
}
