import ArgumentParser
import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import PlatformSupport
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// `restartix-jobs <subcommand>`: the scheduled and one-off jobs. Each is idempotent and safe
/// when two copies run at once.
@main
struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restartix-jobs",
        abstract: "Restartix scheduled and maintenance jobs.",
        subcommands: [
            Migrate.self, AuditPartitionRoll.self, ExpiredSessionsSweep.self, Reencrypt.self, KeyringUsageReport.self, CheckProviders.self,
            UsageQuotaReset.self, UsageSummaryRollup.self, AppointmentFollowupsJob.self, DevToken.self, ServiceToken.self, DemoDataJob.self,
            BackupJob.self, RestoreJob.self, ListBackups.self, BackupKeyID.self, AuditArchiveJob.self, AuditRestoreJob.self, ProviderReseed.self,
        ]
    )
}

/// Where a job connects. Jobs that change the schema use the owner role on a direct connection.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: "postgres:// URL (owner role, direct — not through PgBouncer) or sqlite: URL. Default: $DATABASE_DIRECT_URL, else the embedded SQLite file."
    )
    var databaseURL: String?

    func configuration(_ service: ServiceEnvironment) throws -> DatabaseConfiguration {
        var configuration = try databaseURL.map { try DatabaseConfiguration(url: $0) }
            ?? service.string("DATABASE_DIRECT_URL").map { try DatabaseConfiguration(url: $0) }
            ?? Self.embedded(service)
        try service.applyPoolSize("DB_POOL_MAX", to: &configuration)
        return configuration
    }

    /// The embedded SQLite file (`RESTARTIX_SQLITE_PATH`, default `.restartix/restartix.sqlite`).
    static func embedded(_ service: ServiceEnvironment) throws -> DatabaseConfiguration {
        let path = service.sqlitePath()
        try SQLiteConfiguration.preparePrivateDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path)
        return DatabaseConfiguration(sqlitePath: path)
    }
}

/// Prints one line of a job's report and flushes it, so it is seen at once even through a pipe
/// or a log collector, and a killed job has printed everything it did.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// The logging bootstrap of the executables (ServiceSupport), once per process: `LOG_LEVEL`
/// and `LOG_FORMAT` read as the APIs read them; a bad value ends the job with a clean error.
let bootstrapLogging: Void = {
    let service = ServiceEnvironment()
    do {
        LogBootstrap.bootstrap(format: try service.logFormat(for: try service.deployment()), level: try service.logLevel())
    } catch {
        exitWithError(.jobs, error)
    }
}()

/// Runs `body` with an open database and always closes it; errors become a clean exit.
func withDatabase<T>(_ options: DatabaseOptions, _ context: JobContext, label: String, _ body: (Database, Logger) async throws -> T) async throws -> T {
    let logger = context.makeLogger(label)
    return try await opened({ Database(configuration: try options.configuration(context.service), logger: logger) }, shutdown: { await $0.shutdown() }) {
        try await body($0, logger)
    }
}

