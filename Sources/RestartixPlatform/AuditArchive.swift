public import Crypto
public import Foundation
public import Logging
public import RestartixBackup
public import RestartixKit

/// The audit log's months beyond the hot window, archived to an object store and dropped from
/// Postgres; and a month brought back into a side table for an investigation.
///
/// `audit_log` is partitioned by month (`audit_log_YYYY_MM`, made by `PartitionRoller`). The
/// hot window (12 months by default: the current month and the 11 before it) stays in Postgres.
/// For each older month ``archive(_:exportOnly:fresh:now:progress:)``:
/// 1. takes the month's advisory lock (a second run at the same time skips the month), then a
///    SHARE lock on its partition (writes to it wait; every read below comes after the lock,
///    in READ COMMITTED, so a write that committed before it is seen), and checks that the
///    owner reads every row of it (its `backup_read` policy);
/// 2. writes every row as one JSON line (`row_to_json`, timestamps in UTC, so `organization_id`
///    is on every line, `null` for platform rows), in `created_at, id` order, through gzip into
///    an ``EncryptedArchiveWriter`` (`{prefix}/{YYYY-MM}-{time}-{random}/`, so ids sort by time),
///    the row count in its manifest;
/// 3. reads the archive back whole (key, MAC, every segment, gzip) and compares its lines, by
///    count and SHA-256, with the partition's rows read again;
/// 4. only then detaches and drops the partition, in the same transaction (a detach that
///    cannot get its lock within two seconds leaves the month `skippedBusy` for the next run).
///
/// A run killed anywhere loses nothing: before step 4 the partition is whole, and an archive
/// without its manifest does not count. The next run tries the month's earlier archives,
/// newest first, and uses one that holds exactly the partition's rows; when none does, the
/// month is exported afresh, unless one of them does not open (changed in the store): that
/// fails the month, its partition kept, unless `fresh` asks for a new export. A failing month does not stop the
/// others. Run as the schema owner on a direct connection (it reads the partitions through
/// migration 15's `backup_read` policies and drops them).
public struct AuditArchive: Sendable {
    /// The owner role's database (a direct connection: the job holds a transaction per month).
    public var owner: Database
    /// Where the archives go.
    public var store: any ObjectStore
    /// `BACKUP_ENCRYPTION_KEY`: wraps each archive's key.
    public var envelopeKey: SymmetricKey
    /// The key prefix of the archives.
    public var prefix: String
    /// Months kept in Postgres: the current one and the `hotMonths - 1` before it.
    public var hotMonths: Int
    /// Object Lock for the archives, when any.
    public var lock: ObjectLock?
    /// How long a DDL step may wait for its lock before the month is left for the next run.
    public var lockTimeout: Duration = .seconds(10)

    public init(owner: Database, store: any ObjectStore, envelopeKey: SymmetricKey, prefix: String = "audit", hotMonths: Int = 12, lock: ObjectLock? = nil) {
        self.owner = owner
        self.store = store
        self.envelopeKey = envelopeKey
        self.prefix = prefix
        self.hotMonths = hotMonths
        self.lock = lock
    }

    /// A calendar month (UTC).
    public struct Month: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
        public let year: Int
        public let month: Int

        public init?(year: Int, month: Int) {
            guard (1970...9999).contains(year), (1...12).contains(month) else { return nil }
            self.year = year
            self.month = month
        }

        /// `YYYY-MM`.
        public init?(_ text: String) {
            let parts = text.split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let year = Int(parts[0]), let month = Int(parts[1]) else { return nil }
            self.init(year: year, month: month)
        }

        /// The month holding `date` (UTC).
        public init(containing date: Date) {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let components = calendar.dateComponents([.year, .month], from: date)
            year = components.year ?? 1970
            month = components.month ?? 1
        }

        /// `months` later (earlier when negative).
        public func adding(_ months: Int) -> Month {
            let index = year * 12 + (month - 1) + months
            return Month(year: index / 12, month: index % 12 + 1) ?? self
        }

