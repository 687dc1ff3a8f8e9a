using System.Runtime.CompilerServices;
using CdmUserMem;

namespace TransparentMigration;

/// <summary>
/// 64-byte records: id, version, five payload words and a checksum. Worker w owns the records whose index
/// is w modulo the worker count and remembers the last version it wrote to each.
/// </summary>
internal sealed class RecordStore
{
    private const int Words = 8;
    private readonly Region _region;
    private readonly int _workers;
    private readonly ulong[][] _expected;
    private long _writes;
    private int _workerFailures;

    public RecordStore(Region region, int workers)
    {
        _region = region;
        _workers = workers;
        RecordCount = (long)(region.Length / (Words * sizeof(ulong)));
        _expected = Enumerable.Range(0, workers).Select(w => new ulong[(RecordCount - w + workers - 1) / workers]).ToArray();
    }

    public long RecordCount { get; }
    public long Writes => Interlocked.Read(ref _writes);
    public int WorkerFailures => _workerFailures;
    public string? FirstWorkerFailure { get; private set; }

    public Task StartWorker(int worker, CancellationToken stop) => Task.Factory.StartNew(() =>
    {
        var random = new Random(worker);
        var expected = _expected[worker];
        while (!stop.IsCancellationRequested)
        {
            for (int k = 0; k < 256; k++)
            {
                long slot = random.NextInt64(expected.Length);
                long index = slot * _workers + worker;
                var record = Record(index);
                if (!IsValid(record, index, expected[slot], out string? why))
                {
                    Fail(why!);
                    return;
                }
                ulong version = expected[slot] + 1;
                Write(record, index, version);
                expected[slot] = version;
                Interlocked.Increment(ref _writes);
            }
        }
    }, TaskCreationOptions.LongRunning);

    public (long Records, long Failures, string? FirstFailure) VerifyAll()
    {
        long failures = 0;
        string? first = null;
        for (long index = 0; index < RecordCount; index++)
        {
            int worker = (int)(index % _workers);
            if (!IsValid(Record(index), index, _expected[worker][index / _workers], out string? why))
            {
                failures++;
                first ??= why;
            }
        }
        return (RecordCount, failures, first);
    }

    private Span<ulong> Record(long index) => _region.AsSpan<ulong>((ulong)index * Words * sizeof(ulong), Words);

    private static void Write(Span<ulong> record, long index, ulong version)
    {
        record[0] = (ulong)index;
        record[1] = version;
        for (int i = 2; i < 7; i++) record[i] = Mix(version * 31 + (ulong)i + (ulong)index);
        record[7] = Checksum(record);
    }

    private static bool IsValid(Span<ulong> record, long index, ulong expectedVersion, out string? why)
    {
        why = null;
        if (expectedVersion == 0 && record[1] == 0 && record[7] == 0) return true; // never written: zero page
        if (record[0] != (ulong)index || record[1] != expectedVersion || record[7] != Checksum(record))
            why = $"record {index}: version {record[1]} (expected {expectedVersion}), checksum {(record[7] == Checksum(record) ? "ok" : "BAD")}";
        return why is null;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Checksum(Span<ulong> r)
    {
        ulong h = 0xcbf29ce484222325;
        for (int i = 0; i < 7; i++) h = Mix(h ^ r[i]);
        return h;
    }

    private static ulong Mix(ulong x)
    {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccd;
        x ^= x >> 33;
        return x;
    }

    private void Fail(string why)
    {
        if (Interlocked.Increment(ref _workerFailures) == 1) FirstWorkerFailure = why;
    }
}
