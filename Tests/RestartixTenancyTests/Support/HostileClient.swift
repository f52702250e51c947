import Foundation
import RestartixPlatform
import RestartixKit
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// Where the adversarial suites put an attacker and its victim on the SAME connection: on
/// SQLite the single writer connection; on Postgres direct a pool of one connection; through
/// PgBouncer the `restartix_solo` database alias, a pool of ONE server connection per role
/// (`Scripts/services`), so whatever the attacker leaves on the server connection is certainly
/// there for the next client. The probes also compare `pg_backend_pid()` to prove it.
struct HostileDatabases: Sendable {
    let backend: TenancyBackend
    let app: TenantDatabase
    let admin: AdminDatabase
    /// App-role connections that bypass the kit (what arbitrary SQL on the app role looks like).
    let raw: Database
    let sqlitePath: String?

    static func open(_ backend: TenancyBackend) async throws -> HostileDatabases {
        switch backend {
        case .sqlite:
            let databases = try await backend.open(maximumConnections: 1)
            return HostileDatabases(backend: backend, app: databases.app, admin: databases.admin, raw: databases.raw, sqlitePath: databases.sqlitePath)
        case .postgresDirect, .pgbouncer:
            try await SchemaOnce.shared.prepare()
            let url = try TenancyBackend.require(backend == .pgbouncer ? "DATABASE_APP_SOLO_URL" : "DATABASE_APP_DIRECT_URL")
            var app = try DatabaseConfiguration(url: url)
            app.maximumConnections = 1
            return HostileDatabases(
                backend: backend,
                app: TenantDatabase(configuration: app, tables: PlatformSchema.tenantTables, logger: TenancyBackend.logger),
                admin: AdminDatabase(configuration: try DatabaseConfiguration(url: TenancyBackend.require(backend.adminURLName)), logger: TenancyBackend.logger),
                raw: Database(configuration: app, logger: TenancyBackend.logger),
                sqlitePath: nil
            )
        }
    }

    /// Clears whatever an attacker left on the (shared) connection, then closes the pools.
    func close() async {
        if backend != .sqlite { _ = try? await raw.execute("DISCARD ALL") }
        await app.shutdown()
        await admin.shutdown()
        await raw.shutdown()
        if let sqlitePath {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlitePath + suffix) }
        }
    }

    /// Runs `body`, closing the pools whether it throws or not.
    func run(_ body: (HostileDatabases) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            await close()
            throw error
        }
        await close()
    }
}

/// What a refused attack looks like: the error class the database answered with.
enum Refusal: Equatable, CustomStringConvertible {
    case privilege
    case rowLevelSecurity
    case unique
    case other(String)
    case none(Int)

    var description: String {
        switch self {
        case .privilege: "insufficient privilege"
        case .rowLevelSecurity: "row-level security"
        case .unique: "unique violation"
        case .other(let text): "other: \(text)"
        case .none(let rows): "accepted (\(rows) rows)"
        }
    }

    /// Runs `statement` in a transaction under `context` and classifies the outcome; the
    /// transaction is rolled back either way.
    static func of(_ statement: SQLQuery, as context: TenantContext, on app: TenantDatabase) async -> Refusal {
        var outcome = Refusal.other("not run")
        do {
            try await app.withTenant(context) { tx in
                outcome = await classify { try await tx.execute(statement) }
                throw Rollback()
            }
        } catch is Rollback {
        } catch {
            outcome = .other("\(error)")
        }
        return outcome
    }

    static func classify(_ body: () async throws -> Int) async -> Refusal {
        do {
            return .none(try await body())
        } catch let error as DatabaseError {
            switch error.code {
            case .insufficientPrivilege: return .privilege
            case .rowLevelSecurityViolation: return .rowLevelSecurity
            case .uniqueViolation: return .unique
            default: return .other("\(error.code) \(error.serverMessage ?? "")")
            }
        } catch {
            return .other("\(error)")
        }
    }
}

/// Everything an attack could change about two clinics, as text to compare before and after:
/// every row id of every tenant table, the columns that carry rights (roles, quotas, session
/// windows, domains, audit attribution), and the users' platform-admin flags.
enum ClinicState {
    static let columns: [String: [String]] = [
        "organizations": ["id", "status"],
        "memberships": ["id", "user_id", "role"],
        "organization_domains": ["id", "organization_id", "domain", "verified_at"],
        "patients": ["id", "organization_id", "user_id"],
        "usage_quotas": ["id", "limit_units", "current_units", "period_start_at", "period_end_at"],
        "usage_records": ["id", "units"],
        "usage_summaries": ["id", "total_units", "closed_at"],
        "break_glass_sessions": ["id", "user_id", "expires_at", "closed_at"],
        "patient_impersonation_sessions": ["id", "user_id", "expires_at", "closed_at"],
        "audit_log": ["id", "actor_user_id", "actor_kind", "action_context", "created_at"],
        "appointments": ["id", "patient_id", "patient_user_id", "specialist_user_id", "starts_at", "status", "booked_slot", "fence"],
        "telemetry_sessions": ["id", "patient_id", "patient_user_id", "aggregated_at"],
        "patient_exercise_logs": ["id", "patient_id", "patient_user_id", "done_count", "last_session_id"],
        "files": ["id", "owner_user_id", "patient_id", "patient_user_id", "object_key", "state"],
    ]

    static func snapshot(_ admin: AdminDatabase, clinics: [UUID], users: [UUID]) async throws -> [String: [String]] {
        try await admin.unscoped(reason: "adversarial test: state snapshot", actor: .system("tenancy-tests")) { tx in
            var state: [String: [String]] = [:]
            for table in MatrixTable.all {
                let columns = Self.columns[table.name] ?? ["id"]
                let text = columns.map { "coalesce(CAST(\($0) AS TEXT), '-')" }.joined(separator: " || '|' || ")
                let rows = try await tx.query("""
                    SELECT \(unsafeRaw: text) AS row FROM \(identifier: table.name) \
                    WHERE \(identifier: table.tenantColumn) IN (\(clinics[0]), \(clinics[1])) ORDER BY 1
                    """)
                state[table.name] = try rows.map { try $0.decode("row", as: String.self) }
            }
            var userRows: [String] = []
            for user in users {
                let row = try await tx.first("SELECT CAST(is_platform_admin AS TEXT) AS admin FROM users WHERE id = \(user)")
                userRows.append("\(user.lowercasedString)|\(try row?.decode("admin", as: String.self) ?? "gone")")
            }
            state["users"] = userRows
            return state
        }
    }
}
