namespace CdmUserMem.Benchmarks.Quick;

internal static unsafe partial class QuickMode
{
    /// <summary>
    /// The memory model's costs: a first-touch sweep under an interleave policy against the same sweep placed
    /// on one node; the same sweep under a range policy against a region placed there by default (the policy
    /// lookup); and the drain of a full 256 MiB node on unplug against 2 MiB device-to-host migrations in the
    /// same system. Sweeps alternate in pairs, so drift hits both; they are 64 MiB, since sweeps of a few milliseconds
    /// measured the scheduler more than the engine.
    /// </summary>
    private static List<Figure> PolicyFigures()
    {
        const ulong SweepSize = 64 * MiB, DrainSize = 256 * MiB, Piece = 2 * MiB;
        const int Pairs = 21;
        var interleaved = new List<double>();
        var interleavedByPage = new List<double>();
        var oneNode = new List<double>();
        var withPolicy = new List<double>();
        var plain = new List<double>();
        var figures = new List<Figure>();
        using (var system = MemorySystem.Create())
        {
            var near = system.AddCoherentDeviceNode("interleave-a", SweepSize);
            var far = system.AddCoherentDeviceNode("interleave-b", SweepSize);
            double Sweep(Action<Region>? policy, MemoryNode placement)
            {
                using var region = system.Reserve(SweepSize, new RegionOptions { Placement = placement });
                policy?.Invoke(region);
                return SweepSize / Page / Sampler.Time(() => QuickMode.Sweep((byte*)region.Pointer, SweepSize));
            }
            for (int pair = 0; pair < Pairs; pair++)
            {
                bool first = pair % 2 == 0;
                for (int k = 0; k < 2; k++, first = !first)
                {
                    if (first)
                    {
                        interleaved.Add(Sweep(r => r.SetPolicy(MemoryPolicy.Interleave(64, near, far)), system.Host));
                        interleavedByPage.Add(Sweep(r => r.SetPolicy(MemoryPolicy.Interleave(near, far)), system.Host));
                    }
                    else oneNode.Add(Sweep(null, near));
                }
                first = pair % 2 == 0;
                for (int k = 0; k < 2; k++, first = !first)
                {
                    if (first) withPolicy.Add(Sweep(r => r.SetPolicy(0, SweepSize / 2, MemoryPolicy.Preferred(near)), near));
                    else plain.Add(Sweep(null, near));
                }
            }
        }
        figures.Add(new Figure("first-touch sweep under Interleave(64 pages, a, b)", "pages/s", Sampler.Median(interleaved), "the same sweep on one node",
            Sampler.Median(oneNode), HigherIsBetter: true, TargetRatio: 0.9, Pairs,
            PairedRatio: Sampler.Median(interleaved.Zip(oneNode, (a, b) => a / b))));
        figures.Add(new Figure("first-touch sweep under Interleave(a, b), page by page", "pages/s", Sampler.Median(interleavedByPage),
            "the same sweep on one node", Sampler.Median(oneNode), HigherIsBetter: true, TargetRatio: null, Pairs,
            PairedRatio: Sampler.Median(interleavedByPage.Zip(oneNode, (a, b) => a / b))));
        figures.Add(new Figure("first-touch sweep with a range policy (lookup)", "µs/page", 1e6 / Sampler.Median(withPolicy),
            "the same sweep placed by default", 1e6 / Sampler.Median(plain), HigherIsBetter: false, TargetRatio: 1.1, Pairs,
            PairedRatio: Sampler.Median(plain.Zip(withPolicy, (a, b) => a / b))));

        using (var system = MemorySystem.Create())
        {
            // Each round a fresh node, the region's pages moved onto it, then timed off it twice from that same
            // state: in 2 MiB migrations (the baseline), and by unplugging the node.
            const int Rounds = 3;
            using var region = system.Reserve(DrainSize);
            region.Prefault(0, DrainSize);
            FillPages((byte*)region.Pointer, DrainSize);
            var drains = new List<double>();
            var unplugs = new List<double>();
            var baselines = new List<double>();
            for (int round = 0; round < Rounds; round++)
            {
                var device = system.AddCoherentDeviceNode($"drain-device-{round}", DrainSize);
                region.Migrate(0, DrainSize, device);
                var pieces = new List<double>();
                for (ulong o = 0; o < DrainSize; o += Piece)
                    pieces.Add(Piece / Sampler.Time(() => region.Migrate(o, Piece, system.Host)) / 1e9);
                baselines.Add(Sampler.Median(pieces));
                region.Migrate(0, DrainSize, device);
                double unplug = Sampler.Time(() => system.RemoveNode(device));
                // Unplugging an empty node of the same size costs only giving its arena back: the drain is the rest.
                var empty = system.AddCoherentDeviceNode($"empty-device-{round}", DrainSize);
                double giveBack = Sampler.Time(() => system.RemoveNode(empty));
                unplugs.Add(DrainSize / unplug / 1e9);
                drains.Add(DrainSize / Math.Max(unplug - giveBack, 1e-6) / 1e9);
            }
            figures.Add(new Figure("drain of a 256 MiB node on unplug", "GB/s", Sampler.Median(drains), "2 MiB device-to-host migrations",
                Sampler.Median(baselines), HigherIsBetter: true, TargetRatio: 0.7, Rounds,
                PairedRatio: Sampler.Median(drains.Zip(baselines, (a, b) => a / b))));
            figures.Add(new Figure("unplug of a full 256 MiB node, drain and arena given back", "GB/s", Sampler.Median(unplugs),
                "2 MiB device-to-host migrations", Sampler.Median(baselines), HigherIsBetter: true, TargetRatio: null, Rounds,
                PairedRatio: Sampler.Median(unplugs.Zip(baselines, (a, b) => a / b))));
        }
        figures.AddRange(CompactionFigures());
        return figures;
    }

