import Foundation

/// Postgres binary wire formats for the types the kit binds and decodes.
enum PostgresBinary {
    /// Microseconds between 1970-01-01 and Postgres' epoch, 2000-01-01 (UTC).
    static let epochOffsetMicros: Int64 = 946_684_800 * 1_000_000

    enum OID {
        static let bool: UInt32 = 16
        static let bytea: UInt32 = 17
        static let char: UInt32 = 18
        static let name: UInt32 = 19
        static let int8: UInt32 = 20
        static let int2: UInt32 = 21
        static let int4: UInt32 = 23
        static let text: UInt32 = 25
        static let oid: UInt32 = 26
        static let json: UInt32 = 114
        static let xml: UInt32 = 142
        static let float4: UInt32 = 700
        static let float8: UInt32 = 701
        static let unknown: UInt32 = 705
        static let bpchar: UInt32 = 1042
        static let varchar: UInt32 = 1043
        static let date: UInt32 = 1082
        static let timestamp: UInt32 = 1114
        static let timestamptz: UInt32 = 1184
        static let numeric: UInt32 = 1700
        static let void: UInt32 = 2278
        static let uuid: UInt32 = 2950
        static let jsonb: UInt32 = 3802
    }

    static func decode(typeOID: UInt32, bytes: UnsafeRawBufferPointer, column: String) throws -> SQLValue {
        func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard bytes.count == MemoryLayout<T>.size else { throw malformed(column, typeOID) }
            return T(bigEndian: bytes.loadUnaligned(as: T.self))
        }
        switch typeOID {
        case OID.bool:
            guard bytes.count == 1 else { throw malformed(column, typeOID) }
            return .bool(bytes[0] != 0)
        case OID.bytea:
            return .bytes(Data(bytes))
        case OID.char, OID.name, OID.text, OID.bpchar, OID.varchar, OID.unknown, OID.xml:
            return .text(String(decoding: bytes, as: UTF8.self))
        case OID.int8: return .integer(try integer(Int64.self))
        case OID.int4: return .integer(Int64(try integer(Int32.self)))
        case OID.int2: return .integer(Int64(try integer(Int16.self)))
        case OID.oid: return .integer(Int64(try integer(UInt32.self)))
        case OID.float8: return .double(Double(bitPattern: try integer(UInt64.self)))
        case OID.float4: return .double(Double(Float(bitPattern: try integer(UInt32.self))))
        case OID.json: return .json(Data(bytes))
        case OID.jsonb:
            guard bytes.count >= 1, bytes[0] == 1 else { throw malformed(column, typeOID) }
            return .json(Data(bytes.dropFirst()))
        case OID.uuid:
            guard bytes.count == 16 else { throw malformed(column, typeOID) }
            return .uuid(UUID(uuid: bytes.loadUnaligned(as: uuid_t.self)))
        case OID.timestamp, OID.timestamptz:
            let micros = try integer(Int64.self)
            if micros == .max { return .timestamp(.distantFuture) }
            if micros == .min { return .timestamp(.distantPast) }
            return .timestamp(UTCTimestamp.date(microsecondsSince1970: micros + epochOffsetMicros))
        case OID.date:
            let days = try integer(Int32.self)
            if days == .max { return .timestamp(.distantFuture) }
            if days == .min { return .timestamp(.distantPast) }
            return .timestamp(UTCTimestamp.date(microsecondsSince1970: Int64(days) * 86_400_000_000 + epochOffsetMicros))
        case OID.numeric:
            return .numeric(try numericText(bytes, column: column))
        case OID.void:
            return .null
        default:
            return SQLValue(.unsupported(typeOID: typeOID))
        }
    }

    /// The decimal text of a binary `numeric` (base-10000 digits, weight, sign, display scale).
    static func numericText(_ bytes: UnsafeRawBufferPointer, column: String) throws -> String {
        guard bytes.count >= 8 else { throw malformed(column, OID.numeric) }
        func int16(at offset: Int) -> Int {
            Int(Int16(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int16.self)))
        }
        let count = int16(at: 0)
        let weight = int16(at: 2)
        let sign = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        let scale = int16(at: 6)
        guard count >= 0, bytes.count == 8 + 2 * count else { throw malformed(column, OID.numeric) }
        switch sign {
        case 0xC000: return "NaN"
        case 0xD000: return "Infinity"
        case 0xF000: return "-Infinity"
        default: break
        }
        let digits = (0..<count).map { int16(at: 8 + 2 * $0) }
        func group(_ i: Int) -> Int { i >= 0 && i < digits.count ? digits[i] : 0 }
        func padded(_ d: Int) -> String {
            let s = String(d)
            return String(repeating: "0", count: 4 - s.count) + s
        }
        var text = sign == 0x4000 ? "-" : ""
        if weight < 0 {
            text += "0"
        } else {
            for i in 0...weight { text += i == 0 ? String(group(i)) : padded(group(i)) }
        }
        if scale > 0 {
            var fraction = ""
            var i = weight + 1
            while fraction.count < scale {
                fraction += padded(group(i))
                i += 1
            }
            text += "." + fraction.prefix(scale)
        }
        return text
    }

    private static func malformed(_ column: String, _ oid: UInt32) -> DatabaseError {
        DatabaseError(code: .decoding, column: column, detail: "malformed binary value for type oid \(oid)")
    }
}

