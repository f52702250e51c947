import Foundation
import Logging
import RestartixPlatform
import RestartixKit
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// Where the tenancy suites run: the shared backends (RestartixTestSupport), through the app
/// role's URL (an embedded SQLite file, Postgres direct, Postgres through PgBouncer).
typealias TenancyBackend = TestBackend

extension TestBackend {
    static var all: [TestBackend] { all(using: .app) }

    static var postgres: [TestBackend] { all.filter { $0 != .sqlite } }

    static let logger = Logger(label: "restartix.tests.tenancy")

    var appURLName: String? { urlName(.app) }

    var adminURLName: String { urlName(.admin) ?? "" }

    /// The three ways into one migrated database: the app database the kit's users get, the
    /// admin database, and a raw pool of app connections that bypasses the kit's API (what a
    /// forgotten context looks like to the database).
    struct Databases: Sendable {
        let app: TenantDatabase
        let admin: AdminDatabase
        let raw: Database
        let sqlitePath: String?

        func close() async {
            await app.shutdown()
            await admin.shutdown()
            await raw.shutdown()
            if let sqlitePath {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlitePath + suffix) }
            }
        }
    }

    func open(maximumConnections: Int = 4) async throws -> Databases {
        switch self {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-tenancy-\(UUID().uuidString).sqlite").path
            let owner = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: Self.logger)
            _ = try await Migrator(platformSchemaOn: owner, logger: Self.logger).migrate()
            await owner.shutdown()
            var app = DatabaseConfiguration(sqlitePath: path)
            app.maximumConnections = maximumConnections
            var raw = app
            SQLiteTenancy.configure(&raw, tables: PlatformSchema.tenantTables)
            return Databases(
                app: TenantDatabase(configuration: app, tables: PlatformSchema.tenantTables, logger: Self.logger),
                admin: AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: Self.logger),
                raw: Database(configuration: raw, logger: Self.logger),
                sqlitePath: path
            )
        case .postgresDirect, .pgbouncer:
            try await SchemaOnce.shared.prepare()
            var app = try DatabaseConfiguration(url: Self.require(appURLName!))
            app.maximumConnections = maximumConnections
            return Databases(
                app: TenantDatabase(configuration: app, tables: PlatformSchema.tenantTables, logger: Self.logger),
                admin: AdminDatabase(configuration: try DatabaseConfiguration(url: Self.require(adminURLName)), logger: Self.logger),
                raw: Database(configuration: app, logger: Self.logger),
                sqlitePath: nil
            )
        }
    }
}

/// Thrown to roll a transaction back after a matrix cell has been observed.
struct Rollback: Error {}

actor SchemaOnce {
    static let shared = SchemaOnce()
    private var done = false

    func prepare() async throws {
        if done { return }
        let owner = try Database(url: TenancyBackend.require("DATABASE_DIRECT_URL"), logger: TenancyBackend.logger)
        _ = try await Migrator(platformSchemaOn: owner, logger: TenancyBackend.logger).migrate()
        await owner.shutdown()
        done = true
    }
}

/// Two clinics, A and B. In A: a specialist, two patients (each with a user, a membership and
/// a patient record); in B: a specialist and one patient. For every tenant table, one row tied
/// to patient A1, one tied to patient A2, one in B. Created through the admin role's audited
/// unscoped access, removed at the end.
struct TenancyFixture: Sendable {
    struct Clinic: Sendable {
        let id: UUID
        let staffUser: UUID
        let patients: [Patient]
    }

    struct Patient: Sendable {
        let user: UUID
        let patient: UUID
        let poseSession: UUID
        let mediaSession: UUID
    }

    /// The rows of one table: tied to A1, tied to A2, in B.
    struct Rows: Sendable {
        let a1: UUID
        let a2: UUID
        let b: UUID
    }

    let a: Clinic
    let b: Clinic
    /// A user with no membership anywhere (memberships inserts use it).
    let spareUser: UUID
    let rows: [String: Rows]

    var a1: Patient { a.patients[0] }
    var a2: Patient { a.patients[1] }
    var b1: Patient { b.patients[0] }

    func context(staffOf clinic: Clinic, role: TenantRole = .specialist) -> TenantContext {
        TenantContext(organizationID: clinic.id, userID: clinic.staffUser, role: role)
    }

    func context(patient: Patient, in clinic: Clinic) -> TenantContext {
        TenantContext(organizationID: clinic.id, userID: patient.user, role: .patient)
    }