    /// <summary>
    /// A 64 MiB contiguous reservation on a 128 MiB node whose frames are half in use: in 64 KiB chunks (a
    /// node whose regions came and went), and page by page (the worst case). Compaction moves the window's
    /// pages to the node's free frames; its rate (bytes moved per second) is set against 2 MiB migrations
    /// both ways in the same system.
    /// </summary>
    private static List<Figure> CompactionFigures()
    {
        const ulong NodeSize = 128 * MiB, Reserved = 64 * MiB, Piece = 2 * MiB;
        const int Rounds = 3;
        var figures = new List<Figure>();
        using var system = MemorySystem.Create();
        var (region, device) = Migratable(system, NodeSize, "compaction-device");
        using var _ = region;
        var pieces = new List<double>();
        for (int round = 0; round < 2; round++)
            foreach (var target in new[] { device, system.Host })
                for (ulong o = 0; o < NodeSize; o += Piece)
                    pieces.Add(Piece / Sampler.Time(() => region.Migrate(o, Piece, target)) / 1e9);
        double migration = Sampler.Median(pieces);
        foreach (ulong chunk in new[] { 64 * 1024UL, Page })
        {
            var rates = new List<double>();
            for (int round = 0; round < Rounds; round++)
            {
                // Every round from the same layout: all pages on the node in order, then every other chunk away.
                region.Migrate(0, NodeSize, system.Host);
                region.Migrate(0, NodeSize, device);
                for (ulong o = 0; o < NodeSize; o += 2 * chunk) region.Migrate(o, chunk, system.Host);
                ulong before = system.GetStatistics().PagesCompacted;
                ContiguousReservation? extent = null;
                double seconds = Sampler.Time(() => extent = device.ReserveContiguous(Reserved));
                ulong moved = (system.GetStatistics().PagesCompacted - before) * Page;
                extent!.Dispose();
                rates.Add(moved / seconds / 1e9);
            }
            string layout = chunk == Page ? "page by page" : $"in {chunk >> 10} KiB chunks";
            figures.Add(new Figure($"compaction for a 64 MiB reservation, half the frames movable {layout}", "GB/s", Sampler.Median(rates),
                "2 MiB migrations", migration, HigherIsBetter: true, TargetRatio: chunk == Page ? null : 0.5, Rounds));
        }
        return figures;
    }
}
