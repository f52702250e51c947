public import Foundation
import RestartixKit

/// One entry of the audit log: who did what to which record, under which action context.
///
/// Audit rows are append-only: the app role may insert them (for its own clinic) but never
/// update or delete them, and the admin role neither. Keep PHI out: `metadata` is for ids,
/// field names and reasons, never for a patient's data.
public struct AuditEvent: Sendable, Hashable {
    /// What happened, as `resource.verb` (`patient.update`, `break_glass.open`): 1-100 characters.
    public var action: String
    /// The kind of record acted on (`patient`), if any.
    public var resourceType: String?
    /// The record acted on, if any.
    public var resourceID: UUID?
    /// The request that caused it, for correlation with logs.
    public var requestID: String?
    /// Non-PHI details: changed field names, a reason, an external event id.
    public var metadata: [String: String]

    /// Creates an event.
    public init(
        action: String,
        resourceType: String? = nil,
        resourceID: UUID? = nil,
        requestID: String? = nil,
        metadata: [String: String] = [:]
    ) {
        self.action = action
        self.resourceType = resourceType
        self.resourceID = resourceID
        self.requestID = requestID
        self.metadata = metadata
    }

    func validated() throws(TenancyError) -> AuditEvent {
        guard (1...100).contains(action.count), !action.contains(where: \.isNewline) else {
            throw TenancyError(.invalidContext, "an audit action must be 1-100 characters on one line")
        }
        return self
    }

    /// The INSERT for a user acting in a clinic.
    func insert(context: TenantContext) throws(TenancyError) -> SQLQuery {
        var metadata = try validated().metadata
        var actor = context.userID
        switch context.actionContext {
        case .normal: break
        case .breakGlass(let session):
            metadata["session_id"] = session.lowercasedString
        case .impersonation(let session, let staff):
            metadata["session_id"] = session.lowercasedString
            metadata["acting_as_user_id"] = context.userID.lowercasedString
            actor = staff
        }
        return insert(
            organizationID: context.organizationID,
            actorUserID: actor,
            actorKind: "user",
            actionContext: context.actionContext.auditValue,
            metadata: metadata
        )
    }

    /// The INSERT with every attribution spelled out (platform and system writers).
    func insert(
        organizationID: UUID?,
        actorUserID: UUID?,
        actorKind: String,
        actionContext: String,
        metadata: [String: String]
    ) -> SQLQuery {
        """
        INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context, \
        resource_type, resource_id, request_id, metadata) \
        VALUES (\(UUIDv7.generate()), \(organizationID), \(actorUserID), \(actorKind), \(action), \
        \(actionContext), \(resourceType), \(resourceID), \(requestID), \(json: metadata))
        """
    }
}
