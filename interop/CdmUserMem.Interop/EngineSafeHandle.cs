using System.Runtime.InteropServices;

namespace CdmUserMem.Interop;

/// <summary>Owns a cdm_engine: its userfaultfd, fault-service thread and device arenas.</summary>
internal sealed class EngineSafeHandle : SafeHandle
{
    public EngineSafeHandle() : base(0, ownsHandle: true) { }

    public EngineSafeHandle(nint engine) : base(0, ownsHandle: true) => SetHandle(engine);

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CdmEngine.EngineDestroy(handle);
        return true;
    }
}
