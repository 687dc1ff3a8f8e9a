// Worker threads read and write checksummed records in a region while the main thread migrates ranges
// between the host and a coherent device node underneath them. At the end every record must hold the
// last value its writer wrote, with a valid checksum.
using System.Diagnostics;
using CdmUserMem;
using TransparentMigration;

var settings = Settings.Parse(args);
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
var device = system.AddCoherentDeviceNode("gpu0", settings.DeviceMiB << 20, distance: 40);
using var region = system.Reserve(settings.RegionMiB << 20, new RegionOptions { FaultAroundPages = 16 });

Console.WriteLine($"CdmUserMem transparent migration: {settings.RegionMiB} MiB region, device '{device.Name}' of {settings.DeviceMiB} MiB, " +
                  $"{settings.Workers} workers, {settings.Seconds} s");
Console.WriteLine($"  fault mode: {system.FaultMode} (userfaultfd from {system.UserfaultfdSource}); device arena pinned: {(device.IsPinned ? "yes" : $"no ({device.PinFailure})")}; " +
                  $"copy engine: {CopyEngine.InstructionSet}");
Console.WriteLine($"  pid {Environment.ProcessId}: watch it with  dotnet-counters monitor --counters CdmUserMem -p {Environment.ProcessId}");
Console.WriteLine("  map: one character per MiB  H host  D device  m mixed  . untouched");

var records = new RecordStore(region, settings.Workers);
using var stop = new CancellationTokenSource();
var workers = Enumerable.Range(0, settings.Workers).Select(w => records.StartWorker(w, stop.Token)).ToArray();

var random = new Random(12345);
var clock = Stopwatch.StartNew();
var lastReport = TimeSpan.Zero;
long migrations = 0, migratedBytes = 0, busyPages = 0, noCapacityPages = 0;
double migrateSeconds = 0;
ulong chunk = 1UL << 20;
while (clock.Elapsed.TotalSeconds < settings.Seconds && workers.All(w => !w.IsCompleted))
{
    ulong mib = (ulong)random.Next((int)settings.RegionMiB);
    ulong length = chunk * (ulong)random.Next(1, 5);
    length = Math.Min(length, region.Length - mib * chunk);
    var target = random.Next(2) == 0 ? device : system.Host;
    var started = Stopwatch.GetTimestamp();
    var result = await region.MigrateAsync(mib * chunk, length, target);
    migrateSeconds += Stopwatch.GetElapsedTime(started).TotalSeconds;
    migrations++;
    migratedBytes += (long)(result.PagesMigrated * Region.PageSize);
    busyPages += (long)result.PagesBusy;
    noCapacityPages += (long)result.PagesNoCapacity;
    if (clock.Elapsed - lastReport >= TimeSpan.FromSeconds(1))
    {
        lastReport = clock.Elapsed;
        var s = system.GetStatistics();
        Console.WriteLine($"[{clock.Elapsed.TotalSeconds,5:F1}s] {ResidencyMap.Render(region, chunk)}");
        Console.WriteLine($"         writes {records.Writes,10:N0}  faults {s.FirstTouchFaults,6:N0}  migrated {s.PagesMigrated,8:N0} pages  " +
                          $"waits {s.FaultsWaitedOnMigration,5:N0}  device used {device.GetUsage().UsedBytes >> 20,3} MiB  mappings {region.MappingCount}");
    }
    await Task.Delay(settings.PauseMs);
}

stop.Cancel();
await Task.WhenAll(workers);
var final = system.GetStatistics();
var verdict = records.VerifyAll();
Console.WriteLine();
Console.WriteLine($"final map   {ResidencyMap.Render(region, chunk)}");
Console.WriteLine($"migrations: {migrations:N0} calls, {migratedBytes >> 20:N0} MiB moved, " +
                  $"{(migratedBytes > 0 ? migratedBytes / migrateSeconds / 1e9 : 0):F2} GB/s while contended, " +
                  $"{busyPages:N0} pages busy, {noCapacityPages:N0} pages found the device full");
Console.WriteLine($"faults: {final.FirstTouchFaults:N0} first-touch ({final.PagesZeroFilledOnHost:N0} pages zero-filled), " +
                  $"{final.FaultsWaitedOnMigration:N0} accesses waited for a page in flight (each for at most its batch's copy)");
foreach (var kind in new[] { LatencyKind.FaultService, LatencyKind.MigrationUpTo2MiB })
{
    var d = system.GetLatency(kind);
    Console.WriteLine($"latency {kind}: {d.Count:N0} events, p50 {d.P50.TotalMicroseconds:F1} µs, p99 {d.P99.TotalMicroseconds:F1} µs, " +
                      $"p99.9 {d.P999.TotalMicroseconds:F1} µs");
}
Console.WriteLine($"records: {verdict.Records:N0} checked, {records.Writes:N0} writes, {verdict.Failures} bad");
if (verdict.Failures > 0 || records.WorkerFailures > 0)
{
    Console.WriteLine($"FAILED: {verdict.FirstFailure ?? records.FirstWorkerFailure}");
    return 1;
}
Console.WriteLine("every checksum held and every record holds its last write");
return 0;
