/// One physical connection to a backend. Every method may block, so implementations run their
/// C calls on the connection's own ``BlockingWorker``; callers only await.
protocol ConnectionDriver: AnyObject, Sendable {
    var dialect: SQLDialect { get }

    /// Runs one statement with binds (unnamed statement on Postgres, cached prepared statement
    /// on SQLite).
    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> QueryResult

    /// Sends several statements in one round trip where the backend allows it (Postgres
    /// pipeline mode) and returns one result per statement. The first failure is thrown after
    /// the pipeline has been drained; later statements did not run.
    func pipeline(_ statements: [(sql: String, binds: [SQLValue])]) async throws -> [QueryResult]

    /// Runs a script of several statements with no binds (migrations).
    func executeScript(_ sql: String) async throws

    /// Whether the backend reports an open transaction (or a failed one awaiting rollback).
    /// Reads client-side state only; call it while holding the lease with no statement in flight.
    func transactionState() -> TransactionState

    /// A cheap check run when the pool hands the connection out.
    func isHealthy() async -> Bool

    /// Set once the connection is known to be unusable; the pool then discards it.
    var isBroken: Bool { get }

    /// Closes the connection and ends its worker thread.
    func close() async
}

enum TransactionState: Sendable {
    case idle
    case active
    case failed
    case unknown
}

extension ConnectionDriver {
    func execute(_ query: SQLQuery) async throws -> QueryResult {
        let (sql, binds) = query.render(for: dialect)
        return try await execute(sql, binds)
    }
}
