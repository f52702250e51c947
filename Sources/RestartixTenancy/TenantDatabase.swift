import Foundation
public import Logging
public import RestartixKit
public import ServiceLifecycle

/// The app database: every statement runs inside one clinic's context, or not at all.
///
/// ```swift
/// let app = TenantDatabase(configuration: try DatabaseConfiguration(url: appURL), tables: PlatformSchema.tenantTables, logger: logger)
/// try await app.verifyIsolation()          // at boot: refuse to start on an unsafe database
/// let rows = try await app.withTenant(context) { tx in
///     try await tx.query("SELECT id FROM patients WHERE deleted_at IS NULL")
/// }
/// ```
///
/// There is no way to run a statement without a ``TenantContext``: the type exposes no
/// connection, no context-free query and not the underlying ``Database``. Each transaction opens
/// with `SELECT set_config('app.current_org_id', $1, true), set_config('app.current_user_id',
/// $2, true), set_config('app.current_role', $3, true)` (bound values), sent in the same round
/// trip as `BEGIN` and the body's first statement. The settings end with the transaction, so
/// a pooled server connection (PgBouncer in transaction mode) never carries a tenant into the
/// next transaction; the policies turn the '' it holds afterwards into "no rows".
///
/// Connect it as the restricted app role (`DATABASE_APP_URL`), which owns nothing and has no
/// BYPASSRLS; ``verifyIsolation()`` checks that.
public final class TenantDatabase: Sendable, Service {
    private let database: Database

    /// Creates the app database; connects on first use.
    ///
    /// On SQLite the connections are set up as app connections (see Documentation/RestartixTenancy.md):
    /// the policy views apply the app rules and an authorizer refuses direct access to the rows
    /// behind them, DDL and PRAGMA. Any `connectionSetup` of your own still runs.
    ///
    /// `tables` is the schema's tenant-table registry (the platform's is
    /// `PlatformSchema.tenantTables`): on SQLite the authorizer grants exactly what it states,
    /// and ``verifyIsolation()`` checks the database against it.
    ///
    /// `settings` are the transaction-local settings every transaction pins on Postgres (the
    /// schema tables resolve in, the statement, lock and idle timeouts); see
    /// ``TenantSessionSettings``.
    public init(
        configuration: DatabaseConfiguration, tables: TenantTables, settings: TenantSessionSettings = TenantSessionSettings(), logger: Logger
    ) {
        var configuration = configuration
        if configuration.metricsRole == nil { configuration.metricsRole = "app" }
        SQLiteTenancy.configure(&configuration, tables: tables)
        self.tables = tables
        // The pinned settings send the statement timeout; the call budget follows from it.
        configuration.statementTimeout = settings.statementTimeout
        self.database = Database(configuration: configuration, logger: logger, pinsStatementTimeout: true)
        self.settings = settings
        self.pinned = SQLQuery(unsafeSQL: settings.pinnedSQL)
    }

    /// Parses `url` and creates the app database.
    public convenience init(
        url: String, tables: TenantTables, settings: TenantSessionSettings = TenantSessionSettings(), logger: Logger
    ) throws(DatabaseError) {
        self.init(configuration: try DatabaseConfiguration(url: url), tables: tables, settings: settings, logger: logger)
    }

    /// The schema's tenant-table registry.
    public let tables: TenantTables

    /// The transaction-local settings every transaction pins.
    public let settings: TenantSessionSettings
    /// Their `set_config` calls, rendered once (constants of the configuration, not binds).
    private let pinned: SQLQuery

    /// The SQL dialect spoken.
    public var dialect: SQLDialect { database.dialect }

    /// The Postgres driver's I/O executor (see ``Database/taskExecutor``), or `nil`.
    public var taskExecutor: (any TaskExecutor)? { database.taskExecutor }

