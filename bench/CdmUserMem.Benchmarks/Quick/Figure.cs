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
    int Repetitions)
{
    /// <summary>Ours ÷ baseline, whatever the direction; the target says which side is good.</summary>
    public double Ratio => Ours / Baseline;

    public bool? Met => TargetRatio is null ? null : HigherIsBetter ? Ratio >= TargetRatio : Ratio <= TargetRatio;

    public string TargetText => TargetRatio is null ? "(report)" : $"{(HigherIsBetter ? "≥" : "≤")} {TargetRatio:0.0#}";
}
