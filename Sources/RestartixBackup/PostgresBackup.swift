public import Crypto
public import Foundation
public import Logging
public import RestartixKit

/// A database dump to an object store: `pg_dump --format=custom` streamed through
/// ``EncryptedArchiveWriter`` (so its plaintext never touches a disk), with the row count of
/// every table taken in the dump's own snapshot.
///
/// Connect as the schema owner on a direct connection (not PgBouncer: the job holds one
/// transaction open for the whole dump, and `pg_dump` runs in its snapshot). The platform's
/// migration 15 lets the owner read every row (`backup_read` policies); without it `pg_dump`
/// stops at the first table with forced row-level security. The URL's settings reach `pg_dump`
/// as libpq environment variables, never on its command line.
public struct PostgresBackup: Sendable {
    /// The database to dump (owner role, direct connection).
    public var database: DatabaseConfiguration
    /// Where the archive goes.
    public var store: any ObjectStore
    /// `BACKUP_ENCRYPTION_KEY`: wraps each backup's data key.
    public var envelopeKey: SymmetricKey
    /// The key prefix of the backups in the store.
    public var prefix: String
    /// The Object Lock of both objects, when any.
    public var lock: ObjectLock?
    /// The `pg_dump` to run.
    public var pgDump: URL
    /// Variables `pg_dump` gets besides the database's libpq ones (`LANG`, `TZ`...; the kit
    /// reads no environment of its own). Any `PG*` among them is replaced by the database's.
    public var toolEnvironment: [String: String] = [:]
    /// The manifest's part size.
    public var partSize: Int = EncryptedArchiveWriter.defaultPartSize

    /// The manifest kind of a database dump.
    public static let kind = "postgres-custom-dump"

    public init(database: DatabaseConfiguration, store: any ObjectStore, envelopeKey: SymmetricKey, prefix: String = "postgres", lock: ObjectLock? = nil, pgDump: URL) {
        self.database = database
        self.store = store
        self.envelopeKey = envelopeKey
        self.prefix = prefix
        self.lock = lock
        self.pgDump = pgDump
    }

    /// Dumps, seals and uploads the database as backup `id`; returns its manifest once the
    /// manifest is stored. `progress` gets the plaintext bytes written so far, about every
    /// 64 MiB. On any failure nothing is left that a restore would take: the upload is aborted
    /// and `pg_dump` stopped.
    public func run(id: String = EncryptedArchive.makeID(), logger: Logger, progress: @Sendable (Int) -> Void = { _ in }) async throws(BackupError) -> BackupManifest {
        let environment = try PostgresTools.environment(for: database, adding: toolEnvironment)
        let dumpVersion = try await PostgresTools.version(of: pgDump, environment: environment)
        var configuration = database
        configuration.maximumConnections = 1
        let db = Database(configuration: configuration, logger: logger)
        defer { Task { await db.shutdown() } }
        do {
            return try await db.transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", deferredPrelude: []) { tx in
                guard let facts = try await tx.first("""
                    SELECT pg_export_snapshot() AS snapshot, current_setting('server_version') AS server_version,
                           current_database()::text AS database, set_config('idle_in_transaction_session_timeout', '0', true) AS idle,
                           to_regclass('schema_migrations') IS NOT NULL AS has_migrations
                    """) else { throw BackupError(.sourceFailed, "the database did not answer") }
                let snapshot: String = try facts.decode("snapshot")
                var source: [String: String] = [
                    "server_version": try facts.decode("server_version"), "database": try facts.decode("database"), "pg_dump_version": dumpVersion,
                ]
                if try facts.decode("has_migrations", as: Bool.self) {
                    let version = try await tx.first("SELECT coalesce(max(version), 0) AS version FROM schema_migrations")
                    source["migration_version"] = String(try version?.decode("version", as: Int.self) ?? 0)
                }
                let unreadable = try await PostgresTools.unreadableTables(tx)
                guard unreadable.isEmpty else {
                    throw BackupError(.sourceFailed, "the role cannot read every row of \(unreadable.count) tables (\(unreadable.prefix(10).joined(separator: ", "))), so a dump would leave rows out; give it a SELECT policy USING (true) on them (the platform's migration 15: backup_read)")
                }
                let counts = try await PostgresTools.rowCounts(tx)
                let writer = try await EncryptedArchiveWriter.begin(
                    id: id, kind: Self.kind, prefix: prefix, in: store, envelopeKey: envelopeKey, lock: lock, partSize: partSize
                )
                let child: ChildProcess
                do {
                    child = try ChildProcess(
                        executable: pgDump,
                        arguments: ["--format=custom", "--snapshot=\(snapshot)", "--enable-row-security", "--no-password"],
                        environment: environment, readOutput: true, writeInput: false
                    )
                } catch {
                    await writer.abort()
                    throw error
                }
                do {
                    var written = 0, reported = 0
                    while true {
                        let chunk = try await child.read(upTo: 1 << 20)
                        if chunk.isEmpty { break }
                        try await writer.write(chunk)
                        written += chunk.count
                        if written - reported >= 64 << 20 {
                            reported = written
                            progress(written)
                        }
                    }
                    let ended = await child.wait()
                    guard ended.status == 0 else {
                        throw BackupError(.sourceFailed, "pg_dump exited with status \(ended.status): \(ended.stderr)")
                    }
                    return try await writer.finish(source: source, rowCounts: counts)
                } catch {
                    child.terminate()
                    _ = await child.wait()
                    await writer.abort()
                    throw error
                }
            }
        } catch let error as BackupError {
            throw error
        } catch {
            throw BackupError(.sourceFailed, "the dump's transaction failed: \(error)")
        }
    }
}