    /// Runs `body` in a transaction scoped to `context`: committed when it returns, rolled back
    /// when it throws. The handle cannot leave the closure and refuses use afterwards.
    ///
    /// `BEGIN`, the context and the first statement of `body` go out in one round trip; the
    /// commit is a second. For one statement, ``query(_:_:)`` and ``execute(_:_:)`` need only one.
    ///
    /// Under a break-glass or impersonation context the first statement, in that same round
    /// trip, appends the access audit row, and only if the session is still open (not closed,
    /// not expired by the database's clock): otherwise the transaction rolls back before `body`
    /// runs and the call throws ``TenancyError/Code/sessionNotOpen``.
    @discardableResult
    public func withTenant<T>(
        _ context: TenantContext,
        _ body: (borrowing TenantTransaction) async throws -> T
    ) async throws -> T {
        try await database.transaction(begin: Self.begin(dialect), deferredPrelude: [contextStatement(context)]) { tx in
            let transaction = TenantTransaction(lease: tx.lease, context: context)
            if let gate = ElevatedSessions.accessGate(context, dialect: tx.dialect) {
                guard try await transaction.execute(gate) == 1 else {
                    throw TenancyError(.sessionNotOpen, "the \(context.actionContext.auditValue) session is closed, expired or not this user's")
                }
            }
            return try await body(transaction)
        }
    }

    /// Runs one statement in its own transaction scoped to `context` and returns its rows:
    /// `BEGIN`, the context, the statement and `COMMIT` in a single round trip (see
    /// ``run(_:_:)`` for elevated contexts).
    @discardableResult
    public func query(_ context: TenantContext, _ query: SQLQuery) async throws -> [SQLRow] {
        try await run(context, query).rows
    }

    /// Runs one statement in its own transaction scoped to `context` and returns how many rows
    /// it inserted, updated or deleted; one round trip (see ``run(_:_:)`` for elevated contexts).
    @discardableResult
    public func execute(_ context: TenantContext, _ query: SQLQuery) async throws -> Int {
        try await run(context, query).affectedRows
    }

    /// Runs one statement in its own transaction scoped to `context` and returns its full
    /// result; one round trip.
    ///
    /// Under a break-glass or impersonation context this is ``withTenant(_:_:)`` with one
    /// statement: three round trips (`BEGIN`, the context and the session check with its audit
    /// row; the statement; `COMMIT`), so that nothing runs unless the session is open.
    public func run(_ context: TenantContext, _ query: SQLQuery) async throws -> QueryResult {
        if context.actionContext.isElevated {
            return try await withTenant(context) { tx in try await tx.run(query) }
        }
        return try await database.pipelinedTransaction(begin: Self.begin(dialect), prelude: [contextStatement(context)], statement: query)
    }