    static func make(admin: AdminDatabase) async throws -> TenancyFixture {
        func clinic(patients: Int) -> Clinic {
            Clinic(
                id: UUIDv7.generate(),
                staffUser: UUIDv7.generate(),
                patients: (0..<patients).map { _ in
                    Patient(user: UUIDv7.generate(), patient: UUIDv7.generate(), poseSession: UUIDv7.generate(), mediaSession: UUIDv7.generate())
                }
            )
        }
        let a = clinic(patients: 2)
        let b = clinic(patients: 1)
        let spare = UUIDv7.generate()
        var rows: [String: Rows] = [:]
        for table in MatrixTable.all where table.name != "organizations" {
            rows[table.name] = Rows(a1: UUIDv7.generate(), a2: UUIDv7.generate(), b: UUIDv7.generate())
        }
        rows["organizations"] = Rows(a1: a.id, a2: a.id, b: b.id)
        rows["patients"] = Rows(a1: a.patients[0].patient, a2: a.patients[1].patient, b: b.patients[0].patient)
        rows["pose_session_metrics"] = Rows(a1: a.patients[0].poseSession, a2: a.patients[1].poseSession, b: b.patients[0].poseSession)
        rows["media_session_metrics"] = Rows(a1: a.patients[0].mediaSession, a2: a.patients[1].mediaSession, b: b.patients[0].mediaSession)
        let fixture = TenancyFixture(a: a, b: b, spareUser: spare, rows: rows)

        try await admin.unscoped(reason: "tenancy test fixture", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO users (id) VALUES (\(spare))")
            for clinic in [a, b] {
                let slug = "t-" + clinic.id.uuidString.suffix(12).lowercased()
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(clinic.id), \(slug), 'Test clinic')")
                try await tx.execute("INSERT INTO users (id) VALUES (\(clinic.staffUser))")
                try await tx.execute("""
                    INSERT INTO memberships (id, organization_id, user_id, role) \
                    VALUES (\(UUIDv7.generate()), \(clinic.id), \(clinic.staffUser), 'specialist')
                    """)
                for patient in clinic.patients {
                    try await tx.execute("INSERT INTO users (id) VALUES (\(patient.user))")
                }
            }
            // Every tenant table but organizations, in dependency order: one row per patient tie.
            for table in MatrixTable.all where table.name != "organizations" {
                let ids = rows[table.name]!
                for (id, patient, clinic) in [(ids.a1, a.patients[0], a), (ids.a2, a.patients[1], a), (ids.b, b.patients[0], b)] {
                    try await tx.execute(table.insert(id: id, organization: clinic.id, tie: patient, fixture: fixture, fresh: false))
                }
            }
        }
        return fixture
    }

    func remove(admin: AdminDatabase) async throws {
        try await admin.unscoped(reason: "tenancy test fixture cleanup", actor: .system("tenancy-tests")) { tx in
            // Cascades remove every tenant row; audit rows stay (append-only by design).
            try await tx.execute("DELETE FROM organizations WHERE id IN (\(a.id), \(b.id))")
            let users = [a.staffUser, b.staffUser, spareUser] + (a.patients + b.patients).map(\.user)
            for user in users { try await tx.execute("DELETE FROM users WHERE id = \(user)") }
        }
    }
}

/// A tenant table as the registry describes it (`PlatformSchema.tenantTables`, what each role
/// may do on it), and how the matrix writes a valid row into it.
struct MatrixTable: Sendable, CustomStringConvertible {
    typealias Operation = TenantTable.Command

    /// The registry's entry: the rule the database must implement, stated once.
    let spec: TenantTable

    var name: String { spec.name }
    /// The column naming the clinic.
    var tenantColumn: String { spec.tenantColumn }
    /// Operations the app role is granted at all.
    var granted: Set<Operation> { spec.appCommands }
    /// Operations the patient role may do on rows tied to its own user.
    var patientOwn: Set<Operation> { spec.patientOwnCommands }
    /// Operations the patient role may do on every row of its clinic (rows tied to no one).
    var patientClinicWide: Set<Operation> { spec.patientClinicCommands }
    /// Granted operations a specialist (the matrix's staff member) may not do: those only a
    /// clinic's owner or admin may (memberships, domains).
    var managersOnly: Set<Operation> { spec.managerCommands }
    /// The column the matrix's UPDATE sets to itself (one the app role may update).
    var updateColumn: String? { spec.updatableColumns?.sorted().first }

    var description: String { name }

    /// Every registered tenant table; the fixture knows how to write a row into each, and
    /// traps on one it does not (a new table needs its row here as well).
    static let all: [MatrixTable] = PlatformSchema.tenantTables.tables.map(MatrixTable.init)

