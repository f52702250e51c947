#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// One log line as JSON text (RFC 8259), written byte by byte: `{"label":…,"level":…,
/// "message":…,"metadata":{…},"source":…,"timestamp":…}` with every object's keys sorted, no
/// whitespace and a final `\n`.
///
/// Why not `JSONEncoder`: the line's shape is fixed and its values are strings, and the
/// encoder's generic Codable machinery was 28% of the Core API's CPU per `/health` request
/// (`perf record` under Benchmarks/service-footprint: 14.3% of the process's samples in
/// `JSONEncoder.encode`, for an access log line per request). What an encoder must get right
/// is the escaping, and that is written once here (``appendString(_:)``) and tested against
/// `JSONSerialization` with every control character, quotes, backslashes and non-ASCII text.
struct JSONLogLine {
    private(set) var bytes: [UInt8] = []

    init() {
        bytes.reserveCapacity(384)
    }

    /// The line for one event. `metadata` is already merged (the handler's, the provider's and
    /// the event's).
    static func render(label: String, level: Logger.Level, message: String, metadata: Logger.Metadata, source: String, timestampSeconds: Int, milliseconds: Int) -> [UInt8] {
        var line = JSONLogLine()
        line.append(0x7B) // {
        line.appendKey("label", first: true)
        line.appendString(label)
        line.appendKey("level")
        line.appendString(level.rawValue)
        line.appendKey("message")
        line.appendString(message)
        if !metadata.isEmpty {
            line.appendKey("metadata")
            line.appendObject(metadata)
        }
        line.appendKey("source")
        line.appendString(source)
        line.appendKey("timestamp")
        line.appendTimestamp(seconds: timestampSeconds, milliseconds: milliseconds)
        line.append(0x7D) // }
        line.append(0x0A) // \n
        return line.bytes
    }

    mutating func append(_ byte: UInt8) { bytes.append(byte) }

    mutating func appendKey(_ key: String, first: Bool = false) {
        if !first { bytes.append(0x2C) } // ,
        appendString(key)
        bytes.append(0x3A) // :
    }

    /// `text` as a JSON string: `"` and `\` escaped, the control characters U+0000 to U+001F as
    /// `\b \t \n \f \r` or `\u00XX`; everything else (valid UTF-8, since a Swift string is) as
    /// it is, `/` included.
    mutating func appendString(_ text: String) {
        bytes.append(0x22)
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                start = index + 1
                bytes.append(0x5C)
                switch byte {
                case 0x22, 0x5C: bytes.append(byte)
                case 0x08: bytes.append(0x62) // b
                case 0x09: bytes.append(0x74) // t
                case 0x0A: bytes.append(0x6E) // n
                case 0x0C: bytes.append(0x66) // f
                case 0x0D: bytes.append(0x72) // r
                default:
                    bytes.append(contentsOf: [0x75, 0x30, 0x30, Self.hex(byte >> 4), Self.hex(byte & 0x0F)]) // u00XX
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(0x22)
    }

    static func hex(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10 }

    mutating func appendObject(_ metadata: Logger.Metadata) {
        bytes.append(0x7B)
        for (position, key) in metadata.keys.sorted().enumerated() {
            appendKey(key, first: position == 0)
            appendValue(metadata[key]!)
        }
        bytes.append(0x7D)
    }

    mutating func appendValue(_ value: Logger.Metadata.Value) {
        switch value {
        case .string(let text): appendString(text)
        case .stringConvertible(let convertible): appendString(convertible.description)
        case .array(let values):
            bytes.append(0x5B) // [
            for (position, element) in values.enumerated() {
                if position > 0 { bytes.append(0x2C) }
                appendValue(element)
            }
            bytes.append(0x5D) // ]
        case .dictionary(let values): appendObject(values)
        }
    }

    /// `"2026-12-05T07:40:00.123Z"`: UTC, milliseconds, from `gmtime_r`.
    mutating func appendTimestamp(seconds: Int, milliseconds: Int) {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        bytes.append(0x22)
        appendDigits(Int(parts.tm_year) + 1900, width: 4)
        bytes.append(0x2D)
        appendDigits(Int(parts.tm_mon) + 1, width: 2)
        bytes.append(0x2D)
        appendDigits(Int(parts.tm_mday), width: 2)
        bytes.append(0x54) // T
        appendDigits(Int(parts.tm_hour), width: 2)
        bytes.append(0x3A)
        appendDigits(Int(parts.tm_min), width: 2)
        bytes.append(0x3A)
        appendDigits(Int(parts.tm_sec), width: 2)
        bytes.append(0x2E)
        appendDigits(milliseconds, width: 3)
        bytes.append(0x5A) // Z
        bytes.append(0x22)
    }

    /// `value` in decimal, zero-padded to `width` digits (a year past 9999 gets its fifth).
    mutating func appendDigits(_ value: Int, width: Int) {
        let value = Swift.max(0, value)
        var divisor = 1
        for _ in 1..<Swift.max(1, width) { divisor *= 10 }
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            bytes.append(UInt8(truncatingIfNeeded: 0x30 + (value / divisor) % 10))
            divisor /= 10
        }
    }
}
