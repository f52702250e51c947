import Foundation
import Hummingbird
import RestartixKit
import RestartixTenancy
import ServiceSupport

/// One audit row as the API shows it.
struct AuditEntryBody: ResponseCodable, Equatable {
    let id: String
    let actor_user_id: String?
    let actor_kind: String
    let action: String
    let action_context: String
    let resource_type: String?
    let resource_id: String?
    let request_id: String?
    let client_address: String?
    let metadata: [String: String]
    let created_at: String

    init(_ entry: AuditLog.Entry) {
        id = entry.id.lowercasedString
        actor_user_id = entry.actorUserID?.lowercasedString
        actor_kind = entry.actorKind
        action = entry.action
        action_context = entry.actionContext
        resource_type = entry.resourceType
        resource_id = entry.resourceID?.lowercasedString
        request_id = entry.requestID
        client_address = entry.clientAddress
        metadata = entry.metadata
        created_at = APITime.string(entry.createdAt)
    }
}

/// `GET /v1/audit-log`'s answer: a page, newest first, and the cursor of the next (`null` on
/// the last page).
struct AuditLogPageBody: ResponseCodable, Equatable {
    let entries: [AuditEntryBody]
    let next: String?
}

/// `GET /v1/audit-log?limit=&after=`: the clinic's audit log for its owners and admins
/// (``AuditLog``), in keyset pages of `limit` rows (1 to 200, 50 by default); `after` is the
/// previous page's `next`.
func addAuditLogRoutes(to group: RouterGroup<CoreRequestContext>, auditLog: AuditLog) {
    group.get("audit-log") { request, context -> AuditLogPageBody in
        let tenant = try context.requireTenant()
        let limit = try pageLimit(request, maximum: AuditLog.maximumPageSize)
        var cursor: AuditLog.Cursor?
        if let text = request.uri.queryParameters["after"] {
            guard let parsed = AuditLog.Cursor(String(text)) else {
                throw RequestError(.invalidField, "after must be the next cursor of a previous page")
            }
            cursor = parsed
        }
        let page = try await auditLog.page(tenant, after: cursor, limit: limit)
        return AuditLogPageBody(entries: page.entries.map(AuditEntryBody.init), next: page.next?.description)
    }
}

/// A page's `limit` query parameter: `default` when absent, else a whole number from 1 to
/// `maximum` (400 naming the rule otherwise).
func pageLimit(_ request: Request, maximum: Int, default: Int = 50) throws -> Int {
    guard let text = request.uri.queryParameters["limit"] else { return `default` }
    guard let value = Int(String(text)), (1...maximum).contains(value) else {
        throw RequestError(.invalidField, "limit must be a whole number from 1 to \(maximum)")
    }
    return value
}
