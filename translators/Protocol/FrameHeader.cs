using System.Buffers.Binary;

namespace Brickfs.Translators.Protocol;

public enum FrameKind : byte
{
    /// <summary>A fop call; the header's fop says which, the message is its XxxRequest.</summary>
    Request = 1,
    /// <summary>The answer to the request with the same id; the message is the fop's XxxReply.</summary>
    Reply = 2,
    /// <summary>First frame of a client: <c>Handshake</c>.</summary>
    Handshake = 3,
    /// <summary>The server's answer: <c>HandshakeReply</c>; a refusal is followed by close.</summary>
    HandshakeReply = 4,
    /// <summary>Heartbeat from the client; answered by <see cref="Pong"/> with the same id.</summary>
    Ping = 5,
    Pong = 6,
    /// <summary>The client gave up waiting for request id (interrupt); the server cancels that fop's context.</summary>
    Cancel = 7,
}

/// <summary>
/// The fixed 28-byte frame header, little-endian:
/// <code>
///  0 u32 total length (header + message + bulk)
///  4 u16 magic 0xB51F
///  6 u8  kind (FrameKind)
///  7 u8  flags (0; reserved)
///  8 u32 fop (Fop value; 0 for non-fop frames)
/// 12 u64 request id
/// 20 u32 message length
/// 24 u32 bulk length
/// </code>
/// The redundant total length lets a receiver reject garbage on the first 28 bytes: it must equal
/// 28 + message + bulk and stay under the receiver's frame maximum.
/// </summary>
public readonly record struct FrameHeader(FrameKind Kind, int Fop, ulong RequestId, int MessageLength, int BulkLength)
{
    public const int Size = 28;
    public const ushort Magic = 0xB51F;

    public long TotalLength => (long)Size + MessageLength + BulkLength;

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)TotalLength);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], Magic);
        b[6] = (byte)Kind;
        b[7] = 0;
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], (uint)Fop);
        BinaryPrimitives.WriteUInt64LittleEndian(b[12..], RequestId);
        BinaryPrimitives.WriteUInt32LittleEndian(b[20..], (uint)MessageLength);
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], (uint)BulkLength);
    }

    /// <summary>Decodes and checks a header; throws <see cref="ProtocolException"/> on anything a sane peer never sends.</summary>
    public static FrameHeader Read(ReadOnlySpan<byte> b, long frameMax)
    {
        uint total = BinaryPrimitives.ReadUInt32LittleEndian(b);
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(b[4..]);
        if (magic != Magic) throw new ProtocolException($"bad frame magic 0x{magic:x4} (garbage or not a brickfs peer)");
        byte kind = b[6];
        if (kind is < (byte)FrameKind.Request or > (byte)FrameKind.Cancel) throw new ProtocolException($"unknown frame kind {kind}");
        uint fop = BinaryPrimitives.ReadUInt32LittleEndian(b[8..]);
        ulong id = BinaryPrimitives.ReadUInt64LittleEndian(b[12..]);
        uint msg = BinaryPrimitives.ReadUInt32LittleEndian(b[20..]);
        uint bulk = BinaryPrimitives.ReadUInt32LittleEndian(b[24..]);
        if ((ulong)Size + msg + bulk != total) throw new ProtocolException($"inconsistent frame lengths (total {total}, message {msg}, bulk {bulk})");
        if (total > frameMax) throw new ProtocolException($"frame of {total} bytes is over frame-max {frameMax}");
        if (fop > int.MaxValue) throw new ProtocolException($"unknown fop {fop}");
        return new FrameHeader((FrameKind)kind, (int)fop, id, (int)msg, (int)bulk);
    }
}

/// <summary>The peer broke the protocol; the connection is closed with this reason.</summary>
public sealed class ProtocolException(string message) : Exception(message);
