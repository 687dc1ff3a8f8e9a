using System.Diagnostics;
using System.Security.Cryptography;

namespace CdmUserMem.Tests;

/// <summary>
/// LD_PRELOAD=libcdmmalloc.so routes a whole process's malloc family through a CdmUserMem heap: programs
/// not written here give the same output with it as without it, threads, fork and all.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class PreloadTests
{
    private static readonly string Library = Path.Combine(AppContext.BaseDirectory, "libcdmmalloc.so");

    private static (int ExitCode, string Output) Run(string program, IEnumerable<string> arguments, bool preload, string? stdinFile = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        if (stdinFile is not null)
        {
            start.FileName = "/bin/sh";
            start.ArgumentList.Clear();
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add($"exec {program} {string.Join(' ', arguments)} < '{stdinFile}'");
        }
        if (preload)
        {
            start.Environment["LD_PRELOAD"] = Library;
            start.Environment["CDM_MALLOC_VERBOSE"] = "1";
        }
        return TestProcess.RunToExit(start, TimeSpan.FromSeconds(120));
    }

    private const string Engaged = "cdmmalloc: heap on CdmUserMem";

    [Fact]
    public void Python_with_threads_and_fork_prints_the_same()
    {
        const string Script = """
            import json, os, threading, hashlib
            data = {str(i): [j * i for j in range(i % 40)] for i in range(60000)}
            text = json.dumps(data, sort_keys=True)
            results = []
            def work(k):
                chunks = [bytes([k]) * (1000 + 37 * n) for n in range(400)]
                results.append(sum(len(c) for c in chunks))
            threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
            [t.start() for t in threads]; [t.join() for t in threads]
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                grown = [bytearray(70000) * 3 for _ in range(300)]
                os.write(w, hashlib.sha256(json.dumps(json.loads(text)).encode()).hexdigest().encode())
                os._exit(0)
            os.waitpid(pid, 0)
            print(hashlib.sha256(text.encode()).hexdigest(), os.read(r, 64).decode(), sorted(results))
            """;
        var plain = Run("python3", ["-c", Script], preload: false);
        var preloaded = Run("python3", ["-c", Script], preload: true);
        Assert.True(plain.ExitCode == 0, plain.Output);
        Assert.True(preloaded.ExitCode == 0, preloaded.Output);
        Assert.Contains(Engaged, preloaded.Output);
        Assert.Equal(plain.Output.Trim(), preloaded.Output.Replace(EngagedLine(preloaded.Output), "").Trim());
    }

    [Fact]
    public void Sort_of_a_large_file_gives_the_same_bytes()
    {
        string input = Path.Combine(AppContext.BaseDirectory, $"preload-sort-{Environment.ProcessId}.txt");
        var random = new Random(7);
        using (var writer = new StreamWriter(input))
            for (int i = 0; i < 400_000; i++) writer.WriteLine($"{random.Next():x8} {random.NextDouble():F6} line {i}");
        try
        {
            string output = input + ".sorted";
            var plain = Run("sort", ["-o", output + ".plain", input], preload: false);
            var preloaded = Run("sort", ["-S", "64M", "--parallel=2", "-o", output + ".cdm", input], preload: true);
            Assert.True(plain.ExitCode == 0, plain.Output);
            Assert.True(preloaded.ExitCode == 0, preloaded.Output);
            Assert.Contains(Engaged, preloaded.Output);
            Assert.Equal(SHA256.HashData(File.ReadAllBytes(output + ".plain")), SHA256.HashData(File.ReadAllBytes(output + ".cdm")));
            File.Delete(output + ".plain");
            File.Delete(output + ".cdm");
        }
        finally
        {
            File.Delete(input);
        }
    }

    [Fact]
    public void A_dotnet_app_runs_on_it_and_its_checksums_hold()
    {
        // The example: a runtime with its GC, its threads and its own CdmUserMem engine, all mallocing through ours.
        string example = Path.Combine(AppContext.BaseDirectory, "TransparentMigration.dll");
        var preloaded = Run(TestProcess.DotnetHost(), [example, "--seconds", "2"], preload: true);
        Assert.True(preloaded.ExitCode == 0, preloaded.Output);
        Assert.Contains(Engaged, preloaded.Output);
        Assert.Contains("every checksum held and every record holds its last write", preloaded.Output);
    }

    /// <summary>Preloaded, and the engine library loaded beside it with a heap of its own, a fork goes through:
    /// each library keeps its own heaps, locks and fork handlers.</summary>
    [Fact]
    public void A_fork_with_both_libraries_loaded_completes()
    {
        string engine = Path.Combine(AppContext.BaseDirectory, "libcdmengine.so");
        string script = $$"""
            import ctypes, os
            lib = ctypes.CDLL("{{engine}}")
            e = ctypes.c_void_p(); mode = ctypes.c_uint32(); missing = ctypes.c_uint64(); h = ctypes.c_void_p()
            assert lib.cdm_engine_create(ctypes.c_uint64(16384), 1, 0, ctypes.byref(e), ctypes.byref(mode), ctypes.byref(missing)) == 0
            assert lib.cdm_heap_create(e, None, ctypes.byref(h)) == 0
            lib.cdm_heap_malloc.restype = ctypes.c_void_p
            p = lib.cdm_heap_malloc(h, ctypes.c_size_t(100))
            pid = os.fork()
            if pid == 0:
                os._exit(7 if bytearray(1000000) else 1)
            _, status = os.waitpid(pid, 0)
            print("child", os.WEXITSTATUS(status))
            """;
        var preloaded = Run("python3", ["-c", script], preload: true);
        Assert.True(preloaded.ExitCode == 0, preloaded.Output);
        Assert.Contains("child 7", preloaded.Output);
    }

    /// <summary>Unprivileged, userfaultfd is user-mode-only: system calls on untouched malloc'd pages would fail,
    /// so the preloaded malloc serves the process from plain memory, and the program works.</summary>
    [Fact]
    public void Unprivileged_it_falls_back_to_plain_memory_and_the_program_works()
    {
        bool root = CdmUserMem.Interop.Libc.GetUid() == 0;
        // Where 'nobody' can read it (the build may sit under a private directory).
        string scratch = Directory.CreateTempSubdirectory("cdm-preload-").FullName;
        try
        {
            string library = Path.Combine(scratch, "libcdmmalloc.so");
            File.Copy(Library, library);
            File.SetUnixFileMode(scratch, (UnixFileMode)0b111_101_101);
            File.SetUnixFileMode(library, (UnixFileMode)0b111_101_101);
            // setpriv drops capabilities, so its exec is a secure one that ignores LD_PRELOAD: env sets it after.
            var start = new ProcessStartInfo(root ? "setpriv" : "env") { RedirectStandardOutput = true, RedirectStandardError = true };
            if (root)
                foreach (var a in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "env" })
                    start.ArgumentList.Add(a);
            foreach (var a in new[] { $"LD_PRELOAD={library}", "CDM_MALLOC_VERBOSE=1", "sort", "/proc/cpuinfo" })
                start.ArgumentList.Add(a);
            var (exitCode, output) = TestProcess.RunToExit(start, TimeSpan.FromSeconds(60));
            Assert.True(exitCode == 0, output);
            Assert.Contains("processor", output);
            if (root) Assert.True(output.Contains("user-mode-only here") || output.Contains("no CdmUserMem engine here"), output);
            else Assert.Contains("cdmmalloc:", output);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    [Fact]
    public void The_tiering_example_keeps_every_cell_and_record()
    {
        var start = new ProcessStartInfo(TestProcess.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "NativeHeapTiering.dll"));
        start.ArgumentList.Add("--seconds");
        start.ArgumentList.Add("3");
        var (exitCode, output) = TestProcess.RunToExit(start, TimeSpan.FromSeconds(120));
        Assert.True(exitCode == 0, output);
        Assert.Contains("every cell and every record holds its writers' last value", output);
        Assert.Matches(@"promoted +[1-9]", output);
        Assert.Matches(@"demoted +[1-9]", output);
    }

    [Fact]
    public void On_a_device_node_the_same_output()
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("print(sum(len(bytearray(i * 100)) for i in range(3000)))");
        start.Environment["LD_PRELOAD"] = Library;
        start.Environment["CDM_MALLOC_VERBOSE"] = "1";
        start.Environment["CDM_MALLOC_DEVICE_MIB"] = "64";
        var (exitCode, output) = TestProcess.RunToExit(start, TimeSpan.FromSeconds(60));
        Assert.True(exitCode == 0, output);
        Assert.Contains("cdmmalloc: heap on a CdmUserMem device node", output);
        Assert.Contains("449850000", output);
    }

    private static string EngagedLine(string output) =>
        output.Split('\n').FirstOrDefault(l => l.StartsWith("cdmmalloc:")) is { } line ? line : "";
}
