public import Foundation
public import Logging
public import RestartixKit
public import ServiceLifecycle

/// Who does platform work: a platform administrator, a service, or a scheduled job.
public enum PlatformActor: Sendable, Hashable {
    /// A platform administrator (a `users.id`).
    case user(UUID)
    /// A service acting on its own behalf (`core-api`, `telemetry-api`).
    case service(String)
    /// A scheduled job (`expired-sessions-sweep`).
    case system(String)

    var kind: String {
        switch self {
        case .user: "user"
        case .service: "service"
        case .system: "system"
        }
    }

    var userID: UUID? {
        if case .user(let id) = self { return id }
        return nil
    }

    var name: String? {
        switch self {
        case .user: nil
        case .service(let name), .system(let name): name
        }
    }

    var actionContext: String {
        if case .system = self { return "system" }
        return "platform_admin"
    }
}

/// The admin database, for platform work and jobs: a separate type from ``TenantDatabase``,
/// connected as the admin role (`DATABASE_URL`).
///
/// The admin role is confined by row-level security too: inside
/// ``withOrganization(_:actor:_:)`` it sees one clinic. Reaching every clinic takes
/// ``unscoped(reason:actor:_:)``, which sets `app.unscoped` for that one transaction and writes
/// an audit row (who, why) in the same transaction, before the body's first statement.
public final class AdminDatabase: Sendable, Service {
    private let database: Database

    /// Creates the admin database; connects on first use. Its pool gauges carry
    /// `role="admin"` unless the configuration names another ``DatabaseConfiguration/metricsRole``.
    public init(configuration: DatabaseConfiguration, logger: Logger) {
        var configuration = configuration
        if configuration.metricsRole == nil { configuration.metricsRole = "admin" }
        self.database = Database(configuration: configuration, logger: logger)
    }

    /// Parses `url` and creates the admin database.
    public convenience init(url: String, logger: Logger) throws(DatabaseError) {
        self.init(configuration: try DatabaseConfiguration(url: url), logger: logger)
    }

    /// The SQL dialect spoken.
    public var dialect: SQLDialect { database.dialect }

    /// Platform work inside one clinic: rows of other clinics stay invisible.
    @discardableResult
    public func withOrganization<T>(
        _ organizationID: UUID,
        actor: PlatformActor,
        _ body: (borrowing AdminTransaction) async throws -> T
    ) async throws -> T {
        let prelude = TenantDatabase.settingsStatement(
            database.dialect,
            organization: organizationID.lowercasedString,
            user: actor.userID?.lowercasedString ?? "",
            role: "",
            session: "",
            unscoped: ""
        )
        return try await database.transaction(deferredPrelude: [prelude]) { tx in
            try await body(AdminTransaction(lease: tx.lease, actor: actor, organizationID: organizationID))
        }
    }

    /// Cross-clinic platform work, explicit and audited: one audit row per transaction naming
    /// the actor and `reason` (8-500 characters, one line, no PHI) goes out with `BEGIN`, and
    /// commits or rolls back with the body.
    @discardableResult
    public func unscoped<T>(
        reason: String,
        actor: PlatformActor,
        _ body: (borrowing AdminTransaction) async throws -> T
    ) async throws -> T {
        let trimmed = reason.trimmingCharacters(in: .whitespaces)
        guard (8...500).contains(trimmed.count), !trimmed.contains(where: \.isNewline) else {
            throw TenancyError(.invalidReason, "an unscoped transaction needs a reason of 8-500 characters on one line")
        }
        var metadata = ["reason": trimmed]
        if let name = actor.name { metadata["actor"] = name }
        let audit = AuditEvent(action: "platform.unscoped_access").insert(
            organizationID: nil,
            actorUserID: actor.userID,
            actorKind: actor.kind,
            actionContext: actor.actionContext,
            metadata: metadata
        )
        let prelude = TenantDatabase.settingsStatement(
            database.dialect,
            organization: "",
            user: actor.userID?.lowercasedString ?? "",
            role: "",
            session: "",
            unscoped: "on"
        )
        return try await database.transaction(deferredPrelude: [prelude, audit]) { tx in
            try await body(AdminTransaction(lease: tx.lease, actor: actor, organizationID: nil))
        }
    }

    /// The principal lookup of ``PrincipalResolver``: one fixed read across clinics (ids, a role,
    /// a status), in one round trip, with no audit row. Internal: nothing else may use it.
    func principalLookup(_ query: SQLQuery) async throws -> SQLRow? {
        let prelude = TenantDatabase.settingsStatement(database.dialect, organization: "", user: "", role: "", session: "", unscoped: "on")
        return try await database.pipelinedTransaction(prelude: [prelude], statement: query).rows.first
    }

    /// The boot check for the admin role: throws when it could bypass row-level security
    /// (superuser or BYPASSRLS), which would make ``unscoped(reason:actor:_:)`` meaningless.
    public func verifyIsolation() async throws {
        try await IsolationCheck.verify(database, role: .admin)
    }

    /// Runs until graceful shutdown, then closes the pool.
    public func run() async throws { try await database.run() }

    /// Closes idle connections; later transactions fail with `.poolClosed`.
    public func shutdown() async { await database.shutdown() }
}

/// A platform transaction, valid only inside ``AdminDatabase``'s closures.
public struct AdminTransaction: SQLExecutor, ~Copyable, Sendable {
    let lease: Lease
    /// Who is acting.
    public let actor: PlatformActor
    /// The clinic the transaction is confined to, or `nil` when unscoped.
    public let organizationID: UUID?

    init(lease: Lease, actor: PlatformActor, organizationID: UUID?) {
        self.lease = lease
        self.actor = actor
        self.organizationID = organizationID
    }

    public var dialect: SQLDialect { Transaction(lease: lease).dialect }

    public func run(_ query: SQLQuery) async throws -> QueryResult {
        try await Transaction(lease: lease).run(query)
    }

    public func pipeline(_ queries: [SQLQuery]) async throws -> [QueryResult] {
        try await Transaction(lease: lease).pipeline(queries)
    }

    /// Appends an audit row attributed to ``actor``, for `organizationID` (defaults to the
    /// transaction's clinic; `nil` for a platform-wide event).
    public func audit(_ event: AuditEvent, organizationID: UUID? = nil) async throws {
        let event = try event.validated()
        try await Transaction(lease: lease).execute(
            event.insert(
                organizationID: organizationID ?? self.organizationID,
                actorUserID: actor.userID,
                actorKind: actor.kind,
                actionContext: actor.actionContext,
                metadata: event.metadata
            )
        )
    }
}
