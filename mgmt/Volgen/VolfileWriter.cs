using System.Text;

namespace Brickfs.Mgmt.Volgen;

/// <summary>Writes volfile text in the layout of GlusterFS's generated volfiles: four-space indent, a blank line between volumes.</summary>
internal sealed class VolfileWriter
{
    private readonly StringBuilder _text = new();
    private int _volumes;

    public VolfileWriter Comment(string line)
    {
        _text.Append("# ").Append(line).Append('\n');
        return this;
    }

    public string Volume(string name, string type, IEnumerable<(string Key, string Value)> options, params string[] subvolumes)
    {
        if (_volumes++ > 0) _text.Append('\n');
        _text.Append("volume ").Append(name).Append('\n');
        _text.Append("    type ").Append(type).Append('\n');
        foreach (var (k, v) in options) _text.Append("    option ").Append(k).Append(' ').Append(v).Append('\n');
        if (subvolumes.Length > 0) _text.Append("    subvolumes ").Append(string.Join(' ', subvolumes)).Append('\n');
        _text.Append("end-volume\n");
        return name;
    }

    public override string ToString() => _text.ToString();
}
