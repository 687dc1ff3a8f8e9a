using ScottPlot;

namespace CdmUserMem.Benchmarks.Quick;

/// <summary>PNG charts of one quick run, written beside quick.md: throughput by size, latency CDFs, and ratios.</summary>
internal static class Plots
{
    private const int Width = 1000, Height = 560;

    public static IReadOnlyList<string> Write(string directory, IReadOnlyList<Figure> figures, IReadOnlyList<Distribution> distributions,
                                              IReadOnlyList<SizePoint> sizes)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>
        {
            Save(ThroughputBySize(sizes), directory, "migration-throughput.png"),
            Save(LatencyCdf(distributions), directory, "latency.png"),
            Save(Ratios(figures), directory, "ratios.png"),
        };
        return written;
    }

    private static string Save(Plot plot, string directory, string name)
    {
        string path = Path.Combine(directory, name);
        plot.SavePng(path, Width, Height);
        return path;
    }

    private static Plot ThroughputBySize(IReadOnlyList<SizePoint> sizes)
    {
        var plot = new Plot();
        double[] x = sizes.Select(p => Math.Log2(p.Bytes)).ToArray();
        void Line(string label, Func<SizePoint, double> y)
        {
            var line = plot.Add.Scatter(x, sizes.Select(y).ToArray());
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = 7;
        }
        Line("migration host → device", p => p.ToDevice);
        Line("migration device → host", p => p.ToHost);
        Line("non-temporal copy (the copy floor)", p => p.NonTemporalCopy);
        Line("memcpy, cold", p => p.Memcpy);
        plot.Axes.Bottom.SetTicks(x, sizes.Select(p => SizeLabel(p.Bytes)).ToArray());
        plot.Title("Migration throughput by size, against the copy floor");
        plot.XLabel("bytes per migration call");
        plot.YLabel("effective GB/s");
        plot.Axes.SetLimitsY(0, sizes.Max(p => Math.Max(Math.Max(p.ToDevice, p.ToHost), Math.Max(p.NonTemporalCopy, p.Memcpy))) * 1.1);
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;
    }

    private static Plot LatencyCdf(IReadOnlyList<Distribution> distributions)
    {
        var plot = new Plot();
        foreach (var d in distributions.Where(d => d.Cdf.Count > 0))
        {
            // A step per bucket or sample, x on a log10 scale of microseconds.
            var line = plot.Add.Scatter(d.Cdf.Select(p => Math.Log10(Math.Max(p.Microseconds, 0.01))).ToArray(),
                                        d.Cdf.Select(p => p.Fraction * 100).ToArray());
            line.LegendText = $"{d.Name}: p50 {d.P50:0.#} µs, p99 {d.P99:0.#} µs, p99.9 {d.P999:0.#} µs";
            line.LineWidth = 2;
            line.MarkerSize = 0;
            line.ConnectStyle = ConnectStyle.StepHorizontal;
        }
        double[] decades = Enumerable.Range(-1, 7).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(decades, decades.Select(d => Math.Pow(10, d).ToString("0.#") + " µs").ToArray());
        plot.Axes.SetLimitsY(0, 101);
        plot.Title("Latency distributions (cumulative)");
        plot.XLabel("latency (log scale)");
        plot.YLabel("% of events at or below");
        plot.ShowLegend(Alignment.LowerRight);
        return plot;
    }

    private static Plot Ratios(IReadOnlyList<Figure> figures)
    {
        var plot = new Plot();
        var targeted = figures.Where(f => f.TargetRatio is not null).ToArray();
        var bars = targeted.Select((f, i) => new Bar
        {
            Position = targeted.Length - i,
            Value = f.Ratio,
            FillColor = f.Met == true ? Colors.SeaGreen : Colors.IndianRed,
            Label = $"{f.Ratio:0.00} (target {f.TargetText})",
        }).ToList();
        var series = plot.Add.Bars(bars);
        series.Horizontal = true;
        series.ValueLabelStyle.FontSize = 11;
        plot.Add.VerticalLine(1, 1, Colors.Gray, LinePattern.Dashed);
        plot.Axes.Left.SetTicks(bars.Select(b => b.Position).ToArray(), targeted.Select(f => Shorten(f.Name)).ToArray());
        plot.Axes.Left.TickLabelStyle.FontSize = 11;
        plot.Title("CdmUserMem ÷ baseline, every targeted figure (green: target met)");
        plot.XLabel("ratio");
        plot.Axes.SetLimitsX(0, Math.Max(2, targeted.Max(f => f.Ratio) * 1.35));
        return plot;
    }

    private static string Shorten(string name) => name.Length <= 48 ? name : name[..47] + "…";

    private static string SizeLabel(ulong bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : $"{bytes >> 10} KiB";
}
