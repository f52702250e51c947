import ArgumentParser
import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import PlatformSupport
import RestartixAWS
import RestartixBackup
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// Where the backups are: an S3 bucket (`--bucket`, `BACKUP_BUCKET`) or a local directory.
struct BackupStoreOptions: ParsableArguments {
    @Option(help: "S3 bucket of the backups. Default: $BACKUP_BUCKET; unset: the local directory.")
    var bucket: String?

    @Option(help: "Local directory of the backups when no bucket is set. Default: $BACKUP_DIRECTORY, else .restartix/backups.")
    var directory: String?

    @Option(help: "Key prefix of the database backups in the store.")
    var prefix: String = "postgres"

    @Option(help: "Directory of pg_dump and pg_restore. Default: found on $PATH.")
    var pgBin: String?

    /// The store, and the S3 client when it is a bucket.
    func store(_ service: ServiceEnvironment) async throws -> (store: any ObjectStore, s3: S3Client?) {
        try await openStore(
            what: "backup", bucket: bucket ?? service.string("BACKUP_BUCKET"),
            directory: directory ?? service.string("BACKUP_DIRECTORY") ?? ".restartix/backups", service
        )
    }

    /// `pg_dump` or `pg_restore`.
    func tool(_ name: String, _ service: ServiceEnvironment) throws -> URL {
        let program = pgBin.map { "\($0)/\(name)" } ?? name
        guard let url = ChildProcess.locate(program, path: service.string("PATH")) else {
            throw ValidationFailure(description: "\(name) was not found (install the PostgreSQL client, or pass --pg-bin)")
        }
        return url
    }

    /// What the tools get besides the database's variables.
    static func toolEnvironment(_ service: ServiceEnvironment) -> [String: String] {
        var environment: [String: String] = [:]
        for name in ["PATH", "LANG", "LC_ALL", "TZ", "HOME"] { environment[name] = service.string(name) }
        return environment
    }
}

/// The store of `what` (``ServiceEnvironment/objectStore(what:bucket:directory:presigning:timeout:)``),
/// its failure a validation failure of the command.
func openStore(what: String, bucket: String?, directory: String, _ service: ServiceEnvironment) async throws -> (store: any ObjectStore, s3: S3Client?) {
    do { return try await service.objectStore(what: what, bucket: bucket, directory: directory) } catch {
        throw ValidationFailure(description: error.detail)
    }
}

/// The days objects are retained: on S3, the bucket must have Object Lock unless not
/// `required`, and then `requested` or `defaultDays`; `requested` (default 0) elsewhere, where
/// the local store records and honours it.
func retention(_ s3: S3Client?, requested: Int?, required: Bool, defaultDays: Int) async throws -> Int {
    guard let s3 else { return requested ?? 0 }
    let locks: Bool
    do { locks = try await s3.objectLockConfiguration() != nil } catch {
        throw ValidationFailure(description: "the Object Lock configuration of bucket \(s3.bucket) cannot be read: \(error)")
    }
    if !locks, required {
        throw ValidationFailure(description: "bucket \(s3.bucket) has no Object Lock; archives must be immutable (create the bucket with Object Lock, or pass --no-require-object-lock for a test bucket)")
    }
    if let requested, requested > 0, !locks { throw ValidationFailure(description: "--retain-days needs a bucket with Object Lock") }
    if requested == 0, locks, required {
        // Objects without lock headers in a locked bucket can be deleted by anyone with the role.
        throw ValidationFailure(description: "--retain-days 0 would leave these objects deletable in bucket \(s3.bucket), which has Object Lock; pass --no-require-object-lock as well to allow it")
    }
    return requested ?? (locks ? defaultDays : 0)
}

/// `BACKUP_ENCRYPTION_KEY`: from the keyring's source when one is configured (the secret's
/// member), else from the variable. Missing is an error naming the variable.
func loadBackupKey(_ service: ServiceEnvironment) async throws -> SymmetricKey {
    let fromKeyring: SymmetricKey?
    do { fromKeyring = try await service.keyring()?.load().backupKey } catch { throw CleanExit.message(error) }
    if let fromKeyring { return fromKeyring }
    return try backupKey(variable: "BACKUP_ENCRYPTION_KEY", service, unset: "BACKUP_ENCRYPTION_KEY is not set (base64 of 32 bytes: openssl rand -base64 32)")
}

/// The backup envelope key in variable `name` (read as a secret); `unset` says what to do
/// when it is missing.
func backupKey(variable name: String, _ service: ServiceEnvironment, unset: String) throws -> SymmetricKey {
    guard let text = service.secret(name) else { throw ValidationFailure(description: unset) }
    do { return try Keyring.backupKey(base64: text, from: name) } catch { throw CleanExit.message(error) }
}

