using System.Globalization;
using System.Text;
using System.Text.Json;

namespace CdmUserMem.Benchmarks.Quick;

/// <summary>Prints the quick-mode table and writes it as JSON and Markdown.</summary>
internal static class Report
{
    public static void Print(IReadOnlyList<Figure> figures, TextWriter output)
    {
        output.WriteLine();
        output.WriteLine($"{"figure",-58} {"CdmUserMem",12} {"baseline",12} {"ratio",7} {"target",8}  met  reps  baseline is");
        foreach (var f in figures)
            output.WriteLine($"{f.Name,-58} {Format(f.Ours),12} {Format(f.Baseline),12} {f.Ratio,7:0.00} {f.TargetText,8}  {Verdict(f),-3}  {f.Repetitions,4}  {f.BaselineName} ({f.Unit})");
    }

    public static void Write(IReadOnlyList<Figure> figures, string directory, string machine)
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
        var document = new { generated = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture), machine, figures = rows };
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
        File.WriteAllText(Path.Combine(directory, "quick.md"), md.ToString());
    }

    private static string Verdict(Figure f) => f.Met switch { true => "yes", false => "NO", null => "-" };

    private static string Format(double value) => value >= 1e5 ? value.ToString("0.000e0", CultureInfo.InvariantCulture) : value.ToString("0.###", CultureInfo.InvariantCulture);
}
