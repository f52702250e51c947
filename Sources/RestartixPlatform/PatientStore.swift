public import RestartixCrypto
public import Foundation
public import RestartixKit
public import RestartixTenancy

/// A patient's personal data, as service code sees it. Stored sealed (name, date of birth,
/// email, phone), each value bound to its row, column and clinic; never logged.
public struct PatientPII: Sendable, Hashable {
    /// 1-200 characters.
    public var name: String
    /// `YYYY-MM-DD`, a real calendar date not in the future.
    public var dateOfBirth: String?
    /// An address with one `@`, at most 254 characters; looked up through its blind index.
    public var email: String?
    /// Digits with an optional leading `+`, spaces, dashes, dots or parentheses; 3-32 characters.
    public var phone: String?

    /// Personal data; ``PatientStore`` validates it before anything is written.
    public init(name: String, dateOfBirth: String? = nil, email: String? = nil, phone: String? = nil) {
        self.name = name
        self.dateOfBirth = dateOfBirth
        self.email = email
        self.phone = phone
    }


    /// Checks every field; the error names the field, never its value.
    public func validated() throws(PatientError) -> PatientPII {
        // Lengths in Unicode scalars, as JSON Schema's maxLength counts them (the API's
        // document states these rules); control characters (C0, DEL, C1) nowhere.
        guard (1...200).contains(name.unicodeScalars.count), !name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, !Self.hasControl(name) else {
            throw PatientError(.invalidField, "name must be 1-200 characters, not only spaces, without control characters")
        }
        if let dateOfBirth {
            guard let date = Self.parseDate(dateOfBirth), date <= Date() else {
                throw PatientError(.invalidField, "date_of_birth must be a past date as YYYY-MM-DD")
            }
        }
        if let email {
            let parts = email.split(separator: "@", omittingEmptySubsequences: false)
            guard email.unicodeScalars.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
                !email.contains(where: \.isWhitespace), !Self.hasControl(email)
            else {
                throw PatientError(.invalidField, "email must be an address like name@example.com")
            }
        }
        if let phone {
            let allowed = Set("0123456789-. ()")
            let body = phone.hasPrefix("+") ? phone.dropFirst() : Substring(phone)
            guard (3...32).contains(phone.unicodeScalars.count), body.allSatisfy(allowed.contains), body.contains(where: \.isNumber) else {
                throw PatientError(.invalidField, "phone must be 3-32 characters of digits, +, -, ., spaces or parentheses")
            }
        }
        return self
    }

    static func hasControl(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }

    static func parseDate(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        let digits = [0, 1, 2, 3, 5, 6, 8, 9]
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[$0]) })
        else { return nil }
        let parts = text.split(separator: "-")
        guard let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: DateComponents(year: y, month: m, day: d)),
            calendar.dateComponents([.year, .month, .day], from: date) == DateComponents(year: y, month: m, day: d)
        else { return nil }
        return date
    }
}

extension PatientPII: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Redacted: a patient's data never reaches a log line through this type.
    public var description: String { "PatientPII(<redacted>)" }
    public var debugDescription: String { description }
    /// `dump()` and debuggers see no fields.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// A patient row, opened.
public struct PatientRecord: Sendable, Hashable {
    /// The row id.
    public let id: UUID
    /// The clinic.
    public let organizationID: UUID
    /// The patient's own user account, if any (patient-self access).
    public let userID: UUID?
    /// The personal data.
    public let pii: PatientPII
    /// When the record was created.
    public let createdAt: Date
    /// When its personal data last changed.
    public let updatedAt: Date
}

extension PatientRecord: CustomStringConvertible {
    /// Ids only.
    public var description: String {
        "PatientRecord(id: \(id.lowercasedString), organization: \(organizationID.lowercasedString), pii: <redacted>)"
    }
}

/// The `patients` table through the column cipher: service code reads and writes
/// ``PatientPII``; the database only ever holds sealed values and the email's blind index.
///
/// Every method runs inside a tenant transaction (``TenantDatabase/withTenant(_:_:)``), so
/// row-level security confines it to the context's clinic (and, for a patient, to its own
/// record), and the seal binds each value to that clinic and the row's id.
public struct PatientStore: Sendable {
    /// The sealed columns, in table order.
    public static let sealedColumns = ["name", "date_of_birth", "email", "phone"]

    private let cipher: ColumnCipher
    private let index: BlindIndex

    /// A store sealing with `cipher` (its keyring's primary) and indexing with its blind-index key.
    public init(cipher: ColumnCipher) {
        self.cipher = cipher
        self.index = BlindIndex(keyring: cipher.keyring)
    }

    /// Inserts a patient of the transaction's clinic and returns its id.
    public func insert(_ pii: PatientPII, userID: UUID? = nil, in tx: borrowing TenantTransaction) async throws -> UUID {
        try await insert(pii, id: UUIDv7.generate(), userID: userID, in: tx)
    }

    /// Inserts a patient under a given id (seeding benchmarks with ids a load generator can
    /// name; service code takes a fresh UUIDv7).
    package func insert(_ pii: PatientPII, id: UUID, userID: UUID? = nil, in tx: borrowing TenantTransaction) async throws -> UUID {
        let pii = try pii.validated()
        let organization = tx.context.organizationID
        let sealed = try seal(pii, organization: organization, row: id)
        try await tx.execute("""
            INSERT INTO patients (id, organization_id, user_id, name, date_of_birth, email, phone, email_index) \
            VALUES (\(id), \(organization), \(userID), \(sealed.name), \(sealed.dateOfBirth), \(sealed.email), \(sealed.phone), \(sealed.emailIndex))
            """)
        return id
    }

