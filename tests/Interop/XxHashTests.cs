using System.Text;
using Brickfs.Translators.Interop;

namespace Brickfs.Tests.Interop;

public class XxHashTests
{
    // Reference values from the xxHash project's own test vectors (xxhsum of the empty input and "abc").
    [Test]
    public void Xxh64MatchesTheReferenceVectors()
    {
        Assert.That(XxHash.Hash64([]), Is.EqualTo(0xEF46DB3751D8E999UL));
        Assert.That(XxHash.Hash64(Encoding.ASCII.GetBytes("abc")), Is.EqualTo(0x44BC2CF5AD770999UL));
    }

    [Test]
    public void Xxh3MatchesTheReferenceVectors()
    {
        Assert.That(XxHash.Hash3([]), Is.EqualTo(0x2D06800538D394C2UL));
        Assert.That(XxHash.Hash3(Encoding.ASCII.GetBytes("abc")), Is.EqualTo(0x78AF5F94892F3950UL));
    }
}
