// The memory model, end to end: a host, a small exclusive "hbm" node, a larger and more distant "cxl" node
// and a private "gpu" node. Records are placed by interleave and preferred policies, a contiguous
// reservation forces compaction, the gpu's pages come back when the CPU touches them, pressure demotes cold
// pages, and cxl is unplugged while writers run. At the end every record must hold its checksum and its
// writer's last version.
using System.Diagnostics;
using CdmUserMem;
using MemoryTopology;

const ulong MiB = 1UL << 20, Page = Region.PageSize;
const int Writers = 3;

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
var hbm = system.AddCoherentDeviceNode("hbm", 16 * MiB, distance: 15, exclusive: true);
var cxl = system.AddCoherentDeviceNode("cxl", 64 * MiB, distance: 40);
var gpu = system.AddPrivateDeviceNode("gpu", 32 * MiB, distance: 60);
Console.WriteLine("MemoryTopology: host, exclusive 'hbm' (16 MiB), 'cxl' (64 MiB), private 'gpu' (32 MiB)\n");
Console.WriteLine(system.Topology);

// 1. Policies: the hot first 16 MiB interleaved over hbm and cxl in 256 KiB units, the rest preferring cxl.
using var region = system.Reserve(48 * MiB);
region.SetPolicy(0, 16 * MiB, MemoryPolicy.Interleave(64, hbm, cxl));
region.SetPolicy(16 * MiB, 32 * MiB, MemoryPolicy.Preferred(cxl));
var records = new Records(region);
var versions = new ulong[records.Count];
var clock = Stopwatch.StartNew();
for (ulong id = 0; id < records.Count; id++) records.Write(id, versions[id] = 1);
Console.WriteLine($"1. policies: wrote {records.Count:N0} records in {clock.Elapsed.TotalMilliseconds:F0} ms; residency, one character a MiB " +
                  $"({ResidencyMap.Legend(system)}):");
Console.WriteLine($"   {ResidencyMap.Render(region, MiB)}");
Console.WriteLine($"   the interleaved 16 MiB, one character per 256 KiB: {ResidencyMap.Render(region, 256 * 1024, 0, 16 * MiB)}");
Console.WriteLine($"   {ResidencyMap.Usage(system)}");
foreach (ulong offset in new ulong[] { 0, 256 * 1024, 40 * MiB })
    Console.WriteLine($"   {region.ExplainPlacement(offset)}");

// 2. A contiguous reservation on cxl: 24 MiB of it are free, so a 32 MiB window needs compaction.
ulong compactedBefore = system.GetStatistics().PagesCompacted;
clock.Restart();
using (var extent = cxl.ReserveContiguous(32 * MiB))
{
    Console.WriteLine($"\n2. reservation: 32 MiB of contiguous cxl frames at frame offset {extent.FrameOffset >> 20} MiB in " +
                      $"{clock.Elapsed.TotalMilliseconds:F1} ms, compacting {system.GetStatistics().PagesCompacted - compactedBefore} pages");
    extent.AsSpan(0, (int)extent.Length).Fill(0xD3); // the device's own data
    Console.WriteLine($"   {ResidencyMap.Render(region, MiB)}");
    Console.WriteLine($"   {ResidencyMap.Usage(system)}");
}

// 3. The private gpu: pages migrated there are unmapped; reading them brings them back.
region.Migrate(16 * MiB, 8 * MiB, gpu).ThrowIfIncomplete();
ulong faultsBefore = system.GetStatistics().PrivateNodeFaults;
int bad = 0;
for (ulong id = 16 * MiB / Records.Size; id < 24 * MiB / Records.Size; id += Page / Records.Size)
    if (records.Read(id) != versions[id]) bad++;
Console.WriteLine($"\n3. private node: 8 MiB migrated to gpu; reading one record a page brought " +
                  $"{system.GetStatistics().PrivateNodeFaults - faultsBefore} pages back ({bad} bad records)");
Console.WriteLine($"   {region.ExplainPlacement(16 * MiB)}");

// 4. Pressure: cxl demotes its least recently placed pages above 90 % until 70 %.
cxl.EnablePressure(0.9, 0.7);
using var stream = system.Reserve(40 * MiB, new RegionOptions { Placement = cxl });
stream.Prefault(0, 40 * MiB);
var wait = Stopwatch.StartNew();
while (cxl.GetUsage().UsedBytes > 58 * MiB && wait.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
Console.WriteLine($"\n4. pressure: a 40 MiB stream on cxl; {system.GetStatistics().PagesDemoted} cold pages demoted to the host; " +
                  ResidencyMap.Usage(system));
Console.WriteLine($"   {ResidencyMap.Render(region, MiB)}");

// 5. Unplug cxl while writers update records.
using var stop = new CancellationTokenSource();
var lastWritten = new ulong[records.Count];
Array.Copy(versions, lastWritten, versions.Length);
var writers = Enumerable.Range(0, Writers).Select(w => new Thread(() =>
{
    var random = new Random(w);
    while (!stop.IsCancellationRequested)
    {
        ulong id = (ulong)random.NextInt64((long)records.Count / Writers) * Writers + (ulong)w;
        records.Write(id, ++lastWritten[id]);
    }
})).ToArray();
foreach (var t in writers) t.Start();
Thread.Sleep(200);
clock.Restart();
system.RemoveNode(cxl);
double unplugMs = clock.Elapsed.TotalMilliseconds;
Thread.Sleep(200);
stop.Cancel();
foreach (var t in writers) t.Join();
Console.WriteLine($"\n5. unplug: cxl drained and removed in {unplugMs:F0} ms while {Writers} writers ran");
Console.WriteLine($"   {ResidencyMap.Render(region, MiB)}");
Console.WriteLine($"   {ResidencyMap.Usage(system)}");
Console.WriteLine($"   {region.ExplainPlacement(35 * MiB)}");

// 6. Counters, and every record checked.
var s = system.GetStatistics();
Console.WriteLine($"\n6. counters: {s.FirstTouchFaults} first-touch faults, {s.FirstTouchFallbacks} fallbacks, {s.PagesMigrated} pages migrated, " +
                  $"{s.PagesCompacted} compacted, {s.PagesDemoted} demoted, {s.PrivateNodeFaults} private-node faults");
ulong broken = 0, lost = 0;
for (ulong id = 0; id < records.Count; id++)
{
    ulong? version = records.Read(id);
    if (version is null) broken++;
    else if (version != lastWritten[id]) lost++;
}
Console.WriteLine(broken == 0 && lost == 0
    ? $"every checksum held: {records.Count:N0} records, none torn, none lost"
    : $"FAILED: {broken} records with bad checksums, {lost} with lost writes");
return broken == 0 && lost == 0 ? 0 : 1;
