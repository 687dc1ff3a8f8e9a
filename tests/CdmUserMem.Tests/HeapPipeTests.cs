using System.IO.Pipelines;
using CdmUserMem;
using static CdmUserMem.Tests.TestSystem;

namespace CdmUserMem.Tests;

// Apart from the unsafe parts of HeapTests: an async method may not run in an unsafe context.
public partial class HeapTests
{
    [Fact]
    public async Task A_pipe_runs_on_the_heap_pool()
    {
        var (system, _) = Create();
        using var __ = system;
        using var heap = system.CreateHeap();
        using var pool = heap.AsMemoryPool();
        var pipe = new Pipe(new PipeOptions(pool: pool, minimumSegmentSize: 4096));
        var payload = Enumerable.Range(0, 1 << 20).Select(i => (byte)(i * 7)).ToArray();
        var writing = Task.Run(async () =>
        {
            for (int o = 0; o < payload.Length; o += 10_000)
                await pipe.Writer.WriteAsync(payload.AsMemory(o, Math.Min(10_000, payload.Length - o)));
            await pipe.Writer.CompleteAsync();
        });
        var received = new List<byte>();
        while (true)
        {
            var read = await pipe.Reader.ReadAsync();
            foreach (var segment in read.Buffer)
            {
                Assert.NotNull(HeapOf(system, segment));
                received.AddRange(segment.ToArray());
            }
            pipe.Reader.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted) break;
        }
        await pipe.Reader.CompleteAsync();
        await writing;
        Assert.Equal(payload, received);
        Assert.True(heap.GetStatistics(includeNodes: false).AllocationsBySizeClass.Sum(c => (long)c.Allocations) > 0);
    }

}
