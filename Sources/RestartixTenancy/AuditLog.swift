public import Foundation
public import RestartixKit

/// A clinic's audit log as its owners and admins read it: newest first, in keyset pages
/// (`created_at`, then `id`, both descending), read through the app role under the reader's
/// own tenant context, so the database's policies decide what one clinic can see of the log.
public struct AuditLog: Sendable {
    /// One audit row.
    public struct Entry: Sendable, Hashable {
        public let id: UUID
        public let organizationID: UUID?
        public let actorUserID: UUID?
        /// `user`, `service` or `system`.
        public let actorKind: String
        /// `patient.create`, `break_glass.open`, ...
        public let action: String
        /// `normal`, `break_glass`, `impersonation`, `platform_admin` or `system`.
        public let actionContext: String
        public let resourceType: String?
        public let resourceID: UUID?
        public let requestID: String?
        /// The client's IP address, where the row was written for a request that had one.
        public let clientAddress: String?
        /// Ids and kinds the writer recorded; never a patient's data.
        public let metadata: [String: String]
        public let createdAt: Date
    }

    /// Where a page ends: opaque to clients (`next` in one answer, `after` in the next request).
    public struct Cursor: Sendable, Hashable, CustomStringConvertible {
        let createdAt: Int64
        let id: UUID

        init(createdAt: Date, id: UUID) {
            self.createdAt = Int64((createdAt.timeIntervalSince1970 * 1_000_000).rounded())
            self.id = id
        }

        /// Parses a cursor a previous page returned; `nil` for anything else.
        public init?(_ text: String) {
            guard text.utf8.count <= 128, let data = Base64URL.decode(text), let plain = String(data: data, encoding: .utf8) else { return nil }
            let parts = plain.split(separator: "|")
            guard parts.count == 2, let micros = Int64(parts[0]), let id = UUID(uuidString: String(parts[1])) else { return nil }
            createdAt = micros
            self.id = id
        }

        /// The cursor's text.
        public var description: String { Base64URL.encode(Data("\(createdAt)|\(id.lowercasedString)".utf8)) }

        var date: Date { Date(timeIntervalSince1970: TimeInterval(createdAt) / 1_000_000) }
    }

    /// One page and the cursor of the next (`nil` on the last page).
    public struct Page: Sendable {
        public let entries: [Entry]
        public let next: Cursor?
    }

    /// The most rows one page may hold.
    public static let maximumPageSize = 200

    private let tenants: TenantDatabase

    /// The log read through `tenants`.
    public init(tenants: TenantDatabase) {
        self.tenants = tenants
    }

    /// The page of `context`'s clinic after `cursor` (the newest first when `nil`), at most
    /// `limit` rows (1 to ``maximumPageSize``). Owners and admins only
    /// (``TenancyError/Code/roleNotAllowed`` otherwise).
    public func page(_ context: TenantContext, after cursor: Cursor? = nil, limit: Int = 50) async throws -> Page {
        guard context.role == .owner || context.role == .admin else {
            throw TenancyError(.roleNotAllowed, "only the clinic's owners and admins may read its audit log")
        }
        guard (1...Self.maximumPageSize).contains(limit) else {
            throw TenancyError(.invalidContext, "limit must be from 1 to \(Self.maximumPageSize)")
        }
        let after: SQLQuery = cursor.map { " AND (created_at < \($0.date) OR (created_at = \($0.date) AND id < \($0.id)))" } ?? ""
        let rows = try await tenants.query(context, """
            SELECT id, organization_id, actor_user_id, actor_kind, action, action_context, resource_type, resource_id, request_id, \
            CAST(client_address AS TEXT) AS client_address, CAST(metadata AS TEXT) AS metadata, created_at FROM audit_log \
            WHERE organization_id = \(context.organizationID)\(after) ORDER BY created_at DESC, id DESC LIMIT \(limit + 1)
            """)
        var entries: [Entry] = []
        for row in rows.prefix(limit) {
            let metadata = try row.decode("metadata", as: String?.self).flatMap { text in
                (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            } ?? [:]
            entries.append(Entry(
                id: try row.decode("id", as: UUID.self), organizationID: try row.decode("organization_id", as: UUID?.self),
                actorUserID: try row.decode("actor_user_id", as: UUID?.self), actorKind: try row.decode("actor_kind", as: String.self),
                action: try row.decode("action", as: String.self), actionContext: try row.decode("action_context", as: String.self),
                resourceType: try row.decode("resource_type", as: String?.self), resourceID: try row.decode("resource_id", as: UUID?.self),
                requestID: try row.decode("request_id", as: String?.self),
                // Postgres's `inet` as text carries its prefix length (`/32`): the address only.
                clientAddress: try row.decode("client_address", as: String?.self).map { String($0.prefix { $0 != "/" }) },
                metadata: metadata.compactMapValues { $0 as? String ?? ($0 as? NSNumber)?.stringValue },
                createdAt: try row.decode("created_at", as: Date.self)
            ))
        }
        let next = rows.count > limit ? entries.last.map { Cursor(createdAt: $0.createdAt, id: $0.id) } : nil
        return Page(entries: entries, next: next)
    }
}
