using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace CdmUserMem;

/// <summary>
/// The copy engine that stands in for a device DMA engine: vectorised copies with non-temporal stores for
/// blocks large enough that caching the destination only evicts useful data, split across copy channels.
/// </summary>
public sealed unsafe class CopyEngine
{
    /// <summary>Blocks from this size up stream past the cache (measured: 22–25 GB/s vs 17 for memcpy).</summary>
    public const nuint NonTemporalThreshold = 64 * 1024;

    /// <summary>A block is split across channels only if each channel gets at least this much.</summary>
    public const nuint MinimumChannelShare = 1024 * 1024;

    public CopyEngine(int channels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        Channels = channels;
    }

    public int Channels { get; }

    /// <summary>Which instruction set <see cref="CopyBlock"/> uses on this machine.</summary>
    public static string InstructionSet =>
        Avx512F.IsSupported ? "AVX-512" : Avx.IsSupported ? "AVX2" : Vector128.IsHardwareAccelerated ? "SSE2" : "scalar";

    /// <summary>Copies <paramref name="bytes"/> between non-overlapping buffers, on every channel if large.</summary>
    public void Copy(byte* destination, byte* source, nuint bytes)
    {
        int channels = (int)Math.Min((ulong)Channels, bytes / MinimumChannelShare);
        if (channels <= 1)
        {
            CopyBlock(destination, source, bytes);
            return;
        }
        // Shares are whole 4 KiB pages so that each channel starts aligned.
        nuint share = (bytes / (nuint)channels + 4095) & ~(nuint)4095;
        Parallel.For(0, channels, new ParallelOptions { MaxDegreeOfParallelism = channels }, c =>
        {
            nuint start = (nuint)c * share;
            if (start < bytes) CopyBlock(destination + start, source + start, Math.Min(share, bytes - start));
        });
    }

    /// <summary>Copies on the calling thread, choosing stores by size and alignment.</summary>
    public static void CopyBlock(byte* destination, byte* source, nuint bytes)
    {
        bool aligned = (((nuint)destination | (nuint)source) & 63) == 0;
        if (aligned && bytes >= NonTemporalThreshold && bytes % 256 == 0)
        {
            if (Avx512F.IsSupported) { CopyNonTemporal512(destination, source, bytes); return; }
            if (Avx.IsSupported) { CopyNonTemporal256(destination, source, bytes); return; }
        }
        if (Vector512.IsHardwareAccelerated && bytes % 256 == 0) { CopyCached512(destination, source, bytes); return; }
        Buffer.MemoryCopy(source, destination, bytes, bytes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyCached512(byte* d, byte* s, nuint bytes)
    {
        for (nuint i = 0; i < bytes; i += 256)
        {
            var a = Vector512.Load(s + i);
            var b = Vector512.Load(s + i + 64);
            var c = Vector512.Load(s + i + 128);
            var e = Vector512.Load(s + i + 192);
            a.Store(d + i);
            b.Store(d + i + 64);
            c.Store(d + i + 128);
            e.Store(d + i + 192);
        }
    }

    private static void CopyNonTemporal512(byte* d, byte* s, nuint bytes)
    {
        for (nuint i = 0; i < bytes; i += 256)
        {
            var a = Avx512F.LoadAlignedVector512(s + i);
            var b = Avx512F.LoadAlignedVector512(s + i + 64);
            var c = Avx512F.LoadAlignedVector512(s + i + 128);
            var e = Avx512F.LoadAlignedVector512(s + i + 192);
            Avx512F.StoreAlignedNonTemporal(d + i, a);
            Avx512F.StoreAlignedNonTemporal(d + i + 64, b);
            Avx512F.StoreAlignedNonTemporal(d + i + 128, c);
            Avx512F.StoreAlignedNonTemporal(d + i + 192, e);
        }
        // Non-temporal stores are weakly ordered: fence before the commit makes the copy visible.
        Sse.StoreFence();
    }

    private static void CopyNonTemporal256(byte* d, byte* s, nuint bytes)
    {
        for (nuint i = 0; i < bytes; i += 128)
        {
            var a = Avx.LoadAlignedVector256(s + i);
            var b = Avx.LoadAlignedVector256(s + i + 32);
            var c = Avx.LoadAlignedVector256(s + i + 64);
            var e = Avx.LoadAlignedVector256(s + i + 96);
            Avx.StoreAlignedNonTemporal(d + i, a);
            Avx.StoreAlignedNonTemporal(d + i + 32, b);
            Avx.StoreAlignedNonTemporal(d + i + 64, c);
            Avx.StoreAlignedNonTemporal(d + i + 96, e);
        }
        Sse.StoreFence();
    }
}
