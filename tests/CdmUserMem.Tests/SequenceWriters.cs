namespace CdmUserMem.Tests;

/// <summary>
/// Writer threads over a region: writer w owns pages [w × pagesEach, +pagesEach) and keeps writing rising
/// sequence numbers into the first word of each, after checking that the word still holds the last number
/// it wrote. Whatever moves the pages meanwhile, a lost or misplaced write shows as <see cref="Lost"/>.
/// </summary>
internal sealed unsafe class SequenceWriters : IDisposable
{
    private readonly Region _region;
    private readonly ulong[] _last;
    private readonly Thread[] _threads;
    private readonly CancellationTokenSource _stop = new();
    private volatile string? _lost;

    public SequenceWriters(Region region, int writers, int pagesEach, bool yieldBetweenRounds = false)
    {
        _region = region;
        _last = new ulong[writers * pagesEach];
        _threads = Enumerable.Range(0, writers).Select(w => new Thread(() =>
        {
            ulong* words = (ulong*)region.Pointer;
            for (ulong seq = 1; !_stop.IsCancellationRequested; seq++)
            {
                for (int p = w * pagesEach; p < (w + 1) * pagesEach; p++)
                {
                    ulong* slot = words + (ulong)p * Region.PageSize / 8;
                    if (Volatile.Read(ref *slot) != _last[p])
                    {
                        _lost ??= $"page {p}: read {*slot}, wrote {_last[p]}";
                        return;
                    }
                    Volatile.Write(ref *slot, seq);
                    _last[p] = seq;
                }
                Watchdog.Tick();
                if (yieldBetweenRounds) Thread.Yield();
            }
        }) { IsBackground = true }).ToArray();
        foreach (var t in _threads) t.Start();
    }

    public Watchdog Watchdog { get; } = new();

    /// <summary>The first lost write, or null.</summary>
    public string? Lost => _lost;

    /// <summary>Stops and joins the writers (they must end within 10 s), then checks every page holds its last write.</summary>
    public void StopAndVerify()
    {
        _stop.Cancel();
        foreach (var t in _threads) Assert.True(t.Join(TimeSpan.FromSeconds(10)), "a writer did not stop");
        Assert.Null(_lost);
        Assert.True(Watchdog.Progress > 0, "the writers never wrote");
        for (int p = 0; p < _last.Length; p++) Assert.Equal(_last[p], _region.AsSpan<ulong>((ulong)p * Region.PageSize, 1)[0]);
    }

    public void Dispose()
    {
        _stop.Cancel();
        foreach (var t in _threads) t.Join(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}
