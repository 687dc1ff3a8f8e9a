using CdmUserMem;

namespace MemoryTopology;

/// <summary>
/// Fixed 64-byte records in a region: [id, version, six payload words derived from both, checksum]. Each
/// writer owns the records whose id % writers equals its number and remembers the last version it wrote, so
/// a lost write shows as a version mismatch and a torn or misplaced record as a bad checksum.
/// </summary>
internal sealed unsafe class Records(Region region)
{
    public const int Size = 64;
    private const int Words = Size / 8;

    public Region Region { get; } = region;

    public ulong Count => Region.Length / Size;

    private ulong* At(ulong id) => (ulong*)(Region.Pointer + (nint)(id * Size));

    public void Write(ulong id, ulong version)
    {
        ulong* r = At(id);
        r[0] = id;
        r[1] = version;
        ulong sum = id ^ version;
        for (int w = 2; w < Words - 1; w++)
        {
            r[w] = (id * 0x9E3779B97F4A7C15) ^ (version << 7) ^ (ulong)w;
            sum = sum * 31 + r[w];
        }
        r[Words - 1] = sum;
    }

    /// <summary>The record's version, or null when its checksum does not hold.</summary>
    public ulong? Read(ulong id)
    {
        ulong* r = At(id);
        if (r[0] != id) return null;
        ulong sum = id ^ r[1];
        for (int w = 2; w < Words - 1; w++) sum = sum * 31 + r[w];
        return sum == r[Words - 1] ? r[1] : null;
    }
}
