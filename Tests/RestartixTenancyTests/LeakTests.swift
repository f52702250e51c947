import Foundation
import RestartixKit
import RestartixTenancy
import Synchronization
import RestartixTestSupport
import Testing

/// Interleaved tenants through a real PgBouncer in transaction mode: every transaction must see
/// its own clinic's rows and nothing else, whatever ran before it on the same server connection.
@Suite("Tenant leak through a transaction-mode pooler", .timeLimit(.minutes(3)))
struct LeakTests {
    static let clinics = 50
    static let patientsPerClinic = 3
    static let tasks = 40
    static let transactionsPerTask = 260  // 10,400 in all

    struct Clinic: Sendable {
        let context: TenantContext
        let patients: Set<UUID>
    }

    struct Failure: Error {}

    final class Counters: Sendable {
        let completed = Atomic<Int>(0)
        let mismatches = Atomic<Int>(0)
    }



    @Test("50 clinics, 10,400 interleaved transactions, each sees only its own rows", arguments: TenancyBackend.all.filter { $0 == .pgbouncer })
    func interleaved(backend: TenancyBackend) async throws {
        let databases = try await backend.open(maximumConnections: 32)
        let (admin, app, raw) = (databases.admin, databases.app, databases.raw)

        var clinics: [Clinic] = []
        try await admin.unscoped(reason: "tenancy leak test fixture", actor: .system("tenancy-tests")) { tx in
            for _ in 0..<Self.clinics {
                let org = UUIDv7.generate()
                let staff = UUIDv7.generate()
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), \("l-" + org.uuidString.suffix(12).lowercased()), 'Leak test clinic')")
                try await tx.execute("INSERT INTO users (id) VALUES (\(staff))")
                var patients = Set<UUID>()
                for _ in 0..<Self.patientsPerClinic {
                    let patient = UUIDv7.generate()
                    try await tx.execute("INSERT INTO patients (id, organization_id, name) VALUES (\(patient), \(org), \(Data([0])))")
                    patients.insert(patient)
                }
                clinics.append(Clinic(context: TenantContext(organizationID: org, userID: staff, role: .assistant), patients: patients))
            }
        }
        let fixture = clinics
        let counters = Counters()

        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<Self.tasks {
                    group.addTask {
                        var random = SystemRandomNumberGenerator()
                        for step in 0..<Self.transactionsPerTask {
                            let clinic = fixture.randomElement(using: &random)!
                            let seen: Set<UUID>
                            switch (task + step) % 5 {
                            case 0:
                                // One round trip: BEGIN, context, SELECT, COMMIT.
                                let rows = try await app.query(clinic.context, "SELECT id, organization_id FROM patients")
                                seen = try Self.check(rows, clinic, counters)
                            case 1:
                                // Several statements in one transaction.
                                seen = try await app.withTenant(clinic.context) { tx in
                                    _ = try await tx.query("SELECT count(*) FROM organizations")
                                    return try Self.check(try await tx.query("SELECT id, organization_id FROM patients"), clinic, counters)
                                }
                            case 2:
                                // Throws mid-way after writing: nothing may survive or leak.
                                var inside: Set<UUID> = []
                                do {
                                    try await app.withTenant(clinic.context) { tx in
                                        try await tx.execute("UPDATE patients SET updated_at = now()")
                                        inside = try Self.check(try await tx.query("SELECT id, organization_id FROM patients"), clinic, counters)
                                        throw Failure()
                                    }
                                } catch is Failure {}
                                seen = inside
                            case 3:
                                // A statement error aborts the transaction; the connection goes back clean.
                                _ = try? await app.withTenant(clinic.context) { tx in
                                    try await tx.query("SELECT 1 / 0")
                                }
                                seen = try Self.check(try await app.query(clinic.context, "SELECT id, organization_id FROM patients"), clinic, counters)
                            default:
                                // No context on a pooled connection that just served a tenant: no
                                // rows, and no ''::uuid error either.
                                let rows = try await raw.transaction { tx in
                                    try await tx.query("SELECT id FROM patients")
                                }
                                if !rows.isEmpty { counters.mismatches.add(1, ordering: .relaxed) }
                                seen = clinic.patients
                            }
                            if seen != clinic.patients { counters.mismatches.add(1, ordering: .relaxed) }
                            counters.completed.add(1, ordering: .relaxed)
                        }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            try? await Self.remove(clinics, admin: admin)
            await databases.close()
            throw error
        }
        #expect(counters.completed.load(ordering: .relaxed) == Self.tasks * Self.transactionsPerTask)
        #expect(counters.completed.load(ordering: .relaxed) >= 10_000)
        #expect(counters.mismatches.load(ordering: .relaxed) == 0)
        try await Self.remove(clinics, admin: admin)
        await databases.close()
    }

    /// The rows' ids, counting any row of another clinic as a mismatch.
    static func check(_ rows: [SQLRow], _ clinic: Clinic, _ counters: Counters) throws -> Set<UUID> {
        var ids = Set<UUID>()
        for row in rows {
            if try row.decode("organization_id", as: UUID.self) != clinic.context.organizationID {
                counters.mismatches.add(1, ordering: .relaxed)
            }
            ids.insert(try row.decode("id", as: UUID.self))
        }
        return ids
    }

    static func remove(_ clinics: [Clinic], admin: AdminDatabase) async throws {
        try await admin.unscoped(reason: "tenancy leak test cleanup", actor: .system("tenancy-tests")) { tx in
            for clinic in clinics {
                try await tx.execute("DELETE FROM organizations WHERE id = \(clinic.context.organizationID)")
                try await tx.execute("DELETE FROM users WHERE id = \(clinic.context.userID)")
            }
        }
    }

    /// The negative control: a session-level setting (what the kit never does) on a pooled
    /// connection is seen by a later, unrelated client. If this stopped being observable, the
    /// leak test above could not catch a leak either.
    @Test("negative control: a session-level set_config leaks to a later client through PgBouncer", arguments: TenancyBackend.all.filter { $0 == .pgbouncer })
    func sessionLevelSettingLeaks(backend: TenancyBackend) async throws {
        try await SchemaOnce.shared.prepare()
        // The admin pool (not the app's), so the poisoned server connection cannot disturb the
        // app-role tests running beside this one; the admin role's policies read the same setting.
        let adminURL = try TenancyBackend.require(backend.adminURLName)
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: adminURL), logger: TenancyBackend.logger)
        let org = UUIDv7.generate()
        try await admin.unscoped(reason: "tenancy negative control fixture", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), \("n-" + org.uuidString.suffix(12).lowercased()), 'Control clinic')")
        }
        var poisoner = try DatabaseConfiguration(url: adminURL)
        poisoner.maximumConnections = 1
        let rawPoisoner = Database(configuration: poisoner, logger: TenancyBackend.logger)
        var observer = try DatabaseConfiguration(url: adminURL)
        observer.maximumConnections = 1
        let rawObserver = Database(configuration: observer, logger: TenancyBackend.logger)

        var leaked = false
        for _ in 0..<100 where !leaked {
            // Outside any transaction, is_local = false: the setting stays on the server connection.
            try await rawPoisoner.query("SELECT set_config('app.current_org_id', \(org.uuidString.lowercased()), false)")
            let rows = try await rawObserver.query("SELECT id FROM organizations WHERE id = \(org)")
            leaked = rows.count == 1
        }
        #expect(leaked, "a session-level setting should be visible to the next client on the same server connection")

        try await admin.unscoped(reason: "tenancy negative control cleanup", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("DELETE FROM organizations WHERE id = \(org)")
        }
        await rawPoisoner.shutdown()
        await rawObserver.shutdown()
        await admin.shutdown()
    }
}
