using System.Buffers;

namespace CdmUserMem;

/// <summary>
/// Memory of a <see cref="NativeHeap"/> as <see cref="Memory{T}"/>: <see cref="Pin"/> takes a migration pin on
/// its pages (as <see cref="Region.Pin"/> does), so memory handed to the kernel or to native code stays put;
/// disposing frees it. Disposing after the heap was disposed does nothing (the memory is gone with it).
/// </summary>
public sealed unsafe class HeapMemoryManager<T> : MemoryManager<T> where T : unmanaged
{
    private readonly NativeHeap _heap;
    private readonly int _length;
    private void* _pointer;
    private int _pins;

    internal HeapMemoryManager(NativeHeap heap, int length)
    {
        _heap = heap;
        _length = length;
        _pointer = heap.Allocate((nuint)Math.Max(length, 1) * (nuint)sizeof(T), (nuint)Math.Max(16, sizeof(T) & -sizeof(T)));
    }

    public NativeHeap Heap => _heap;

    public void* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(HeapMemoryManager<T>));

    public override Span<T> GetSpan() => new(Pointer, _length);

    /// <summary>Pins the pages against migration until the handle is disposed; pins nest.</summary>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
        _heap.PinPages(Pointer, (nuint)_length * (nuint)sizeof(T), pin: true);
        Interlocked.Increment(ref _pins);
        return new MemoryHandle((T*)_pointer + elementIndex, default, this);
    }

    public override void Unpin()
    {
        // Disposed meanwhile: the pins went with the memory.
        if (_pointer == null) return;
        if (Interlocked.Decrement(ref _pins) < 0)
        {
            Interlocked.Increment(ref _pins);
            throw new InvalidOperationException("Unpin without a matching Pin.");
        }
        if (!_heap.IsDisposed) _heap.PinPages(_pointer, (nuint)_length * (nuint)sizeof(T), pin: false);
    }

    protected override void Dispose(bool disposing)
    {
        void* p = _pointer;
        _pointer = null;
        if (p == null || _heap.IsDisposed) return;
        // Pins still held go with the memory: a later allocation at these pages must not inherit them.
        for (int i = Volatile.Read(ref _pins); i > 0; i--) _heap.PinPages(p, (nuint)_length * (nuint)sizeof(T), pin: false);
        _pins = 0;
        _heap.Free(p);
    }
}

/// <summary>An owned heap allocation of any size: <see cref="Span{T}"/> windows reach past 2 GiB.</summary>
public sealed unsafe class HeapBuffer : IDisposable
{
    private readonly NativeHeap _heap;
    private void* _pointer;

    internal HeapBuffer(NativeHeap heap, nuint length, nuint alignment)
    {
        _heap = heap;
        Length = length;
        _pointer = heap.Allocate(length == 0 ? 1 : length, alignment);
    }

    public nuint Length { get; }

    public void* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(HeapBuffer));

    /// <summary>A window of <paramref name="length"/> bytes at <paramref name="offset"/>.</summary>
    public Span<byte> GetSpan(nuint offset, int length) => GetSpan<byte>(offset, length);

    /// <summary>A window of <paramref name="count"/> elements starting <paramref name="elementOffset"/> elements in.</summary>
    public Span<T> GetSpan<T>(nuint elementOffset, int count) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        nuint size = (nuint)sizeof(T);
        if (elementOffset > Length / size || (nuint)count > Length / size - elementOffset)
            throw new ArgumentOutOfRangeException(nameof(count), $"[{elementOffset}, +{count}) elements of {size} bytes exceeds {Length} bytes.");
        return new Span<T>((byte*)Pointer + elementOffset * size, count);
    }

    public MigrationResult Migrate(MemoryNode target, MigrationOptions? options = null) => _heap.Migrate(Pointer, target, options);

    public MemoryNode? NodeOf(nuint offset) =>
        offset < Length ? _heap.NodeOf((byte*)Pointer + offset) : throw new ArgumentOutOfRangeException(nameof(offset));

    public void Dispose()
    {
        void* p = _pointer;
        _pointer = null;
        if (p != null && !_heap.IsDisposed) _heap.Free(p);
    }
}

/// <summary>A <see cref="MemoryPool{T}"/> on a <see cref="NativeHeap"/>.</summary>
internal sealed class HeapMemoryPool(NativeHeap heap) : MemoryPool<byte>
{
    public override int MaxBufferSize => int.MaxValue;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1) =>
        heap.Rent<byte>(minBufferSize < 0 ? 4096 : minBufferSize);

    protected override void Dispose(bool disposing) { }
}
