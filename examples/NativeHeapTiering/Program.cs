// Native data of a .NET program (columns of cells, and small records indexed by a hash table) lives in a
// CdmUserMem heap. Workers hammer a hot window of columns that shifts every few seconds; a tierer moves the
// hottest columns to a small, fast device node and the ones that cooled back to the host, under the same
// pointers, while the workers run. At the end every cell and record must hold its writers' last value.
using System.Diagnostics;
using CdmUserMem;
using NativeHeapTiering;

int seconds = args.Length >= 2 && args[0] == "--seconds" ? int.Parse(args[1]) : 10;
const int ColumnCount = 32, CellsPerColumn = 512 * 1024, Workers = 3, HotColumns = 6, DeviceColumns = 8, Records = 100_000;
const ulong ColumnBytes = (ulong)CellsPerColumn * 8;

MemorySystem system;
try
{
    system = MemorySystem.Create();
}
catch (UserfaultfdUnavailableException e)
{
    Console.Error.WriteLine($"cannot run: {e.Message}");
    return 2;
}
using var _ = system;
var device = system.AddCoherentDeviceNode("hbm0", DeviceColumns * ColumnBytes + (8UL << 20), distance: 20);
using var heap = system.CreateHeap(new HeapOptions { Placement = system.Host });
using var columns = new Columns(heap, ColumnCount, CellsPerColumn);
using var records = new RecordTable(heap, Records);
Console.WriteLine($"NativeHeapTiering: {ColumnCount} columns of {ColumnBytes >> 20} MiB and {Records:N0} records in a CdmUserMem heap; " +
                  $"device '{device.Name}' holds {DeviceColumns} columns; {Workers} workers, {seconds} s");
Console.WriteLine("  columns: D on the device, H on the host; * marks the hot window");

long[] writes = new long[ColumnCount];
long recordWrites = 0, operations = 0, failures = 0;
int hotStart = 0;
using var stop = new CancellationTokenSource();
var workers = Enumerable.Range(0, Workers).Select(w => new Thread(() =>
{
    var random = new Random(w);
    long[] mine = new long[ColumnCount];
    long recordOps = 0;
    while (!stop.IsCancellationRequested)
    {
        // Nine accesses in ten go to the hot window; each worker owns the cells i % Workers == w.
        int c = random.Next(10) < 9 ? (Volatile.Read(ref hotStart) + random.Next(HotColumns)) % ColumnCount : random.Next(ColumnCount);
        for (int k = 0; k < 64; k++)
        {
            int cell = random.Next(CellsPerColumn / Workers) * Workers + w;
            if (!columns.Update(c, cell)) Interlocked.Increment(ref failures);
            mine[c]++;
        }
        Interlocked.Add(ref columns.Accesses[c], 64);
        if (!records.Update(random.Next(Records / Workers) * Workers + w)) Interlocked.Increment(ref failures);
        recordOps++;
        Interlocked.Add(ref operations, 65);
    }
    for (int c = 0; c < ColumnCount; c++) Interlocked.Add(ref writes[c], mine[c]);
    Interlocked.Add(ref recordWrites, recordOps);
})).ToArray();
foreach (var t in workers) t.Start();

var clock = Stopwatch.StartNew();
long lastOps = 0, promoted = 0, demoted = 0;
var lastReport = TimeSpan.Zero;
bool[] onDevice = new bool[ColumnCount];
unsafe
{
    while (clock.Elapsed.TotalSeconds < seconds)
    {
        Thread.Sleep(250);
        if ((int)clock.Elapsed.TotalSeconds / 3 != Volatile.Read(ref hotStart) / 5)
            Volatile.Write(ref hotStart, (int)clock.Elapsed.TotalSeconds / 3 * 5 % ColumnCount);
        // Tiering: the hottest columns by recent accesses go to the device, the rest come back.
        long[] heat = columns.Accesses.Select((_, c) => Interlocked.Exchange(ref columns.Accesses[c], 0)).ToArray();
        var hottest = Enumerable.Range(0, ColumnCount).OrderByDescending(c => heat[c]).Take(DeviceColumns).Where(c => heat[c] > 0).ToHashSet();
        for (int c = 0; c < ColumnCount; c++)
            if (onDevice[c] && !hottest.Contains(c))
            {
                heap.Migrate(columns.Pointers[c], system.Host);
                onDevice[c] = false;
                demoted++;
            }
        foreach (int c in hottest.Where(c => !onDevice[c]))
        {
            var moved = heap.Migrate(columns.Pointers[c], device);
            onDevice[c] = moved.IsComplete;
            if (!moved.IsComplete) heap.Migrate(columns.Pointers[c], system.Host);
            else promoted++;
        }
        if (clock.Elapsed - lastReport >= TimeSpan.FromSeconds(1))
        {
            long ops = Interlocked.Read(ref operations);
            double rate = (ops - lastOps) / (clock.Elapsed - lastReport).TotalSeconds;
            lastOps = ops;
            lastReport = clock.Elapsed;
            int hot = Volatile.Read(ref hotStart);
            string map = string.Concat(Enumerable.Range(0, ColumnCount).Select(c =>
                heap.NodeOf(columns.Pointers[c]) == device ? 'D' : 'H'));
            string window = string.Concat(Enumerable.Range(0, ColumnCount).Select(c => (c - hot + ColumnCount) % ColumnCount < HotColumns ? '*' : ' '));
            var stats = heap.GetStatistics(includeNodes: true);
            Console.WriteLine($"[{clock.Elapsed.TotalSeconds,5:F1}s] {map}  {rate / 1e6,6:F2} M updates/s  promoted {promoted,4} demoted {demoted,4}  " +
                              $"device {stats.BytesPerNode.GetValueOrDefault(device) >> 20,3} MiB  host {stats.BytesPerNode.GetValueOrDefault(system.Host) >> 20,4} MiB");
            Console.WriteLine($"         {window}");
        }
    }
}
stop.Cancel();
foreach (var t in workers) t.Join();

var final = heap.GetStatistics(includeNodes: true);
var engine = system.GetStatistics();
var (cells, badCells) = columns.Verify(writes);
var (recordsChecked, badRecords) = records.Verify(Interlocked.Read(ref recordWrites));
Console.WriteLine();
Console.WriteLine($"heap: live {final.LiveBytes >> 20} MiB (peak {final.PeakBytes >> 20} MiB), {final.LargeAllocations} extents, " +
                  $"{final.AllocationsBySizeClass.Sum(c => (long)c.Allocations):N0} small allocations; " +
                  string.Join(", ", final.BytesPerNode.Select(kv => $"{kv.Key.Name} {kv.Value >> 20} MiB")));
Console.WriteLine($"engine: {engine.PagesMigrated:N0} pages migrated, {engine.FaultsWaitedOnMigration:N0} accesses waited for a page in flight, " +
                  $"{engine.FirstTouchFaults:N0} first-touch faults; {promoted} promotions, {demoted} demotions");
Console.WriteLine($"checked {cells:N0} cells and {recordsChecked:N0} records: {badCells + badRecords + Interlocked.Read(ref failures)} bad");
if (badCells + badRecords + failures > 0)
{
    Console.WriteLine("FAILED: a cell or record lost a write");
    return 1;
}
Console.WriteLine("every cell and every record holds its writers' last value");
return 0;
