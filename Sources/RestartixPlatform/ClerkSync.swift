public import Foundation
public import RestartixKit
public import RestartixTenancy

/// Keeps users, organizations and memberships in step with Clerk from its webhook events
/// (`user.*`, `organization.*`, `organizationMembership.*`), exactly once per delivery id.
///
/// - Exactly once: the delivery's id goes into `inbound_webhook_events` in the same admin
///   transaction as the changes it causes, so a retry of a delivery that committed changes
///   nothing (``Outcome/duplicate``), and one that failed half-way left nothing behind and is
///   applied in full on the retry.
/// - Any order: each event creates what it names and is missing (a membership before its user
///   or organization arrives makes both, with what the event carries). Events carry the time
///   Clerk made them (`timestamp`); the last one applied to each user, organization and
///   membership is kept (`clerk_sync_state`, migration 10), and an older delivery that arrives
///   later (Clerk retries failures, so order of arrival is not order of events) changes
///   nothing (``Outcome/stale(type:)``): a membership removed stays removed, a role lowered
///   stays lowered. A user's or an organization's deletion is final in any case.
/// - Roles: Clerk's `org:<role>` for the platform's roles (`org:owner`, `org:admin`,
///   `org:specialist`, `org:assistant`, `org:patient`); Clerk's default `org:member` is a
///   patient (the least a member may see). Any other role is refused
///   (``ClerkSyncError``, 422): the provider retries, and the refusal is in the log.
/// - What is stored of a user: the Clerk id, the primary e-mail address and a display name;
///   nothing else of the payload. Every transaction writes one audit row naming the event type.
public enum ClerkSync {
    /// What ``apply(_:delivery:admin:)`` did.
    public enum Outcome: Sendable, Hashable {
        /// The event's changes were committed.
        case applied(type: String)
        /// This delivery id was applied before; nothing was written.
        case duplicate
        /// An event type this sync does not handle (`session.created`, ...): recorded, nothing else.
        case ignored(type: String)
        /// An event older than one already applied to the same user, organization or membership
        /// (a retry that arrived late): recorded, nothing else.
        case stale(type: String)
    }

    /// The platform roles Clerk's organization roles map to.
    public static func role(_ clerkRole: String) -> TenantRole? {
        let name = clerkRole.hasPrefix("org:") ? String(clerkRole.dropFirst(4)) : clerkRole
        if name == "member" { return .patient }
        return TenantRole(rawValue: name)
    }

    /// Applies one verified delivery's `body` (the event JSON).
    /// - Throws: ``ClerkSyncError`` for a body that is not a Clerk event of the documented shape
    ///   (nothing written); database errors (nothing written; the provider retries).
    public static func apply(_ body: Data, deliveryID: String, admin: AdminDatabase) async throws -> Outcome {
        let envelope: Envelope
        do { envelope = try JSONDecoder().decode(Envelope.self, from: body) } catch {
            throw ClerkSyncError(.unprocessable, "the body is not a Clerk event (type and data)")
        }
        let event = try Event(type: envelope.type, body: body)
        return try await admin.unscoped(reason: "clerk webhook event", actor: .service("clerk-webhook")) { tx in
            guard try await WebhookEvents.record(provider: "clerk", eventID: deliveryID, eventType: envelope.type, processed: true, in: tx) else {
                return .duplicate
            }
            // A delivery retried after a later event of the same user, organization or
            // membership was applied is stale: recorded, nothing changed.
            if let at = envelope.timestamp, let (entity, id, deleted) = event.entity {
                guard try await Self.isLatest(entity, id, at: at, deleted: deleted, tx) else { return .stale(type: envelope.type) }
            }
            switch event {
            case .user(let user, let deleted):
                if deleted {
                    // Made if missing, so a deletion that arrives first stays final.
                    let id = try await userID(user.id, tx)
                    try await tx.execute("UPDATE users SET deleted_at = \(tx.dialect.now), updated_at = \(tx.dialect.now) WHERE id = \(id) AND deleted_at IS NULL")
                } else {
                    let id = try await userID(user.id, tx)
                    try await tx.execute("""
                        UPDATE users SET primary_email = \(user.primaryEmail), display_name = \(user.displayName), updated_at = \(tx.dialect.now) \
                        WHERE id = \(id) AND deleted_at IS NULL
                        """)
                }
            case .organization(let organization, let deleted):
                if deleted {
                    let id = try await organizationID(organization, tx)
                    try await tx.execute("UPDATE organizations SET status = 'deleted', updated_at = \(tx.dialect.now) WHERE id = \(id)")
                } else {
                    let id = try await organizationID(organization, tx)
                    if let name = organization.cleanName {
                        try await tx.execute("UPDATE organizations SET name = \(name), updated_at = \(tx.dialect.now) WHERE id = \(id) AND status <> 'deleted'")
                    }
                }
            case .membership(let membership, let deleted):
                let organization = try await organizationID(membership.organization, tx)
                let user = try await userID(membership.public_user_data.user_id, tx)
                if deleted {
                    try await tx.execute("DELETE FROM memberships WHERE organization_id = \(organization) AND user_id = \(user)")
                } else {
                    guard let role = Self.role(membership.role) else {
                        throw ClerkSyncError(.unprocessable, "the organization role is not one of the platform's (org:owner, org:admin, org:specialist, org:assistant, org:patient, org:member)")
                    }
                    let changed = try await tx.execute("UPDATE memberships SET role = \(role.rawValue) WHERE organization_id = \(organization) AND user_id = \(user)")
                    if changed == 0 {
                        try await tx.execute("""
                            INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(organization), \(user), \(role.rawValue))
                            """)
                    }
                }
            case .other:
                return .ignored(type: envelope.type)
            }
            return .applied(type: envelope.type)
        }
    }

