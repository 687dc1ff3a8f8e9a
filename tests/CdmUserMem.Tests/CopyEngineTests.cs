using System.Runtime.InteropServices;
using CdmUserMem;
using FsCheck;
using FsCheck.Fluent;

namespace CdmUserMem.Tests;

public unsafe class CopyEngineTests
{
    [Theory]
    [InlineData(1, 4096)]
    [InlineData(1, 64 * 1024)]
    [InlineData(1, 3 * 1024 * 1024 + 4096)]
    [InlineData(3, 8 * 1024 * 1024)]
    public void Aligned_copies_are_exact(int channels, int bytes)
    {
        byte* src = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 4096), dst = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);
        try
        {
            Random.Shared.NextBytes(new Span<byte>(src, bytes));
            new Span<byte>(dst, bytes).Clear();
            using var system = MemorySystem.Create(new MemorySystemOptions { CopyChannels = channels });
            Assert.Equal(channels, system.CopyEngine.Channels);
            system.CopyEngine.Copy(dst, src, (nuint)bytes);
            Assert.True(new Span<byte>(src, bytes).SequenceEqual(new Span<byte>(dst, bytes)));
        }
        finally
        {
            NativeMemory.AlignedFree(src);
            NativeMemory.AlignedFree(dst);
        }
    }

    [Fact]
    public void Any_size_and_alignment_copies_exactly_and_touches_nothing_else()
    {
        Prop.ForAll(Gen.Choose(0, 300_000).ToArbitrary(), Gen.Choose(0, 127).ToArbitrary(), Gen.Choose(0, 127).ToArbitrary(),
            (size, srcSkew, dstSkew) =>
            {
                var src = new byte[size + 256];
                var dst = new byte[size + 256];
                new Random(size).NextBytes(src);
                fixed (byte* s = src)
                fixed (byte* d = dst)
                    CopyEngine.CopyBlock(d + dstSkew, s + srcSkew, (nuint)size);
                return dst.AsSpan(dstSkew, size).SequenceEqual(src.AsSpan(srcSkew, size))
                    && dst.AsSpan(0, dstSkew).IndexOfAnyExcept((byte)0) < 0
                    && dst.AsSpan(dstSkew + size).IndexOfAnyExcept((byte)0) < 0;
            }).QuickCheckThrowOnFailure();
    }
}
