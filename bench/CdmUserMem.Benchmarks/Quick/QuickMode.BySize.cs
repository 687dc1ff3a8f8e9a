using System.Runtime.InteropServices;

namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>
    /// Effective GB/s of migrations from 4 KiB to 32 MiB, each direction, beside the non-temporal copy floor
    /// and memcpy of the same sizes over buffers as large (so neither is cache-warm): the plot's curve.
    /// </summary>
    private static List<SizePoint> MigrationBySize()
    {
        const ulong Size = 64 * MiB;
        var points = new List<SizePoint>();
        using var system = MemorySystem.Create();
        var (region, device) = Migratable(system, Size, "size-device");
        using var _ = region;
        byte* src = Baseline.MapFresh(Size, memfd: false, out int srcFd), dst = Baseline.MapFresh(Size, memfd: false, out int dstFd);
        FillPages(src, Size);
        FillPages(dst, Size);
        var options = new MigrationOptions { BatchPages = 8192 };
        foreach (ulong bytes in new ulong[] { 4 * 1024, 16 * 1024, 64 * 1024, 256 * 1024, MiB, 2 * MiB, 8 * MiB, 32 * MiB })
        {
            int pieces = (int)Math.Min(Size / bytes, 128);
            var toDevice = new List<double>();
            var toHost = new List<double>();
            var floor = new List<double>();
            var memcpy = new List<double>();
            // Pieces spread over the whole area, so consecutive ones share no cache lines.
            ulong stride = Size / (ulong)pieces;
            for (int i = 0; i < pieces; i++)
                toDevice.Add(bytes / Sampler.Time(() => region.Migrate((ulong)i * stride, bytes, device, options)) / 1e9);
            for (int i = 0; i < pieces; i++)
                toHost.Add(bytes / Sampler.Time(() => region.Migrate((ulong)i * stride, bytes, system.Host, options)) / 1e9);
            for (int i = 0; i < pieces; i++)
                floor.Add(bytes / Sampler.Time(() => CopyEngine.CopyBlock(dst + (ulong)i * stride, src + (ulong)i * stride, (nuint)bytes)) / 1e9);
            for (int i = 0; i < pieces; i++)
                memcpy.Add(bytes / Sampler.Time(() => NativeMemory.Copy(dst + (ulong)i * stride, src + (ulong)i * stride, (nuint)bytes)) / 1e9);
            points.Add(new SizePoint(bytes, Sampler.Median(toDevice), Sampler.Median(toHost), Sampler.Median(floor), Sampler.Median(memcpy)));
        }
        Baseline.Unmap(src, Size, srcFd);
        Baseline.Unmap(dst, Size, dstFd);
        return points;
    }
}
