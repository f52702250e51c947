import Crypto
public import Foundation
public import Logging

/// One schema change: a version, a name and the SQL that applies it.
public struct Migration: Sendable, Hashable {
    /// Position in the ordered set, starting at 1 with no gaps.
    public let version: Int
    /// A short snake_case name.
    public let name: String
    /// The SQL script (several statements, no binds).
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Hex SHA-256 of the SQL; recorded when applied, compared on every later run.
    public var checksum: String {
        Hex.lower(SHA256.hash(data: Data(sql.utf8)))
    }
}

/// An ordered, validated list of migrations for one dialect.
public struct MigrationSet: Sendable {
    /// The migrations, ordered by version.
    public let migrations: [Migration]

    /// Validates ordering: versions start at 1, have no gaps and no duplicates, names are
    /// `[a-z0-9_]+`, and no script is empty.
    public init(_ migrations: [Migration]) throws(DatabaseError) {
        let sorted = migrations.sorted { $0.version < $1.version }
        var seen = Set<Int>()
        for migration in sorted {
            guard seen.insert(migration.version).inserted else {
                throw DatabaseError(code: .migration, detail: "two migrations have version \(migration.version)")
            }
        }
        for (i, migration) in sorted.enumerated() where migration.version != i + 1 {
            throw DatabaseError(
                code: .migration,
                detail: "migration versions must run 1, 2, 3, ... without gaps; version \(i + 1) is missing before \(migration.version)"
            )
        }
        for migration in sorted {
            guard !migration.name.isEmpty, migration.name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) else {
                throw DatabaseError(code: .migration, detail: "migration \(migration.version) has an invalid name; use lower-case letters, digits and _")
            }
            guard !migration.sql.allSatisfy(\.isWhitespace) else {
                throw DatabaseError(code: .migration, detail: "migration \(migration.version) (\(migration.name)) is empty")
            }
        }
        self.migrations = sorted
    }

    /// Loads `NNNN_name.sql` files from a directory (other files are an error, so a typo is
    /// never skipped silently).
    public static func load(directory: URL) throws(DatabaseError) -> MigrationSet {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw DatabaseError(code: .migration, detail: "cannot read the migration folder \(directory.path)")
        }
        var migrations: [Migration] = []
        for file in names.sorted() where !file.hasPrefix(".") {
            guard file.hasSuffix(".sql"), let underscore = file.firstIndex(of: "_"),
                  let version = Int(file[..<underscore]), version > 0
            else {
                throw DatabaseError(code: .migration, detail: "\(file) is not named NNNN_name.sql")
            }
            let name = String(file[file.index(after: underscore)..<file.index(file.endIndex, offsetBy: -4)])
            let sql: String
            do {
                sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            } catch {
                throw DatabaseError(code: .migration, detail: "cannot read \(file) as UTF-8 text")
            }
            migrations.append(Migration(version: version, name: name, sql: sql))
        }
        return try MigrationSet(migrations)
    }
}

/// What a migration run did.
public struct MigrationReport: Sendable, Hashable {
    /// Versions applied by this run, in order.
    public var applied: [Int]
    /// Versions that were already applied (by an earlier or a concurrent run).
    public var alreadyApplied: [Int]
}

/// Applies a ``MigrationSet`` to a database, each migration exactly once.
///
/// Every migration runs in its own transaction together with the row that records it in
/// `schema_migrations` (version, name, checksum, applied_at): a failing migration leaves nothing
/// behind. On Postgres each transaction first takes `pg_advisory_xact_lock` (keyed by the
/// schema), so concurrent runs
/// serialize and the loser sees the migration already recorded; the lock is
/// transaction-scoped, so it can never leak through a pooler, but run migrations with the owner
/// role on a direct connection (`DATABASE_DIRECT_URL`): DDL through PgBouncer is a mistake
/// waiting to happen. On SQLite `BEGIN IMMEDIATE` gives the same serialization.
///
/// Before applying anything the migrator compares every recorded checksum with the set and
/// refuses to run if an applied migration changed, or if the database has versions this build
/// does not know.
public struct Migrator: Sendable {
    /// First half of the advisory lock key (an arbitrary constant, "rxmg" in ASCII); the second
    /// half is a hash of the schema being migrated, so migrations of different schemas in one
    /// database do not wait on each other.
    static let lockClass: Int32 = 0x7278_6d67

