import CSQLite3
import Foundation
import Synchronization

/// A libsqlite3 connection driven from its own thread, with a bounded prepared-statement cache.
final class SQLiteConnection: ConnectionDriver, @unchecked Sendable {
    // `db` and `cache` are only touched on `worker`'s thread.
    private let db: OpaquePointer
    private let worker: BlockingWorker
    private var cache: [String: OpaquePointer] = [:]
    private var cacheOrder: [String] = []
    private let cacheCapacity: Int
    private let brokenFlag = Atomic<Bool>(false)
    /// Keeps registered function and authorizer boxes alive as long as the connection.
    private var retained: [AnyObject] = []
    /// Refuses statement texts before they are prepared (set by the connection's setup).
    private var statementFilter: (@Sendable (String) -> String?)?
    /// Postgres-style configuration settings (`set_config` / `current_setting`).
    private var settings = SQLiteSettings()
    /// Rows changed through INSTEAD OF triggers in the current statement, which
    /// `sqlite3_changes` does not count (the triggers report them with `restartix_count_changes`).
    private var triggerChanges = 0
    /// Changes with every statement prepared or run, so an authorizer can tell which
    /// statement a callback belongs to (SQLite re-prepares inside `sqlite3_step` after a
    /// schema change, and those callbacks get a number of their own).
    private(set) var statementSequence: UInt64 = 0
    /// What the authorizer refused last (`update of usage_quotas.limit_units`), for the error
    /// SQLite then reports only as "not authorized". Schema names only.
    var lastDenial: (table: String?, what: String)?
    /// The running call's deadline, checked by the progress handler (worker thread only).
    private let deadline = CallDeadlineBox()

    let dialect = SQLDialect.sqlite

    private init(db: OpaquePointer, worker: BlockingWorker, cacheCapacity: Int) {
        self.db = db
        self.worker = worker
        self.cacheCapacity = cacheCapacity
    }

    var isBroken: Bool { brokenFlag.load(ordering: .relaxed) }

    /// Opens a connection and applies the per-connection settings and hooks.
    static func open(
        path: String,
        readOnly: Bool,
        configuration: SQLiteConfiguration,
        role: SQLiteConnectionRole
    ) async throws -> SQLiteConnection {
        let worker = BlockingWorker(name: "restartix.sqlite")
        do {
            let handle = try await worker.run { () throws -> UnsafeSendable<OpaquePointer> in
                if configuration.privateFiles && !configuration.isInMemory { try SQLiteFiles.prepare(path: path) }
                var db: OpaquePointer?
                let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
                let rc = sqlite3_open_v2(path, &db, flags, nil)
                guard rc == SQLITE_OK, let db else {
                    let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
                    sqlite3_close_v2(db)
                    throw DatabaseError(code: .connectionFailed, detail: "could not open the SQLite database: \(message)")
                }
                sqlite3_extended_result_codes(db, 1)
                sqlite3_busy_timeout(db, Int32(clamping: configuration.busyTimeout.milliseconds))
                return UnsafeSendable(db)
            }
            let connection = SQLiteConnection(db: handle.value, worker: worker, cacheCapacity: max(1, configuration.statementCacheCapacity))
            do {
                try await connection.worker.run { [connection] in
                    try connection.configureBlocking(readOnly: readOnly, configuration: configuration, role: role)
                }
            } catch {
                await connection.close()
                throw error
            }
            return connection
        } catch {
            worker.stop()
            throw error
        }
    }

