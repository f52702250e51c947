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
    /// The request that caused it, for correlation with logs. Nil: ``AuditOrigin/current``'s.
    public var requestID: String?
    /// The client's IP address (IPv4 or IPv6, stored in its canonical form), as the HTTP layer
    /// determined it from trusted proxies' headers. Nil: ``AuditOrigin/current``'s.
    public var clientAddress: String?
    /// Non-PHI details: changed field names, a reason, an external event id.
    public var metadata: [String: String]

    /// Creates an event.
    public init(
        action: String,
        resourceType: String? = nil,
        resourceID: UUID? = nil,
        requestID: String? = nil,
        clientAddress: String? = nil,
        metadata: [String: String] = [:]
    ) {
        self.action = action
        self.resourceType = resourceType
        self.resourceID = resourceID
        self.requestID = requestID
        self.clientAddress = clientAddress
        self.metadata = metadata
    }

    /// The event checked (a client address it names must be an IP address), then
    /// ``withOrigin()``.
    func validated() throws(TenancyError) -> AuditEvent {
        guard (1...100).contains(action.count), !action.contains(where: \.isNewline) else {
            throw TenancyError(.invalidContext, "an audit action must be 1-100 characters on one line")
        }
        if let clientAddress, IPAddress.canonical(clientAddress) == nil {
            throw TenancyError(.invalidContext, "an audit client address must be an IPv4 or IPv6 address")
        }
        return withOrigin()
    }

    /// The event with the request id and client address of ``AuditOrigin/current`` where it
    /// names none, and the address in its canonical form. Never anything but an address: one
    /// that does not parse is left out (it would be attacker-chosen text in the audit trail).
    func withOrigin() -> AuditEvent {
        var event = self
        let origin = AuditOrigin.resolved
        event.requestID = requestID ?? origin?.requestID
        event.clientAddress = clientAddress.map { IPAddress.canonical($0) } ?? origin?.clientAddress
        return event
    }

    /// The INSERT for a user acting in a clinic.
    func insert(context: TenantContext) throws(TenancyError) -> SQLQuery {
        let event = try validated()
        var metadata = event.metadata
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
        return event.insert(
            organizationID: context.organizationID,
            actorUserID: actor,
            actorKind: "user",
            actionContext: context.actionContext.auditValue,
            metadata: metadata
        )
    }

    /// The INSERT with every attribution spelled out (platform and system writers). Call it on
    /// a ``validated()`` event.
    func insert(
        organizationID: UUID?,
        actorUserID: UUID?,
        actorKind: String,
        actionContext: String,
        metadata: [String: String]
    ) -> SQLQuery {
        """
        INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context, \
        resource_type, resource_id, request_id, client_address, metadata) \
        VALUES (\(UUIDv7.generate()), \(organizationID), \(actorUserID), \(actorKind), \(action), \
        \(actionContext), \(resourceType), \(resourceID), \(requestID), \(clientAddress), \(json: metadata))
        """
    }
}

/// Where the audit rows written in a task come from: the request's id and the client's address.
///
/// The HTTP layer sets it once around a request's handling
/// (`AuditOrigin.$current.withValue(...)`), so every audit row the request writes (in the
/// business rules, the elevated sessions' access gates, the Clerk sync) carries both without
/// each call handing them on; an ``AuditEvent``'s own `requestID` or `clientAddress` wins. A
/// task-local rather than a parameter: the rows are written deep in the library, below APIs
/// that have no reason to know about HTTP. Jobs and other callers outside a request set none.
public struct AuditOrigin: Sendable, Hashable {
    /// The request's id (`X-Request-Id`, or one made for it).
    public var requestID: String?
    /// The client's IP address (IPv4 or IPv6).
    public var clientAddress: String?

    /// An origin.
    public init(requestID: String? = nil, clientAddress: String? = nil) {
        self.requestID = requestID
        self.clientAddress = clientAddress
    }

    /// The origin of the task's audit rows, if the task is handling a request.
    @TaskLocal public static var current: AuditOrigin?

    /// ``current`` with its client address in canonical form, left out when it does not parse.
    static var resolved: AuditOrigin? {
        current.map { AuditOrigin(requestID: $0.requestID, clientAddress: $0.clientAddress.flatMap(IPAddress.canonical)) }
    }
}
