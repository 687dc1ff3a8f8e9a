using System.Diagnostics;

namespace CdmUserMem.Tests;

/// <summary>Runs programs for the tests that check whole processes.</summary>
internal static class TestProcess
{
    /// <summary>Runs a process to its end (failing the test past the timeout); returns its exit code and output.</summary>
    public static (int ExitCode, string Output) RunToExit(ProcessStartInfo start, TimeSpan timeout)
    {
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{start.FileName} did not finish in {timeout.TotalSeconds} s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    public static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : Environment.ProcessPath!;

}
