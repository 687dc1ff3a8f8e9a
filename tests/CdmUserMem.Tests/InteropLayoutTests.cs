using System.Runtime.CompilerServices;
using CdmUserMem.Interop;

namespace CdmUserMem.Tests;

public class InteropLayoutTests
{
    [Fact]
    public void Structs_match_the_native_abi()
    {
        Assert.Equal(CdmEngine.AbiSizeOfStats(), (uint)Unsafe.SizeOf<CdmStats>());
    }
}
