using CdmUserMem.Interop;

namespace CdmUserMem;

/// <summary>
/// Contiguous frames of a device node reserved for explicit use, as CMA gives a driver contiguous memory
/// (see <see cref="MemoryNode.ReserveContiguous"/>): frames [<see cref="FrameOffset"/>, +<see cref="Length"/>)
/// of the node, mapped at <see cref="Pointer"/>. Placement, pressure and unplug never touch them until the
/// reservation is disposed.
/// </summary>
public sealed unsafe class ContiguousReservation : IDisposable
{
    private readonly ExtentSafeHandle _handle;
    private volatile bool _disposed;

    internal ContiguousReservation(MemoryNode node, ExtentSafeHandle handle, ulong frameOffset, ulong length, nint pointer)
    {
        Node = node;
        _handle = handle;
        FrameOffset = frameOffset;
        Length = length;
        Pointer = pointer;
    }

    public MemoryNode Node { get; }

    /// <summary>Where the extent starts in the node's memory, in bytes (frame index × page size).</summary>
    public ulong FrameOffset { get; }

    public ulong Length { get; }

    /// <summary>The extent's address: where the caller asked, or where it lies in the node's arena.</summary>
    public nint Pointer { get; }

    public bool IsDisposed => _disposed;

    /// <summary>A window of the extent.</summary>
    public Span<byte> AsSpan(ulong offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset > Length || (ulong)length > Length - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) lies outside the reservation's {Length} bytes.");
        return new Span<byte>((void*)(Pointer + (nint)offset), length);
    }

    /// <summary>Gives the frames back to the node (and unmaps the caller's address, if one was asked for).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _handle.Dispose();
        Node.System.OnReservationDisposed(this);
    }
}
