import ArgumentParser
import Foundation
import Logging
import RestartixKit
import RestartixTenancy

/// `restartix-jobs <subcommand>`: the scheduled and one-off jobs. Each is idempotent and safe
/// when two copies run at once.
@main
struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restartix-jobs",
        abstract: "Restartix scheduled and maintenance jobs.",
        subcommands: [Migrate.self, AuditPartitionRoll.self, ExpiredSessionsSweep.self]
    )
}

/// Where a job connects. Jobs that change the schema use the owner role on a direct connection.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: "postgres:// URL (owner role, direct — not through PgBouncer) or sqlite: URL. Default: $DATABASE_DIRECT_URL, else the embedded SQLite file."
    )
    var databaseURL: String?

    func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseConfiguration {
        if let url = databaseURL ?? environment["DATABASE_DIRECT_URL"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return try DatabaseConfiguration(url: url)
        }
        return try Self.embedded(environment: environment)
    }

    /// The embedded SQLite file (`RESTARTIX_SQLITE_PATH`, default `.restartix/restartix.sqlite`).
    static func embedded(environment: [String: String]) throws -> DatabaseConfiguration {
        let path = environment["RESTARTIX_SQLITE_PATH"] ?? ".restartix/restartix.sqlite"
        try FileManager.default.createDirectory(
            at: URL(fileURLWithPath: path).deletingLastPathComponent(),
            withIntermediateDirectories: true
        )
        return DatabaseConfiguration(sqlitePath: path)
    }
}

func makeLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
    return logger
}

/// Runs `body` with an open database and always closes it; errors become a clean exit.
func withDatabase<T>(_ options: DatabaseOptions, label: String, _ body: (Database, Logger) async throws -> T) async throws -> T {
    let logger = makeLogger(label)
    let database: Database
    do {
        database = Database(configuration: try options.configuration(), logger: logger)
    } catch {
        throw CleanExit.message(error)
    }
    do {
        let result = try await body(database, logger)
        await database.shutdown()
        return result
    } catch {
        await database.shutdown()
        throw CleanExit.message(error)
    }
}

enum CleanExit {
    /// An error printed as one line on stderr with exit status 1 (no stack, no secrets:
    /// ``DatabaseError`` descriptions never hold passwords or values).
    static func message(_ error: any Error) -> any Error {
        ValidationFailure(description: "\(error)")
    }
}

struct ValidationFailure: Error, CustomStringConvertible {
    let description: String
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending schema migrations (each once, under a lock; refuses changed ones)."
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "A folder of NNNN_name.sql files to apply instead of the kit's built-in schema.")
    var migrationsDirectory: String?

    func run() async throws {
        let report = try await withDatabase(database, label: "restartix.jobs.migrate") { db, logger in
            let set = try migrationsDirectory.map { try MigrationSet.load(directory: URL(fileURLWithPath: $0)) }
            return try await Migrator(database: db, migrations: set, logger: logger).migrate()
        }
        print("migrate: applied \(report.applied.count) (\(report.applied.map(String.init).joined(separator: ", "))), already applied \(report.alreadyApplied.count)")
    }
}

struct AuditPartitionRoll: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-partition-roll",
        abstract: "Create the monthly partitions of every partitioned table for the current and next 3 months (no-op when they exist)."
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "How many months ahead of the current one to provision.")
    var monthsAhead: Int = 3

    func validate() throws {
        guard (0...36).contains(monthsAhead) else { throw ValidationError("--months-ahead must be between 0 and 36") }
    }

    func run() async throws {
        let created = try await withDatabase(database, label: "restartix.jobs.partitions") { db, _ in
            try await PartitionRoller(database: db).roll(monthsAhead: monthsAhead)
        }
        if let created {
            print("audit-partition-roll: created \(created.values.reduce(0, +)) partitions (\(created.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))")
        } else {
            print("audit-partition-roll: SQLite has no partitions; nothing to do")
        }
    }
}

struct ExpiredSessionsSweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expired-sessions-sweep",
        abstract: "Close break-glass and impersonation sessions that expired while open (closed_at = expires_at, one system audit row each).",
        discussion: "Connects as the admin role: --database-url, else $DATABASE_URL, else the embedded SQLite file. Idempotent; safe when two run at once."
    )

    @Option(
        name: .customLong("database-url"),
        help: "postgres:// URL of the admin role (through PgBouncer is fine) or sqlite: URL. Default: $DATABASE_URL, else the embedded SQLite file."
    )
    var databaseURL: String?

    @Option(help: "Sessions closed per transaction.")
    var batchSize: Int = 500

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be between 1 and 10000") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let logger = makeLogger("restartix.jobs.expired-sessions-sweep")
        let admin: AdminDatabase
        do {
            // The admin role, not the owner: the owner has no policies, so it would see no sessions.
            let configuration = try (databaseURL ?? environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 })
                .map { try DatabaseConfiguration(url: $0) } ?? DatabaseOptions.embedded(environment: environment)
            admin = AdminDatabase(configuration: configuration, logger: logger)
        } catch {
            throw CleanExit.message(error)
        }
        do {
            let report = try await ElevatedSessions(admin: admin).sweepExpired(batchSize: batchSize)
            await admin.shutdown()
            print("expired-sessions-sweep: closed \(report.breakGlass) break-glass and \(report.impersonation) impersonation sessions")
        } catch {
            await admin.shutdown()
            throw CleanExit.message(error)
        }
    }
}
