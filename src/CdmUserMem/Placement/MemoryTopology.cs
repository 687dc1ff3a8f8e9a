using System.Text;

namespace CdmUserMem;

/// <summary>
/// A memory system's nodes and the distances between them (as the ACPI SLIT gives them: 10 is local). A
/// distance defaults from the nodes' own <see cref="MemoryNode.Distance"/>: host to node is the node's
/// distance, node to node goes through the host (their sum less 10). Fallback orders follow distance and
/// never include an exclusive or removed node. Prints like <c>numactl --hardware</c>.
/// </summary>
public sealed class MemoryTopology
{
    private readonly MemorySystem _system;
    private readonly Dictionary<(int, int), int> _distances = new();
    private readonly Lock _sync = new();

    internal MemoryTopology(MemorySystem system) => _system = system;

    /// <summary>Every node, removed ones included (their ids stay taken).</summary>
    public IReadOnlyList<MemoryNode> Nodes => _system.Nodes;

    /// <summary>The distance from <paramref name="from"/> to <paramref name="to"/>; 10 from a node to itself.</summary>
    public int Distance(MemoryNode from, MemoryNode to)
    {
        _system.ValidateNode(from, nameof(from));
        _system.ValidateNode(to, nameof(to));
        return DistanceOf(from, to);
    }

    private int DistanceOf(MemoryNode from, MemoryNode to)
    {
        if (ReferenceEquals(from, to)) return 10;
        lock (_sync)
            if (_distances.TryGetValue(Key(from, to), out int set)) return set;
        if (from.Kind == MemoryNodeKind.Host) return to.Distance;
        if (to.Kind == MemoryNodeKind.Host) return from.Distance;
        return from.Distance + to.Distance - 10;
    }

    /// <summary>
    /// Sets the distance between two different nodes, both ways (11 to 254, as in a SLIT). Fallback orders
    /// are taken when a policy is set, a region reserved or pressure turned on: later changes apply to later
    /// ones. Where private nodes return touched pages follows at once.
    /// </summary>
    /// <exception cref="ArgumentException">The same node twice, or a node of another system.</exception>
    public void SetDistance(MemoryNode a, MemoryNode b, int distance)
    {
        _system.ValidateNode(a, nameof(a));
        _system.ValidateNode(b, nameof(b));
        if (ReferenceEquals(a, b)) throw new ArgumentException($"A node's distance to itself is always 10 ('{a.Name}').", nameof(b));
        ArgumentOutOfRangeException.ThrowIfLessThan(distance, 11);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(distance, 254);
        lock (_sync) _distances[Key(a, b)] = distance;
        // Private nodes return touched pages by distance now, not by the distances they were made with.
        foreach (var node in _system.Nodes)
            if (node.Kind == MemoryNodeKind.PrivateDevice && node.IsOnline) _system.SendBackOrder(node);
    }

    private static (int, int) Key(MemoryNode a, MemoryNode b) => a.Id < b.Id ? (a.Id, b.Id) : (b.Id, a.Id);

    /// <summary>
    /// The nodes a page whose first choice is <paramref name="from"/> falls back to, nearest first (ties by
    /// id): every online node but <paramref name="from"/> that is neither exclusive nor private. The host is always in it.
    /// </summary>
    public IReadOnlyList<MemoryNode> FallbackOrder(MemoryNode from)
    {
        _system.ValidateNode(from, nameof(from));
        return ByDistance(from, _system.Nodes.Where(n => n != from && n.IsOnline && !n.IsExclusive && n.Kind != MemoryNodeKind.PrivateDevice));
    }

    /// <summary><paramref name="nodes"/> sorted by distance from <paramref name="from"/>, ties by id.</summary>
    internal MemoryNode[] ByDistance(MemoryNode from, IEnumerable<MemoryNode> nodes) =>
        nodes.OrderBy(n => DistanceOf(from, n)).ThenBy(n => n.Id).ToArray();

    /// <summary>The table <c>numactl --hardware</c> prints: nodes, kinds, sizes, free, distances.</summary>
    public override string ToString()
    {
        var nodes = _system.Nodes;
        var text = new StringBuilder();
        text.Append($"available: {nodes.Count} nodes (0-{nodes.Count - 1})\n");
        var (hostTotal, hostFree) = HostMemory();
        foreach (var node in nodes)
        {
            var flags = new List<string> { node.Kind switch { MemoryNodeKind.Host => "host", MemoryNodeKind.CoherentDevice => "coherent-device", _ => "private-device" } };
            if (node.IsExclusive) flags.Add("exclusive");
            if (!node.IsOnline) flags.Add("removed");
            text.Append($"node {node.Id} ({node.Name}) kind: {string.Join(", ", flags)}\n");
            if (node.Kind == MemoryNodeKind.Host)
            {
                text.Append($"node {node.Id} size: {Size(hostTotal)}\n");
                text.Append($"node {node.Id} free: {Size(hostFree)} (in use here: {Size(node.GetUsage().UsedBytes)})\n");
            }
            else
            {
                var usage = node.GetUsage();
                text.Append($"node {node.Id} size: {Size(node.CapacityBytes)}\n");
                text.Append($"node {node.Id} free: {Size(node.IsOnline ? usage.FreeBytes : 0)}\n");
            }
        }
        text.Append("node distances:\n");
        text.Append("node ");
        foreach (var node in nodes) text.Append($"{node.Id,4}");
        text.Append('\n');
        foreach (var from in nodes)
        {
            text.Append($"{from.Id,4}:");
            foreach (var to in nodes) text.Append($"{DistanceOf(from, to),4}");
            text.Append('\n');
        }
        return text.ToString();
    }

    private static string Size(ulong bytes) =>
        bytes >= 16UL << 20 || bytes % (1UL << 20) == 0 ? $"{bytes >> 20} MB" : $"{bytes >> 10} KB";

    /// <summary>MemTotal and MemAvailable from /proc/meminfo, in bytes (0 when unreadable).</summary>
    private static (ulong Total, ulong Free) HostMemory()
    {
        ulong total = 0, free = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemTotal:")) total = Kib(line);
                else if (line.StartsWith("MemAvailable:")) free = Kib(line);
            }
        }
        catch (IOException)
        {
        }
        return (total, free);

        static ulong Kib(string line) => ulong.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
