using System.Globalization;
using System.Text;
using System.Text.Json;

namespace CdmUserMem.Benchmarks.Quick;

/// <summary>Prints the quick-mode table and writes it as JSON and Markdown.</summary>
internal static class Report
{
    public static void Print(IReadOnlyList<Figure> figures, IReadOnlyList<Distribution> distributions, IReadOnlyList<SizePoint> sizes,
                             TextWriter output)
    {
        output.WriteLine();
        output.WriteLine($"{"figure",-58} {"CdmUserMem",12} {"baseline",12} {"ratio",7} {"target",8}  met  reps  baseline is");
        foreach (var f in figures)
            output.WriteLine($"{f.Name,-58} {Format(f.Ours),12} {Format(f.Baseline),12} {f.Ratio,7:0.00} {f.TargetText,8}  {Verdict(f),-3}  {f.Repetitions,4}  {f.BaselineName} ({f.Unit})");
        output.WriteLine();
        output.WriteLine($"{"latency distribution (µs)",-70} {"events",8} {"p50",9} {"p99",9} {"p99.9",9} {"max",9}");
        foreach (var d in distributions)
            output.WriteLine($"{d.Name,-70} {d.Count,8} {d.P50,9:0.0} {d.P99,9:0.0} {d.P999,9:0.0} {d.Max,9:0.0}");
        output.WriteLine();
        output.WriteLine($"{"migration by size (GB/s)",-26} {"host→device",12} {"device→host",12} {"nt copy",9} {"memcpy",9}");
        foreach (var p in sizes)
            output.WriteLine($"{SizeText(p.Bytes),-26} {p.ToDevice,12:0.00} {p.ToHost,12:0.00} {p.NonTemporalCopy,9:0.00} {p.Memcpy,9:0.00}");
    }

    private static string SizeText(ulong bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : $"{bytes >> 10} KiB";

    public static void Write(IReadOnlyList<Figure> figures, IReadOnlyList<Distribution> distributions, IReadOnlyList<SizePoint> sizes,
                             string directory, string machine)
    {
        Directory.CreateDirectory(directory);
        var rows = figures.Select(f => new
        {
            figure = f.Name,
            unit = f.Unit,
            cdmusermem = Math.Round(f.Ours, 3),
            baseline_name = f.BaselineName,
            baseline = Math.Round(f.Baseline, 3),
            ratio = Math.Round(f.Ratio, 3),
            target = f.TargetText,
            met = f.Met,
            repetitions = f.Repetitions,
        });
        var latency = distributions.Select(d => new
        {
            name = d.Name, events = d.Count, p50_us = Math.Round(d.P50, 2), p99_us = Math.Round(d.P99, 2),
            p999_us = Math.Round(d.P999, 2), max_us = Math.Round(d.Max, 2),
        });
        var bySize = sizes.Select(p => new
        {
            bytes = p.Bytes, to_device_gbs = Math.Round(p.ToDevice, 3), to_host_gbs = Math.Round(p.ToHost, 3),
            non_temporal_copy_gbs = Math.Round(p.NonTemporalCopy, 3), memcpy_gbs = Math.Round(p.Memcpy, 3),
        });
        var document = new
        {
            generated = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture), machine, figures = rows, latency, migration_by_size = bySize,
        };
        File.WriteAllText(Path.Combine(directory, "quick.json"), JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));

        var md = new StringBuilder();
        md.AppendLine($"# CdmUserMem quick benchmark ({document.generated})");
        md.AppendLine();
        md.AppendLine($"Machine: {machine}. Ratios are CdmUserMem ÷ baseline from one run; medians over the repetitions shown.");
        md.AppendLine();
        md.AppendLine("| figure | CdmUserMem | baseline | ratio | target | met | reps | baseline is (unit) |");
        md.AppendLine("|---|---:|---:|---:|---|---|---:|---|");
        foreach (var f in figures)
            md.AppendLine($"| {f.Name} | {Format(f.Ours)} | {Format(f.Baseline)} | {f.Ratio:0.00} | {f.TargetText} | {Verdict(f)} | {f.Repetitions} | {f.BaselineName} ({f.Unit}) |");
        md.AppendLine();
        md.AppendLine("| latency distribution | events | p50 µs | p99 µs | p99.9 µs | max µs |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var d in distributions)
            md.AppendLine($"| {d.Name} | {d.Count} | {d.P50:0.0} | {d.P99:0.0} | {d.P999:0.0} | {d.Max:0.0} |");
        md.AppendLine();
        md.AppendLine("| migration by size | host→device GB/s | device→host GB/s | non-temporal copy GB/s | memcpy GB/s |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var p in sizes)
            md.AppendLine($"| {SizeText(p.Bytes)} | {p.ToDevice:0.00} | {p.ToHost:0.00} | {p.NonTemporalCopy:0.00} | {p.Memcpy:0.00} |");
        md.AppendLine();
        md.AppendLine("![migration throughput by size](migration-throughput.png)");
        md.AppendLine("![latency distributions](latency.png)");
        md.AppendLine("![ratios](ratios.png)");
        File.WriteAllText(Path.Combine(directory, "quick.md"), md.ToString());
    }

    private static string Verdict(Figure f) => f.Met switch { true => "yes", false => "NO", null => "-" };

    private static string Format(double value) => value >= 1e5 ? value.ToString("0.000e0", CultureInfo.InvariantCulture) : value.ToString("0.###", CultureInfo.InvariantCulture);
}
