using CdmUserMem;

namespace CdmUserMem.Tests;

/// <summary>Helpers shared by the tests: a system with one device node, patterns, and OS counts.</summary>
internal static class TestSystem
{
    public const ulong Page = Region.PageSize;
    public const ulong MiB = 1UL << 20;

    public static (MemorySystem System, MemoryNode Device) Create(ulong deviceBytes = 16 * MiB, MemorySystemOptions? options = null)
    {
        var system = MemorySystem.Create(options);
        return (system, system.AddCoherentDeviceNode("dev0", deviceBytes));
    }

    /// <summary>Fills each page with words derived from (seed, page, word) so any misplaced page shows.</summary>
    public static void Fill(Region region, ulong offset, ulong length, ulong seed)
    {
        for (ulong p = offset; p < offset + length; p += Page)
        {
            var words = region.AsSpan<ulong>(p, (int)(Page / 8));
            for (int i = 0; i < words.Length; i++) words[i] = Pattern(seed, p, i);
        }
    }

    /// <summary>The first offset whose contents differ from <see cref="Fill"/>'s pattern, or null.</summary>
    public static ulong? FirstMismatch(Region region, ulong offset, ulong length, ulong seed)
    {
        for (ulong p = offset; p < offset + length; p += Page)
        {
            var words = region.AsSpan<ulong>(p, (int)(Page / 8));
            for (int i = 0; i < words.Length; i++)
                if (words[i] != Pattern(seed, p, i)) return p + (ulong)i * 8;
        }
        return null;
    }

    public static ulong Pattern(ulong seed, ulong page, int word) => (seed * 0x9E3779B97F4A7C15) ^ (page << 9) ^ (ulong)word;

    public static int OpenDescriptors() => Directory.GetFiles("/proc/self/fd").Length;

    public static int Mappings() => File.ReadAllLines("/proc/self/maps").Length;

    /// <summary>VMAs the kernel holds inside [start, start+length): the truth our mapping budget models.</summary>
    public static int KernelMappingsIn(nint start, ulong length)
    {
        ulong lo = (ulong)start, hi = lo + length;
        int count = 0;
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var range = line[..line.IndexOf(' ')].Split('-');
            ulong a = Convert.ToUInt64(range[0], 16), b = Convert.ToUInt64(range[1], 16);
            if (a < hi && b > lo) count++;
        }
        return count;
    }
}
