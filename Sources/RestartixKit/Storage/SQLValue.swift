public import RestartixCore
public import Foundation

/// A value crossing the boundary between Swift and a database, independent of the backend.
///
/// Bind values are built from ``SQLEncodable`` types by ``SQLQuery`` interpolation; row cells
/// arrive as `SQLValue`s and are turned into Swift values by ``SQLDecodable``.
///
/// `description` never shows the value itself (it may be patient data), only its kind.
public struct SQLValue: Sendable, Hashable, CustomStringConvertible {
    enum Storage: Sendable, Hashable {
        case null
        case integer(Int64)
        case double(Double)
        case bool(Bool)
        case text(String)
        case bytes(Data)
        case uuid(UUID)
        case timestamp(Date)
        case json(Data)
        /// An arbitrary-precision number in its decimal text form (Postgres `numeric`).
        case numeric(String)
        /// A Postgres type this kit does not decode; cast it in SQL (`::text`).
        case unsupported(typeOID: UInt32)
    }

    let storage: Storage

    init(_ storage: Storage) { self.storage = storage }

    /// The string of a text value, else `nil`: for tools in this package that replay the kit's
    /// SQL elsewhere (the tenancy benchmark hands the context statement's binds to pgbench).
    package var textValue: String? {
        if case .text(let value) = storage { return value }
        return nil
    }

    /// SQL `NULL`.
    public static let null = SQLValue(.null)
    /// A 64-bit integer (`bigint` / SQLite `INTEGER`).
    public static func integer(_ value: Int64) -> SQLValue { SQLValue(.integer(value)) }
    /// A double-precision float (`double precision` / SQLite `REAL`).
    public static func double(_ value: Double) -> SQLValue { SQLValue(.double(value)) }
    /// A boolean (`boolean` / SQLite `INTEGER` 0 or 1).
    public static func bool(_ value: Bool) -> SQLValue { SQLValue(.bool(value)) }
    /// Text; on Postgres sent untyped so the server infers the parameter's type from context.
    public static func text(_ value: String) -> SQLValue { SQLValue(.text(value)) }
    /// Raw bytes (`bytea` / SQLite `BLOB`).
    public static func bytes(_ value: Data) -> SQLValue { SQLValue(.bytes(value)) }
    /// A UUID (`uuid` / SQLite canonical lower-case text).
    public static func uuid(_ value: UUID) -> SQLValue { SQLValue(.uuid(value)) }
    /// An instant (`timestamptz` / SQLite ISO 8601 UTC text with microseconds).
    public static func timestamp(_ value: Date) -> SQLValue { SQLValue(.timestamp(value)) }
    /// A JSON document, already encoded as UTF-8 (`jsonb` / SQLite `TEXT`).
    public static func json(_ utf8: Data) -> SQLValue { SQLValue(.json(utf8)) }
    /// A decimal number in text form (`numeric`).
    public static func numeric(_ decimalText: String) -> SQLValue { SQLValue(.numeric(decimalText)) }

    /// Whether this is SQL `NULL`.
    public var isNull: Bool { if case .null = storage { true } else { false } }

    /// The kind of value, for error messages: never the value itself.
    public var kind: String {
        switch storage {
        case .null: "null"
        case .integer: "integer"
        case .double: "double"
        case .bool: "boolean"
        case .text: "text"
        case .bytes: "bytes"
        case .uuid: "uuid"
        case .timestamp: "timestamp"
        case .json: "json"
        case .numeric: "numeric"
        case .unsupported(let oid): "unsupported type (oid \(oid))"
        }
    }

    public var description: String { "SQLValue(\(kind))" }
}

// MARK: - Encoding and decoding protocols

/// A Swift type that can be sent to the database as a bind value.
public protocol SQLEncodable: Sendable {
    /// The value to bind.
    var sqlValue: SQLValue { get }
}

/// A Swift type that can be read from a database cell.
public protocol SQLDecodable: Sendable {
    /// Creates a value from a cell, or throws ``SQLDecodingFailure`` when the cell's kind does not fit.
    init(sqlValue: SQLValue) throws(SQLDecodingFailure)
}

/// Why a cell could not be decoded. ``SQLRow`` wraps it in a ``DatabaseError`` naming the column.
public struct SQLDecodingFailure: RestartixError, Hashable {
    /// What the decoder expected, for example `"UUID"`.
    public let expected: String
    /// The kind of value found (see ``SQLValue/kind``), never the value.
    public let found: String

    public init(expected: String, found: SQLValue) {
        self.expected = expected
        self.found = found.kind
    }

    public static let domain = "decoding"
    /// Always `kindMismatch`: the cell's kind does not fit the type asked for.
    public var codeName: String { "kindMismatch" }
    public var safeDetail: String { "expected \(expected), found \(found)" }
    /// 500: the code asked for the wrong type; nothing the caller sent.
    public var httpStatus: Int { 500 }
    public var description: String { safeDetail }
}

// MARK: - Standard conformances

