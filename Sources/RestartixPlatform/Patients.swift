public import Foundation
public import RestartixCrypto
import RestartixKit
public import RestartixTenancy

/// A change to a patient's personal data: each field left as it is, set, or (the optional
/// ones) cleared.
public struct PatientChange: Sendable, Hashable {
    /// What becomes of one field.
    public enum Field<Value: Sendable & Hashable>: Sendable, Hashable {
        case unchanged
        case set(Value)
        case cleared
    }

    /// The name (required on a record: it can be set, never cleared).
    public var name: String?
    public var dateOfBirth: Field<String>
    public var email: Field<String>
    public var phone: Field<String>

    /// A change of the given fields; every other stays as it is.
    public init(name: String? = nil, dateOfBirth: Field<String> = .unchanged, email: Field<String> = .unchanged, phone: Field<String> = .unchanged) {
        self.name = name
        self.dateOfBirth = dateOfBirth
        self.email = email
        self.phone = phone
    }

    /// Whether it changes nothing.
    public var isEmpty: Bool { name == nil && dateOfBirth == .unchanged && email == .unchanged && phone == .unchanged }

    /// `pii` with the change applied, and the names of the fields it changed (for the audit
    /// row: names, never values).
    func applied(to pii: PatientPII) -> (PatientPII, [String]) {
        var result = pii
        var changed: [String] = []
        if let name, name != pii.name {
            result.name = name
            changed.append("name")
        }
        func apply(_ field: Field<String>, _ keyPath: WritableKeyPath<PatientPII, String?>, _ column: String) {
            let new: String?? = switch field {
            case .unchanged: .none
            case .set(let value): .some(value)
            case .cleared: .some(nil)
            }
            if let new, new != pii[keyPath: keyPath] {
                result[keyPath: keyPath] = new
                changed.append(column)
            }
        }
        apply(dateOfBirth, \.dateOfBirth, "date_of_birth")
        apply(email, \.email, "email")
        apply(phone, \.phone, "phone")
        return (result, changed)
    }
}

extension PatientChange: CustomStringConvertible {
    /// Field names only.
    public var description: String { "PatientChange(<redacted>)" }
}

/// A page of patients and where the next one starts.
public struct PatientPage: Sendable, Hashable {
    /// The patients, in id (creation) order.
    public let patients: [PatientRecord]
    /// The cursor for the next page: `nil` when this one is the last.
    public let next: UUID?
}

/// A clinic's patients, with the platform's rules about who may do what: the library behind
/// the Core API's patient routes.
///
/// - Staff (owners, admins, specialists, assistants) create, read, change and list the
///   clinic's patients and find them by e-mail; only owners and admins delete them (a soft
///   delete: the sealed row stays for the retention the clinic owes).
/// - A patient principal sees and changes only its own record (row-level security confines it;
///   another patient's id is as unknown as another clinic's).
/// - A record of another clinic, or one deleted, is ``TenancyError/Code/notFound``: never
///   `roleNotAllowed`, never data.
/// - Every change writes its audit row (`patient.create`, `patient.update`, `patient.delete`:
///   the record's id and the names of the fields changed, never their values) in the
///   transaction that makes it.
///
/// Personal data is validated before anything is written (``PatientError``), sealed by
/// ``PatientStore`` under the clinic's keyring and bound to its row.
public struct Patients: Sendable {
    /// At most this many patients a page.
    public static let maximumPageSize = 100

    let tenants: TenantDatabase
    let store: PatientStore

    /// The service over `tenants` (the app role), sealing with `cipher`.
    public init(tenants: TenantDatabase, cipher: ColumnCipher) {
        self.tenants = tenants
        store = PatientStore(cipher: cipher)
    }

    /// Creates a patient of `context`'s clinic (staff only), optionally linked to `userID`, a
    /// patient member of the clinic without a record yet, and returns it.
    public func create(_ pii: PatientPII, userID: UUID? = nil, as context: TenantContext, requestID: String? = nil) async throws -> PatientRecord {
        try Self.require(context, staff: true, to: "create patients")
        let pii = try pii.validated()
        return try await tenants.withTenant(context) { tx in
            if let userID {
                // One record per account: two requests linking the same account at once would
                // both find none. SQLite runs one writer at a time; on Postgres the check and the
                // insert hold a transaction-scoped lock on (clinic, account), which PgBouncer's
                // transaction mode keeps (it ends with the transaction).
                try await tx.lockForTransaction("restartix.patients.link", context.organizationID.lowercasedString, userID.lowercasedString)
                let membership = try await tx.first("SELECT role FROM memberships WHERE user_id = \(userID)")
                guard try membership?.decode("role", as: String.self) == TenantRole.patient.rawValue else {
                    throw PatientError(.notAPatientMember, "user_id is not a patient member of this clinic")
                }
                guard try await store.record(ofUser: userID, in: tx) == nil else {
                    throw PatientError(.alreadyLinked, "user_id already has a patient record in this clinic")
                }
            }
            let id = try await store.insert(pii, userID: userID, in: tx)
            try await tx.audit(AuditEvent(
                action: "patient.create", resourceType: "patient", resourceID: id, requestID: requestID,
                metadata: ["fields": Self.fieldNames(of: pii).joined(separator: ",")]
            ))
            guard let record = try await store.fetch(id, in: tx) else { throw Self.notFound }
            return record
        }
    }

