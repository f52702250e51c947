import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// A database — PostgreSQL through libpq or an embedded SQLite file — behind one API.
///
/// ```swift
/// let db = try Database(configuration: DatabaseConfiguration(url: "sqlite::memory:"), logger: logger)
/// try await db.transaction { tx in
///     try await tx.execute("INSERT INTO organizations (id, name) VALUES (\(UUIDv7.generate()), \(name))")
/// }
/// ```
///
/// Connections open lazily; nothing connects in `init`. The pool is a swift-service-lifecycle
/// `Service`: add the database to a `ServiceGroup` and it closes its connections on graceful
/// shutdown (or call ``shutdown()`` yourself).
///
/// SQLite file databases use one writer connection (transactions, ``withConnection(_:)``) and
/// up to ``DatabaseConfiguration/maximumConnections`` read-only connections (``read(_:)``),
/// in WAL mode, so reads run in parallel with the writer.
public final class Database: Sendable, Service {
    /// The configuration this database was built from.
    public let configuration: DatabaseConfiguration
    /// The SQL dialect spoken.
    public var dialect: SQLDialect { configuration.dialect }

    let writer: ConnectionPool
    let readers: ConnectionPool?
    let logger: Logger
    /// The caller pins `statement_timeout` in every transaction's prelude itself (TenantDatabase).
    private let pinsStatementTimeout: Bool

    /// Creates the database and its pool; connects on first use.
    public convenience init(configuration: DatabaseConfiguration, logger: Logger) {
        self.init(configuration: configuration, logger: logger, pinsStatementTimeout: false)
    }

    /// Creates the database; with `pinsStatementTimeout` the caller's transaction preludes set
    /// `statement_timeout` to ``DatabaseConfiguration/statementTimeout`` themselves, so it is
    /// sent only when a ``withDeadline(_:_:)`` scope shortens it.
    package init(configuration: DatabaseConfiguration, logger: Logger, pinsStatementTimeout: Bool) {
        self.configuration = configuration
        self.logger = logger
        self.pinsStatementTimeout = pinsStatementTimeout
        let timeout = configuration.acquireTimeout
        switch configuration.target {
        case .postgres(let conninfo):
            let applicationName = configuration.applicationName
            let target = configuration.redactedURL
            let callTimeout = configuration.effectiveCallTimeout
            writer = ConnectionPool(
                name: "postgres",
                maximumConnections: max(1, configuration.maximumConnections),
                acquireTimeout: timeout,
                metricsRole: configuration.metricsRole,
                logger: logger
            ) { deadline in
                try await PostgresConnection.connect(
                    conninfo: conninfo, applicationName: applicationName, redactedTarget: target, callTimeout: callTimeout, deadline: deadline
                )
            }
            readers = nil
        case .sqlite(let path):
            let sqlite = configuration.sqlite
            writer = ConnectionPool(
                name: "sqlite-writer", maximumConnections: 1, acquireTimeout: timeout, metricsRole: configuration.metricsRole, logger: logger
            ) { _ in
                try await SQLiteConnection.open(path: path, readOnly: false, configuration: sqlite, role: .writer)
            }
            if sqlite.isInMemory {
                readers = nil  // each in-memory connection would be a different database
            } else {
                readers = ConnectionPool(
                    name: "sqlite-readers",
                    maximumConnections: max(1, configuration.maximumConnections),
                    acquireTimeout: timeout,
                    metricsRole: configuration.metricsRole,
                    logger: logger
                ) { _ in
                    try await SQLiteConnection.open(path: path, readOnly: true, configuration: sqlite, role: .reader)
                }
            }
        }
    }

    /// Parses `url` and creates the database.
    public convenience init(url: String, logger: Logger) throws(DatabaseError) {
        self.init(configuration: try DatabaseConfiguration(url: url), logger: logger)
    }

    /// How many times this process has waited for a Postgres server's answer: one per round
    /// trip. For benchmarks and diagnostics.
    package static var postgresRoundTrips: Int { SocketPoller.waits.load(ordering: .relaxed) }

    /// The executor of the Postgres driver's I/O thread, or `nil` on SQLite.
    ///
    /// Optional tuning: a task that runs under
    /// `withTaskExecutorPreference(db.taskExecutor) { ... }` keeps its statements, its waits for
    /// the server and its result parsing on that one thread, so no other thread is woken per
    /// statement (the default hands every answer from the I/O thread to Swift's global pool).
    /// Only non-blocking work belongs there: never block, sleep synchronously or run long
    /// computations inside such a scope, or every connection's I/O waits.
    public var taskExecutor: (any TaskExecutor)? {
        dialect == .postgres ? SocketPoller.shared : nil
    }

