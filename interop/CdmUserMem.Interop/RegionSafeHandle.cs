using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>Owns a cdm_region and keeps its engine alive until the region is destroyed.</summary>
internal sealed class RegionSafeHandle : SafeHandle
{
    private readonly EngineSafeHandle _engine;

    public RegionSafeHandle(nint region, EngineSafeHandle engine) : base(0, ownsHandle: true)
    {
        bool added = false;
        engine.DangerousAddRef(ref added);
        _engine = engine;
        SetHandle(region);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CdmEngine.RegionDestroy(handle);
        _engine.DangerousRelease();
        return true;
    }
}