/// Bind values encoded for `PQexecParams`: one contiguous buffer plus per-parameter type,
/// offset, length and format.
struct PostgresParameters {
    private var buffer: [UInt8] = []
    private var types: [UInt32] = []
    private var offsets: [Int] = []  // -1 for NULL
    private var lengths: [Int32] = []
    private var formats: [Int32] = []

    init(_ values: [SQLValue]) throws {
        types.reserveCapacity(values.count)
        offsets.reserveCapacity(values.count)
        lengths.reserveCapacity(values.count)
        formats.reserveCapacity(values.count)
        buffer.reserveCapacity(values.count * 16)
        for (index, value) in values.enumerated() {
            switch value.storage {
            case .null: appendNull()
            case .integer(let v): appendBinary(PostgresBinary.OID.int8, bigEndian: v)
            case .double(let v): appendBinary(PostgresBinary.OID.float8, bigEndian: v.bitPattern)
            case .bool(let v): appendBinary(PostgresBinary.OID.bool, bytes: [v ? 1 : 0])
            case .text(let v): try appendText(0, v, index: index)
            case .bytes(let v): appendBinary(PostgresBinary.OID.bytea, bytes: v)
            case .uuid(let v): withUnsafeBytes(of: v.uuid) { appendBinary(PostgresBinary.OID.uuid, bytes: $0) }
            case .timestamp(let v):
                let micros = UTCTimestamp.microseconds(since1970: v) - PostgresBinary.epochOffsetMicros
                appendBinary(PostgresBinary.OID.timestamptz, bigEndian: micros)
            case .json(let v): try appendText(PostgresBinary.OID.jsonb, String(decoding: v, as: UTF8.self), index: index)
            case .numeric(let v): try appendText(PostgresBinary.OID.numeric, v, index: index)
            case .unsupported(let oid):
                throw DatabaseError(code: .invalidValue, detail: "bind $\(index + 1) has an unsupported type (oid \(oid))")
            }
        }
    }

    private mutating func appendNull() {
        types.append(0)
        offsets.append(-1)
        lengths.append(0)
        formats.append(0)
    }

    private mutating func appendBinary<T: FixedWidthInteger>(_ oid: UInt32, bigEndian value: T) {
        withUnsafeBytes(of: value.bigEndian) { appendBinary(oid, bytes: $0) }
    }

    private mutating func appendBinary(_ oid: UInt32, bytes: some Collection<UInt8>) {
        types.append(oid)
        offsets.append(buffer.count)
        lengths.append(Int32(bytes.count))
        formats.append(1)
        buffer.append(contentsOf: bytes)
    }

    private mutating func appendText(_ oid: UInt32, _ text: String, index: Int) throws {
        // Text parameters are C strings: an embedded NUL would silently truncate the value.
        guard !text.utf8.contains(0) else {
            throw DatabaseError(code: .invalidValue, detail: "bind $\(index + 1) contains a NUL character, which Postgres text cannot hold")
        }
        types.append(oid)
        offsets.append(buffer.count)
        lengths.append(Int32(text.utf8.count))
        formats.append(0)
        buffer.append(contentsOf: text.utf8)
        buffer.append(0)
    }

    func withPointers<R>(
        _ body: (Int32, UnsafePointer<UInt32>?, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R
    ) -> R {
        if types.isEmpty { return body(0, nil, nil, nil, nil) }
        return buffer.withUnsafeBufferPointer { raw in
            // A zero-length binary value still needs a non-NULL pointer.
            let base = raw.baseAddress.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(bitPattern: 1)!
            let values: [UnsafePointer<CChar>?] = offsets.map { offset in
                offset < 0 ? nil : (base + offset).assumingMemoryBound(to: CChar.self)
            }
            return types.withUnsafeBufferPointer { t in
                values.withUnsafeBufferPointer { v in
                    lengths.withUnsafeBufferPointer { l in
                        formats.withUnsafeBufferPointer { f in
                            body(Int32(types.count), t.baseAddress, v.baseAddress, l.baseAddress, f.baseAddress)
                        }
                    }
                }
            }
        }
    }
}
