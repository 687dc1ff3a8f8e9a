namespace CdmUserMem.Benchmarks.Quick;

/// <summary>One row of the quick-mode table: our figure, the baseline's, and their ratio against a target.</summary>
internal sealed record Figure(
    string Name,
    string Unit,
    double Ours,
    string BaselineName,
    double Baseline,
    bool HigherIsBetter,
    double? TargetRatio,
    int Repetitions,
    double? PairedRatio = null)
{
    /// <summary>Ours ÷ baseline, whatever the direction; the target says which side is good. Where runs were
    /// paired (ours and the baseline back to back), the median of the pairs' ratios, which drift cancels.</summary>
    public double Ratio => PairedRatio ?? Ours / Baseline;

    public bool? Met => TargetRatio is null ? null : HigherIsBetter ? Ratio >= TargetRatio : Ratio <= TargetRatio;

    public string TargetText => TargetRatio is null ? "(report)" : $"{(HigherIsBetter ? "≥" : "≤")} {TargetRatio:0.0#}";
}
