import Foundation
import Logging
import RestartixPlatform
import RestartixCrypto
import RestartixKit
import RestartixTenancy
import RestartixTestSupport
import Testing

/// Patients' PII through the column cipher, on SQLite and Postgres, under row-level security.
extension TestBackend {
    /// The crypto suites' backends: SQLite, and Postgres direct as the app role.
    static var all: [TestBackend] { all(using: .app).filter { $0 != .pgbouncer } }
}

@Suite("Patient store", .timeLimit(.minutes(3)))
struct PatientStoreTests {
    /// The shared backends (RestartixTestSupport), as the app role: SQLite and Postgres direct.
    typealias Backend = TestBackend

    static let logger = Logger(label: "restartix.tests.crypto")

    struct World {
        let app: TenantDatabase
        let admin: AdminDatabase
        let clinics: [UUID]
        let staff: [UUID]
        let close: @Sendable () async -> Void

        func context(_ index: Int) -> TenantContext { TenantContext(organizationID: clinics[index], userID: staff[index], role: .specialist) }
    }

    static func world(_ backend: Backend) async throws -> World {
        let app: TenantDatabase, admin: AdminDatabase
        var path: String?
        switch backend {
        case .sqlite:
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-patients-\(UUID().uuidString).sqlite").path
            let owner = Database(configuration: DatabaseConfiguration(sqlitePath: file), logger: logger)
            _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
            await owner.shutdown()
            app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: file), tables: PlatformSchema.tenantTables, logger: logger)
            admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: file), logger: logger)
            path = file
        case .postgresDirect, .pgbouncer:
            let appURL = try backend.require(.app), adminURL = try backend.require(.admin)
            let owner = try Database(url: try backend.require(.owner), logger: logger)
            _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()  // idempotent, under the migrator's lock
            await owner.shutdown()
            app = try TenantDatabase(url: appURL, tables: PlatformSchema.tenantTables, logger: logger)
            admin = try AdminDatabase(url: adminURL, logger: logger)
        }
        let clinics = [UUIDv7.generate(), UUIDv7.generate()], staff = [UUIDv7.generate(), UUIDv7.generate()]
        try await admin.unscoped(reason: "patient store tests: two clinics", actor: .system("crypto-tests")) { tx in
            for (clinic, user) in zip(clinics, staff) {
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(clinic), \("p-" + clinic.uuidString.suffix(12).lowercased()), 'Clinic')")
                try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
                try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(clinic), \(user), 'specialist')")
            }
        }
        let file = path
        return World(app: app, admin: admin, clinics: clinics, staff: staff) {
            try? await admin.unscoped(reason: "patient store tests: cleanup", actor: .system("crypto-tests")) { tx in
                for (clinic, user) in zip(clinics, staff) {
                    try await tx.execute("DELETE FROM organizations WHERE id = \(clinic)")
                    try await tx.execute("DELETE FROM users WHERE id = \(user)")
                }
            }
            await app.shutdown()
            await admin.shutdown()
            if let file { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) } }
        }
    }

    @Test("PII is stored sealed, opens for its clinic only, is found by email index, and a moved value fails", arguments: Backend.all)
    func roundTrip(backend: Backend) async throws {
        let world = try await Self.world(backend)
        let store = PatientStore(cipher: ColumnCipher(keyring: Keyring.generate().keyring))
        let pii = PatientPII(name: "Ana Popescu", dateOfBirth: "1984-02-29", email: "Ana.Popescu@Example.com", phone: "+40 721 000 111")
        let (id, other) = try await world.app.withTenant(world.context(0)) { tx in
            (try await store.insert(pii, in: tx), try await store.insert(PatientPII(name: "Ion Ionescu", email: "ion@example.com"), in: tx))
        }
        let record = try await world.app.withTenant(world.context(0)) { tx in try await store.fetch(id, in: tx) }
        #expect(record?.pii == pii)
        #expect("\(record!)".contains("Ana") == false, "records print ids only")

        // The database holds no plaintext.
        let raw = try await world.app.query(world.context(0), "SELECT name, email, phone FROM patients WHERE id = \(id)")
        for column in ["name", "email", "phone"] {
            let bytes = try raw[0].decode(column, as: Data.self)
            #expect(ColumnCipher.keyID(of: bytes) == 1)
            #expect(String(decoding: bytes, as: UTF8.self).contains("Popescu") == false)
            #expect(String(decoding: bytes, as: UTF8.self).contains("721") == false)
        }
        let found = try await world.app.withTenant(world.context(0)) { tx in try await store.find(email: "  ana.popescu@example.COM ", in: tx) }
        #expect(found.map(\.id) == [id])

        // Another clinic sees nothing: row-level security, and its blind index differs anyway.
        let elsewhere = try await world.app.withTenant(world.context(1)) { tx in
            (try await store.fetch(id, in: tx), try await store.find(email: "ana.popescu@example.com", in: tx))
        }
        #expect(elsewhere.0 == nil)
        #expect(elsewhere.1.isEmpty)

        // A sealed name copied onto another row does not open there.
        try await world.app.execute(world.context(0), "UPDATE patients SET name = (SELECT p.name FROM patients p WHERE p.id = \(id)) WHERE id = \(other)")
        let moved = await #expect(throws: EncryptionError.self) {
            try await world.app.withTenant(world.context(0)) { tx in try await store.fetch(other, in: tx) }
        }
        #expect(moved?.code == .authenticationFailed)

        // Updates re-seal; bad input names the field, not the value, and writes nothing.
        var changed = pii
        changed.phone = "+40 721 999 999"
        #expect(try await world.app.withTenant(world.context(0)) { tx in try await store.update(id, to: changed, in: tx) })
        #expect(try await world.app.withTenant(world.context(0)) { tx in try await store.fetch(id, in: tx) }?.pii.phone == "+40 721 999 999")
        let before = try await world.app.query(world.context(0), "SELECT count(*) AS n FROM patients")[0].decode("n", as: Int.self)
        for (bad, field) in [
            (PatientPII(name: ""), "name"), (PatientPII(name: "X", dateOfBirth: "1984-02-30"), "date_of_birth"),
            (PatientPII(name: "X", dateOfBirth: "2999-01-01"), "date_of_birth"), (PatientPII(name: "X", email: "not-an-email"), "email"),
            (PatientPII(name: "X", phone: "call me"), "phone"),
        ] {
            let error = await #expect(throws: PatientError.self, "\(field)") {
                try await world.app.withTenant(world.context(0)) { tx in try await store.insert(bad, in: tx) }
            }
            #expect(error?.detail.hasPrefix(field) == true, "\(field): \(error?.detail ?? "")")
            #expect(error?.description.contains("not-an-email") == false)
            #expect(error?.description.contains("call me") == false)
        }
        #expect(try await world.app.query(world.context(0), "SELECT count(*) AS n FROM patients")[0].decode("n", as: Int.self) == before)
        await world.close()
    }
}