/// Which envelope key opens the backups: the deployment's (``loadBackupKey(_:)``) or, with
/// `--backup-key-variable NAME`, the one in that variable alone. A retired key is kept next to
/// its id for as long as backups made under it are retained; restoring one of those names the
/// variable that holds it, whatever the keyring says.
struct BackupKeyOptions: ParsableArguments {
    @Option(help: "Read the backup envelope key from this environment variable alone (neither the keyring nor BACKUP_ENCRYPTION_KEY is read): for backups made under a retired key.")
    var backupKeyVariable: String?

    func validate() throws {
        if let name = backupKeyVariable, name.wholeMatch(of: /[A-Z_][A-Z0-9_]*/) == nil {
            throw ValidationError("--backup-key-variable names an environment variable (upper-case letters, digits, underscores)")
        }
    }

    /// The key, and where it came from.
    func load(_ service: ServiceEnvironment) async throws -> (key: SymmetricKey, origin: String) {
        guard let name = backupKeyVariable else { return (try await loadBackupKey(service), "the keyring or BACKUP_ENCRYPTION_KEY") }
        return (try backupKey(variable: name, service, unset: "\(name) (--backup-key-variable) is not set"), name)
    }
}

/// `restartix-jobs backup-key-id`: the id of the envelope key in use (or of the one in
/// `--backup-key-variable`), as manifests name it: what to file a retired key under.
struct BackupKeyID: Job {
    static let configuration = CommandConfiguration(
        commandName: "backup-key-id",
        abstract: "Print the id of the backup envelope key (as manifests name it), never the key.",
        discussion: "The deployment's key (the keyring secret's member, else BACKUP_ENCRYPTION_KEY), or the one in --backup-key-variable."
    )

    @OptionGroup var key: BackupKeyOptions
    @OptionGroup var output: OutputOptions

    struct Report: Codable, Sendable, Equatable {
        var keyID: String
        var origin: String
    }

    func perform(_ context: JobContext) async throws -> Report {
        let (key, origin) = try await self.key.load(context.service)
        return Report(keyID: WrappedBackupKey.keyID(of: key), origin: origin)
    }

    func lines(_ report: Report) -> [String] { ["backup-key-id: \(report.keyID) (from \(report.origin))"] }
}

struct BackupJob: Job {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Dump the database (pg_dump -Fc), encrypt it as it streams and upload it with a manifest; Object Lock on S3.",
        discussion: """
            Owner role on a direct connection: --database-url, else $DATABASE_DIRECT_URL. Key: BACKUP_ENCRYPTION_KEY (or the \
            keyring secret's member). Store: --bucket / $BACKUP_BUCKET (S3, AWS_* variables), else --directory / $BACKUP_DIRECTORY. \
            On S3 the bucket must have Object Lock (--no-require-object-lock to allow one without); objects are retained \
            --retain-days (2555, 7 years) in --lock-mode (compliance). A local directory records the same retention \
            and refuses to delete a retained backup. A run that fails or is killed leaves no backup that \
            restore would take.
            """
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var store: BackupStoreOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Days the objects are retained under Object Lock (0: none). Default: 2555 on a bucket with Object Lock, else 0.")
    var retainDays: Int?

    @Option(help: "Object Lock mode: compliance (nobody can shorten it) or governance.")
    var lockMode: String = "compliance"

    private var mode: ObjectLock.Mode? { ObjectLock.Mode(rawValue: lockMode.uppercased()) }

    @Flag(inversion: .prefixedNo, help: "Refuse an S3 bucket without Object Lock (default on S3).")
    var requireObjectLock: Bool?

    func validate() throws {
        if let retainDays, !(0...36_500).contains(retainDays) { throw ValidationError("--retain-days must be between 0 and 36500") }
        if mode == nil { throw ValidationError("--lock-mode is compliance or governance") }
    }

    struct Report: Codable, Sendable, Equatable {
        var id: String
        var object: String
        var plaintextBytes: Int
        var storedBytes: Int
        var parts: Int
        var tables: Int
        var rows: Int
        var retainUntil: String?
        var source: [String: String]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let service = context.service
        let configuration = try database.configuration(service)
        guard configuration.dialect == .postgres else {
            throw ValidationFailure(description: "backup dumps PostgreSQL; the embedded SQLite file is backed up by copying it while no process writes (sqlite3 FILE '.backup COPY')")
        }
        let envelopeKey = try await loadBackupKey(service)
        let pgDump = try store.tool("pg_dump", service)
        let (objectStore, s3) = try await store.store(service)
        // Seven years on a bucket with Object Lock (the platform's Layer 2 retention).
        let days = try await retention(s3, requested: retainDays, required: requireObjectLock ?? true, defaultDays: 2555)
        let lock = days > 0 ? ObjectLock(mode: mode ?? .compliance, retainUntil: Date().addingTimeInterval(Double(days) * 86_400)) : nil
        var backup = PostgresBackup(database: configuration, store: objectStore, envelopeKey: envelopeKey, prefix: store.prefix, lock: lock, pgDump: pgDump)
        backup.toolEnvironment = BackupStoreOptions.toolEnvironment(service)
        let logger = context.makeLogger("restartix.jobs.backup")
        let manifest: BackupManifest
        do {
            manifest = try await backup.run(logger: logger) { bytes in context.progress("backup: \(bytes >> 20) MiB dumped") }
        } catch { throw CleanExit.message(error) }
        return Report(
            id: manifest.id, object: manifest.object, plaintextBytes: manifest.plaintext.length, storedBytes: manifest.ciphertext.length,
            parts: manifest.parts.count, tables: manifest.rowCounts.count, rows: manifest.rowCounts.values.reduce(0, +),
            retainUntil: manifest.lock.map { ISO8601DateFormatter().string(from: $0.retainUntil) }, source: manifest.source
        )
    }