    private func configureBlocking(readOnly: Bool, configuration: SQLiteConfiguration, role: SQLiteConnectionRole) throws {
        // Every 1,000 virtual-machine steps, the running call's deadline (a
        // `Database.withDeadline` scope) is checked; past it, SQLite interrupts the statement
        // (SQLITE_INTERRUPT, reported as `.timedOut`). A clock read per thousand steps costs
        // nothing measurable.
        sqlite3_progress_handler(db, 1000, { context in
            guard let context, let at = Unmanaged<CallDeadlineBox>.fromOpaque(context).takeUnretainedValue().at else { return 0 }
            return ContinuousClock.now >= at ? 1 : 0
        }, Unmanaged.passUnretained(deadline).toOpaque())
        if !configuration.isInMemory {
            try execScriptBlocking("PRAGMA journal_mode = WAL")
        }
        try execScriptBlocking("PRAGMA foreign_keys = ON")
        try execScriptBlocking("PRAGMA synchronous = NORMAL")
        if readOnly { try execScriptBlocking("PRAGMA query_only = ON") }
        try registerBuiltInFunctions()
        if let setup = configuration.connectionSetup {
            let handle = SQLiteConnectionHandle(connection: self, role: role)
            try setup(handle)
            handle.invalidate()
        }
    }

    // MARK: ConnectionDriver

    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> QueryResult {
        let at = try Self.callDeadline()
        return try await worker.run { [self] in try underDeadline(at) { try executeBlocking(sql, binds) } }
    }

    func pipeline(_ statements: [(sql: String, binds: [SQLValue])]) async throws -> [QueryResult] {
        // SQLite is in-process: there is no round trip to save.
        let at = try Self.callDeadline()
        return try await worker.run { [self] in try underDeadline(at) { try statements.map { try executeBlocking($0.sql, $0.binds) } } }
    }

    func executeScript(_ sql: String) async throws {
        let at = try Self.callDeadline()
        try await worker.run { [self] in try underDeadline(at) { try execScriptBlocking(sql) } }
    }

    /// The calling task's deadline (read here: task-locals are not visible on the worker
    /// thread), refusing a call whose deadline has already passed.
    private static func callDeadline() throws(DatabaseError) -> ContinuousClock.Instant? {
        guard let deadline = CallDeadline.forCall(budget: nil) else { return nil }
        if deadline.budget <= .zero { throw CallDeadline.expiredBeforeSending("the statement") }
        return deadline.at
    }

    /// Runs `body` with the progress handler watching `at` (worker thread only).
    private func underDeadline<T>(_ at: ContinuousClock.Instant?, _ body: () throws -> T) throws -> T {
        deadline.at = at
        defer { deadline.at = nil }
        return try body()
    }

    func transactionState() -> TransactionState {
        // Reads connection state without I/O; safe while the lease holder has no job in flight.
        sqlite3_get_autocommit(db) != 0 ? .idle : .active
    }

    func isHealthy() async -> Bool {
        !isBroken && sqlite3_get_autocommit(db) != 0
    }

    func close() async {
        brokenFlag.store(true, ordering: .relaxed)
        _ = try? await worker.run { [self] in
            for statement in cache.values { sqlite3_finalize(statement) }
            cache.removeAll()
            sqlite3_close_v2(db)
        }
        worker.stop()
    }

    // MARK: Blocking internals (worker thread only)

    /// Runs every statement of a script (no binds), one prepare at a time, so each has its own
    /// statement number for the authorizer.
    func execScriptBlocking(_ sql: String) throws {
        try screen(sql)
        defer { endOfStatement() }
        try sql.withCString { start in
            var next: UnsafePointer<CChar>? = start
            while let text = next, text.pointee != 0 {
                var statement: OpaquePointer?
                var tail: UnsafePointer<CChar>?
                statementSequence &+= 1
                let rc = sqlite3_prepare_v2(db, text, -1, &statement, &tail)
                guard rc == SQLITE_OK else { throw error(rc) }
                next = tail
                guard let statement else { continue }  // whitespace or a comment
                defer { sqlite3_finalize(statement) }
                while true {
                    statementSequence &+= 1
                    let step = sqlite3_step(statement)
                    if step == SQLITE_DONE { break }
                    guard step == SQLITE_ROW else { throw error(step) }
                }
            }
        }
    }