    /// Whether an event made at `at` (ms) is the latest seen for `entity` `id`; if so, it is
    /// recorded as such. An event as old as the last one applied counts as latest (Clerk's
    /// timestamps have millisecond resolution; applying the same state twice changes nothing).
    static func isLatest(_ entity: String, _ id: String, at: Int64, deleted: Bool, _ tx: borrowing AdminTransaction) async throws -> Bool {
        if let row = try await tx.first("SELECT event_at FROM clerk_sync_state WHERE entity = \(entity) AND clerk_id = \(id)") {
            guard try row.decode("event_at", as: Int64.self) <= at else { return false }
            try await tx.execute("UPDATE clerk_sync_state SET event_at = \(at), deleted = \(deleted) WHERE entity = \(entity) AND clerk_id = \(id)")
        } else {
            try await tx.execute("INSERT INTO clerk_sync_state (entity, clerk_id, event_at, deleted) VALUES (\(entity), \(id), \(at), \(deleted))")
        }
        return true
    }

    /// The platform user for a Clerk user id, made (with nothing but the id) when missing.
    static func userID(_ clerkID: String, _ tx: borrowing AdminTransaction) async throws -> UUID {
        if let row = try await tx.first("SELECT id FROM users WHERE clerk_user_id = \(clerkID)") {
            return try row.decode("id", as: UUID.self)
        }
        let id = UUIDv7.generate()
        try await tx.execute("INSERT INTO users (id, clerk_user_id) VALUES (\(id), \(clerkID))")
        return id
    }

    /// The platform organization for a Clerk organization, made when missing: its name (or a
    /// placeholder) and a slug from Clerk's (made to fit the platform's rule, and unique).
    static func organizationID(_ organization: ClerkOrganization, _ tx: borrowing AdminTransaction) async throws -> UUID {
        if let row = try await tx.first("SELECT id FROM organizations WHERE clerk_organization_id = \(organization.id)") {
            return try row.decode("id", as: UUID.self)
        }
        let id = UUIDv7.generate()
        var slug = organization.platformSlug
        if try await tx.first("SELECT id FROM organizations WHERE slug = \(slug)") != nil {
            slug = String(slug.prefix(54)) + "-" + id.lowercasedString.suffix(8)
        }
        try await tx.execute("""
            INSERT INTO organizations (id, slug, name, clerk_organization_id) \
            VALUES (\(id), \(slug), \(organization.cleanName ?? "Unnamed organization"), \(organization.id))
            """)
        return id
    }

    // MARK: The payloads (the fields used; Clerk sends many more)

    struct Envelope: Decodable {
        let type: String
        /// When Clerk made the event (milliseconds since 1970): the order events are applied in.
        let timestamp: Int64?
    }

    struct Typed<T: Decodable>: Decodable {
        let data: T
    }

    struct ClerkUser: Decodable {
        struct Email: Decodable {
            let id: String
            let email_address: String
        }

        let id: String
        let email_addresses: [Email]?
        let primary_email_address_id: String?
        let first_name: String?
        let last_name: String?

        var primaryEmail: String? {
            let email = email_addresses?.first { $0.id == primary_email_address_id }?.email_address.lowercased()
            return email.flatMap { $0.utf8.count <= 320 && $0.contains("@") ? $0 : nil }
        }