    /// A valid INSERT of row `id` for `organization`, tied to `tie` where the table has a
    /// patient tie. `fresh` rows avoid the unique keys that fixture rows already use.
    /// `actor` is the user writing (audit rows must name their writer).
    func insert(id: UUID, organization: UUID, tie: TenancyFixture.Patient, fixture: TenancyFixture, fresh: Bool, actor: UUID? = nil) -> SQLQuery {
        let tag = id.uuidString.suffix(12).lowercased()
        let now = Date()
        let later = now.addingTimeInterval(3600)
        switch name {
        case "organizations":
            return "INSERT INTO organizations (id, slug, name) VALUES (\(id), \("t-" + tag), 'Inserted clinic')"
        case "organization_domains":
            return "INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(id), \(organization), \(tag + ".example.test"))"
        case "memberships":
            let user = fresh ? fixture.spareUser : tie.user
            return "INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(id), \(organization), \(user), 'patient')"
        case "patients":
            let user: UUID? = tie.user
            return "INSERT INTO patients (id, organization_id, user_id, name) VALUES (\(id), \(organization), \(user), \(Data([0x01, 0x02])))"
        case "audit_log":
            return """
                INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action) \
                VALUES (\(id), \(organization), \(actor ?? tie.user), 'user', 'test.write')
                """
        case "usage_records":
            return "INSERT INTO usage_records (id, organization_id, capability, units) VALUES (\(id), \(organization), 'video', 1)"
        case "usage_quotas":
            return """
                INSERT INTO usage_quotas (id, organization_id, capability, limit_units, period_start_at, period_end_at) \
                VALUES (\(id), \(organization), \("c" + tag), 10, \(now), \(later))
                """
        case "usage_summaries":
            return """
                INSERT INTO usage_summaries (id, organization_id, capability, period_start_at, period_end_at) \
                VALUES (\(id), \(organization), \("c" + tag), \(now), \(later))
                """
        case "break_glass_sessions":
            return """
                INSERT INTO break_glass_sessions (id, organization_id, user_id, reason, expires_at) \
                VALUES (\(id), \(organization), \(tie.user), 'emergency access for a test', \(later))
                """
        case "patient_impersonation_sessions":
            return """
                INSERT INTO patient_impersonation_sessions (id, organization_id, user_id, patient_id, reason, expires_at) \
                VALUES (\(id), \(organization), \(tie.user), \(tie.patient), 'support session for a test', \(later))
                """
        case "pose_session_metrics":
            return """
                INSERT INTO pose_session_metrics (id, organization_id, patient_id, exercise, started_at, ended_at, rep_count) \
                VALUES (\(id), \(organization), \(tie.patient), 'knee_flexion', \(now), \(later), 0)
                """
        case "pose_rep_metrics":
            return """
                INSERT INTO pose_rep_metrics (id, organization_id, session_id, rep_index, start_ms, end_ms, duration_ms, \
                min_angle_degrees, max_angle_degrees, rom_degrees) \
                VALUES (\(id), \(organization), \(tie.poseSession), 0, 0, 1000, 1000, 40.0, 120.0, 80.0)
                """
        case "media_session_metrics":
            return "INSERT INTO media_session_metrics (id, organization_id, patient_id, video_id) VALUES (\(id), \(organization), \(tie.patient), 'video-1')"
        case "media_buffering_events":
            return """
                INSERT INTO media_buffering_events (id, organization_id, media_session_id, started_at_ms, duration_ms) \
                VALUES (\(id), \(organization), \(tie.mediaSession), 100, 250)
                """
        case "appointments":
            // A slot of its own (the row's id) and the first fence: no unique key of another row.
            let slot = "appt:matrix:" + id.lowercasedString
            return """
                INSERT INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, starts_at, ends_at, \
                kind, status, slot, booked_slot, fence) \
                VALUES (\(id), \(organization), \(tie.patient), \(tie.user), \(actor ?? tie.user), \(later), \(later.addingTimeInterval(1800)), \
                'in_person', 'booked', \(slot), \(slot), 1)
                """
        case "telemetry_sessions":
            return """
                INSERT INTO telemetry_sessions (id, organization_id, patient_id, patient_user_id, expires_at) \
                VALUES (\(id), \(organization), \(tie.patient), \(tie.user), \(later))
                """
        case "patient_exercise_logs":
            // An exercise of its own (the row's id): no unique key of another row.
            return """
                INSERT INTO patient_exercise_logs (id, organization_id, patient_id, patient_user_id, exercise, done_count) \
                VALUES (\(id), \(organization), \(tie.patient), \(tie.user), \("x" + tag), 1)
                """
        case "files":
            // The key is the row's own (the table checks it names the row's clinic and id).
            let key = "\(organization.lowercasedString)/patient-files/\(id.lowercasedString)"
            return """
                INSERT INTO files (id, organization_id, owner_user_id, patient_id, patient_user_id, surface, object_key, content_type, size_bytes) \
                VALUES (\(id), \(organization), \(actor ?? tie.user), \(tie.patient), \(tie.user), 'patient-files', \(key), 'image/png', 1024)
                """
        case "appointment_followups":
            // The matrix appointment of the same patient (its booking trigger wrote its
            // confirmation e-mail already): its video room, a unique key of its own.
            let appointments = fixture.rows["appointments"]!
            let appointment = tie.patient == fixture.a1.patient ? appointments.a1 : tie.patient == fixture.a2.patient ? appointments.a2 : appointments.b
            return """
                INSERT INTO appointment_followups (id, organization_id, appointment_id, kind) \
                VALUES (\(id), \(organization), \(appointment), 'video_room')
                """
        default:
            fatalError("no row factory for \(name)")
        }
    }
}

/// The boot check's problems for `app` ([] when it passes; a failure must be
/// `unsafeDatabase`); shuts `app` down.
func isolationProblems(_ app: TenantDatabase) async throws -> [String] {
    defer { Task { await app.shutdown() } }
    do {
        try await app.verifyIsolation()
        return []
    } catch let error as TenancyError {
        #expect(error.code == .unsafeDatabase)
        return error.problems
    }
}