    func lines(_ report: Report) -> [String] {
        [
            "backup: \(report.id) stored at \(report.object): \(report.plaintextBytes) bytes dumped, \(report.storedBytes) stored in \(report.parts) parts; \(report.rows) rows in \(report.tables) tables"
                + (report.retainUntil.map { "; retained until \($0)" } ?? ""),
        ]
    }
}

struct RestoreJob: Job {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Verify a backup whole, then restore it into an empty database and check it (migrations, tenancy, row counts).",
        discussion: """
            --verify-only checks the backup (key, manifest, every segment and checksum) and writes nothing. Otherwise \
            --target-url (owner role of an empty database) receives it in one transaction; then the migrations are \
            checked against this binary's, every table's rows are counted against the manifest, and the tenancy boot \
            check runs as the app and admin roles (--target-app-url, --target-admin-url; --skip-tenancy-check to leave \
            it out). A backup made under a retired envelope key: --backup-key-variable.
            """
    )

    @OptionGroup var store: BackupStoreOptions
    @OptionGroup var key: BackupKeyOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "The backup's id (see `restartix-jobs backups`).")
    var backupID: String?

    @Flag(help: "Take the newest backup.")
    var latest = false

    @Flag(help: "Check the backup without restoring it.")
    var verifyOnly = false

    @Option(help: "postgres:// URL of the empty database to restore into, as the role that will own the schema.")
    var targetURL: String?

    @Option(help: "The restored database as the app role: run the tenancy boot check as it.")
    var targetAppURL: String?

    @Option(help: "The restored database as the admin role: run the admin boot check as it.")
    var targetAdminURL: String?

    @Flag(help: "Restore without the tenancy boot check (no --target-app-url / --target-admin-url): for a database nothing will serve from.")
    var skipTenancyCheck = false

    func validate() throws {
        guard (backupID != nil) != latest else {
            throw ValidationError("name the backup: --backup-id ID or --latest")
        }
        if !verifyOnly, targetURL == nil { throw ValidationError("--target-url is required unless --verify-only") }
        if !verifyOnly, !skipTenancyCheck, targetAppURL == nil || targetAdminURL == nil {
            throw ValidationError("a restore ends with the tenancy boot check: pass --target-app-url and --target-admin-url (or --skip-tenancy-check for a database nothing will serve from)")
        }
        if skipTenancyCheck, targetAppURL != nil || targetAdminURL != nil {
            throw ValidationError("--skip-tenancy-check contradicts --target-app-url / --target-admin-url")
        }
    }

    struct Report: Codable, Sendable, Equatable {
        var id: String
        var verified: Bool
        var restored: Bool
        var plaintextBytes: Int
        var tables: Int
        var rows: Int
        var migrationVersion: Int?
        var pendingMigrations: Int?
        var tenancyChecked: [String]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let service = context.service
        let envelopeKey = try await key.load(service).key
        let (objectStore, _) = try await store.store(service)
        let id: String
        if let backupID {
            id = backupID
        } else {
            let ids: [String]
            do { ids = try await EncryptedArchive.list(in: objectStore, prefix: store.prefix) } catch { throw CleanExit.message(error) }
            guard let newest = ids.last else { throw ValidationFailure(description: "there is no backup under \(store.prefix)/ in the store") }
            id = newest
        }
        let logger = context.makeLogger("restartix.jobs.restore")
        guard let targetURL, !verifyOnly else {
            let manifest: BackupManifest
            do { manifest = try await EncryptedArchive.verify(id: id, prefix: store.prefix, in: objectStore, envelopeKey: envelopeKey) } catch {
                throw CleanExit.message(error)
            }
            return Report(
                id: id, verified: true, restored: false, plaintextBytes: manifest.plaintext.length, tables: manifest.rowCounts.count,
                rows: manifest.rowCounts.values.reduce(0, +), migrationVersion: manifest.source["migration_version"].flatMap { Int($0) },
                pendingMigrations: nil, tenancyChecked: []
            )
        }
        let target: DatabaseConfiguration
        do { target = try DatabaseConfiguration(url: targetURL) } catch { throw CleanExit.message(error) }
        guard target.dialect == .postgres else { throw ValidationFailure(description: "--target-url must be a postgres:// URL") }
        var restore = PostgresRestore(target: target, store: objectStore, envelopeKey: envelopeKey, prefix: store.prefix, pgRestore: try store.tool("pg_restore", service))
        restore.toolEnvironment = BackupStoreOptions.toolEnvironment(service)
        let report: PostgresRestore.Report
        do { report = try await restore.restore(id: id, logger: logger) } catch { throw CleanExit.message(error) }
        context.progress("restore: \(id) restored; \(report.rowCounts.values.reduce(0, +)) rows in \(report.rowCounts.count) tables match the manifest")

        // The migrations: every one applied must be this binary's, unchanged.
        let (version, pending) = try await opened({ Database(configuration: target, logger: logger) }, shutdown: { await $0.shutdown() }) { db in
            // What migration 6 set on the database itself, which a dump does not carry (pg_dump
            // without --create leaves out the database's own grants): no TEMPORARY for anyone.
            _ = try await db.execute(SQLQuery(unsafeSQL: Self.databaseGrants))
            let applied = try await Migrator(platformSchemaOn: db, logger: logger).appliedChecksums()
            let known = MigrationSet.platform(for: .postgres).migrations
            for (applied, checksum) in applied.sorted(by: { $0.key < $1.key }) {
                guard let migration = known.first(where: { $0.version == applied }) else {
                    throw ValidationFailure(description: "the restored database has migration \(applied), which this binary does not know: restore with the binary that made the backup, or a newer one")
                }
                guard migration.checksum == checksum else {
                    throw ValidationFailure(description: "the restored database's migration \(applied) differs from this binary's")
                }
            }
            return (applied.keys.max() ?? 0, known.filter { applied[$0.version] == nil }.count)
        }
        var checked: [String] = []
        if let targetAppURL {
            try await opened({ TenantDatabase(configuration: try DatabaseConfiguration(url: targetAppURL), tables: PlatformSchema.tenantTables, logger: logger) }, shutdown: { await $0.shutdown() }) {
                try await $0.verifyIsolation()
            }
            checked.append("app")
        }
        if let targetAdminURL {
            try await opened({ AdminDatabase(configuration: try DatabaseConfiguration(url: targetAdminURL), logger: logger) }, shutdown: { await $0.shutdown() }) {
                try await $0.verifyIsolation()
            }
            checked.append("admin")
        }
        return Report(
            id: id, verified: true, restored: true, plaintextBytes: report.manifest.plaintext.length, tables: report.rowCounts.count,
            rows: report.rowCounts.values.reduce(0, +), migrationVersion: version, pendingMigrations: pending, tenancyChecked: checked
        )
    }

    /// Migration 6's database-level revoke (the target's owner may run it).
    static let databaseGrants = """
        DO $$
        BEGIN
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, restartix_app, restartix_admin', current_database());
        END;
        $$;
        """

    func lines(_ report: Report) -> [String] {
        guard report.restored else {
            return ["restore: backup \(report.id) verified (\(report.plaintextBytes) bytes, \(report.rows) rows in \(report.tables) tables); nothing restored (--verify-only)"]
        }
        var lines = ["restore: backup \(report.id) restored and verified: \(report.rows) rows in \(report.tables) tables, migration version \(report.migrationVersion ?? 0)"]
        if let pending = report.pendingMigrations, pending > 0 {
            lines.append("restore: \(pending) migrations of this binary are not applied yet: run restartix-jobs migrate --database-url <target> before serving")
        }
        lines.append(report.tenancyChecked.isEmpty
            ? "restore: tenancy boot check skipped (--skip-tenancy-check): do not serve from this database before it passes"
            : "restore: tenancy boot check passed as \(report.tenancyChecked.joined(separator: " and "))")
        return lines
    }
}

struct ListBackups: Job {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List the backups in the store (those with a manifest), oldest first."
    )

    @OptionGroup var store: BackupStoreOptions
    @OptionGroup var output: OutputOptions

    struct Report: Codable, Sendable, Equatable {
        var ids: [String]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let (objectStore, _) = try await store.store(context.service)
        do { return Report(ids: try await EncryptedArchive.list(in: objectStore, prefix: store.prefix)) } catch { throw CleanExit.message(error) }
    }

    func lines(_ report: Report) -> [String] {
        report.ids.isEmpty ? ["backups: none under \(store.prefix)/"] : report.ids.map { "backups: \($0)" }
    }
}