    /// One patient of `context`'s clinic (a patient principal: only its own).
    public func get(_ id: UUID, as context: TenantContext) async throws -> PatientRecord {
        // One round trip: the read needs no transaction of the caller's.
        guard let record = try await store.fetch(id, as: context, in: tenants) else { throw Self.notFound }
        return record
    }

    /// Applies `change` to a patient (staff, or the patient itself) and returns the record.
    /// A change that changes nothing writes nothing and no audit row.
    public func update(_ id: UUID, _ change: PatientChange, as context: TenantContext, requestID: String? = nil) async throws -> PatientRecord {
        try await tenants.withTenant(context) { tx in
            guard let record = try await store.fetch(id, in: tx) else { throw Self.notFound }
            let (pii, changed) = change.applied(to: record.pii)
            let valid = try pii.validated()
            guard !changed.isEmpty else { return record }
            guard try await store.update(id, to: valid, in: tx) else { throw Self.notFound }
            try await tx.audit(AuditEvent(
                action: "patient.update", resourceType: "patient", resourceID: id, requestID: requestID,
                metadata: ["fields": changed.joined(separator: ",")]
            ))
            guard let updated = try await store.fetch(id, in: tx) else { throw Self.notFound }
            return updated
        }
    }

    /// Deletes a patient (owners and admins): the record no longer appears anywhere; its sealed
    /// row stays. A patient account linked to the record loses its patient membership of the
    /// clinic in the same transaction, so it no longer reaches the appointments, files and
    /// telemetry its account is named on (they match the account, not the record). Returns the
    /// account cut off, if any (the caller drops any membership it keeps cached).
    @discardableResult
    public func delete(_ id: UUID, as context: TenantContext, requestID: String? = nil) async throws -> UUID? {
        try Self.require(context, managers: true, to: "delete patients")
        return try await tenants.withTenant(context) { tx in
            let account = try await tx.first("SELECT user_id FROM patients WHERE id = \(id) AND deleted_at IS NULL")
                .flatMap { try $0.decode("user_id", as: UUID?.self) }
            guard try await store.softDelete(id, in: tx) else { throw Self.notFound }
            var metadata: [String: String] = [:]
            if let account {
                let removed = try await tx.execute("""
                    DELETE FROM memberships WHERE organization_id = \(context.organizationID) AND user_id = \(account) AND role = 'patient'
                    """)
                // The policies let no one remove a membership under an elevated session (it
                // filters the row out, it does not fail): then the record stays too, rather than
                // a deleted record whose account still reaches what it is named on.
                if removed == 0, try await tx.first("""
                    SELECT 1 AS found FROM memberships WHERE organization_id = \(context.organizationID) AND user_id = \(account) AND role = 'patient'
                    """) != nil {
                    throw TenancyError(
                        .roleNotAllowed, "a patient with an account is deleted outside an elevated session: its membership of the clinic must go with it"
                    )
                }
                metadata["patient_membership_removed"] = removed > 0 ? "true" : "false"
            }
            try await tx.audit(AuditEvent(action: "patient.delete", resourceType: "patient", resourceID: id, requestID: requestID, metadata: metadata))
            return account
        }
    }

    /// A page of `limit` (1 to ``maximumPageSize``) patients after `cursor` (a patient
    /// principal's list holds only its own record).
    public func list(after cursor: UUID? = nil, limit: Int = 50, as context: TenantContext) async throws -> PatientPage {
        guard (1...Self.maximumPageSize).contains(limit) else {
            throw PatientError(.invalidField, "limit must be 1 to \(Self.maximumPageSize)")
        }
        return try await tenants.withTenant(context) { tx in
            // One more than asked: whether another page follows, without a count.
            let rows = try await store.list(after: cursor, limit: limit + 1, in: tx)
            let page = Array(rows.prefix(limit))
            return PatientPage(patients: page, next: rows.count > limit ? page.last?.id : nil)
        }
    }

    /// The clinic's patients with this e-mail address (staff only), found by its blind index:
    /// no other record is opened.
    public func find(email: String, as context: TenantContext) async throws -> [PatientRecord] {
        try Self.require(context, staff: true, to: "search patients")
        _ = try PatientPII(name: "-", email: email).validated()
        return try await tenants.withTenant(context) { tx in try await store.find(email: email, in: tx) }
    }

    static let notFound = TenancyError(.notFound, "no such patient in this clinic")

    static func require(_ context: TenantContext, staff: Bool = false, managers: Bool = false, to what: String) throws(TenancyError) {
        let allowed = managers ? [.owner, .admin].contains(context.role) : (!staff || context.role.isStaff)
        guard allowed else {
            throw TenancyError(.roleNotAllowed, "the \(context.role.rawValue) role may not \(what)")
        }
    }

    static func fieldNames(of pii: PatientPII) -> [String] {
        ["name"] + [("date_of_birth", pii.dateOfBirth), ("email", pii.email), ("phone", pii.phone)].compactMap { $0.1 == nil ? nil : $0.0 }
    }
}
