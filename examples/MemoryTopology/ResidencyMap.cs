using System.Text;
using CdmUserMem;

namespace MemoryTopology;

internal static class ResidencyMap
{
    /// <summary>One character per chunk of [offset, +length): the id of the node holding it, '+' for a chunk on
    /// several nodes, '.' untouched.</summary>
    public static string Render(Region region, ulong chunk, ulong offset = 0, ulong length = 0)
    {
        var map = new StringBuilder();
        ulong end = length == 0 ? region.Length : offset + length;
        for (ulong at = offset; at < end; at += chunk)
        {
            var runs = region.GetResidency(at, Math.Min(chunk, end - at));
            map.Append(runs.Select(r => r.Node).Distinct().Count() > 1 ? '+' : runs[0].Node is { } node ? (char)('0' + node.Id) : '.');
        }
        return map.ToString();
    }

    public static string Legend(MemorySystem system) =>
        string.Join(", ", system.Nodes.Select(n => $"{n.Id} {n.Name}")) + ", + several, . untouched";

    public static string Usage(MemorySystem system) => string.Join(", ", system.Nodes.Select(n =>
        n.Kind == MemoryNodeKind.Host
            ? $"{n.Name} {n.GetUsage().UsedBytes >> 20} MiB"
            : $"{n.Name} {n.GetUsage().UsedBytes >> 20}/{n.CapacityBytes >> 20} MiB{(n.IsOnline ? "" : " (removed)")}"));
}
