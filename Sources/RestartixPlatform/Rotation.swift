public import RestartixCrypto
public import Foundation
public import RestartixKit
public import RestartixTenancy

/// A sealed column and the column naming its clinic (`nil` for platform rows).
public struct EncryptedColumn: Sendable, Hashable, CustomStringConvertible {
    /// The table.
    public let table: String
    /// The sealed column.
    public let column: String
    /// The column holding the organization id bound into each value.
    public let organizationColumn: String

    /// A sealed column of `table`. Names are SQL identifiers (`a-z`, `0-9`, `_`); anything
    /// else is a programming error and traps, since the names are spliced into SQL.
    public init(table: String, column: String, organizationColumn: String = "organization_id") {
        precondition(
            [table, column, organizationColumn].allSatisfy(ColumnPlace.isIdentifier),
            "EncryptedColumn names must be SQL identifiers (a-z, 0-9, _)"
        )
        self.table = table
        self.column = column
        self.organizationColumn = organizationColumn
    }

    /// Every column the platform seals: the tenant tables' sealed columns as the registry lists
    /// them (``PlatformSchema/tenantTables``: the patients' PII) and the providers' credentials.
    public static let builtIn: [EncryptedColumn] =
        PlatformSchema.tenantTables.tables.flatMap { table in
            table.sealedColumns.map { EncryptedColumn(table: table.name, column: $0, organizationColumn: table.tenantColumn) }
        }
        + [EncryptedColumn(table: "platform_service_providers", column: "credentials")]

    public var description: String { "\(table).\(column)" }

    /// ` AND organization_id IN (...)` for a scoped run, or nothing.
    func scope(_ organizations: [UUID]?) -> SQLQuery { .organizationScope(organizations, column: organizationColumn) }

    /// The 4 key-id bytes of a format v1 value in SQL (bytes 3-6 of the header), NULL for any
    /// other value (plaintext, a legacy format), which ``KeyringUsage`` reports as key 0.
    func keyIDBytes(_ dialect: SQLDialect) -> SQLQuery {
        let v1 = Data([ColumnCipher.formatVersion, ColumnCipher.algorithm])
        return dialect == .postgres
            ? "CASE WHEN substring(\(unsafeRaw: column) from 1 for 2) = \(v1) THEN substring(\(unsafeRaw: column) from 3 for 4) END"
            : "CASE WHEN substr(\(unsafeRaw: column), 1, 2) = \(v1) THEN substr(\(unsafeRaw: column), 3, 4) END"
    }
}

/// Rows per key id per sealed column (`restartix-jobs keyring-usage`), and the check that no
/// value still needs a disabled key.
public struct KeyringUsage: Sendable, Hashable {
    /// Count of values by column and key id (`0` collects values that are not format v1).
    public let counts: [EncryptedColumn: [UInt32: Int]]
    /// Count of values by clinic (`nil`: platform rows) and key id, over all columns.
    public let byOrganization: [UUID?: [UInt32: Int]]

    /// Counts every sealed value of `columns`, across all clinics or only `organizations` (one
    /// audited unscoped transaction on the admin database).
    public static func measure(
        _ admin: AdminDatabase, columns: [EncryptedColumn] = EncryptedColumn.builtIn, organizations: [UUID]? = nil
    ) async throws -> KeyringUsage {
        try await admin.unscoped(reason: "keyring-usage: count sealed values per key id", actor: .system("keyring-usage")) { tx in
            var counts: [EncryptedColumn: [UInt32: Int]] = [:]
            var byOrganization: [UUID?: [UInt32: Int]] = [:]
            for column in columns {
                let rows = try await tx.query("""
                    SELECT \(unsafeRaw: column.organizationColumn) AS organization_id, \(column.keyIDBytes(tx.dialect)) AS key_id, \
                    count(*) AS n FROM \(unsafeRaw: column.table) \
                    WHERE \(unsafeRaw: column.column) IS NOT NULL\(column.scope(organizations)) GROUP BY 1, 2
                    """)
                var perKey: [UInt32: Int] = [:]
                for row in rows {
                    let bytes = try row.decode("key_id", as: Data?.self) ?? Data()
                    let id = bytes.count == 4 ? bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : 0
                    let n = try row.decode("n", as: Int.self)
                    perKey[id, default: 0] += n
                    byOrganization[try row.decode("organization_id", as: UUID?.self), default: [:]][id, default: 0] += n
                }
                counts[column] = perKey
            }
            return KeyringUsage(counts: counts, byOrganization: byOrganization)
        }
    }

    /// Values not under the key that seals for their clinic now (run reencrypt until 0).
    public func remaining(under keyring: Keyring) -> Int {
        byOrganization.reduce(0) { total, entry in
            let target = keyring.primary(for: entry.key).id
            return total + entry.value.filter { $0.key != target }.values.reduce(0, +)
        }
    }

