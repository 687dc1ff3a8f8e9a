using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace CdmUserMem.Benchmarks.Suites;

/// <summary>
/// The copy engine against Buffer.MemoryCopy and NativeMemory.Copy, 4 KiB to 256 MiB: hot copies reuse one
/// cache-resident pair of blocks; cold copies stream through 1 GiB so no block is in cache when copied.
/// </summary>
[Config(typeof(SuiteConfig))]
public unsafe class CopyEngineBenchmarks
{
    private const ulong Arena = 1UL << 30;
    private byte* _source;
    private byte* _destination;
    private int _sourceFd, _destinationFd;
    private ulong _offset;

    [Params(4096UL, 65536UL, 1048576UL, 16777216UL, 268435456UL)]
    public ulong Bytes { get; set; }

    [Params(true, false)]
    public bool Hot { get; set; }

    [GlobalSetup]
    public void GlobalSetup()
    {
        _source = Baseline.MapFresh(Arena, memfd: false, out _sourceFd);
        _destination = Baseline.MapFresh(Arena, memfd: false, out _destinationFd);
        NativeMemory.Fill(_source, (nuint)Arena, 0x5A);
        NativeMemory.Clear(_destination, (nuint)Arena);
    }

    [GlobalCleanup]
    public void GlobalCleanup()
    {
        Baseline.Unmap(_source, Arena, _sourceFd);
        Baseline.Unmap(_destination, Arena, _destinationFd);
    }

    /// <summary>The offset of this copy: always 0 when hot, the next block of the arena when cold.</summary>
    private ulong Next()
    {
        if (Hot) return 0;
        ulong offset = _offset;
        _offset = _offset + 2 * Bytes > Arena ? 0 : _offset + Bytes;
        return offset;
    }

    [Benchmark]
    public void CopyEngine()
    {
        ulong o = Next();
        CdmUserMem.CopyEngine.CopyBlock(_destination + o, _source + o, (nuint)Bytes);
    }

    [Benchmark(Baseline = true)]
    public void BufferMemoryCopy()
    {
        ulong o = Next();
        Buffer.MemoryCopy(_source + o, _destination + o, Bytes, Bytes);
    }

    [Benchmark]
    public void NativeMemoryCopy()
    {
        ulong o = Next();
        NativeMemory.Copy(_source + o, _destination + o, (nuint)Bytes);
    }
}