    /// Replaces a patient's personal data; `false` when no such (visible, not deleted) patient.
    @discardableResult
    public func update(_ id: UUID, to pii: PatientPII, in tx: borrowing TenantTransaction) async throws -> Bool {
        let pii = try pii.validated()
        let sealed = try seal(pii, organization: tx.context.organizationID, row: id)
        return try await tx.execute("""
            UPDATE patients SET name = \(sealed.name), date_of_birth = \(sealed.dateOfBirth), email = \(sealed.email), \
            phone = \(sealed.phone), email_index = \(sealed.emailIndex), updated_at = \(tx.dialect.now) \
            WHERE id = \(id) AND deleted_at IS NULL
            """) == 1
    }

    /// One patient, opened; `nil` when not visible or deleted.
    public func fetch(_ id: UUID, in tx: borrowing TenantTransaction) async throws -> PatientRecord? {
        try await tx.first(Self.fetchQuery(id)).map { try open($0) }
    }

    /// One patient, opened, read in a transaction of its own under `context`: `BEGIN`, the
    /// context, the select and `COMMIT` in one round trip (``TenantDatabase/query(_:_:)``);
    /// `nil` when not visible or deleted.
    public func fetch(_ id: UUID, as context: TenantContext, in tenants: TenantDatabase) async throws -> PatientRecord? {
        try await tenants.query(context, Self.fetchQuery(id)).first.map { try open($0) }
    }

    private static func fetchQuery(_ id: UUID) -> SQLQuery {
        "\(unsafeRaw: select) WHERE id = \(id) AND deleted_at IS NULL"
    }

    /// Patients with this email in the transaction's clinic, found by blind index (no
    /// decryption of other rows), then opened and compared exactly.
    public func find(email: String, in tx: borrowing TenantTransaction) async throws -> [PatientRecord] {
        let normalized = BlindIndex.normalizedEmail(email)
        let organization = tx.context.organizationID
        let key = index.index(normalized, table: "patients", column: "email", organizationID: organization)
        let rows = try await tx.query("""
            \(unsafeRaw: Self.select) WHERE organization_id = \(organization) AND email_index = \(key) AND deleted_at IS NULL ORDER BY id
            """)
        return try rows.map { try open($0) }.filter { $0.pii.email.map(BlindIndex.normalizedEmail) == normalized }
    }

    /// A page of the clinic's patients (for a patient principal: its own record), in id order
    /// (ids are UUIDv7: creation order), after `cursor` when given.
    public func list(after cursor: UUID?, limit: Int, in tx: borrowing TenantTransaction) async throws -> [PatientRecord] {
        let rows: [SQLRow]
        if let cursor {
            rows = try await tx.query("\(unsafeRaw: Self.select) WHERE deleted_at IS NULL AND id > \(cursor) ORDER BY id LIMIT \(limit)")
        } else {
            rows = try await tx.query("\(unsafeRaw: Self.select) WHERE deleted_at IS NULL ORDER BY id LIMIT \(limit)")
        }
        return try rows.map { try open($0) }
    }

    /// Marks a patient deleted (its rows stay, sealed, for the retention the clinic owes);
    /// `false` when no such visible, not yet deleted patient.
    public func softDelete(_ id: UUID, in tx: borrowing TenantTransaction) async throws -> Bool {
        try await tx.execute("UPDATE patients SET deleted_at = \(tx.dialect.now) WHERE id = \(id) AND deleted_at IS NULL") == 1
    }

    /// The not-deleted patient record of `user` in the transaction's clinic, if any.
    public func record(ofUser user: UUID, in tx: borrowing TenantTransaction) async throws -> UUID? {
        try await tx.first("SELECT id FROM patients WHERE user_id = \(user) AND deleted_at IS NULL").map { try $0.decode("id", as: UUID.self) }
    }

    package static let select = "SELECT id, organization_id, user_id, name, date_of_birth, email, phone, created_at, updated_at FROM patients"

    struct Sealed {
        let name: Data
        let dateOfBirth: Data?
        let email: Data?
        let phone: Data?
        let emailIndex: Data?
    }

    func seal(_ pii: PatientPII, organization: UUID, row: UUID) throws(EncryptionError) -> Sealed {
        func place(_ column: String) -> ColumnPlace { ColumnPlace(table: "patients", column: column, organizationID: organization, rowID: row) }
        return Sealed(
            name: try cipher.seal(pii.name, at: place("name")),
            dateOfBirth: try pii.dateOfBirth.map { value throws(EncryptionError) in try cipher.seal(value, at: place("date_of_birth")) },
            email: try pii.email.map { value throws(EncryptionError) in try cipher.seal(value, at: place("email")) },
            phone: try pii.phone.map { value throws(EncryptionError) in try cipher.seal(value, at: place("phone")) },
            emailIndex: pii.email.map { index.index(BlindIndex.normalizedEmail($0), table: "patients", column: "email", organizationID: organization) }
        )
    }

    func open(_ row: SQLRow) throws -> PatientRecord {
        let id = try row.decode("id", as: UUID.self)
        let organization = try row.decode("organization_id", as: UUID.self)
        func value(_ column: String) throws -> String? {
            guard let sealed = try row.decode(column, as: Data?.self) else { return nil }
            return try cipher.openString(sealed, at: ColumnPlace(table: "patients", column: column, organizationID: organization, rowID: id))
        }
        guard let name = try value("name") else { throw EncryptionError(.truncated, "patients.name is empty") }
        return PatientRecord(
            id: id, organizationID: organization, userID: try row.decode("user_id", as: UUID?.self),
            pii: PatientPII(name: name, dateOfBirth: try value("date_of_birth"), email: try value("email"), phone: try value("phone")),
            createdAt: try row.decode("created_at", as: Date.self), updatedAt: try row.decode("updated_at", as: Date.self)
        )
    }
}