    let database: Database
    let set: MigrationSet
    let logger: Logger

    /// A migrator that applies `migrations` to `database`. The kit has no schema of its own:
    /// pass yours (``MigrationSet/load(directory:)`` reads a folder of `NNNN_name.sql` files), or
    /// the platform's (`PlatformSchema` in RestartixPlatform).
    public init(database: Database, migrations: MigrationSet, logger: Logger) {
        self.database = database
        self.set = migrations
        self.logger = logger
    }

    /// Applies every pending migration.
    @discardableResult
    public func migrate() async throws -> MigrationReport {
        try await ensureLedger()
        var report = MigrationReport(applied: [], alreadyApplied: [])
        let recorded = try await appliedChecksums()
        try verify(recorded)
        for migration in set.migrations {
            if recorded[migration.version] != nil {
                report.alreadyApplied.append(migration.version)
                continue
            }
            let appliedNow = try await database.transaction { tx in
                try await lock(tx)
                // A concurrent run may have applied it while we waited for the lock.
                if let row = try await tx.first("SELECT checksum FROM schema_migrations WHERE version = \(migration.version)") {
                    let checksum = try row.decode("checksum", as: String.self)
                    guard checksum == migration.checksum else { throw changed(migration) }
                    return false
                }
                do {
                    try await tx.executeScript(migration.sql)
                } catch let error as DatabaseError {
                    // Syntax and reference errors (class 42) quote only the script's own SQL text,
                    // which is what an operator needs; other messages can quote row data (a
                    // data migration's failed cast), so they are left out.
                    let reason = (error.sqlState?.hasPrefix("42") == true ? error.serverMessage : nil) ?? error.description
                    throw DatabaseError(
                        code: .migration,
                        sqlState: error.sqlState,
                        detail: "migration \(migration.version) (\(migration.name)) failed and was rolled back: \(reason)"
                    )
                }
                try await tx.execute(
                    """
                    INSERT INTO schema_migrations (version, name, checksum, applied_at)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum), \(Date()))
                    """
                )
                return true
            }
            if appliedNow {
                report.applied.append(migration.version)
                logger.info("Applied migration", metadata: ["db.migration.version": "\(migration.version)", "db.migration.name": "\(migration.name)"])
            } else {
                report.alreadyApplied.append(migration.version)
            }
        }
        return report
    }

    /// Versions recorded as applied, with their checksums.
    public func appliedChecksums() async throws -> [Int: String] {
        let rows = try await database.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        var result: [Int: String] = [:]
        for row in rows {
            result[try row.decode("version", as: Int.self)] = try row.decode("checksum", as: String.self)
        }
        return result
    }

    private func verify(_ recorded: [Int: String]) throws {
        let known = Dictionary(uniqueKeysWithValues: set.migrations.map { ($0.version, $0) })
        for (version, checksum) in recorded.sorted(by: { $0.key < $1.key }) {
            guard let migration = known[version] else {
                throw DatabaseError(
                    code: .migration,
                    detail: "the database has migration \(version), which this build does not know; deploy a newer build instead of migrating with an older one"
                )
            }
            guard migration.checksum == checksum else { throw changed(migration) }
        }
    }

    private func changed(_ migration: Migration) -> DatabaseError {
        DatabaseError(
            code: .migration,
            detail: "migration \(migration.version) (\(migration.name)) was changed after it was applied; write a new migration instead of editing an applied one"
        )
    }

    private func lock(_ tx: borrowing Transaction) async throws {
        if tx.dialect == .postgres {
            // Read committed whatever the server's default: the re-check after the lock must see
            // a concurrent run's commit, which a snapshot taken before the wait would hide.
            try await tx.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            try await tx.execute("SELECT pg_advisory_xact_lock(\(Self.lockClass)::integer, hashtext(current_schema()))")
        }
    }

    private func ensureLedger() async throws {
        try await database.transaction { tx in
            try await lock(tx)
            let type = tx.dialect == .postgres ? "timestamptz" : "TEXT"
            try await tx.executeScript(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version bigint PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at \(type) NOT NULL
                )
                """
            )
        }
    }
}
