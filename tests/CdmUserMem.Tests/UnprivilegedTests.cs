using System.Diagnostics;
using System.Runtime.Versioning;
using CdmUserMem.Interop;

namespace CdmUserMem.Tests;

/// <summary>The example must work for an ordinary user: user-mode-only userfaultfd and RLIMIT_MEMLOCK.</summary>
[SupportedOSPlatform("linux")]
public class UnprivilegedTests
{
    [Fact]
    public void The_example_passes_as_an_ordinary_user()
    {
        string exampleDll = Path.Combine(AppContext.BaseDirectory, "TransparentMigration.dll");
        Assert.True(File.Exists(exampleDll), $"{exampleDll} missing");
        var start = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true };
        string? scratch = null;
        if (Libc.GetUid() == 0)
        {
            // Root: copy the build where 'nobody' can read it and drop every privilege with setpriv.
            scratch = Directory.CreateTempSubdirectory("cdm-unprivileged-").FullName;
            foreach (var file in Directory.GetFiles(AppContext.BaseDirectory))
                File.Copy(file, Path.Combine(scratch, Path.GetFileName(file)));
            File.SetUnixFileMode(scratch, (UnixFileMode)0b111_101_101);
            start.FileName = "setpriv";
            foreach (var a in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                                      TestProcess.DotnetHost(), Path.Combine(scratch, "TransparentMigration.dll") })
                start.ArgumentList.Add(a);
            start.Environment["HOME"] = scratch;
            start.Environment["DOTNET_CLI_HOME"] = scratch;
        }
        else
        {
            start.FileName = TestProcess.DotnetHost();
            start.ArgumentList.Add(exampleDll);
        }
        foreach (var a in new[] { "--seconds", "4", "--region-mib", "32", "--device-mib", "16" }) start.ArgumentList.Add(a);
        try
        {
            var (exitCode, output) = TestProcess.RunToExit(start, TimeSpan.FromSeconds(120));
            Assert.True(exitCode == 0, output);
            Assert.Contains("fault mode: UserModeOnly", output);
            Assert.Contains("every checksum held", output);
            // 16 MiB exceeds an ordinary user's 8 MiB RLIMIT_MEMLOCK: the example must say it is not pinned.
            Assert.Contains("pinned: no", output);
        }
        finally
        {
            if (scratch is not null) Directory.Delete(scratch, recursive: true);
        }
    }

    [Fact]
    public void Blocked_userfaultfd_is_reported_with_what_to_do()
    {
        string deny = Path.Combine(AppContext.BaseDirectory, "libcdmtestnative.so");
        var start = new ProcessStartInfo(TestProcess.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "TransparentMigration.dll"));
        start.Environment["LD_PRELOAD"] = deny;
        start.Environment["CDM_TEST_DENY_USERFAULTFD"] = "1";
        var (exitCode, output) = TestProcess.RunToExit(start, TimeSpan.FromSeconds(60));
        Assert.True(exitCode == 2, output);
        Assert.Contains("userfaultfd(2) is not available", output);
        Assert.Contains("seccomp", output);
    }
}
