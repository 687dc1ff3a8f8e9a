using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>Owns a cdm_extent (a contiguous reservation) and keeps its engine alive until it is released.</summary>
internal sealed class ExtentSafeHandle : SafeHandle
{
    private readonly EngineSafeHandle _engine;

    public ExtentSafeHandle(nint extent, EngineSafeHandle engine) : base(0, ownsHandle: true)
    {
        bool added = false;
        engine.DangerousAddRef(ref added);
        _engine = engine;
        SetHandle(extent);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CdmEngine.ExtentRelease(handle);
        _engine.DangerousRelease();
        return true;
    }
}