    /// Transaction-local settings end with their transaction (or with the statement, outside
    /// one), as on Postgres.
    private func endOfStatement() {
        if sqlite3_get_autocommit(db) != 0 { settings.endTransaction() }
    }

    // MARK: Built-in functions

    /// `set_config`, `current_setting` and `restartix_count_changes`, on every connection.
    private func registerBuiltInFunctions() throws {
        let handle = SQLiteConnectionHandle(connection: self, role: .writer)
        defer { handle.invalidate() }
        // The closures run on this connection's thread, during its statements.
        try handle.createFunction("set_config", argumentCount: 3, deterministic: false) { [unowned self] arguments in
            guard case .text(let name)? = arguments.first?.storage else {
                throw SQLiteFunctionError("set_config needs a setting name")
            }
            let value: String = switch arguments[1].storage {
            case .null: ""
            case .text(let text): text
            case .integer(let number): String(number)
            case .double(let number): String(number)
            default: throw SQLiteFunctionError("set_config needs a text value")
            }
            let isLocal: Bool = switch arguments[2].storage {
            case .integer(let flag): flag != 0
            case .text(let text): text == "true" || text == "1" || text == "on"
            default: false
            }
            try settings.set(name, value, local: isLocal)
            return .text(value)
        }
        for count: Int32 in [1, 2] {
            try handle.createFunction("current_setting", argumentCount: count, deterministic: false) { [unowned self] arguments in
                guard case .text(let name)? = arguments.first?.storage else {
                    throw SQLiteFunctionError("current_setting needs a setting name")
                }
                let missingOK: Bool = switch arguments.count > 1 ? arguments[1].storage : .null {
                case .integer(let flag): flag != 0
                case .text(let text): text == "true" || text == "1" || text == "on"
                default: false
                }
                if let value = settings.value(of: name) { return .text(value) }
                if missingOK { return .null }
                throw SQLiteFunctionError("unrecognized configuration parameter \"\(name)\"")
            }
        }
        try handle.createFunction("restartix_count_changes", argumentCount: 1, deterministic: false) { [unowned self] arguments in
            if case .integer(let count)? = arguments.first?.storage { triggerChanges += Int(count) }
            return arguments.first ?? .null
        }
    }

    /// Installs the statement filter (from the connection's setup).
    func setStatementFilter(_ filter: @escaping @Sendable (String) -> String?) {
        statementFilter = filter
    }

    private func screen(_ sql: String) throws {
        if let filter = statementFilter, let reason = filter(sql) {
            throw DatabaseError(code: .insufficientPrivilege, detail: reason)
        }
    }