    // MARK: Leasing

    /// Leases a connection for several statements outside a transaction (each commits on its
    /// own). The handle is valid only inside `body`.
    public func withConnection<T>(_ body: (borrowing DatabaseConnection) async throws -> T) async throws -> T {
        try await Self.lease(from: writer, body)
    }

    /// Leases a read-only connection: a reader beside the writer on SQLite files, a pooled
    /// connection on Postgres. Writes through it fail.
    public func read<T>(_ body: (borrowing DatabaseConnection) async throws -> T) async throws -> T {
        try await Self.lease(from: readers ?? writer, body)
    }

    /// Leases a connection from `pool` as a handle that ends with `body`.
    private static func lease<T>(
        from pool: ConnectionPool,
        _ body: (borrowing DatabaseConnection) async throws -> T
    ) async throws -> T {
        try await pool.withConnection { driver in
            let lease = Lease(driver)
            defer { lease.end() }
            return try await body(DatabaseConnection(lease: lease))
        }
    }

    /// Runs `body` in a transaction: committed when `body` returns, rolled back when it throws.
    ///
    /// The handle cannot leave the closure (it is non-copyable and only borrowed) and refuses
    /// use after the closure returns. If a statement failed inside `body` and the error was
    /// caught, Postgres has aborted the transaction: the commit then throws
    /// `.transactionAborted` instead of pretending to succeed.
    @discardableResult
    public func transaction<T>(_ body: (borrowing Transaction) async throws -> T) async throws -> T {
        let prelude = timeoutPrelude()
        return try await writer.withConnection { driver in
            try await Self.transaction(on: driver, prelude: prelude, deferred: false, body)
        }
    }

    /// The `statement_timeout` a transaction beginning now sends with its `BEGIN`, or nothing:
    /// on Postgres, the configured ``DatabaseConfiguration/statementTimeout`` (unless the caller
    /// pins it itself), shortened to the time left in a ``withDeadline(_:_:)`` scope.
    func timeoutPrelude() -> [SQLQuery] {
        guard dialect == .postgres else { return [] }
        let role = configuration.statementTimeout
        var timeout = pinsStatementTimeout ? nil : role
        if let scoped = CallDeadline.scoped {
            // A little under the time left, so the server's clean cancel (57014, the connection
            // kept) normally comes before the client's deadline (the connection closed).
            let left = scoped - .now
            let margin = Swift.max(Duration.milliseconds(50), left / 10)
            let serverSide = left - margin
            if role.map({ serverSide < $0 }) ?? true { timeout = Swift.max(serverSide, .milliseconds(1)) }
        }
        guard let timeout else { return [] }
        // An integer of milliseconds (at least 1: 0 would mean no limit), so a literal.
        let milliseconds = Swift.max(1, timeout.milliseconds)
        return [SQLQuery(unsafeSQL: "SELECT pg_catalog.set_config('statement_timeout', '\(milliseconds)ms', true)")]
    }

