using BenchmarkDotNet.Running;
using CdmUserMem.Benchmarks.Quick;

// `--quick` runs the reduced side-by-side set (under three minutes); anything else goes to BenchmarkDotNet.
if (args.Contains("--quick"))
{
    string results = Path.Combine(FindRepositoryRoot(), "bench", "results");
    // `--quick --only policy` runs one group of figures and prints it, writing nothing.
    int only = Array.IndexOf(args, "--only");
    return only >= 0 && only + 1 < args.Length ? QuickMode.RunOnly(args[only + 1]) : QuickMode.Run(results);
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;

static string FindRepositoryRoot()
{
    for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "CdmUserMem.sln"))) return dir.FullName;
    return Environment.CurrentDirectory;
}
