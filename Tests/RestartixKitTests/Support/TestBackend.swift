import Foundation
import Logging
import RestartixKit
import RestartixTestSupport
import Testing

/// The kit's storage suites on the shared backends (RestartixTestSupport): Postgres direct as the
/// owner (the suites create scratch tables), through PgBouncer as the admin role.
extension TestBackend {
    /// Backends to run: always SQLite; Postgres ones when configured or required.
    static var all: [TestBackend] {
        allCases.filter { $0 == .sqlite || $0.url != nil || servicesRequired }
    }

    static var postgres: [TestBackend] {
        all.filter { $0 != .sqlite }
    }

    /// The URL the test database connects with.
    var url: String? {
        switch self {
        case .sqlite: nil
        case .postgresDirect: url(.owner)
        case .pgbouncer: url(.admin)
        }
    }

    /// The owner role, direct: creates and drops scratch tables.
    static var ownerURL: String? { value("DATABASE_DIRECT_URL") }

    static let logger = Logger(label: "restartix.tests")

    /// Opens a database on this backend. SQLite uses a fresh temporary file (WAL, readers).
    func makeDatabase(
        maximumConnections: Int = 4,
        acquireTimeout: Duration = .seconds(5),
        configure: (inout DatabaseConfiguration) -> Void = { _ in }
    ) throws -> Database {
        var configuration: DatabaseConfiguration
        switch self {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory
                .appendingPathComponent("restartix-test-\(UUID().uuidString).sqlite").path
            configuration = DatabaseConfiguration(sqlitePath: path)
        case .postgresDirect:
            configuration = try DatabaseConfiguration(url: require(.owner))
        case .pgbouncer:
            configuration = try DatabaseConfiguration(url: require(.admin))
        }
        configuration.maximumConnections = maximumConnections
        configuration.acquireTimeout = acquireTimeout
        configure(&configuration)
        return Database(configuration: configuration, logger: Self.logger)
    }

    /// Creates a uniquely named table (columns in this backend's dialect; `%TABLE%` in them is
    /// replaced by the table's name), runs `body`, and drops it. On Postgres the owner creates it and grants the admin role (the PgBouncer pool's role)
    /// full access.
    /// The migrator's advisory lock for the current schema (`Migrator.lockClass`): DDL in a test
    /// takes it so it never runs beside a migration's schema-wide GRANT/REVOKE or another test's
    /// DDL on tables granted to the same role, which Postgres can answer with "tuple
    /// concurrently updated" (XX000).
    static let migrationLock = "SELECT pg_advisory_xact_lock(\(0x7278_6d67)::integer, hashtext(current_schema()));"

    func withScratchTable<T>(
        postgres postgresColumns: String,
        sqlite sqliteColumns: String,
        maximumConnections: Int = 4,
        _ body: (Database, String) async throws -> T
    ) async throws -> T {
        let table = "scratch_\(UUID().uuidString.prefix(8).lowercased())"
        let database = try makeDatabase(maximumConnections: maximumConnections)
        let postgresColumns = postgresColumns.replacingOccurrences(of: "%TABLE%", with: table)
        let sqliteColumns = sqliteColumns.replacingOccurrences(of: "%TABLE%", with: table)
        if isPostgres {
            let owner = Database(configuration: try DatabaseConfiguration(url: Self.require("DATABASE_DIRECT_URL")), logger: Self.logger)
            try await owner.withConnection { conn in
                try await conn.executeScript(
                    "BEGIN; \(Self.migrationLock) CREATE TABLE \(table) (\(postgresColumns)); GRANT ALL ON \(table) TO restartix_admin; COMMIT;"
                )
            }
            await owner.shutdown()
        } else {
            try await database.withConnection { try await $0.executeScript("CREATE TABLE \(table) (\(sqliteColumns))") }
        }
        do {
            let result = try await body(database, table)
            try await drop(table, database)
            return result
        } catch {
            try? await drop(table, database)
            throw error
        }
    }

    private func drop(_ table: String, _ database: Database) async throws {
        await database.shutdown()
        if isPostgres {
            let owner = Database(configuration: try DatabaseConfiguration(url: Self.require("DATABASE_DIRECT_URL")), logger: Self.logger)
            try await owner.withConnection { try await $0.executeScript("BEGIN; \(Self.migrationLock) DROP TABLE IF EXISTS \(table) CASCADE; COMMIT;") }
            await owner.shutdown()
        }
        if let path = database.configuration.sqliteFilePath {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
    }
}
