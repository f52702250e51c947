import RestartixKit
public import NIOCore

/// A Redis reply (RESP2).
public enum RedisValue: Sendable, Hashable {
    /// A status reply: `+OK`.
    case simpleString(String)
    /// An error reply: `-WRONGTYPE ...`. ``RedisClient/send(_:)`` throws these as
    /// ``RedisError``; ``RedisClient/pipeline(_:)`` returns them in place.
    case error(RedisError)
    /// An integer reply: `:1`.
    case integer(Int)
    /// A bulk string: any bytes, binary-safe.
    case bulkString([UInt8])
    /// A null bulk string or null array (`$-1`, `*-1`): a missing key.
    case null
    /// An array reply.
    case array([RedisValue])

    /// The text of a bulk string (UTF-8) or status reply; `nil` otherwise.
    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// The bytes of a bulk string; `nil` otherwise.
    public var bytes: [UInt8]? {
        if case .bulkString(let bytes) = self { return bytes }
        return nil
    }

    /// An integer reply, or a bulk string holding a decimal integer; `nil` otherwise.
    public var int: Int? {
        switch self {
        case .integer(let value): return value
        case .bulkString(let bytes): return Int(String(decoding: bytes, as: UTF8.self))
        default: return nil
        }
    }

    /// The elements of an array reply; `nil` otherwise.
    public var array: [RedisValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// Whether this is ``null``.
    public var isNull: Bool { self == .null }
}

/// A value that can be a command argument: sent as a RESP bulk string.
public protocol RedisArgument: Sendable {
    /// Appends the argument's bytes (without framing).
    func appendRedisBytes(to buffer: inout ByteBuffer)
    /// The number of bytes ``appendRedisBytes(to:)`` appends.
    var redisByteCount: Int { get }
}

extension String: RedisArgument {
    public func appendRedisBytes(to buffer: inout ByteBuffer) { buffer.writeString(self) }
    public var redisByteCount: Int { utf8.count }
}

extension Substring: RedisArgument {
    public func appendRedisBytes(to buffer: inout ByteBuffer) { buffer.writeSubstring(self) }
    public var redisByteCount: Int { utf8.count }
}

extension Int: RedisArgument {
    public func appendRedisBytes(to buffer: inout ByteBuffer) { buffer.writeString(String(self)) }
    public var redisByteCount: Int { String(self).utf8.count }
}

extension Array: RedisArgument where Element == UInt8 {
    public func appendRedisBytes(to buffer: inout ByteBuffer) { buffer.writeBytes(self) }
    public var redisByteCount: Int { count }
}

extension ByteBuffer: RedisArgument {
    public func appendRedisBytes(to buffer: inout ByteBuffer) { buffer.writeImmutableBuffer(self) }
    public var redisByteCount: Int { readableBytes }
}

/// One command, encoded once as a RESP array of bulk strings when it is made.
public struct RedisCommand: Sendable {
    /// The command's name, for metrics and errors (never its arguments).
    public let name: String
    /// The encoded command.
    let encoded: ByteBuffer

    /// `name` with `arguments`, for example `RedisCommand("SET", ["key", value, "NX"])`.
    public init(_ name: String, _ arguments: [any RedisArgument] = []) {
        self.name = name
        var size = 16 + name.utf8.count
        for argument in arguments { size += argument.redisByteCount + 16 }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        buffer.writeStaticString("*")
        buffer.writeString(String(arguments.count + 1))
        buffer.writeStaticString("\r\n")
        Self.appendBulk(name, to: &buffer)
        for argument in arguments { Self.appendBulk(argument, to: &buffer) }
        self.encoded = buffer
    }

    /// `name` with `arguments`: `RedisCommand("GET", "key")`.
    public init(_ name: String, _ arguments: any RedisArgument...) {
        self.init(name, arguments)
    }

    private static func appendBulk(_ argument: some RedisArgument, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("$")
        buffer.writeString(String(argument.redisByteCount))
        buffer.writeStaticString("\r\n")
        argument.appendRedisBytes(to: &buffer)
        buffer.writeStaticString("\r\n")
    }
}

extension Duration {
    /// A Redis `PX` argument: whole milliseconds, at least 1.
    package var pxMilliseconds: Int { Int(max(1, milliseconds)) }
}