        public var description: String { "\(year)-\(month < 10 ? "0" : "")\(month)" }
        /// The partition's name, as the partition roller makes it.
        public var partition: String { "audit_log_\(year)_\(month < 10 ? "0" : "")\(month)" }

        public static func < (lhs: Month, rhs: Month) -> Bool { (lhs.year, lhs.month) < (rhs.year, rhs.month) }
    }

    /// The first month of the hot window at `now`.
    public func firstHotMonth(now: Date = Date()) -> Month { Month(containing: now).adding(-(hotMonths - 1)) }

    /// What happened to a month.
    public struct MonthReport: Codable, Sendable, Equatable {
        public enum Outcome: String, Codable, Sendable {
            /// Exported, verified, partition dropped.
            case archived
            /// Exported and verified; the partition kept (`exportOnly`).
            case exported
            /// An earlier run's archive checked against the partition, then the partition dropped.
            case resumed
            /// Another run holds the month.
            case skippedInProgress
            /// The partition is gone and an archive of the month exists.
            case alreadyArchived
            /// The month could not be archived (``problem`` says why); its partition is kept.
            case failed
            /// A lock wait ran out (the partition's, or `audit_log`'s for the detach); what was
            /// archived and verified is used by the next run, which drops the partition.
            case skippedBusy
        }

        public var month: String
        public var outcome: Outcome
        /// Rows in the archive.
        public var rows: Int
        /// The archive's id, when there is one.
        public var archive: String?
        /// Why the month failed (a safe error description), when it did.
        public var problem: String?

        public init(month: String, outcome: Outcome, rows: Int, archive: String?, problem: String? = nil) {
            self.month = month
            self.outcome = outcome
            self.rows = rows
            self.archive = archive
            self.problem = problem
        }
    }

    /// The partitions of `audit_log` older than the hot window, oldest first.
    public func monthsToArchive(now: Date = Date()) async throws -> [Month] {
        let cutoff = firstHotMonth(now: now)
        let rows = try await owner.query("""
            SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass('audit_log') ORDER BY 1
            """)
        return try rows.compactMap { row -> Month? in
            let name: String = try row.decode("name")
            guard name.hasPrefix("audit_log_"), let month = Month(String(name.dropFirst("audit_log_".count)).replacingOccurrences(of: "_", with: "-")) else { return nil }
            return month < cutoff ? month : nil
        }
    }

    /// Archives `months` (nil: every month older than the hot window); a month inside the hot
    /// window is refused before anything is done. With `exportOnly` the partitions stay. A month
    /// that fails is reported `failed` with its problem, its partition kept, and the next
    /// month goes on.
    public func archive(
        _ months: [Month]? = nil, exportOnly: Bool = false, fresh: Bool = false, now: Date = Date(), progress: @Sendable (MonthReport) -> Void = { _ in }
    ) async throws -> [MonthReport] {
        guard (1...120).contains(hotMonths) else { throw BackupError(.invalidInput, "the hot window is 1 to 120 months, not \(hotMonths)") }
        let cutoff = firstHotMonth(now: now)
        if let hot = months?.first(where: { $0 >= cutoff }) {
            throw BackupError(.invalidInput, "\(hot) is inside the hot window (the \(hotMonths) months from \(cutoff)); only older months are archived")
        }
        var reports: [MonthReport] = []
        let chosen: [Month]
        if let months { chosen = months } else { chosen = try await monthsToArchive(now: now) }
        for month in chosen {
            // A month that fails keeps its partition and does not stop the others.
            let report: MonthReport
            do { report = try await archive(month, exportOnly: exportOnly, fresh: fresh) } catch let error as DatabaseError where error.sqlState == "55P03" {
                // A lock wait ran out (the partition's, or audit_log's for the detach): the
                // transaction rolled back; an archive already made is used by the next run.
                report = MonthReport(
                    month: "\(month)", outcome: .skippedBusy, rows: 0, archive: nil,
                    problem: "a lock wait ran out (audit_log or its partition was busy); the next run goes on from here"
                )
            } catch {
                report = MonthReport(month: "\(month)", outcome: .failed, rows: 0, archive: nil, problem: "\(error)")
            }
            progress(report)
            reports.append(report)
        }
        return reports
    }

    /// The finished archives of `month` (ids with a manifest), oldest first.
    public func archives(of month: Month) async throws(BackupError) -> [String] {
        try await EncryptedArchive.list(in: store, prefix: prefix).filter { $0.hasPrefix("\(month)-") }
    }

    private func archive(_ month: Month, exportOnly: Bool, fresh: Bool) async throws -> MonthReport {
        // READ COMMITTED, every read after the SHARE lock: a write to the month that commits
        // before the lock is granted is seen, and none can happen after it.
        try await owner.transaction { tx in
            // Rows as JSON lines must read the same in every run: timestamps in UTC.
            _ = try await tx.execute("SET LOCAL TimeZone = 'UTC'")
            _ = try await tx.execute(SQLQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(max(1, lockTimeout.milliseconds))ms'"))
            guard try await tx.first("SELECT pg_try_advisory_xact_lock(hashtext('restartix_audit_archive'), hashtext(\(month.partition))) AS held")?.decode("held", as: Bool.self) == true else {
                return MonthReport(month: "\(month)", outcome: .skippedInProgress, rows: 0, archive: nil)
            }
            let existing = try await archives(of: month)
            guard try await tx.first("SELECT to_regclass(\(month.partition)) IS NOT NULL AS present")?.decode("present", as: Bool.self) == true else {
                guard let last = existing.last else { throw BackupError(.notFound, "there is no partition \(month.partition) and no archive of \(month)") }
                return MonthReport(month: "\(month)", outcome: .alreadyArchived, rows: 0, archive: last)
            }
            _ = try await tx.execute("LOCK TABLE \(identifier: month.partition) IN SHARE MODE")
            // Rows the owner cannot see would be left out of the archive and then dropped.
            guard try await PostgresTools.unreadableTables(tx, only: month.partition).isEmpty else {
                throw BackupError(.sourceFailed, "the owner cannot read every row of \(month.partition) (no backup_read policy): nothing archived or dropped")
            }
            let table = try await Self.digest(tx, month: month, into: nil)
            // An earlier run's archive that holds exactly these rows is used as it is; one that
            // opens but holds other rows (they changed since) is left, and the month exported
            // afresh; one that does not open stops the month (it was changed in the store),
            // unless `fresh` says to export afresh anyway.
            if !fresh {
                var damaged: BackupError?
                for earlier in existing.reversed() {
                    do {
                        if try await Self.readBack(id: earlier, prefix: prefix, store: store, envelopeKey: envelopeKey) == table {
                            return try await finish(tx, month: month, rows: table.rows, id: earlier, outcome: exportOnly ? .exported : .resumed, exportOnly: exportOnly)
                        }
                    } catch let error as BackupError where error.code != .storage {
                        damaged = damaged ?? error
                    }
                }
                // None holds these rows; one that does not open at all was changed in the store.
                if let damaged { throw damaged }
            }
            let id = "\(month)-" + EncryptedArchive.makeID()
            let writer = try await EncryptedArchiveWriter.begin(id: id, kind: Self.kind, prefix: prefix, in: store, envelopeKey: envelopeKey, lock: lock)
            do {
                let exported = try await Self.digest(tx, month: month, into: writer)
                guard exported == table else { throw BackupError(.sourceFailed, "the rows of \(month) changed while they were exported") }
                _ = try await writer.finish(source: ["month": "\(month)", "table": month.partition], rowCounts: ["public.\(month.partition)": table.rows])
            } catch {
                await writer.abort()
                throw error
            }
            // Read back whole and compare with the rows, under the lock.
            let archived = try await Self.readBack(id: id, prefix: prefix, store: store, envelopeKey: envelopeKey)
            guard archived == table else {
                throw BackupError(.manifestMismatch, "the archive \(id) of \(month) holds \(archived.rows) rows that are not the partition's \(table.rows); the partition was not dropped")
            }
            return try await finish(tx, month: month, rows: table.rows, id: id, outcome: exportOnly ? .exported : .archived, exportOnly: exportOnly)
        }
    }

    /// Detaches and drops the month's partition (unless `exportOnly`). The detach locks
    /// `audit_log` itself, which stalls audit writes while it waits: it waits at most two
    /// seconds (a running backup holds that table for its whole dump); then the transaction
    /// rolls back and the month is `skippedBusy`, its archive kept for the next run.
    private func finish(_ tx: borrowing Transaction, month: Month, rows: Int, id: String, outcome: MonthReport.Outcome, exportOnly: Bool) async throws -> MonthReport {
        if exportOnly { return MonthReport(month: "\(month)", outcome: outcome, rows: rows, archive: id) }
        _ = try await tx.execute("SET LOCAL lock_timeout = '2s'")
        _ = try await tx.execute("ALTER TABLE audit_log DETACH PARTITION \(identifier: month.partition)")
        _ = try await tx.execute("DROP TABLE \(identifier: month.partition)")
        return MonthReport(month: "\(month)", outcome: outcome, rows: rows, archive: id)
    }

    /// The manifest kind of an audit month's archive.
    static let kind = "audit-month"

    /// A month's rows as lines: their count and the SHA-256 of the lines (each ending in a
    /// newline).
    struct Digest: Equatable {
        var rows = 0
        var sha256 = ""
    }

    /// Reads the partition's rows as JSON lines in `created_at, id` order (keyset batches),
    /// hashing them; and writes them, gzipped, into `writer` when one is given.
    static func digest(_ tx: borrowing Transaction, month: Month, into writer: EncryptedArchiveWriter?) async throws -> Digest {
        var hash = SHA256()
        var rows = 0
        var cursor: (at: String, id: UUID)?
        let gzip = try writer.map { _ throws(BackupError) in try GzipCompressor() }
        var compressed: [UInt8] = []
        while true {
            let after: SQLQuery = cursor.map { "WHERE (t.created_at, t.id) > (\($0.at)::timestamptz, \($0.id))" } ?? ""
            let batch = try await tx.query("""
                SELECT row_to_json(t)::text AS line, t.created_at::text AS at, t.id FROM \(identifier: month.partition) t \(after)
                ORDER BY t.created_at, t.id LIMIT 2000
                """)
            if batch.isEmpty { break }
            var lines: [UInt8] = []
            for row in batch {
                lines += Array(try row.decode("line", as: String.self).utf8)
                lines.append(0x0A)
            }
            hash.update(data: lines)
            rows += batch.count
            cursor = (try batch[batch.count - 1].decode("at"), try batch[batch.count - 1].decode("id"))
            if let gzip, let writer {
                compressed.removeAll(keepingCapacity: true)
                try gzip.compress(lines, into: &compressed)
                if !compressed.isEmpty { try await writer.write(compressed) }
            }
        }
        if let gzip, let writer {
            compressed.removeAll(keepingCapacity: true)
            try gzip.finish(into: &compressed)
            try await writer.write(compressed)
        }
        return Digest(rows: rows, sha256: Hex.lower(hash.finalize()))
    }

    /// The lines of archive `id`: their count and SHA-256, read back through the cipher and gzip.
    static func readBack(id: String, prefix: String, store: any ObjectStore, envelopeKey: SymmetricKey) async throws -> Digest {
        let archive = try await EncryptedArchive.open(id: id, prefix: prefix, in: store, envelopeKey: envelopeKey)
        guard archive.manifest.kind == kind else { throw BackupError(.manifestInvalid, "\(id) is an archive of kind \(archive.manifest.kind), not an audit month") }
        let gunzip = try GzipDecompressor()
        var hash = SHA256()
        var rows = 0
        var plain: [UInt8] = []
        try await archive.read { (chunk: [UInt8]) throws(BackupError) in
            plain.removeAll(keepingCapacity: true)
            try gunzip.decompress(chunk, into: &plain)
            hash.update(data: plain)
            rows += plain.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
        }
        return Digest(rows: rows, sha256: Hex.lower(hash.finalize()))
    }

    /// Inserts `batch` (JSON lines of `audit_log` rows) into the side table and empties it.
    static func insert(_ batch: inout [String], into table: String, _ tx: borrowing Transaction) async throws -> Int {
        guard !batch.isEmpty else { return 0 }
        let count = batch.count
        _ = try await tx.execute("""
            INSERT INTO audit_restore.\(identifier: table) \
            SELECT * FROM json_populate_recordset(NULL::audit_restore.\(identifier: table), \("[" + batch.joined(separator: ",") + "]")::json)
            """)
        batch.removeAll(keepingCapacity: true)
        return count
    }

    /// What ``restore(_:organization:)`` made.
    public struct Restored: Codable, Sendable, Equatable {
        /// The side table (`audit_restore.audit_log_YYYY_MM`, with `_org_<id>` for one clinic).
        public var table: String
        /// Rows restored.
        public var rows: Int
        /// The archive they came from.
        public var archive: String
    }

    /// Brings `month` back from its newest archive into a side table of its own in the
    /// `audit_restore` schema (never into `audit_log`: the hot log stays append-only and the
    /// schema's security baseline unchanged), all rows or only `organization`'s, in one
    /// transaction: an archive that fails to open or check leaves nothing. Refuses a side table
    /// that exists (drop it first). The side table has no grants: the owner reads it, or grants
    /// an investigator's role.
    public func restore(_ month: Month, organization: UUID? = nil) async throws -> Restored {
        guard let id = try await archives(of: month).last else { throw BackupError(.notFound, "there is no archive of \(month) under \(prefix)/") }
        let table = month.partition + (organization.map { "_org_" + $0.lowercasedString.replacingOccurrences(of: "-", with: "") } ?? "")
        let archive = try await EncryptedArchive.open(id: id, prefix: prefix, in: store, envelopeKey: envelopeKey)
        guard archive.manifest.kind == Self.kind else { throw BackupError(.manifestInvalid, "\(id) is an archive of kind \(archive.manifest.kind), not an audit month") }
        return try await owner.transaction { tx in
            _ = try await tx.execute("CREATE SCHEMA IF NOT EXISTS audit_restore")
            _ = try await tx.execute("REVOKE ALL ON SCHEMA audit_restore FROM PUBLIC")
            guard try await tx.first("SELECT to_regclass(\("audit_restore." + table)) IS NULL AS free")?.decode("free", as: Bool.self) == true else {
                throw BackupError(.targetNotEmpty, "audit_restore.\(table) exists; drop it to restore \(month) again")
            }
            _ = try await tx.execute("CREATE TABLE audit_restore.\(identifier: table) (LIKE public.audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            let gunzip = try GzipDecompressor()
            var plain: [UInt8] = [], pending: [UInt8] = [], batch: [String] = []
            var rows = 0
            let wanted = organization?.lowercasedString
            try await archive.read { (chunk: [UInt8]) throws(BackupError) in
                plain.removeAll(keepingCapacity: true)
                try gunzip.decompress(chunk, into: &plain)
                pending += plain
                var start = 0
                while let end = pending[start...].firstIndex(of: 0x0A) {
                    let line = Array(pending[start..<end])
                    start = end + 1
                    if let wanted {
                        // The row's own organization_id (not a key of the same name in its metadata).
                        let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any]
                        guard (object?["organization_id"] as? String)?.lowercased() == wanted else { continue }
                    }
                    batch.append(String(decoding: line, as: UTF8.self))
                }
                pending.removeFirst(start)
                guard batch.count >= 1000 else { return }
                do { rows += try await Self.insert(&batch, into: table, tx) } catch {
                    throw BackupError(.targetFailed, "restoring \(month) into audit_restore.\(table) failed: \(error)")
                }
            }
            guard pending.isEmpty else { throw BackupError(.manifestMismatch, "the archive \(id) ends inside a line") }
            rows += try await Self.insert(&batch, into: table, tx)
            return Restored(table: "audit_restore.\(table)", rows: rows, archive: id)
        }
    }
}