    /// Values per key id over all columns.
    public var totals: [UInt32: Int] {
        counts.values.reduce(into: [:]) { total, perKey in for (id, n) in perKey { total[id, default: 0] += n } }
    }

    /// Throws when a value needs a key the keyring cannot open with (disabled or absent):
    /// disabling a key that is still in use is refused.
    public func verify(against keyring: Keyring) throws(EncryptionError) {
        for (column, perKey) in counts.sorted(by: { $0.key.description < $1.key.description }) {
            for (id, n) in perKey.sorted(by: { $0.key < $1.key }) where n > 0 {
                guard id != 0 else {
                    throw EncryptionError(.unsupportedFormat, "\(n) values in \(column) are not sealed values of format v1")
                }
                guard let key = keyring.keys[id] else {
                    throw EncryptionError(.unknownKey, "\(n) values in \(column) use key \(id), which is not in the keyring")
                }
                if key.status == .disabled {
                    throw EncryptionError(.keyDisabled, "key \(id) is disabled but \(n) values in \(column) use it: make it decrypt-only and run reencrypt first")
                }
            }
        }
        for (organization, perKey) in byOrganization {
            for (id, n) in perKey where n > 0 {
                if let owner = keyring.keys[id]?.organizationID, owner != organization {
                    throw EncryptionError(.authenticationFailed, "\(n) values of another clinic are under key \(id), which belongs to \(owner.lowercasedString)")
                }
            }
        }
    }
}

extension KeyringUsage {
    /// The boot check of a service about to serve with `keyring`: when the keyring lists a
    /// disabled key, counts the sealed values and throws ``verify(against:)``'s error if any
    /// value still needs a disabled (or absent) key, so a keyring that disables a key too early
    /// is refused at deploy time rather than failing reads later. Costs one scan of each sealed
    /// column, so it runs only when some key is disabled; returns the usage it measured, or
    /// `nil` when there was nothing to check.
    @discardableResult
    public static func verifyBeforeServing(
        _ admin: AdminDatabase, keyring: Keyring, columns: [EncryptedColumn] = EncryptedColumn.builtIn
    ) async throws -> KeyringUsage? {
        guard keyring.keys.values.contains(where: { $0.status == .disabled }) else { return nil }
        let usage = try await measure(admin, columns: columns)
        try usage.verify(against: keyring)
        return usage
    }
}

/// Re-encrypts every sealed value not under the key that seals for its clinic now — the
/// platform primary, or the clinic's own primary when it brings its own keys (BYOK)
/// (`restartix-jobs reencrypt`).
///
/// Rows are found by the key id in their header (SQL on the bytes), in keyset-paginated batches
/// of ``batchSize`` by id, each batch one transaction; each value is opened, sealed again for
/// the same place under the primary, and written with a compare-and-swap
/// (`UPDATE ... WHERE id = $id AND col = $old`), so a value changed meanwhile — by the service
/// or by another reencrypt — is left alone. Nothing is remembered between runs: a rewritten
/// value no longer matches, so a killed run resumes by running again. On Postgres each batch
/// reads its rows `FOR UPDATE SKIP LOCKED`, so two runs at once take different rows; on SQLite
/// write transactions take turns. A value that does not open is recorded in the report and
/// skipped, never rewritten. The report ends with how many values are still not under the
/// primary.
public struct Reencryptor: Sendable {
    /// Progress after each batch.
    public struct Progress: Sendable, Hashable {
        /// The column the batch was in.
        public let column: EncryptedColumn
        /// Values rewritten under the primary in this run, for this column so far.
        public let rewritten: Int
        /// Values skipped because they changed between read and write.
        public let skipped: Int
    }

    /// The outcome of a run.
    public struct Report: Sendable, Hashable {
        /// Values rewritten, per column.
        public var rewritten: [EncryptedColumn: Int] = [:]
        /// Values left alone because they changed meanwhile, per column.
        public var skipped: [EncryptedColumn: Int] = [:]
        /// Values that could not be opened (changed bytes, or sealed for another place), per
        /// column: left as they are, and the run goes on. Investigate each.
        public var failed: [EncryptedColumn: [UUID]] = [:]
        /// Whether the run stopped at `maximumBatches` before finishing.
        public var stoppedEarly = false
        /// Values still not under the primary when the run ended (another run may hold them,
        /// or they failed): run again until 0, then disable the old keys.
        public var remaining = 0
    }

    private let admin: AdminDatabase
    private let cipher: ColumnCipher
    private let columns: [EncryptedColumn]
    private let organizations: [UUID]?
    /// Rows per batch (one transaction).
    public let batchSize: Int

    /// A re-encryption over `columns` with `cipher`'s keyring, of every clinic or only
    /// `organizations` (rows of platform columns have none and are skipped in a scoped run).
    public init(
        admin: AdminDatabase, cipher: ColumnCipher, columns: [EncryptedColumn] = EncryptedColumn.builtIn,
        organizations: [UUID]? = nil, batchSize: Int = 500
    ) {
        precondition((1...10_000).contains(batchSize), "batchSize must be 1-10000")
        self.admin = admin
        self.cipher = cipher
        self.columns = columns
        self.organizations = organizations
        self.batchSize = batchSize
    }