/// Makes a pool, runs `body` with it and always shuts it down; any error becomes one line on
/// stderr and exit status 1.
func opened<Pool, T>(_ make: () throws -> Pool, shutdown: (Pool) async -> Void, _ body: (Pool) async throws -> T) async throws -> T {
    let pool: Pool
    do { pool = try make() } catch { throw CleanExit.message(error) }
    do {
        let result = try await body(pool)
        await shutdown(pool)
        return result
    } catch {
        await shutdown(pool)
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

struct Migrate: Job {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending schema migrations (each once, under a lock; refuses changed ones)."
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "A folder of NNNN_name.sql files to apply instead of the platform's schema.")
    var migrationsDirectory: String?

    struct Report: Codable, Sendable, Equatable {
        /// Versions applied by this run, in order.
        var applied: [Int]
        /// Versions that were already applied.
        var alreadyApplied: [Int]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let report = try await withDatabase(database, context, label: "restartix.jobs.migrate") { db, logger in
            let set = try migrationsDirectory.map { try MigrationSet.load(directory: URL(fileURLWithPath: $0)) } ?? .platform(for: db.dialect)
            return try await Migrator(database: db, migrations: set, logger: logger).migrate()
        }
        return Report(applied: report.applied, alreadyApplied: report.alreadyApplied)
    }

    func lines(_ report: Report) -> [String] {
        ["migrate: applied \(report.applied.count) (\(report.applied.map(String.init).joined(separator: ", "))), already applied \(report.alreadyApplied.count)"]
    }
}

struct AuditPartitionRoll: Job {
    static let configuration = CommandConfiguration(
        commandName: "audit-partition-roll",
        abstract: "Create the monthly partitions of every partitioned table for the current and next 3 months (no-op when they exist)."
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "How many months ahead of the current one to provision.")
    var monthsAhead: Int = 3

    func validate() throws {
        guard (0...36).contains(monthsAhead) else { throw ValidationError("--months-ahead must be between 0 and 36") }
    }

    struct Report: Codable, Sendable, Equatable {
        /// Partitions created per partitioned table; nil on SQLite, which has none.
        var created: [String: Int]?
    }

    func perform(_ context: JobContext) async throws -> Report {
        Report(created: try await withDatabase(database, context, label: "restartix.jobs.partitions") { db, _ in
            try await PartitionRoller(database: db).roll(monthsAhead: monthsAhead)
        })
    }

    func lines(_ report: Report) -> [String] {
        guard let created = report.created else { return ["audit-partition-roll: SQLite has no partitions; nothing to do"] }
        return ["audit-partition-roll: created \(created.values.reduce(0, +)) partitions (\(created.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))"]
    }
}

struct ExpiredSessionsSweep: Job {
    static let configuration = CommandConfiguration(
        commandName: "expired-sessions-sweep",
        abstract: "Close break-glass and impersonation sessions that expired while open (closed_at = expires_at, one system audit row each).",
        discussion: "Connects as the admin role: --database-url, else $DATABASE_URL, else the embedded SQLite file. Idempotent; safe when two run at once."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Sessions closed per transaction.")
    var batchSize: Int = 500

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be between 1 and 10000") }
    }

    struct Report: Codable, Sendable, Equatable {
        /// Break-glass sessions this run closed.
        var breakGlass: Int
        /// Impersonation sessions this run closed.
        var impersonation: Int
    }

    func perform(_ context: JobContext) async throws -> Report {
        let report = try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.expired-sessions-sweep") { admin, _ in
            try await ElevatedSessions(admin: admin).sweepExpired(batchSize: batchSize)
        }
        return Report(breakGlass: report.breakGlass, impersonation: report.impersonation)
    }

    func lines(_ report: Report) -> [String] {
        ["expired-sessions-sweep: closed \(report.breakGlass) break-glass and \(report.impersonation) impersonation sessions"]
    }
}

/// Where the admin-role jobs connect.
struct AdminDatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: "postgres:// URL of the admin role (through PgBouncer is fine) or sqlite: URL. Default: $DATABASE_URL, else the embedded SQLite file."
    )
    var databaseURL: String?
}

/// Runs `body` with the admin database (`--database-url`, else `DATABASE_URL`, else the embedded
/// SQLite file) and always closes it; errors become one line and exit status 1.
func withAdminDatabase<T>(_ databaseURL: String?, _ context: JobContext, label: String, _ body: (AdminDatabase, Logger) async throws -> T) async throws -> T {
    let logger = context.makeLogger(label)
    return try await opened({ AdminDatabase(configuration: try adminConfiguration(databaseURL, context.service), logger: logger) }, shutdown: { await $0.shutdown() }) {
        try await body($0, logger)
    }
}

/// The admin role's connection: `--database-url`, else `DATABASE_URL`, else the embedded file.
/// The admin role, not the owner: the owner has no policies, so it would see no rows.
func adminConfiguration(_ databaseURL: String?, _ service: ServiceEnvironment) throws -> DatabaseConfiguration {
    var configuration = try (databaseURL ?? service.string("DATABASE_URL"))
        .map { try DatabaseConfiguration(url: $0) } ?? DatabaseOptions.embedded(service)
    try service.applyPoolSize("DB_POOL_MAX", to: &configuration)
    // A job's batches may run long, but not forever: a stuck one fails and the next run resumes.
    configuration.statementTimeout = jobStatementTimeout
    return configuration
}

/// The statement timeout of the jobs that run as the admin role (the owner's schema jobs,
/// `migrate` above all, keep the server's: a migration may rightly take long).
let jobStatementTimeout: Duration = .seconds(600)

