using System.Text;
using CdmUserMem;

namespace TransparentMigration;

internal static class ResidencyMap
{
    /// <summary>One character per chunk: H host, D device, m mixed, . untouched.</summary>
    public static string Render(Region region, ulong chunk)
    {
        var map = new StringBuilder();
        for (ulong offset = 0; offset < region.Length; offset += chunk)
        {
            var runs = region.GetResidency(offset, Math.Min(chunk, region.Length - offset));
            char c = runs.Count > 1 ? 'm' : runs[0].Node switch
            {
                null => '.',
                { Kind: MemoryNodeKind.Host } => 'H',
                _ => 'D',
            };
            map.Append(c);
        }
        return map.ToString();
    }
}
