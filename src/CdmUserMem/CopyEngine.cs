using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>
/// The copy engine that stands in for a device DMA engine, running in the native engine: non-temporal
/// AVX-512/AVX2 streaming for aligned blocks of 64 KiB and more (caching them would only evict useful
/// data), the C library's memcpy for smaller ones, and large copies split across copy channels.
/// </summary>
public sealed unsafe class CopyEngine
{
    /// <summary>Aligned blocks from this size up use non-temporal stores.</summary>
    public const nuint NonTemporalThreshold = 64 * 1024;

    /// <summary>Copies below this size skip the GC transition: they finish in well under a microsecond.</summary>
    private const nuint SmallCopy = 16 * 1024;

    private readonly MemorySystem _system;

    internal CopyEngine(MemorySystem system, int channels)
    {
        _system = system;
        Channels = channels;
    }

    /// <summary>Threads that share one large copy (MemorySystemOptions.CopyChannels).</summary>
    public int Channels { get; }

    /// <summary>Which instruction set the engine streams with on this machine.</summary>
    public static string InstructionSet => CdmEngine.CopyInstructionSet() switch
    {
        2 => "AVX-512",
        1 => "AVX2",
        _ => "memcpy",
    };

    /// <summary>Copies between non-overlapping buffers on every copy channel when the copy is large.</summary>
    public void Copy(void* destination, void* source, nuint bytes) => CdmEngine.Copy(_system.EngineHandle, destination, source, bytes);

    /// <summary>Copies between non-overlapping buffers on the calling thread.</summary>
    public static void CopyBlock(void* destination, void* source, nuint bytes)
    {
        if (bytes < SmallCopy) CdmEngine.CopyBlockSmall(destination, source, bytes);
        else CdmEngine.CopyBlock(destination, source, bytes);
    }
}
