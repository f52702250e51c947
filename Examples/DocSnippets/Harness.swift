// What the documentation's snippets stand on: each harness gives a snippet the names it uses
// (a database, a clinic, a token...), on the embedded default or the local services, and
// cleans up. Scripts/doc-snippets wraps every ```swift block of README.md and Documentation/
// in a call to one of these (its marker comment names which); Scripts/run-examples runs them.
import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixRedis
import RestartixTelemetry
import RestartixTenancy

/// A snippet that cannot run here (its service is not configured, and not required).
struct Skipped: Error {
    let reason: String
}

enum Harness {
    static let logger: Logger = {
        var logger = Logger(label: "doc-snippets")
        logger.logLevel = .warning
        return logger
    }()

    static let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-doc-snippets-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    static func cleanUp() { try? FileManager.default.removeItem(at: scratch) }

    /// A fresh SQLite file with the platform schema.
    static func platformFile() async throws -> String {
        let path = scratch.appendingPathComponent("platform-\(UUID().uuidString).sqlite").path
        let owner = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: logger)
        try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
        await owner.shutdown()
        return path
    }

    /// A clinic with a specialist and a patient (with a user account), written through the
    /// admin role's audited unscoped access.
    struct Clinic {
        let path: String
        let id: UUID
        let staff: UUID
        let patientUser: UUID
        let patient: UUID
    }

    static func clinic() async throws -> Clinic {
        let path = try await platformFile()
        let clinic = Clinic(path: path, id: UUIDv7.generate(), staff: UUIDv7.generate(), patientUser: UUIDv7.generate(), patient: UUIDv7.generate())
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: logger)
        try await admin.unscoped(reason: "documentation snippets: a demo clinic", actor: .system("doc-snippets")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(clinic.id), 'demo-clinic', 'Demo clinic')")
            for user in [clinic.staff, clinic.patientUser] { try await tx.execute("INSERT INTO users (id) VALUES (\(user))") }
            try await tx.execute("""
                INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(clinic.id), \(clinic.staff), 'admin')
                """)
            try await tx.execute("""
                INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(clinic.id), \(clinic.patientUser), 'patient')
                """)
            try await tx.execute("""
                INSERT INTO patients (id, organization_id, user_id, name) VALUES (\(clinic.patient), \(clinic.id), \(clinic.patientUser), \(Data([1])))
                """)
        }
        await admin.shutdown()
        return clinic
    }

    // MARK: - The harnesses (Scripts/doc-snippets lists each one's closure parameters)

    static func storage(_ body: (Logger, String, String) async throws -> Void) async throws {
        try await body(logger, "sqlite::memory:", "First session notes")
    }

    static func database(_ body: (Database) async throws -> Void) async throws {
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: try await platformFile()), logger: logger)
        defer { Task { await db.shutdown() } }
        try await body(db)
    }

    /// A fresh directory for a local object store.
    static func directory(_ body: (URL) async throws -> Void) async throws {
        let url = scratch.appendingPathComponent("store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try await body(url)
    }

    static func unmigrated(_ body: (Database, Logger) async throws -> Void) async throws {
        let database = try Database(url: "sqlite::memory:", logger: logger)
        defer { Task { await database.shutdown() } }
        try await body(database, logger)
    }

    static func patients(_ body: (TenantDatabase, ColumnCipher, TenantContext) async throws -> Void) async throws {
        let clinic = try await clinic()
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: clinic.path), tables: PlatformSchema.tenantTables, logger: logger)
        defer { Task { await app.shutdown() } }
        let cipher = ColumnCipher(keyring: Keyring.generate().keyring, logger: logger)
        try await body(app, cipher, TenantContext(organizationID: clinic.id, userID: clinic.staff, role: .specialist))
    }

    static func providers(_ body: (ProviderRegistry, RedisClient?, Logger, UUID) async throws -> Void) async throws {
        let database = Database(configuration: DatabaseConfiguration(sqlitePath: try await platformFile()), logger: logger)
        defer { Task { await database.shutdown() } }
        let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: Keyring.generate().keyring, logger: logger))
        try await registry.bootstrapProviderDefaults(
            [ProviderSeed(capability: .email, kind: .ses, config: ["from_address": "noreply@clinic.example", "region": "eu-central-1"], secrets: ProviderSecrets())],
            logger: logger
        )
        try await body(registry, nil, logger, UUIDv7.generate())
    }

    static func redis(_ body: (String, Logger, String, String, String) async throws -> Void) async throws {
        guard let url = ProcessInfo.processInfo.environment["REDIS_URL"], !url.isEmpty else {
            throw Skipped(reason: "REDIS_URL is not set (Scripts/services env)")
        }
        let suffix = UUID().uuidString.prefix(8)
        // The snippet ends by waiting for an invalidation: publish one until it is heard.
        let publisher = try RedisClient(url: url, logger: logger)
        let publishing = Task {
            while !Task.isCancelled {
                _ = try? await publisher.send("PUBLISH", "providers:invalidate", "email")
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { publishing.cancel() }
        try await body(url, logger, "doc-\(suffix)", "token-\(suffix)", "doc-counter-\(suffix)")
    }

    static func telemetry(
        _ body: (Double, [Landmark], [MediaEvent], Double, UUID, UUID, [Double], [[Float]], UnsafeBufferPointer<Float>) async throws -> Void
    ) async throws {
        let landmarks = (0..<33).map { Landmark(x: 0.5 + Float($0) * 0.001, y: 0.5, z: 0, visibility: 0.9) }
        let events = [MediaEvent(.play, at: 0), MediaEvent(.playing, at: 0.4), MediaEvent(.pause, at: 10)]
        let times = (0..<30).map { Double($0) / 30 }
        let columns = (0..<132).map { column in times.map { _ in column % 4 == 3 ? Float(0.9) : Float(0.5) } }
        let frameMajor = UnsafeMutableBufferPointer<Float>.allocate(capacity: times.count * 132)
        defer { frameMajor.deallocate() }
        for frame in 0..<times.count { for column in 0..<132 { frameMajor[frame * 132 + column] = columns[column][frame] } }
        try await body(1.0, landmarks, events, 12, UUIDv7.generate(), UUIDv7.generate(), times, columns, UnsafeBufferPointer(frameMajor))
    }

    static func tenantDatabase(_ body: (String, Logger, UUID, UUID, UUID) async throws -> Void) async throws {
        let clinic = try await clinic()
        try await body("sqlite://" + clinic.path, logger, clinic.id, clinic.staff, clinic.patient)
    }

    static func tenantSettings(_ body: (DatabaseConfiguration, Logger) async throws -> Void) async throws {
        try await body(DatabaseConfiguration(sqlitePath: try await platformFile()), logger)
    }

    /// The Clerk snippet fetches the key set of `https://clerk.example.com`, which is nobody's:
    /// it runs until the verifier says the keys are unavailable, which is the outcome here.
    static func clerk(_ body: (AdminDatabase, String) async throws -> Void) async throws {
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: try await platformFile()), logger: logger)
        defer { Task { await admin.shutdown() } }
        let header = Base64URL.encode(Data(#"{"alg":"RS256","kid":"ins_demo"}"#.utf8))
        let claims = Base64URL.encode(Data(#"{"sub":"user_demo"}"#.utf8))
        do {
            try await body(admin, "\(header).\(claims).c2lnbmF0dXJl")
        } catch let error as PrincipalError where error.code == .keysUnavailable {}
    }

    static func elevated(_ body: (AdminDatabase, TenantDatabase, UUID, UUID, UUID, UUID) async throws -> Void) async throws {
        let clinic = try await clinic()
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: clinic.path), logger: logger)
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: clinic.path), tables: PlatformSchema.tenantTables, logger: logger)
        defer { Task { await admin.shutdown(); await app.shutdown() } }
        try await body(admin, app, clinic.id, clinic.staff, clinic.staff, clinic.patient)
    }

    static func principals(_ body: (PrincipalResolver, String) async throws -> Void) async throws {
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: try await platformFile()), logger: logger)
        defer { Task { await admin.shutdown() } }
        let issuer = try await LocalDevIssuer(environment: .development)
        try await body(PrincipalResolver(issuer: .localDevelopment(issuer), admin: admin), "not-a-token")
    }
}