/// The keyring the environment names (``ServiceEnvironment/keyring()``), or a clean exit.
func loadKeyring(_ service: ServiceEnvironment) async throws -> Keyring {
    do {
        guard let keyring = try service.keyring() else {
            throw ConfigurationError(.missing, "ENCRYPTION_KEYS (or ENCRYPTION_KEYS_SECRET_ID, _FILE, _KMS) is not set")
        }
        return try await keyring.load()
    } catch { throw CleanExit.message(error) }
}

struct Reencrypt: Job {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite every sealed value not under the primary key (keyset batches, compare-and-swap; resumable, safe to run twice at once).",
        discussion: "Keyring from ENCRYPTION_KEYS (or _SECRET_ID, _FILE, _KMS). Refuses to start while a value needs a disabled key. Admin role: --database-url, else $DATABASE_URL."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Rows per transaction.")
    var batchSize: Int = 500

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be between 1 and 10000") }
    }

    struct Report: Codable, Sendable, Equatable {
        /// Values rewritten under the primary, per column (`table.column`).
        var rewritten: [String: Int]
        /// Values that changed between read and write (left for the next run), per column.
        var skipped: [String: Int]
        /// Values that do not open, per column: their row ids.
        var failed: [String: [UUID]]
        /// Values still under another key.
        var remaining: Int
        /// The platform primary key id.
        var primaryKeyID: UInt32
    }

    func perform(_ context: JobContext) async throws -> Report {
        let keyring = try await loadKeyring(context.service)
        let report = try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.reencrypt") { admin, logger in
            try await Reencryptor(admin: admin, cipher: ColumnCipher(keyring: keyring, logger: logger), batchSize: batchSize).run { step in
                context.progress("reencrypt: \(step.column): \(step.rewritten) rewritten, \(step.skipped) changed meanwhile")
            }
        }
        func named<V>(_ values: [EncryptedColumn: V]) -> [String: V] {
            Dictionary(uniqueKeysWithValues: values.map { ($0.key.description, $0.value) })
        }
        return Report(
            rewritten: named(report.rewritten), skipped: named(report.skipped), failed: named(report.failed), remaining: report.remaining,
            primaryKeyID: keyring.primaryID
        )
    }

    func lines(_ report: Report) -> [String] {
        let rewritten = report.rewritten.values.reduce(0, +)
        let skipped = report.skipped.values.reduce(0, +)
        var lines = ["reencrypt: done, \(rewritten) values rewritten (platform primary: key \(report.primaryKeyID)), \(skipped) changed meanwhile, \(report.remaining) remaining"]
        for (column, ids) in report.failed.sorted(by: { $0.key < $1.key }) {
            lines.append("reencrypt: \(column): \(ids.count) values do not open (changed, or sealed for another place): \(ids.prefix(20).map(\.lowercasedString).joined(separator: ", "))")
        }
        if report.failed.isEmpty, report.remaining > 0 { lines.append("reencrypt: run again until 0 remain, then disable the old keys (restartix-jobs keyring-usage)") }
        return lines
    }

    func verdict(_ report: Report) throws {
        if !report.failed.isEmpty { throw ValidationFailure(description: "reencrypt: some values could not be opened; see above") }
    }
}

struct KeyringUsageReport: Job {
    static let configuration = CommandConfiguration(
        commandName: "keyring-usage",
        abstract: "Print how many sealed values each key id protects, per column; disable a key only at 0."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    struct Report: Codable, Sendable, Equatable {
        /// Per column (`table.column`), the values each key id (as text: a JSON key) protects.
        var counts: [String: [String: Int]]
        /// Per key id, the values it protects.
        var totals: [String: Int]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let usage = try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.keyring-usage") { admin, _ in
            try await KeyringUsage.measure(admin)
        }
        func byKey(_ values: [UInt32: Int]) -> [String: Int] { Dictionary(uniqueKeysWithValues: values.map { (String($0.key), $0.value) }) }
        return Report(
            counts: Dictionary(uniqueKeysWithValues: usage.counts.map { ($0.key.description, byKey($0.value)) }), totals: byKey(usage.totals)
        )
    }

    func lines(_ report: Report) -> [String] {
        func list(_ perKey: [String: Int]) -> String {
            let text = perKey.sorted { (UInt32($0.key) ?? 0) < (UInt32($1.key) ?? 0) }.map { "key \($0.key): \($0.value)" }.joined(separator: ", ")
            return text.isEmpty ? "no values" : text
        }
        return report.counts.sorted { $0.key < $1.key }.map { "keyring-usage: \($0.key): \(list($0.value))" } + ["keyring-usage: total: \(list(report.totals))"]
    }
}