    /// Sets a session-level setting from the connection's setup; a locked one cannot be
    /// changed by `set_config` afterwards.
    func presetSetting(_ name: String, _ value: String?, locked: Bool) throws {
        try settings.preset(name, value, locked: locked)
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let statement = cache[sql] {
            if let i = cacheOrder.lastIndex(of: sql), i != cacheOrder.count - 1 {
                cacheOrder.remove(at: i)
                cacheOrder.append(sql)
            }
            return statement
        }
        try screen(sql)
        var statement: OpaquePointer?
        // `tail` points into the C string, so it is read inside the closure that owns it.
        let (rc, hasMore) = sql.withCString { text -> (Int32, Bool) in
            var tail: UnsafePointer<CChar>?
            statementSequence &+= 1
            let rc = sqlite3_prepare_v3(db, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, &tail)
            let hasMore = tail.map { !String(cString: $0).allSatisfy(\.isWhitespace) } ?? false
            return (rc, hasMore)
        }
        guard rc == SQLITE_OK, let statement else { throw error(rc) }
        if hasMore {
            sqlite3_finalize(statement)
            throw DatabaseError(code: .syntaxError, detail: "a query holds exactly one statement; use a script for several")
        }
        cache[sql] = statement
        cacheOrder.append(sql)
        if cacheOrder.count > cacheCapacity {
            let evicted = cacheOrder.removeFirst()
            if let old = cache.removeValue(forKey: evicted) { sqlite3_finalize(old) }
        }
        return statement
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func executeBlocking(_ sql: String, _ binds: [SQLValue]) throws -> QueryResult {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard expected == binds.count else {
            throw DatabaseError(code: .syntaxError, detail: "the statement has \(expected) placeholders but \(binds.count) values were bound")
        }
        for (i, value) in binds.enumerated() {
            try bind(value, at: Int32(i + 1), to: statement)
        }
        let columnCount = Int(sqlite3_column_count(statement))
        var names: [String] = []
        for c in 0..<Int32(columnCount) { names.append(String(cString: sqlite3_column_name(statement, c))) }
        let columns = SQLColumns(names)
        var rows: [SQLRow] = []
        triggerChanges = 0
        defer { endOfStatement() }
        while true {
            statementSequence &+= 1
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc) }
            var values: [SQLValue] = []
            values.reserveCapacity(columnCount)
            for c in 0..<Int32(columnCount) { values.append(Self.column(statement, c)) }
            rows.append(SQLRow(columns: columns, values: values))
        }
        let affected = sqlite3_stmt_readonly(statement) != 0 ? 0 : Int(sqlite3_changes64(db)) + triggerChanges
        return QueryResult(columns: columns, rows: rows, affectedRows: affected, commandTag: "")
    }

    private func bind(_ value: SQLValue, at index: Int32, to statement: OpaquePointer) throws {
        let rc: Int32
        switch value.storage {
        case .null: rc = sqlite3_bind_null(statement, index)
        case .integer(let v): rc = sqlite3_bind_int64(statement, index, v)
        case .double(let v): rc = sqlite3_bind_double(statement, index, v)
        case .bool(let v): rc = sqlite3_bind_int64(statement, index, v ? 1 : 0)
        case .text(let v), .numeric(let v): rc = bindText(v, index, statement)
        case .uuid(let v): rc = bindText(v.lowercasedString, index, statement)
        case .timestamp(let v): rc = bindText(UTCTimestamp.format(v), index, statement)
        case .json(let v): rc = bindText(String(decoding: v, as: UTF8.self), index, statement)
        case .bytes(let v):
            rc = v.withUnsafeBytes { raw in
                // A zero-length blob still needs a non-NULL pointer, or SQLite binds NULL.
                sqlite3_bind_blob64(statement, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(raw.count), Self.transient)
            }
        case .unsupported(let oid):
            throw DatabaseError(code: .invalidValue, detail: "bind \(index) has an unsupported type (oid \(oid))")
        }
        guard rc == SQLITE_OK else { throw error(rc) }
    }

    private func bindText(_ text: String, _ index: Int32, _ statement: OpaquePointer) -> Int32 {
        var text = text
        return text.withUTF8 { utf8 in
            sqlite3_bind_text64(statement, index, UnsafeRawPointer(utf8.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self), UInt64(utf8.count), Self.transient, UInt8(SQLITE_UTF8))
        }
    }

    static func column(_ statement: OpaquePointer, _ c: Int32) -> SQLValue {
        switch sqlite3_column_type(statement, c) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, c))
        case SQLITE_FLOAT: return .double(sqlite3_column_double(statement, c))
        case SQLITE_TEXT:
            let count = Int(sqlite3_column_bytes(statement, c))
            guard let pointer = sqlite3_column_text(statement, c) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, c))
            guard count > 0, let pointer = sqlite3_column_blob(statement, c) else { return .bytes(Data()) }
            return .bytes(Data(bytes: pointer, count: count))
        default: return .null
        }
    }

    func error(_ rc: Int32) -> DatabaseError {
        let extended = sqlite3_extended_errcode(db)
        let message = String(cString: sqlite3_errmsg(db))
        let error = Self.error(extended: extended == 0 ? rc : extended, message: message)
        if error.code == .insufficientPrivilege, (extended == 0 ? rc : extended) & 0xFF == SQLITE_AUTH, let denial = lastDenial {
            lastDenial = nil
            return DatabaseError(
                code: .insufficientPrivilege, table: denial.table,
                detail: "the connection may not \(denial.what) (SQLite authorizer)", serverMessage: message
            )
        }
        return error
    }

    static func error(extended: Int32, message: String) -> DatabaseError {
        let primary = extended & 0xFF
        var table: String?
        var column: String?
        var constraint: String?
        // "UNIQUE constraint failed: users.email" names schema objects only.
        if let range = message.range(of: "constraint failed: ") {
            let objects = message[range.upperBound...]
            if let first = objects.split(separator: ",").first {
                let parts = first.trimmingCharacters(in: .whitespaces).split(separator: ".")
                if parts.count == 2 {
                    table = String(parts[0])
                    column = String(parts[1])
                } else {
                    constraint = String(first)
                }
            }
        }
        let code: DatabaseError.Code
        switch extended {
        case 2067, 1555: code = .uniqueViolation  // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
        case 787: code = .foreignKeyViolation  // SQLITE_CONSTRAINT_FOREIGNKEY
        case 275: code = .checkViolation  // SQLITE_CONSTRAINT_CHECK
        case 1299: code = .notNullViolation  // SQLITE_CONSTRAINT_NOTNULL
        case 517: code = .serializationFailure  // SQLITE_BUSY_SNAPSHOT
        default:
            switch primary {
            case SQLITE_CONSTRAINT where message.contains("row-level security"):
                code = .rowLevelSecurityViolation
            case SQLITE_CONSTRAINT where message.hasPrefix("duplicate key value violates unique constraint"):
                // Raised by the tenancy views' triggers before a write, in Postgres's words.
                code = .uniqueViolation
                constraint = message.split(separator: "\"").dropFirst().first.map(String.init)
            case SQLITE_CONSTRAINT where message.hasPrefix("permission denied"):
                code = .insufficientPrivilege
            case SQLITE_CONSTRAINT where message.hasPrefix("invalid value for column"):
                code = .invalidValue  // a policy trigger's type guard (TenantPolicySQL)
            case SQLITE_CONSTRAINT:
                code = .checkViolation
                // A schema trigger's rule, in Postgres's words: `... violates check constraint "name"`.
                if let range = message.range(of: "violates check constraint \"") {
                    constraint = message[range.upperBound...].split(separator: "\"").first.map(String.init)
                }
            case SQLITE_AUTH: code = .insufficientPrivilege
            case SQLITE_BUSY, SQLITE_LOCKED: code = .busy
            case SQLITE_INTERRUPT:
                // Only the progress handler interrupts: the call's deadline passed.
                return DatabaseError(code: .timedOut, detail: "the statement ran past its deadline and was interrupted")
            case SQLITE_MISMATCH, SQLITE_TOOBIG, SQLITE_RANGE: code = .invalidValue
            case SQLITE_ERROR where message.contains("row-level security"):
                code = .rowLevelSecurityViolation
            case SQLITE_ERROR where message.hasPrefix("permission denied"):
                code = .insufficientPrivilege
            case SQLITE_ERROR:
                code = .syntaxError
            case SQLITE_READONLY: code = .insufficientPrivilege
            default: code = .server
            }
        }
        // SQLite's messages name schema objects and SQL text, never bound values.
        return DatabaseError(
            code: code,
            constraint: constraint,
            table: table,
            column: column,
            detail: "SQLite: \(message) (code \(extended))",
            serverMessage: message
        )
    }

    // MARK: Hooks (worker thread only, from SQLiteConnectionHandle)

    func retain(_ object: AnyObject) { retained.append(object) }
    var rawHandle: OpaquePointer { db }
}

/// The deadline the progress handler of one connection checks; touched only on the
/// connection's worker thread.
private final class CallDeadlineBox: @unchecked Sendable {
    var at: ContinuousClock.Instant?
}
