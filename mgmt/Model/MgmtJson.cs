using System.Text.Json;
using System.Text.Json.Serialization;

namespace Brickfs.Mgmt.Model;

/// <summary>The one JSON shape used by the store, the API and <c>brickctl --json</c>: camelCase, enums as strings.</summary>
public static class MgmtJson
{
    public static JsonSerializerOptions Options { get; } = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Indented { get; } = new(Options) { WriteIndented = true };

    public static JsonSerializerOptions Configure(JsonSerializerOptions o)
    {
        o.PropertyNamingPolicy = JsonNamingPolicy.CamelCase;
        o.DictionaryKeyPolicy = null;
        o.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower));
        o.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        return o;
    }

    public static T Clone<T>(T value) =>
        JsonSerializer.Deserialize<T>(JsonSerializer.SerializeToUtf8Bytes(value, Options), Options)!;
}