    /// Runs `body` in a transaction on a leased driver. `prelude` statements are sent in the
    /// same round trip as `BEGIN` (the tenancy layer puts its `set_config` there).
    /// With `deferred`, `BEGIN` and the prelude wait for the body's first statement and go out
    /// with it; a body that runs no statement then opens no transaction at all.
    static func transaction<T>(
        on driver: any ConnectionDriver,
        begin: String? = nil,
        prelude: [SQLQuery],
        deferred: Bool,
        _ body: (borrowing Transaction) async throws -> T
    ) async throws -> T {
        let begin = begin ?? (driver.dialect == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN")
        let statements = [(sql: begin, binds: [SQLValue]())] + prelude.map { $0.render(for: driver.dialect) }
        let lease: Lease
        if deferred {
            lease = Lease(driver, pending: statements)
        } else {
            do {
                _ = try await driver.pipeline(statements)
            } catch {
                if driver.transactionState() != .idle { await rollback(driver) }
                throw error
            }
            lease = Lease(driver)
        }
        let value: T
        do {
            value = try await body(Transaction(lease: lease))
        } catch {
            lease.end()
            if !driver.isBroken, !lease.neverStarted { await rollback(driver) }
            throw error
        }
        lease.end()
        if lease.neverStarted { return value }
        // Postgres aborts a transaction at its first failed statement; SQLite would carry on and
        // commit the statements that worked. Refuse to commit on both, so a caught error never
        // turns into a half-applied transaction.
        if lease.sawFailure || driver.transactionState() == .failed {
            await rollback(driver)
            throw DatabaseError(
                code: .transactionAborted,
                detail: "a statement failed inside the transaction; it was rolled back, not committed"
            )
        }
        let commit: QueryResult
        do {
            commit = try await driver.execute("COMMIT", [])
        } catch {
            // Not sent (the deadline had passed) or failed: never leave the transaction open.
            if !driver.isBroken, driver.transactionState() != .idle { await rollback(driver) }
            throw error
        }
        if commit.commandTag == "ROLLBACK" {
            throw DatabaseError(code: .transactionAborted, detail: "the server rolled the transaction back at commit")
        }
        return value
    }

    /// Rolls back after a failure, with a short deadline of its own: also when the caller's
    /// deadline is what failed. A rollback that fails leaves the connection to the pool, which
    /// closes a connection returned inside a transaction.
    static func rollback(_ driver: any ConnectionDriver) async {
        // A broken connection (lost, or retired after a timeout) is closed by the pool, which
        // ends its transaction on the server; a ROLLBACK there would only wait.
        guard !driver.isBroken else { return }
        await CallDeadline.forCleanup { _ = try? await driver.execute("ROLLBACK", []) }
    }

    // MARK: Scoped transactions (for RestartixTenancy)

    /// A transaction whose `prelude` (the tenancy layer's `set_config`) goes out in the same
    /// round trip as `BEGIN` and the body's first statement. A body that runs no statement
    /// sends nothing at all. `begin` replaces the dialect's `BEGIN` statement.
    package func transaction<T>(
        begin: String? = nil,
        deferredPrelude prelude: [SQLQuery],
        _ body: (borrowing Transaction) async throws -> T
    ) async throws -> T {
        let prelude = prelude + timeoutPrelude()
        return try await writer.withConnection { driver in
            try await Self.transaction(on: driver, begin: begin, prelude: prelude, deferred: true, body)
        }
    }

    /// One statement in its own transaction, sent with `BEGIN`, `prelude` and `COMMIT` in a
    /// single round trip (Postgres pipeline mode; in order on SQLite). Returns its result.
    package func pipelinedTransaction(begin: String? = nil, prelude: [SQLQuery], statement: SQLQuery) async throws -> QueryResult {
        let prelude = prelude + timeoutPrelude()
        return try await writer.withConnection { driver in
            let dialect = driver.dialect
            let begin = begin ?? (dialect == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN")
            let statements = [(sql: begin, binds: [SQLValue]())]
                + prelude.map { $0.render(for: dialect) }
                + [statement.render(for: dialect), (sql: "COMMIT", binds: [SQLValue]())]
            let results: [QueryResult]
            do {
                results = try await driver.pipeline(statements)
            } catch {
                if !driver.isBroken, driver.transactionState() != .idle { await Self.rollback(driver) }
                throw error
            }
            if results.last?.commandTag == "ROLLBACK" {
                throw DatabaseError(code: .transactionAborted, detail: "the server rolled the transaction back at commit")
            }
            return results[results.count - 2]
        }
    }

    // MARK: One-statement conveniences

    /// Runs one statement on a pooled connection and returns its rows.
    @discardableResult
    public func query(_ query: SQLQuery) async throws -> [SQLRow] {
        try await withConnection { try await $0.query(query) }
    }

    /// Runs one statement on a pooled connection and returns the number of rows it changed.
    @discardableResult
    public func execute(_ query: SQLQuery) async throws -> Int {
        try await withConnection { try await $0.execute(query) }
    }

    // MARK: Lifecycle

    /// Waits for graceful shutdown, then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes idle connections and fails later acquires with `.poolClosed`.
    public func shutdown() async {
        await writer.shutdown()
        await readers?.shutdown()
    }
}

/// The lease behind a connection or transaction handle; ends when the closure returns.
package final class Lease: Sendable {
    let driver: any ConnectionDriver
    private let open = Atomic<Bool>(true)
    private let failed = Atomic<Bool>(false)
    private let startFailed = Atomic<Bool>(false)
    /// Statements (a deferred `BEGIN` and prelude) sent in front of the first statement.
    private let pending: Mutex<[(sql: String, binds: [SQLValue])]?>

    init(_ driver: any ConnectionDriver, pending: [(sql: String, binds: [SQLValue])]? = nil) {
        self.driver = driver
        self.pending = Mutex(pending)
    }

    /// A deferred transaction whose body ran no statement: nothing was sent.
    var neverStarted: Bool { pending.withLock { $0 != nil } }

    /// Takes the deferred statements, once.
    private func takePending() -> [(sql: String, binds: [SQLValue])] {
        pending.withLock { pending in
            defer { pending = nil }
            return pending ?? []
        }
    }

    func end() { open.store(false, ordering: .releasing) }

    /// Whether a statement failed under this lease (a transaction then refuses to commit).
    var sawFailure: Bool { failed.load(ordering: .acquiring) }

    /// Runs statements on the leased driver, remembering a failure. Once the deferred `BEGIN`
    /// and prelude failed to go out with a statement, nothing more runs under this lease: a
    /// caught error must not let later statements run outside the transaction or its context.
    private func run<T>(_ body: (any ConnectionDriver, _ pending: [(sql: String, binds: [SQLValue])]) async throws -> T) async throws -> T {
        let driver = try live()
        guard !startFailed.load(ordering: .acquiring) else {
            throw DatabaseError(code: .transactionAborted, detail: "the transaction could not start; nothing more runs in it")
        }
        let pending = takePending()
        do {
            return try await body(driver, pending)
        } catch {
            failed.store(true, ordering: .releasing)
            if !pending.isEmpty { startFailed.store(true, ordering: .releasing) }
            throw error
        }
    }

    func execute(_ query: SQLQuery) async throws -> QueryResult {
        try await run { driver, pending in
            if pending.isEmpty { return try await driver.execute(query) }
            return try await driver.pipeline(pending + [query.render(for: driver.dialect)]).last!
        }
    }

    func pipeline(_ queries: [SQLQuery]) async throws -> [QueryResult] {
        try await run { driver, pending in
            let results = try await driver.pipeline(pending + queries.map { $0.render(for: driver.dialect) })
            return Array(results.dropFirst(pending.count))
        }
    }

    func executeScript(_ sql: String) async throws {
        try await run { driver, pending in
            if !pending.isEmpty { _ = try await driver.pipeline(pending) }
            try await driver.executeScript(sql)
        }
    }

    func live() throws(DatabaseError) -> any ConnectionDriver {
        guard open.load(ordering: .acquiring) else { throw DatabaseError.closedHandle }
        return driver
    }
}

/// Something statements can run on: a leased connection or a transaction.
public protocol SQLExecutor: ~Copyable {
    /// The dialect the statements are rendered for.
    var dialect: SQLDialect { get }
    /// Runs one statement and returns its full result.
    func run(_ query: SQLQuery) async throws -> QueryResult
    /// Sends several statements in one round trip (Postgres pipeline mode) and returns one
    /// result per statement. When one fails, the error is thrown and later ones did not run.
    func pipeline(_ queries: [SQLQuery]) async throws -> [QueryResult]
}

extension SQLExecutor where Self: ~Copyable {
    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ query: SQLQuery) async throws -> [SQLRow] {
        try await run(query).rows
    }

    /// Runs one statement and returns its first row, if any.
    public func first(_ query: SQLQuery) async throws -> SQLRow? {
        try await run(query).rows.first
    }

    /// Runs one statement and returns the number of rows it inserted, updated or deleted.
    @discardableResult
    public func execute(_ query: SQLQuery) async throws -> Int {
        try await run(query).affectedRows
    }
}

/// A leased connection, valid only inside ``Database/withConnection(_:)``.
public struct DatabaseConnection: SQLExecutor, ~Copyable, Sendable {
    let lease: Lease

