namespace CdmUserMem.Benchmarks.Quick;

/// <summary>
/// A thread of this process that keeps running and touching its own memory, as an application's threads
/// do: every page-table change then costs a TLB shootdown on its CPU too.
/// </summary>
internal sealed unsafe class Sibling : IDisposable
{
    private readonly Thread _thread;
    private volatile bool _stop;

    private Sibling()
    {
        _thread = new Thread(Spin) { IsBackground = true, Name = "sibling" };
        _thread.Start();
    }

    public static Sibling Start() => new();

    private void Spin()
    {
        var scratch = new byte[64 * 1024];
        for (int i = 0; !_stop; i++) scratch[(i * 64) & (scratch.Length - 1)]++;
    }

    public void Dispose()
    {
        _stop = true;
        _thread.Join();
    }
}
