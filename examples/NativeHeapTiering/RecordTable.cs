using CdmUserMem;

namespace NativeHeapTiering;

/// <summary>
/// Small records (48 bytes each, one heap allocation apiece) found through an index that is itself one heap
/// allocation. A record holds its key, a write count and a check of both; each is written by one worker.
/// </summary>
internal sealed unsafe class RecordTable : IDisposable
{
    private readonly NativeHeap _heap;
    private readonly ulong** _index;
    private readonly int _count;

    public RecordTable(NativeHeap heap, int count)
    {
        _heap = heap;
        _count = count;
        _index = (ulong**)heap.AllocateZeroed((nuint)count, (nuint)sizeof(ulong*));
        for (int k = 0; k < count; k++)
        {
            ulong* r = (ulong*)heap.Allocate(48);
            r[0] = (ulong)k;
            r[1] = 0;
            r[2] = Check(k, 0);
            _index[k] = r;
        }
    }

    private static ulong Check(int key, ulong writes) => ((ulong)key * 0x9E3779B97F4A7C15) ^ (writes * 0xC2B2AE3D27D4EB4F);

    public bool Update(int key)
    {
        ulong* r = _index[key];
        if (r[0] != (ulong)key || r[2] != Check(key, r[1])) return false;
        r[1]++;
        r[2] = Check(key, r[1]);
        return true;
    }

    public (long Records, long Bad) Verify(long writes)
    {
        long bad = 0, total = 0;
        for (int k = 0; k < _count; k++)
        {
            ulong* r = _index[k];
            if (r[0] != (ulong)k || r[2] != Check(k, r[1])) bad++;
            total += (long)r[1];
        }
        return (_count, bad + (total != writes ? 1 : 0));
    }

    public void Dispose()
    {
        for (int k = 0; k < _count; k++) _heap.Free(_index[k]);
        _heap.Free(_index);
    }
}