/// A restore of a ``PostgresBackup`` into an empty database.
public struct PostgresRestore: Sendable {
    /// The database to restore into: empty, connected as the role that will own the objects.
    public var target: DatabaseConfiguration
    /// Where the backups are.
    public var store: any ObjectStore
    /// `BACKUP_ENCRYPTION_KEY` (the one the backup was made under).
    public var envelopeKey: SymmetricKey
    /// The key prefix of the backups.
    public var prefix: String
    /// The `pg_restore` to run.
    public var pgRestore: URL
    /// Variables `pg_restore` gets besides the target's libpq ones (as
    /// ``PostgresBackup/toolEnvironment``).
    public var toolEnvironment: [String: String] = [:]

    public init(target: DatabaseConfiguration, store: any ObjectStore, envelopeKey: SymmetricKey, prefix: String = "postgres", pgRestore: URL) {
        self.target = target
        self.store = store
        self.envelopeKey = envelopeKey
        self.prefix = prefix
        self.pgRestore = pgRestore
    }

    /// Checks backup `id` whole without restoring it: the manifest's key and MAC, every
    /// segment, every part's and the plaintext's checksum. Returns the manifest.
    public func verify(id: String) async throws(BackupError) -> BackupManifest {
        try await EncryptedArchive.verify(id: id, prefix: prefix, in: store, envelopeKey: envelopeKey)
    }

    /// What a restore did.
    public struct Report: Sendable {
        /// The backup's manifest.
        public var manifest: BackupManifest
        /// Rows per table in the restored database (equal to the manifest's).
        public var rowCounts: [String: Int]
    }

    /// Restores backup `id`: refuses a target that holds any table, view, sequence or function
    /// (`targetNotEmpty`), verifies the whole backup (``verify(id:)``) before anything is
    /// written, then streams it through `pg_restore` in one transaction (a failure leaves the
    /// target as empty as it was) and compares every table's row count with the manifest.
    public func restore(id: String, logger: Logger) async throws(BackupError) -> Report {
        let environment = try PostgresTools.environment(for: target, adding: toolEnvironment)
        guard let databaseName = environment["PGDATABASE"], !databaseName.isEmpty, !databaseName.contains("="), !databaseName.contains("://") else {
            throw BackupError(.invalidInput, "the target URL must name its database")
        }
        var configuration = target
        configuration.maximumConnections = 1
        let db = Database(configuration: configuration, logger: logger)
        defer { Task { await db.shutdown() } }
        let archive = try await EncryptedArchive.open(id: id, prefix: prefix, in: store, envelopeKey: envelopeKey)
        guard archive.manifest.kind == PostgresBackup.kind else {
            throw BackupError(.manifestInvalid, "\(id) is an archive of kind \(archive.manifest.kind), not a database dump")
        }
        try await Self.requireEmpty(db, name: databaseName)
        try await archive.read { (_: [UInt8]) throws(BackupError) in }
        let child = try ChildProcess(
            executable: pgRestore,
            arguments: ["--format=custom", "--dbname=\(databaseName)", "--single-transaction", "--exit-on-error", "--no-owner", "--no-password"],
            environment: environment, readOutput: false, writeInput: true
        )
        do {
            try await archive.read { (bytes: [UInt8]) throws(BackupError) in try await child.write(bytes) }
        } catch {
            // pg_restore stopped reading: it failed, and its own words say why (its transaction
            // rolled back). Otherwise the archive failed mid-way: stop pg_restore, which rolls back.
            if error.code == .targetFailed {
                let ended = await child.wait()
                throw BackupError(.targetFailed, "pg_restore exited with status \(ended.status) (its transaction rolled back): \(ended.stderr)")
            }
            child.terminate()
            _ = await child.wait()
            throw error
        }
        await child.closeInput()
        let ended = await child.wait()
        guard ended.status == 0 else {
            throw BackupError(.targetFailed, "pg_restore exited with status \(ended.status) (its transaction rolled back): \(ended.stderr)")
        }
        let counts: [String: Int]
        do { counts = try await db.transaction { tx in try await PostgresTools.rowCounts(tx) } } catch {
            throw BackupError(.targetFailed, "counting the restored rows failed: \(error)")
        }
        let expected = archive.manifest.rowCounts
        let differing = Set(expected.keys).union(counts.keys).filter { expected[$0] != counts[$0] }.sorted()
        guard differing.isEmpty else {
            throw BackupError(.targetFailed, "the restored row counts differ from the manifest's in \(differing.count) tables: \(differing.prefix(10).joined(separator: ", "))")
        }
        return Report(manifest: archive.manifest, rowCounts: counts)
    }

