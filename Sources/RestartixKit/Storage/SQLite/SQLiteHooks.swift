import CSQLite3
import Foundation

/// Which part of the SQLite store a connection serves.
public struct SQLiteConnectionRole: Sendable, Hashable, CustomStringConvertible {
    enum Base: Sendable, Hashable { case writer, reader }
    let base: Base
    /// The single connection that writes (transactions and `withConnection`).
    public static let writer = SQLiteConnectionRole(base: .writer)
    /// A read-only connection (`query_only`) used by ``Database/read(_:)``.
    public static let reader = SQLiteConnectionRole(base: .reader)
    public var description: String { base == .writer ? "writer" : "reader" }
}

/// A connection being set up, handed to ``SQLiteConfiguration/connectionSetup`` once per new
/// connection, on the connection's own thread. Valid only during that call.
///
/// Use it to register app-defined functions and an authorizer (the tenancy layer enforces
/// row isolation on SQLite with both).
public final class SQLiteConnectionHandle {
    private var connection: SQLiteConnection?
    /// Whether this connection writes or only reads.
    public let role: SQLiteConnectionRole

    init(connection: SQLiteConnection, role: SQLiteConnectionRole) {
        self.connection = connection
        self.role = role
    }

    func invalidate() { connection = nil }

    private func live() throws -> SQLiteConnection {
        guard let connection else { throw DatabaseError.closedHandle }
        return connection
    }

    /// Runs SQL (no binds) on this connection, for per-connection setup.
    public func execute(_ sql: String) throws {
        try live().execScriptBlocking(sql)
    }

    /// Runs one statement on this connection and returns its rows, for per-connection setup.
    public func query(_ query: SQLQuery) throws -> [SQLRow] {
        let (sql, binds) = query.render(for: .sqlite)
        return try live().executeBlocking(sql, binds).rows
    }

    /// Registers a scalar SQL function.
    /// - Parameters:
    ///   - name: The SQL name.
    ///   - argumentCount: The number of arguments, or -1 for any.
    ///   - deterministic: Whether the same arguments always give the same result in one statement
    ///     (lets SQLite use it in indexes and factor it out).
    ///   - body: Computes the result; a thrown error becomes a SQL error whose message is the
    ///     error's description, so it must not contain data.
    public func createFunction(
        _ name: String,
        argumentCount: Int32,
        deterministic: Bool,
        _ body: @escaping @Sendable ([SQLValue]) throws -> SQLValue
    ) throws {
        let connection = try live()
        let box = SQLiteFunctionBox(body)
        connection.retain(box)
        var flags = SQLITE_UTF8
        if deterministic { flags |= SQLITE_DETERMINISTIC }
        let rc = sqlite3_create_function_v2(
            connection.rawHandle, name, argumentCount, flags, Unmanaged.passUnretained(box).toOpaque(),
            { context, argc, argv in
                let box = Unmanaged<SQLiteFunctionBox>.fromOpaque(sqlite3_user_data(context)!).takeUnretainedValue()
                var arguments: [SQLValue] = []
                arguments.reserveCapacity(Int(argc))
                for i in 0..<Int(argc) { arguments.append(sqliteValue(argv![i])) }
                do {
                    setResult(context, try box.body(arguments))
                } catch {
                    sqlite3_result_error(context, "\(error)", -1)
                }
            },
            nil, nil, nil
        )
        guard rc == SQLITE_OK else { throw connection.error(rc) }
    }

    /// Sets a session-level setting, as `set_config(name, value, false)` would; with `locked`,
    /// `set_config` can no longer change it on this connection (a `nil` value then means the
    /// setting can never be set). The tenancy layer marks its app connections this way.
    public func presetSetting(_ name: String, to value: String?, locked: Bool) throws {
        try live().presetSetting(name, value, locked: locked)
    }

    /// Installs a filter that sees the text of every statement or script before SQLite
    /// prepares it; returning a reason refuses it with `.insufficientPrivilege` (the reason is
    /// the error's detail, so it must not quote the text). It runs after this setup, so setup
    /// statements are not filtered.
    public func setStatementFilter(_ filter: @escaping @Sendable (String) -> String?) throws {
        try live().setStatementFilter(filter)
    }

    /// Installs an authorizer consulted while statements are prepared on this connection.
    public func setAuthorizer(_ body: @escaping @Sendable (SQLiteAuthorizerRequest) -> SQLiteAuthorizerDecision) throws {
        let connection = try live()
        let box = SQLiteAuthorizerBox(body, connection: connection)
        connection.retain(box)
        let rc = sqlite3_set_authorizer(
            connection.rawHandle,
            { context, action, a, b, c, d in
                let box = Unmanaged<SQLiteAuthorizerBox>.fromOpaque(context!).takeUnretainedValue()
                let request = SQLiteAuthorizerRequest(
                    action: action,
                    argument1: a.map { String(cString: $0) },
                    argument2: b.map { String(cString: $0) },
                    database: c.map { String(cString: $0) },
                    trigger: d.map { String(cString: $0) },
                    statement: box.connection?.statementSequence ?? 0
                )
                let decision = box.body(request)
                if decision == .deny { box.connection?.lastDenial = (request.argument1, request.summary) }
                return decision.rawValue
            },
            Unmanaged.passUnretained(box).toOpaque()
        )
        guard rc == SQLITE_OK else { throw connection.error(rc) }
    }
}