extension Optional: SQLEncodable where Wrapped: SQLEncodable {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

extension Optional: SQLDecodable where Wrapped: SQLDecodable {
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        self = sqlValue.isNull ? nil : try Wrapped(sqlValue: sqlValue)
    }
}

extension SQLValue: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { self }
    public init(sqlValue: SQLValue) { self = sqlValue }
}

extension Int64: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        switch sqlValue.storage {
        case .integer(let v): self = v
        case .numeric(let text):
            guard let v = Int64(text) else { throw SQLDecodingFailure(expected: "Int64", found: sqlValue) }
            self = v
        default: throw SQLDecodingFailure(expected: "Int64", found: sqlValue)
        }
    }
}

extension Int: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(Int64(self)) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        let wide: Int64
        do { wide = try Int64(sqlValue: sqlValue) } catch { throw SQLDecodingFailure(expected: "Int", found: sqlValue) }
        guard let v = Int(exactly: wide) else { throw SQLDecodingFailure(expected: "Int", found: sqlValue) }
        self = v
    }
}

extension Int32: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .integer(Int64(self)) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        let wide: Int64
        do { wide = try Int64(sqlValue: sqlValue) } catch { throw SQLDecodingFailure(expected: "Int32", found: sqlValue) }
        guard let v = Int32(exactly: wide) else { throw SQLDecodingFailure(expected: "Int32", found: sqlValue) }
        self = v
    }
}

extension Double: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .double(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        switch sqlValue.storage {
        case .double(let v): self = v
        case .integer(let v): self = Double(v)
        case .numeric(let text):
            guard let v = Double(text) else { throw SQLDecodingFailure(expected: "Double", found: sqlValue) }
            self = v
        default: throw SQLDecodingFailure(expected: "Double", found: sqlValue)
        }
    }
}

extension Bool: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .bool(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        switch sqlValue.storage {
        case .bool(let v): self = v
        case .integer(0): self = false
        case .integer(1): self = true
        default: throw SQLDecodingFailure(expected: "Bool", found: sqlValue)
        }
    }
}

extension String: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .text(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        switch sqlValue.storage {
        case .text(let v): self = v
        case .numeric(let v): self = v
        case .json(let utf8): self = String(decoding: utf8, as: UTF8.self)
        case .uuid(let v): self = v.lowercasedString
        default: throw SQLDecodingFailure(expected: "String", found: sqlValue)
        }
    }
}

extension Data: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .bytes(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        guard case .bytes(let v) = sqlValue.storage else { throw SQLDecodingFailure(expected: "Data", found: sqlValue) }
        self = v
    }
}

extension UUID: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .uuid(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        switch sqlValue.storage {
        case .uuid(let v): self = v
        case .text(let text):
            guard let v = UUID(uuidString: text) else { throw SQLDecodingFailure(expected: "UUID", found: sqlValue) }
            self = v
        case .bytes(let data) where data.count == 16:
            self = data.withUnsafeBytes { raw in
                UUID(uuid: raw.loadUnaligned(as: uuid_t.self))
            }
        default: throw SQLDecodingFailure(expected: "UUID", found: sqlValue)
        }
    }
}

extension Date: SQLEncodable, SQLDecodable {
    public var sqlValue: SQLValue { .timestamp(self) }
    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        switch sqlValue.storage {
        case .timestamp(let v): self = v
        case .text(let text):
            guard let v = UTCTimestamp.parse(text) else { throw SQLDecodingFailure(expected: "Date", found: sqlValue) }
            self = v
        case .integer(let seconds): self = Date(timeIntervalSince1970: TimeInterval(seconds))
        case .double(let seconds): self = Date(timeIntervalSince1970: seconds)
        default: throw SQLDecodingFailure(expected: "Date", found: sqlValue)
        }
    }
}

/// A `Codable` value stored as a JSON document (`jsonb` on Postgres, `TEXT` on SQLite).
///
/// ```swift
/// try await db.execute("INSERT INTO t (config) VALUES (\(SQLJSON(config)))")
/// let config = try row.decode("config", as: SQLJSON<ProviderConfig>.self).value
/// ```
public struct SQLJSON<Value: Codable & Sendable>: SQLEncodable, SQLDecodable {
    /// The wrapped value.
    public var value: Value

    public init(_ value: Value) { self.value = value }

    public var sqlValue: SQLValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        // Encoding a Codable value of our own types cannot fail except for non-finite floats;
        // those become JSON null rather than a crash.
        return .json((try? encoder.encode(value)) ?? Data("null".utf8))
    }

    public init(sqlValue: SQLValue) throws(SQLDecodingFailure) {
        let utf8: Data
        switch sqlValue.storage {
        case .json(let v): utf8 = v
        case .text(let v): utf8 = Data(v.utf8)
        case .bytes(let v): utf8 = v
        default: throw SQLDecodingFailure(expected: "JSON", found: sqlValue)
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            value = try decoder.decode(Value.self, from: utf8)
        } catch {
            throw SQLDecodingFailure(expected: "JSON of \(Value.self)", found: sqlValue)
        }
    }
}
