import ArgumentParser
import Foundation
import RestartixAWS
import RestartixBackup
import RestartixKit
import RestartixPlatform
import ServiceSupport

/// Where the audit archives are: `--bucket` / `AUDIT_ARCHIVE_BUCKET`, else a local directory.
struct AuditArchiveStoreOptions: ParsableArguments {
    @Option(help: "S3 bucket of the audit archives. Default: $AUDIT_ARCHIVE_BUCKET; unset: the local directory.")
    var bucket: String?

    @Option(help: "Local directory of the audit archives when no bucket is set. Default: $AUDIT_ARCHIVE_DIRECTORY, else .restartix/audit-archive.")
    var directory: String?

    @Option(help: "Key prefix of the audit archives in the store.")
    var prefix: String = "audit"

    func store(_ service: ServiceEnvironment) async throws -> (store: any ObjectStore, s3: S3Client?) {
        try await openStore(
            what: "audit archive", bucket: bucket ?? service.string("AUDIT_ARCHIVE_BUCKET"),
            directory: directory ?? service.string("AUDIT_ARCHIVE_DIRECTORY") ?? ".restartix/audit-archive", service
        )
    }
}

/// `--month YYYY-MM`.
func parseMonth(_ text: String) throws -> AuditArchive.Month {
    guard let month = AuditArchive.Month(text) else { throw ValidationError("a month is YYYY-MM, like 2025-11") }
    return month
}

struct AuditArchiveJob: Job {
    static let configuration = CommandConfiguration(
        commandName: "audit-archive",
        abstract: "Archive audit_log months older than the hot window (export, encrypt, read back and verify, then drop the partition).",
        discussion: """
            Owner role on a direct connection: --database-url, else $DATABASE_DIRECT_URL. Key: BACKUP_ENCRYPTION_KEY. \
            Store: --bucket / $AUDIT_ARCHIVE_BUCKET, else --directory / $AUDIT_ARCHIVE_DIRECTORY. Resumable and safe when \
            two run at once: a month another run holds is skipped; a month exported earlier is checked against its \
            partition again before the partition is dropped.
            """
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var store: AuditArchiveStoreOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Months kept in Postgres: the current one and the ones before it (12: a year).")
    var hotMonths: Int = 12

    @Option(help: "Archive only this month (YYYY-MM; repeatable). Default: every month older than the hot window.")
    var month: [String] = []

    @Flag(help: "Export and verify, but keep the partitions.")
    var exportOnly = false

    @Flag(help: "Export afresh even where an earlier archive of the month exists (one that no longer opens).")
    var fresh = false

    @Option(help: "Days the archives are retained under Object Lock. Default: 2190 (6 years) on a bucket with Object Lock, else 0.")
    var retainDays: Int?

    @Flag(inversion: .prefixedNo, help: "Refuse an S3 bucket without Object Lock (default on S3): a dropped month's archive is its only copy.")
    var requireObjectLock: Bool?

    func validate() throws {
        guard (1...120).contains(hotMonths) else { throw ValidationError("--hot-months must be between 1 and 120") }
        if let retainDays, !(0...36_500).contains(retainDays) { throw ValidationError("--retain-days must be between 0 and 36500") }
        for text in month { _ = try parseMonth(text) }
    }

    struct Report: Codable, Sendable, Equatable {
        var months: [AuditArchive.MonthReport]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let service = context.service
        let configuration = try database.configuration(service)
        guard configuration.dialect == .postgres else {
            throw ValidationFailure(description: "audit-archive works on PostgreSQL's monthly partitions; the embedded SQLite file has none")
        }
        let envelopeKey = try await loadBackupKey(service)
        let (objectStore, s3) = try await store.store(service)
        let months = try month.map(parseMonth)
        let days = try await retention(s3, requested: retainDays, required: requireObjectLock ?? true, defaultDays: 2190)
        let lock = days > 0 ? ObjectLock(mode: .compliance, retainUntil: Date().addingTimeInterval(Double(days) * 86_400)) : nil
        let reports = try await withDatabase(database, context, label: "restartix.jobs.audit-archive") { db, _ in
            var archive = AuditArchive(owner: db, store: objectStore, envelopeKey: envelopeKey, prefix: store.prefix, hotMonths: hotMonths, lock: lock)
            archive.lockTimeout = .seconds(10)
            return try await archive.archive(months.isEmpty ? nil : months, exportOnly: exportOnly, fresh: fresh) { report in
                context.progress("audit-archive: \(report.month): \(report.outcome.rawValue), \(report.rows) rows\(report.archive.map { " (\($0))" } ?? "")\(report.problem.map { ": \($0)" } ?? "")")
            }
        }
        return Report(months: reports)
    }

    func lines(_ report: Report) -> [String] {
        let dropped = report.months.filter { [.archived, .resumed].contains($0.outcome) }
        return report.months.filter { $0.outcome == .failed }.map { "audit-archive: \($0.month) failed, its partition kept: \($0.problem ?? "")" }
            + ["audit-archive: \(report.months.count) months beyond the hot window; \(dropped.count) archived and dropped (\(dropped.map(\.rows).reduce(0, +)) rows)"]
    }

    func verdict(_ report: Report) throws {
        let failed = report.months.filter { $0.outcome == .failed }
        guard failed.isEmpty else {
            throw ValidationFailure(description: "audit-archive: \(failed.count) months failed and were kept: " + failed.map { "\($0.month): \($0.problem ?? "")" }.joined(separator: "; "))
        }
    }
}

struct AuditRestoreJob: Job {
    static let configuration = CommandConfiguration(
        commandName: "audit-restore",
        abstract: "Bring an archived audit month back into a side table (audit_restore.audit_log_YYYY_MM) for an investigation.",
        discussion: "Owner role: --database-url, else $DATABASE_DIRECT_URL. One transaction: an archive that does not open leaves nothing."
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var store: AuditArchiveStoreOptions
    @OptionGroup var key: BackupKeyOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "The month (YYYY-MM).")
    var month: String

    @Option(help: "Only this clinic's rows (its organization id).")
    var organization: String?

    func validate() throws {
        _ = try parseMonth(month)
        if let organization, UUID(uuidString: organization) == nil { throw ValidationError("--organization must be a UUID") }
    }

    func perform(_ context: JobContext) async throws -> AuditArchive.Restored {
        let service = context.service
        let configuration = try database.configuration(service)
        guard configuration.dialect == .postgres else { throw ValidationFailure(description: "audit-restore restores into PostgreSQL") }
        let envelopeKey = try await key.load(service).key
        let (objectStore, _) = try await store.store(service)
        let month = try parseMonth(month)
        return try await withDatabase(database, context, label: "restartix.jobs.audit-restore") { db, _ in
            try await AuditArchive(owner: db, store: objectStore, envelopeKey: envelopeKey, prefix: store.prefix)
                .restore(month, organization: organization.flatMap(UUID.init(uuidString:)))
        }
    }

    func lines(_ report: AuditArchive.Restored) -> [String] {
        ["audit-restore: \(report.rows) rows from \(report.archive) in \(report.table)"]
    }
}