        var displayName: String? {
            let name = [first_name, last_name].compactMap { $0?.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }.joined(separator: " ")
            return name.isEmpty ? nil : String(name.prefix(200))
        }
    }

    struct Deleted: Decodable {
        let id: String
        let deleted: Bool?
    }

    struct ClerkOrganization: Decodable {
        let id: String
        let name: String?
        let slug: String?

        var cleanName: String? {
            let name = (name ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            return name.isEmpty ? nil : String(name.prefix(200))
        }

        /// Clerk's slug in the platform's form (`^[a-z0-9][a-z0-9-]{0,62}$`), or one made from
        /// the Clerk id.
        var platformSlug: String {
            let mapped = String((slug ?? "").lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "-" })
            let trimmed = mapped.split(separator: "-").joined(separator: "-").prefix(63)
            if let first = trimmed.first, first.isLetter || first.isNumber { return String(trimmed) }
            return "org-" + String(id.lowercased().filter { $0.isLetter || $0.isNumber }.suffix(20))
        }
    }

    struct ClerkMembership: Decodable {
        struct PublicUserData: Decodable {
            let user_id: String
        }

        let role: String
        let organization: ClerkOrganization
        let public_user_data: PublicUserData
    }

    enum Event {
        case user(ClerkUser, deleted: Bool)
        case organization(ClerkOrganization, deleted: Bool)
        case membership(ClerkMembership, deleted: Bool)
        case other

        init(type: String, body: Data) throws(ClerkSyncError) {
            let decoder = JSONDecoder()
            do {
                switch type {
                case "user.created", "user.updated":
                    self = .user(try decoder.decode(Typed<ClerkUser>.self, from: body).data, deleted: false)
                case "user.deleted":
                    let deleted = try decoder.decode(Typed<Deleted>.self, from: body).data
                    self = .user(ClerkUser(id: deleted.id, email_addresses: nil, primary_email_address_id: nil, first_name: nil, last_name: nil), deleted: true)
                case "organization.created", "organization.updated":
                    self = .organization(try decoder.decode(Typed<ClerkOrganization>.self, from: body).data, deleted: false)
                case "organization.deleted":
                    let deleted = try decoder.decode(Typed<Deleted>.self, from: body).data
                    self = .organization(ClerkOrganization(id: deleted.id, name: nil, slug: nil), deleted: true)
                case "organizationMembership.created", "organizationMembership.updated":
                    self = .membership(try decoder.decode(Typed<ClerkMembership>.self, from: body).data, deleted: false)
                case "organizationMembership.deleted":
                    self = .membership(try decoder.decode(Typed<ClerkMembership>.self, from: body).data, deleted: true)
                default:
                    self = .other
                }
            } catch {
                throw ClerkSyncError(.unprocessable, "the \(type.prefix(40)) event's data is not of the documented shape")
            }
            for id in ids where !(1...255).contains(id.utf8.count) {
                throw ClerkSyncError(.unprocessable, "a Clerk id in the \(type.prefix(40)) event is empty or longer than 255 bytes")
            }
        }

        /// What the event is about, for ordering: the entity, its key, and whether the event
        /// deletes it.
        var entity: (String, String, Bool)? {
            switch self {
            case .user(let user, let deleted): ("user", user.id, deleted)
            case .organization(let organization, let deleted): ("organization", organization.id, deleted)
            case .membership(let membership, let deleted): ("membership", membership.organization.id + "/" + membership.public_user_data.user_id, deleted)
            case .other: nil
            }
        }

        private var ids: [String] {
            switch self {
            case .user(let user, _): [user.id]
            case .organization(let organization, _): [organization.id]
            case .membership(let membership, _): [membership.organization.id, membership.public_user_data.user_id]
            case .other: []
            }
        }
    }
}

/// A Clerk event this sync cannot apply: names the rule, never a value (HTTP 422; the
/// provider retries and the log says why).
public typealias ClerkSyncError = DomainError<ClerkSyncErrorDomain>

/// The `webhook` error domain.
public enum ClerkSyncErrorDomain: ErrorDomain {
    public static let name = "webhook"

    public static func httpStatus(for code: ErrorCode<ClerkSyncErrorDomain>) -> Int { 422 }
}

extension ErrorCode where Domain == ClerkSyncErrorDomain {
    /// Not a Clerk event of the documented shape, or a value outside the platform's (422).
    public static var unprocessable: Self { Self("unprocessable") }
}
