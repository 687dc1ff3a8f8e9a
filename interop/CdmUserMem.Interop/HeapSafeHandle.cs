using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>Owns a cdm_heap: destroyed (every allocation unmapped) when released. Holds its engine alive.</summary>
internal sealed class HeapSafeHandle : SafeHandle
{
    private readonly EngineSafeHandle _engine;
    private bool _engineRef;

    public HeapSafeHandle(nint heap, EngineSafeHandle engine) : base(0, ownsHandle: true)
    {
        _engine = engine;
        engine.DangerousAddRef(ref _engineRef);
        SetHandle(heap);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        int rc = CdmEngine.HeapDestroy(handle);
        if (_engineRef) _engine.DangerousRelease();
        return rc == 0;
    }
}