/// What a statement being prepared wants to do (see SQLite's `sqlite3_set_authorizer`).
public struct SQLiteAuthorizerRequest: Sendable {
    /// The SQLite action code (`SQLITE_READ`, `SQLITE_INSERT`, ...); compare with the statics.
    public let action: Int32
    /// Table name for reads and writes; index, trigger or view name for DDL.
    public let argument1: String?
    /// Column name for reads and updates.
    public let argument2: String?
    /// Database name (`main`, `temp`).
    public let database: String?
    /// The innermost trigger or view responsible, or `nil` when the access is direct (SQLite
    /// also gives `nil` for the foreign-key actions a statement sets off).
    public let trigger: String?
    /// Identifies the statement being prepared: equal for the callbacks of one statement,
    /// different for the next one on the connection.
    public let statement: UInt64

    /// The request in a few words, schema names only (`update usage_quotas.limit_units`).
    var summary: String {
        let verb = switch action {
        case Self.read: "read"
        case Self.insert: "insert into"
        case Self.update: "update"
        case Self.delete: "delete from"
        case Self.pragma: "run PRAGMA"
        default: "run this kind of statement (SQLite action \(action)) on"
        }
        // Table and column for reads and updates; the first argument only otherwise (a PRAGMA's
        // second argument is its value).
        let parts = action == Self.read || action == Self.update ? [argument1, argument2] : [argument1]
        let object = parts.compactMap { $0 }.joined(separator: ".")
        return object.isEmpty ? verb : "\(verb) \(object)"
    }

    public static let read = Int32(SQLITE_READ)
    public static let insert = Int32(SQLITE_INSERT)
    public static let update = Int32(SQLITE_UPDATE)
    public static let delete = Int32(SQLITE_DELETE)
    public static let select = Int32(SQLITE_SELECT)
    public static let function = Int32(SQLITE_FUNCTION)
    public static let pragma = Int32(SQLITE_PRAGMA)
    public static let transaction = Int32(SQLITE_TRANSACTION)
    public static let savepoint = Int32(SQLITE_SAVEPOINT)
    public static let recursive = Int32(SQLITE_RECURSIVE)
}

/// An authorizer's answer.
public struct SQLiteAuthorizerDecision: Sendable, Hashable {
    let rawValue: Int32
    /// Allow the access.
    public static let allow = SQLiteAuthorizerDecision(rawValue: SQLITE_OK)
    /// Fail the statement with an authorization error (maps to `.insufficientPrivilege`).
    public static let deny = SQLiteAuthorizerDecision(rawValue: SQLITE_DENY)
    /// Read the column as NULL / skip the action silently.
    public static let ignore = SQLiteAuthorizerDecision(rawValue: SQLITE_IGNORE)
}

final class SQLiteFunctionBox {
    let body: @Sendable ([SQLValue]) throws -> SQLValue
    init(_ body: @escaping @Sendable ([SQLValue]) throws -> SQLValue) { self.body = body }
}

final class SQLiteAuthorizerBox {
    let body: @Sendable (SQLiteAuthorizerRequest) -> SQLiteAuthorizerDecision
    /// The connection is owned elsewhere; the box lives exactly as long (in its `retained`).
    unowned(unsafe) let connection: SQLiteConnection?
    init(_ body: @escaping @Sendable (SQLiteAuthorizerRequest) -> SQLiteAuthorizerDecision, connection: SQLiteConnection) {
        self.body = body
        self.connection = connection
    }
}

private func sqliteValue(_ value: OpaquePointer?) -> SQLValue {
    switch sqlite3_value_type(value) {
    case SQLITE_INTEGER: return .integer(sqlite3_value_int64(value))
    case SQLITE_FLOAT: return .double(sqlite3_value_double(value))
    case SQLITE_TEXT:
        let count = Int(sqlite3_value_bytes(value))
        guard let pointer = sqlite3_value_text(value) else { return .text("") }
        return .text(String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self))
    case SQLITE_BLOB:
        let count = Int(sqlite3_value_bytes(value))
        guard count > 0, let pointer = sqlite3_value_blob(value) else { return .bytes(Data()) }
        return .bytes(Data(bytes: pointer, count: count))
    default: return .null
    }
}

private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

private func setResult(_ context: OpaquePointer?, _ value: SQLValue) {
    func text(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            sqlite3_result_text64(context, UnsafeRawPointer(utf8.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self), UInt64(utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
        }
    }
    switch value.storage {
    case .null, .unsupported: sqlite3_result_null(context)
    case .integer(let v): sqlite3_result_int64(context, v)
    case .double(let v): sqlite3_result_double(context, v)
    case .bool(let v): sqlite3_result_int64(context, v ? 1 : 0)
    case .text(let v), .numeric(let v): text(v)
    case .uuid(let v): text(v.lowercasedString)
    case .timestamp(let v): text(UTCTimestamp.format(v))
    case .json(let v): text(String(decoding: v, as: UTF8.self))
    case .bytes(let v):
        v.withUnsafeBytes { raw in
            sqlite3_result_blob64(context, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(raw.count), sqliteTransient)
        }
    }
}
