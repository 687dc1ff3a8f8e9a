namespace TransparentMigration;

internal sealed record Settings(int Seconds, int Workers, ulong RegionMiB, ulong DeviceMiB, int PauseMs)
{
    public static Settings Parse(string[] args)
    {
        var s = new Settings(Seconds: 10, Workers: 3, RegionMiB: 64, DeviceMiB: 32, PauseMs: 20);
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            int value = int.Parse(args[i + 1]);
            s = args[i] switch
            {
                "--seconds" => s with { Seconds = value },
                "--workers" => s with { Workers = value },
                "--region-mib" => s with { RegionMiB = (ulong)value },
                "--device-mib" => s with { DeviceMiB = (ulong)value },
                "--pause-ms" => s with { PauseMs = value },
                _ => throw new ArgumentException($"Unknown option {args[i]}; options: --seconds --workers --region-mib --device-mib --pause-ms"),
            };
        }
        return s;
    }
}
