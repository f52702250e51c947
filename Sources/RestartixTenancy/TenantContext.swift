public import Foundation
import RestartixKit

/// A role inside one clinic (organization). Staff roles see their clinic's rows; the patient
/// role sees only the rows tied to its own user.
public enum TenantRole: String, Sendable, Hashable, CaseIterable, Codable {
    case owner
    case admin
    case specialist
    case assistant
    case patient

    /// Owner, admin, specialist and assistant: every row of the clinic (within the grants).
    public var isStaff: Bool { self != .patient }

    /// Parses a role name; unknown names are an error, never a default role.
    public init(validating name: String) throws(TenancyError) {
        guard let role = TenantRole(rawValue: name) else {
            throw TenancyError(.invalidContext, "unknown role (expected one of: \(TenantRole.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self = role
    }
}

/// Why a principal is acting, recorded in every audit row written under the context.
public enum ActionContext: Sendable, Hashable {
    /// Ordinary work by a member of the clinic.
    case normal
    /// Emergency access under an open break-glass session (see ``ElevatedSessions``); the
    /// context's user is the one who opened it.
    case breakGlass(sessionID: UUID)
    /// A staff member (`actorUserID`) acting as a patient under an open impersonation session;
    /// the context's user and role are the patient's, audit rows name the staff member.
    case impersonation(sessionID: UUID, actorUserID: UUID)

    /// The `audit_log.action_context` value.
    public var auditValue: String {
        switch self {
        case .normal: "normal"
        case .breakGlass: "break_glass"
        case .impersonation: "impersonation"
        }
    }

    /// The session behind a break-glass or impersonation context.
    public var sessionID: UUID? {
        switch self {
        case .normal: nil
        case .breakGlass(let id), .impersonation(let id, _): id
        }
    }

    /// Whether the context runs under a break-glass or impersonation session, which every
    /// transaction checks is still open and audits.
    public var isElevated: Bool { sessionID != nil }
}

/// Who is acting, for which clinic: the only way into the app database.
///
/// Set for exactly one transaction by ``TenantDatabase/withTenant(_:_:)`` with one
/// `SELECT set_config(..., true)` statement of bound values; the database's row-level security
/// then confines every statement of that transaction to the clinic (and, for the patient role,
/// to the patient's own rows). Nothing falls back to a default tenant: there is no context
/// without an organization, a user and a role.
public struct TenantContext: Sendable, Hashable {
    /// The clinic.
    public let organizationID: UUID
    /// The acting user (a `users.id`).
    public let userID: UUID
    /// The user's role in the clinic.
    public let role: TenantRole
    /// Why the user is acting; recorded in audit rows.
    public let actionContext: ActionContext

    /// A context from typed values.
    public init(organizationID: UUID, userID: UUID, role: TenantRole, actionContext: ActionContext = .normal) {
        self.organizationID = organizationID
        self.userID = userID
        self.role = role
        self.actionContext = actionContext
    }

    /// A context from untrusted strings (claims, headers): every field is validated, and a
    /// malformed id or unknown role is an error naming the field, never a partial context.
    public init(organizationID: String, userID: String, role: String) throws(TenancyError) {
        guard let organization = UUID(uuidString: organizationID) else {
            throw TenancyError(.invalidContext, "the organization id is not a UUID")
        }
        guard let user = UUID(uuidString: userID) else {
            throw TenancyError(.invalidContext, "the user id is not a UUID")
        }
        self.init(organizationID: organization, userID: user, role: try TenantRole(validating: role))
    }

    /// The same principal acting under another action context.
    public func acting(as actionContext: ActionContext) -> TenantContext {
        TenantContext(organizationID: organizationID, userID: userID, role: role, actionContext: actionContext)
    }
}

extension TenantContext: CustomStringConvertible {
    /// Ids and role only: nothing in a context is PHI.
    public var description: String {
        "TenantContext(organization: \(organizationID.lowercasedString), user: \(userID.lowercasedString), role: \(role.rawValue), action: \(actionContext.auditValue))"
    }
}