    static func requireEmpty(_ db: Database, name: String) async throws(BackupError) {
        do {
            let row = try await db.query("""
                SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
                          AND n.nspname NOT LIKE 'pg\\_temp%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
                     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) AS objects
                """).first
            let objects = try row?.decode("objects", as: Int.self) ?? 0
            guard objects == 0 else {
                throw BackupError(.targetNotEmpty, "the target database \(name) holds \(objects) tables, views, sequences or functions; restore only into an empty database (CREATE DATABASE ... OWNER <owner role>)")
            }
        } catch let error as BackupError {
            throw error
        } catch {
            throw BackupError(.targetFailed, "the target database could not be checked: \(error)")
        }
    }
}

/// What the backup and the restore share.
package enum PostgresTools {
    /// The child's whole environment: `extra` without its `PG*` variables, and the
    /// database's libpq variables.
    static func environment(for database: DatabaseConfiguration, adding extra: [String: String]) throws(BackupError) -> [String: String] {
        var environment: [String: String]
        do { environment = try database.libpqEnvironment() } catch { throw BackupError(.invalidInput, "\(error)") }
        for (name, value) in extra where !name.hasPrefix("PG") { environment[name] = value }
        return environment
    }

    /// `pg_dump --version` (or `pg_restore`'s): for the manifest, and to fail early when the
    /// program is missing.
    static func version(of program: URL, environment: [String: String]) async throws(BackupError) -> String {
        let child = try ChildProcess(executable: program, arguments: ["--version"], environment: environment, readOutput: true, writeInput: false)
        var output: [UInt8] = []
        do {
            while true {
                let chunk = try await child.read(upTo: 4096)
                if chunk.isEmpty { break }
                output += chunk
            }
        } catch {
            child.terminate()
            _ = await child.wait()
            throw error
        }
        let ended = await child.wait()
        guard ended.status == 0 else { throw BackupError(.invalidInput, "\(program.path) --version failed (status \(ended.status))") }
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Rows per ordinary table (partitions one by one, not their parents), keyed `schema.table`.
    static func rowCounts(_ tx: borrowing Transaction) async throws -> [String: Int] {
        let tables = try await tx.query("""
            SELECT n.nspname::text AS schema, c.relname::text AS name
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
            ORDER BY 1, 2
            """)
        var counts: [String: Int] = [:]
        for table in tables {
            let schema: String = try table.decode("schema"), name: String = try table.decode("name")
            let row = try await tx.first("SELECT count(*) AS rows FROM \(unsafeRaw: quote(schema)).\(unsafeRaw: quote(name))")
            counts["\(schema).\(name)"] = try row?.decode("rows", as: Int.self) ?? 0
        }
        return counts
    }

    /// The ordinary tables (partitions included) of which the current role cannot be sure to
    /// read every row: row-level security applies to it, and no permissive SELECT policy for it
    /// (or PUBLIC) says `true`, or a restrictive one applies. `pg_dump --enable-row-security`
    /// and a count would both quietly leave those rows out, so the backup refuses instead.
    /// `only` limits the check to one table.
    package static func unreadableTables(_ tx: borrowing Transaction, only: String? = nil) async throws -> [String] {
        let filter: SQLQuery = only.map { "AND c.oid = to_regclass(\($0))" } ?? ""
        return try await tx.query("""
            WITH me AS (SELECT oid, rolsuper OR rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user)
            SELECT n.nspname::text || '.' || c.relname::text AS name
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN me
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
              AND c.relrowsecurity AND NOT me.bypass AND (c.relforcerowsecurity OR c.relowner <> me.oid) \(filter)
              AND (NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                               AND p.polroles && ARRAY[0::oid, me.oid] AND pg_get_expr(p.polqual, p.polrelid) = 'true')
                   OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
                              AND p.polroles && ARRAY[0::oid, me.oid]))
            ORDER BY 1
            """).map { try $0.decode("name", as: String.self) }
    }

    static func quote(_ identifier: String) -> String { "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
}