    public var dialect: SQLDialect { lease.driver.dialect }

    public func run(_ query: SQLQuery) async throws -> QueryResult {
        try await lease.execute(query)
    }

    public func pipeline(_ queries: [SQLQuery]) async throws -> [QueryResult] {
        try await lease.pipeline(queries)
    }

    /// Runs a script of several statements with no binds (DDL, migrations).
    public func executeScript(_ sql: String) async throws {
        try await lease.executeScript(sql)
    }
}

/// An open transaction, valid only inside ``Database/transaction(_:)``.
///
/// If any statement fails inside the transaction, the transaction can no longer commit: even
/// when the error is caught, ``Database/transaction(_:)`` rolls back and throws
/// `.transactionAborted` (Postgres behaves so by itself; the kit makes SQLite agree).
public struct Transaction: SQLExecutor, ~Copyable, Sendable {
    package let lease: Lease

    package init(lease: Lease) { self.lease = lease }

    public var dialect: SQLDialect { lease.driver.dialect }

    public func run(_ query: SQLQuery) async throws -> QueryResult {
        try await lease.execute(query)
    }

    public func pipeline(_ queries: [SQLQuery]) async throws -> [QueryResult] {
        try await lease.pipeline(queries)
    }

    /// Runs a script of several statements with no binds (DDL, migrations).
    public func executeScript(_ sql: String) async throws {
        try await lease.executeScript(sql)
    }
}