    /// What opens a transaction under `context`, exactly as sent: the `BEGIN` statement and
    /// the context statement rendered for this database's dialect. For tools in this package
    /// that replay the kit's SQL elsewhere (the tenancy benchmark's pgbench script).
    package func openingStatements(_ context: TenantContext) -> (begin: String, context: (sql: String, binds: [SQLValue])) {
        (Self.begin(dialect) ?? (dialect == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN"), contextStatement(context).render(for: dialect))
    }

    /// The boot check: throws ``TenancyError/Code/unsafeDatabase`` naming every problem when
    /// this connection's role could escape row-level security (see ``IsolationCheck``), or when
    /// the database's tenant tables or (on Postgres) the role's grants on them differ from
    /// ``tables``.
    public func verifyIsolation() async throws {
        try await IsolationCheck.verify(database, role: .app, schema: settings.schema, tables: tables)
    }

    /// Runs until graceful shutdown, then closes the pool.
    public func run() async throws { try await database.run() }

    /// Closes idle connections; later transactions fail with `.poolClosed`.
    public func shutdown() async { await database.shutdown() }

    /// `BEGIN` with the isolation level and access mode spelled out on Postgres, so that a
    /// `default_transaction_read_only` or `default_transaction_isolation` an earlier client left
    /// on a pooled server connection changes nothing.
    static func begin(_ dialect: SQLDialect) -> String? {
        dialect == .postgres ? "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE" : nil
    }

    /// The one statement that sets a context, transaction-locally and with bound values: every
    /// setting a policy reads (`app.session_id` is '' outside an elevated context, and on
    /// Postgres `app.unscoped` is '' too), so nothing an earlier client left on a pooled
    /// connection with a session-level `set_config` or `SET` is obeyed; and on Postgres the
    /// pinned `search_path`, `row_security` and the timeouts of ``TenantSessionSettings``.
    func contextStatement(_ context: TenantContext) -> SQLQuery {
        var statement = Self.settingsStatement(
            dialect,
            organization: context.organizationID.lowercasedString,
            user: context.userID.lowercasedString,
            role: context.role.rawValue,
            session: context.actionContext.sessionID?.lowercasedString ?? "",
            unscoped: nil
        )
        if dialect == .postgres {
            // `app.unscoped` cleared and the pinned settings: constants, so literals.
            statement.append(pinned)
        }
        return statement
    }

    /// `SELECT set_config(...)` for the settings the policies read, each transaction-local and
    /// bound, '' clearing a setting; `unscoped` is written only when given (SQLite app
    /// connections lock it unset).
    ///
    /// On Postgres the function is named `pg_catalog.set_config`: a `search_path` an earlier
    /// client left on the pooled connection, naming a schema with a `set_config` of its own,
    /// must not get to answer the very statement that pins the path. (SQLite has no schemas.)
    static func settingsStatement(
        _ dialect: SQLDialect, organization: String, user: String, role: String, session: String, unscoped: String?
    ) -> SQLQuery {
        let function = dialect == .postgres ? "pg_catalog.set_config" : "set_config"
        var statement: SQLQuery = """
            SELECT \(unsafeRaw: function)('app.current_org_id', \(organization), true), \
            \(unsafeRaw: function)('app.current_user_id', \(user), true), \
            \(unsafeRaw: function)('app.current_role', \(role), true)
            """
        statement.append(session.isEmpty
            ? ", \(unsafeRaw: function)('app.session_id', '', true)"
            : ", \(unsafeRaw: function)('app.session_id', \(session), true)")
        if let unscoped { statement.append(", \(unsafeRaw: function)('app.unscoped', \(unscoped), true)") }
        return statement
    }
}

/// The settings every ``TenantDatabase`` transaction on Postgres pins, transaction-locally, in
/// its context statement (no extra round trip): whatever an earlier client of a pooled server
/// connection set at session level (`SET`, `set_config(..., false)`) or a role default names,
/// these hold inside the kit's transactions.
///
/// - `search_path` is `<schema>, pg_temp`: tables resolve in the schema the migrations ran
///   in (after `pg_catalog`, always searched first), and nothing in `pg_temp` (where the app
///   role cannot create anything anyway, migration 6) is searched before it.
/// - `row_security` is `on`.
/// - `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` are the
///   values below (a leaked `1ms` would otherwise fail every later client's statements), and
///   `synchronous_commit` too (a leaked `off` would acknowledge commits before they are durable).
///
/// `exit_on_error` is pinned off (a leaked `on` turns every refused statement into a dropped
/// connection) and, on PostgreSQL 17, `transaction_timeout` to none.
///
/// Settings that only change speed (planner switches, `work_mem`, `jit`) are not pinned: a
/// leaked one slows a later transaction down but cannot change what it reads or writes.
public struct TenantSessionSettings: Sendable, Hashable {
    /// The schema the platform's tables live in. Default: `public`.
    public var schema: String
    /// The longest a statement may run: a web request's budget. Default: 5 seconds. The client
    /// waits for an answer one second longer (``DatabaseConfiguration/callTimeout``, unless set)
    /// before it gives up on a server that does not answer at all.
    public var statementTimeout: Duration
    /// The longest a statement waits for a lock. Default: 3 seconds.
    public var lockTimeout: Duration
    /// The longest a transaction may sit idle between statements. Default: 30 seconds.
    public var idleInTransactionTimeout: Duration
    /// `synchronous_commit` for the transaction: a leaked `off` would let a commit be
    /// acknowledged before it is durable. Default: `on`; `remote_apply` or `remote_write` where
    /// the cluster's replication calls for it.
    public var synchronousCommit: String

    /// Settings with the defaults above.
    public init(
        schema: String = "public",
        statementTimeout: Duration = .seconds(5),
        lockTimeout: Duration = .seconds(3),
        idleInTransactionTimeout: Duration = .seconds(30),
        synchronousCommit: String = "on"
    ) {
        self.schema = schema
        self.statementTimeout = statementTimeout
        self.lockTimeout = lockTimeout
        self.idleInTransactionTimeout = idleInTransactionTimeout
        self.synchronousCommit = synchronousCommit
    }

    /// `search_path`'s value: the schema, quoted as an identifier, then `pg_temp` last
    /// (`pg_catalog`, not named, is searched first).
    var searchPath: String {
        "\"" + schema.replacingOccurrences(of: "\"", with: "\"\"") + "\", pg_temp"
    }

    static func milliseconds(_ duration: Duration) -> String { "\(max(0, duration.milliseconds))ms" }

    /// The `set_config` calls appended to the Postgres context statement, `app.unscoped`
    /// cleared first. The values are this configuration's constants, written as SQL string
    /// literals (quotes doubled) so that each transaction binds only what varies.
    var pinnedSQL: String {
        func literal(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        return ", pg_catalog.set_config('app.unscoped', '', true)"
            + ", pg_catalog.set_config('search_path', \(literal(searchPath)), true), pg_catalog.set_config('row_security', 'on', true)"
            + ", pg_catalog.set_config('statement_timeout', \(literal(Self.milliseconds(statementTimeout))), true)"
            + ", pg_catalog.set_config('lock_timeout', \(literal(Self.milliseconds(lockTimeout))), true)"
            + ", pg_catalog.set_config('idle_in_transaction_session_timeout', \(literal(Self.milliseconds(idleInTransactionTimeout))), true)"
            + ", pg_catalog.set_config('synchronous_commit', \(literal(synchronousCommit)), true)"
            // A leaked exit_on_error turns every refused statement into a dropped connection.
            + ", pg_catalog.set_config('exit_on_error', 'off', true)"
            // PostgreSQL 17's transaction_timeout (unknown to 15 and 16, hence the CASE).
            + ", CASE WHEN pg_catalog.current_setting('server_version_num')::integer >= 170000"
            + " THEN pg_catalog.set_config('transaction_timeout', '0', true) END"
    }
}

/// A transaction scoped to one clinic, valid only inside ``TenantDatabase/withTenant(_:_:)``.
public struct TenantTransaction: SQLExecutor, ~Copyable, Sendable {
    let lease: Lease
    /// The context every statement of this transaction runs under.
    public let context: TenantContext

    init(lease: Lease, context: TenantContext) {
        self.lease = lease
        self.context = context
    }

    public var dialect: SQLDialect { Transaction(lease: lease).dialect }

    public func run(_ query: SQLQuery) async throws -> QueryResult {
        try await Transaction(lease: lease).run(query)
    }

    public func pipeline(_ queries: [SQLQuery]) async throws -> [QueryResult] {
        try await Transaction(lease: lease).pipeline(queries)
    }

    /// Appends an audit row for this context's clinic and user in this transaction: it commits
    /// with the change it describes, or not at all. The action context (normal, break-glass,
    /// impersonation) comes from ``context``.
    public func audit(_ event: AuditEvent) async throws {
        try await Transaction(lease: lease).execute(event.insert(context: context))
    }
}
