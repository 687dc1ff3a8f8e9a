using CdmUserMem;

namespace NativeHeapTiering;

/// <summary>
/// Columns of 64-bit cells in a CdmUserMem heap, one allocation (a page-aligned extent) per column. Each
/// cell is written by one worker only and holds (writes << 32 | check), check derived from the column,
/// the cell and the count, so a lost or misplaced write shows.
/// </summary>
internal sealed unsafe class Columns : IDisposable
{
    private readonly NativeHeap _heap;

    public Columns(NativeHeap heap, int columns, int cellsPerColumn)
    {
        _heap = heap;
        CellsPerColumn = cellsPerColumn;
        Pointers = new ulong*[columns];
        Accesses = new long[columns];
        for (int c = 0; c < columns; c++)
        {
            Pointers[c] = (ulong*)heap.AllocateZeroed((nuint)cellsPerColumn, sizeof(ulong));
            for (int i = 0; i < cellsPerColumn; i++) Pointers[c][i] = Cell(c, i, 0);
        }
    }

    public ulong*[] Pointers { get; }

    public int CellsPerColumn { get; }

    /// <summary>Accesses per column since the tierer last looked: its measure of heat.</summary>
    public long[] Accesses { get; }

    public static ulong Check(int column, int cell, ulong writes) =>
        (uint)((((ulong)column * 0x9E3779B97F4A7C15) ^ ((ulong)cell * 0xC2B2AE3D27D4EB4F) ^ (writes * 0x165667B19E3779F9)) >> 29);

    public static ulong Cell(int column, int cell, ulong writes) => writes << 32 | Check(column, cell, writes);

    /// <summary>Bumps the writes of one cell; only its owning worker calls this for it.</summary>
    public bool Update(int column, int cell)
    {
        ulong v = Pointers[column][cell], writes = v >> 32;
        if ((v & 0xFFFFFFFF) != Check(column, cell, writes)) return false;
        Pointers[column][cell] = Cell(column, cell, writes + 1);
        return true;
    }

    /// <summary>Every cell self-consistent, and per column the writes add up to what the workers counted.</summary>
    public (long Cells, long Bad) Verify(long[] writesPerColumn)
    {
        long cells = 0, bad = 0;
        for (int c = 0; c < Pointers.Length; c++)
        {
            long total = 0;
            for (int i = 0; i < CellsPerColumn; i++, cells++)
            {
                ulong v = Pointers[c][i];
                if ((v & 0xFFFFFFFF) != Check(c, i, v >> 32)) bad++;
                total += (long)(v >> 32);
            }
            if (total != writesPerColumn[c]) bad++;
        }
        return (cells, bad);
    }

    public void Dispose()
    {
        foreach (var p in Pointers) _heap.Free(p);
    }
}