    /// Runs until no value outside the primary remains (or `maximumBatches` batches ran).
    /// Refuses to start when a value needs a disabled or unknown key.
    public func run(maximumBatches: Int = .max, progress: @Sendable (Progress) -> Void = { _ in }) async throws -> Report {
        try await KeyringUsage.measure(admin, columns: columns, organizations: organizations).verify(against: cipher.keyring)
        var report = Report()
        var batches = 0
        // Passes over every column until one rewrites nothing. One pass is not enough with a
        // concurrent run: rows are locked whole, so a batch for one column skips rows the other
        // run holds for another column, and both can pass such a row by; the run that rewrites
        // last sees it on its next pass.
        passes: while true {
            var rewrittenThisPass = 0
            for column in columns {
                var after: UUID?
                while true {
                    if batches >= maximumBatches {
                        report.stoppedEarly = true
                        break passes
                    }
                    batches += 1
                    let outcome = try await batch(column, after: after)
                    rewrittenThisPass += outcome.rewritten
                    report.rewritten[column, default: 0] += outcome.rewritten
                    report.skipped[column, default: 0] += outcome.skipped
                    for id in outcome.failed where !(report.failed[column]?.contains(id) ?? false) { report.failed[column, default: []].append(id) }
                    progress(Progress(column: column, rewritten: report.rewritten[column]!, skipped: report.skipped[column]!))
                    // Only an empty batch ends a column: on Postgres a batch can come back short
                    // while rows remain (a row another run rewrote between this query's snapshot
                    // and its lock no longer matches, and LIMIT counted it).
                    guard outcome.read > 0, let last = outcome.last else { break }
                    after = last
                }
            }
            if rewrittenThisPass == 0 { break }
        }
        report.remaining = try await KeyringUsage.measure(admin, columns: columns, organizations: organizations).remaining(under: cipher.keyring)
        return report
    }

    private struct Outcome {
        var last: UUID?
        var read = 0
        var rewritten = 0
        var skipped = 0
        var failed: [UUID] = []
    }

    /// The key-id bytes each row's value should carry, in SQL: the platform primary's, or for
    /// a clinic with keys of its own (BYOK) that clinic's primary's.
    private func targetKeyBytes(_ column: EncryptedColumn) -> SQLQuery {
        func bytes(_ id: UInt32) -> Data { Data(ColumnCipher.header(keyID: id)[2..<6]) }
        let keyring = cipher.keyring
        guard !keyring.organizationPrimaryIDs.isEmpty else { return "\(bytes(keyring.primaryID))" }
        var query: SQLQuery = "CASE \(unsafeRaw: column.organizationColumn)"
        for (organization, id) in keyring.organizationPrimaryIDs.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
            query.append(" WHEN \(organization) THEN \(bytes(id))")
        }
        query.append(" ELSE \(bytes(keyring.primaryID)) END")
        return query
    }

    private func batch(_ column: EncryptedColumn, after: UUID?) async throws -> Outcome {
        try await admin.unscoped(reason: "reencrypt: rewrite \(column) under the primary key", actor: .system("reencrypt")) { tx in
            let from: SQLQuery = after.map { " AND id > \($0)" } ?? ""
            let lock: SQLQuery = tx.dialect == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
            let rows = try await tx.query("""
                SELECT id, \(unsafeRaw: column.organizationColumn) AS organization_id, \(unsafeRaw: column.column) AS value \
                FROM \(unsafeRaw: column.table) WHERE \(column.keyIDBytes(tx.dialect)) <> \(targetKeyBytes(column))\(column.scope(organizations))\(from) \
                ORDER BY id LIMIT \(batchSize)\(lock)
                """)
            var outcome = Outcome(read: rows.count)
            var updates: [SQLQuery] = []
            for row in rows {
                let id = try row.decode("id", as: UUID.self)
                outcome.last = id
                let old = try row.decode("value", as: Data.self)
                let organization = try row.decode("organization_id", as: UUID?.self)
                let place = ColumnPlace(table: column.table, column: column.column, organizationID: organization, rowID: id)
                let resealed: Data
                do {
                    resealed = try cipher.seal(try cipher.open(old, at: place), at: place)
                } catch {
                    outcome.failed.append(id)
                    continue
                }
                updates.append("""
                    UPDATE \(unsafeRaw: column.table) SET \(unsafeRaw: column.column) = \(resealed) \
                    WHERE id = \(id) AND \(unsafeRaw: column.column) = \(old)
                    """)
            }
            let results = try await tx.pipeline(updates)
            outcome.rewritten = results.filter { $0.affectedRows == 1 }.count
            outcome.skipped = updates.count - outcome.rewritten
            return outcome
        }
    }
}
