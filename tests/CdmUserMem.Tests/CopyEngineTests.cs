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

    /// <summary>
    /// Back to back and from several threads at once on 4 channels: each copy returns only after every
    /// byte of it is written, and no late channel ever writes into a later copy.
    /// </summary>
    [Fact]
    public void Copies_on_four_channels_back_to_back_and_concurrently_are_each_complete()
    {
        using var system = MemorySystem.Create(new MemorySystemOptions { CopyChannels = 4 });
        const int Callers = 3, Rounds = 60;
        string? failure = null;
        var threads = Enumerable.Range(0, Callers).Select(c => new Thread(() =>
        {
            var random = new Random(c);
            nuint max = 12 << 20;
            byte* src = (byte*)NativeMemory.AlignedAlloc(max, 4096), dst = (byte*)NativeMemory.AlignedAlloc(max, 4096);
            try
            {
                for (int round = 0; round < Rounds && failure is null; round++)
                {
                    nuint bytes = (nuint)random.Next(2, 12) << 20;
                    byte stamp = (byte)(round * Callers + c + 1);
                    new Span<byte>(src, (int)bytes).Fill(stamp);
                    src[bytes / 3] = (byte)~stamp; // one odd byte, so a slice copied from a stale source shows
                    system.CopyEngine.Copy(dst, src, bytes);
                    // Checked at once: a channel still working on this copy would leave old bytes behind.
                    var copied = new Span<byte>(dst, (int)bytes);
                    int bad = copied.IndexOfAnyExcept(stamp);
                    if (bad != (int)(bytes / 3) || copied[(int)(bytes / 3)] != (byte)~stamp ||
                        copied[((int)(bytes / 3) + 1)..].IndexOfAnyExcept(stamp) >= 0)
                        failure ??= $"caller {c} round {round}: byte {bad} of {bytes} wrong";
                }
            }
            finally
            {
                NativeMemory.AlignedFree(src);
                NativeMemory.AlignedFree(dst);
            }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(120)), "a copy never returned");
        Assert.Null(failure);
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
