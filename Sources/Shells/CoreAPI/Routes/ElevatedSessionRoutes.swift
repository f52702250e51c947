import Foundation
import Hummingbird
import RestartixKit
import RestartixTenancy
import ServiceSupport

/// `POST /v1/break-glass-sessions` and `POST /v1/impersonation-sessions`' body.
struct OpenSessionRequest: Decodable, Sendable {
    /// Why (10 to 2000 characters); recorded on the session and its audit row.
    let reason: String
    /// How long it grants access: 60 seconds up to 4 hours. Default: 1 hour for break-glass,
    /// 30 minutes for impersonation.
    let duration_seconds: Int?
    /// Impersonation only: the patient to act as.
    let patient_id: String?

    /// The optional fields may be absent, never `null` (the document's rule).
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        reason = try container.decode(String.self, forKey: .reason)
        duration_seconds = try JSONBodyDecoder.optional(Int.self, .duration_seconds, in: container)
        patient_id = try JSONBodyDecoder.optional(String.self, .patient_id, in: container)
    }

    enum CodingKeys: String, CodingKey { case reason, duration_seconds, patient_id }
}

/// A session as the API shows it (ids lower case, times ISO 8601 in UTC).
struct ElevatedSessionBody: ResponseCodable, Equatable {
    let id: String
    let kind: String
    let organization_id: String
    let user_id: String
    let patient_id: String?
    let reason: String?
    let opened_at: String?
    let expires_at: String

    init(_ session: ElevatedSession, reason: String) {
        id = session.id.lowercasedString
        kind = session.kind.rawValue
        organization_id = session.organizationID.lowercasedString
        user_id = session.actorUserID.lowercasedString
        patient_id = session.patientID?.lowercasedString
        self.reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        opened_at = nil
        expires_at = APITime.string(session.expiresAt)
    }

    init(_ summary: ElevatedSessions.Summary) {
        id = summary.id.lowercasedString
        kind = summary.kind.rawValue
        organization_id = summary.organizationID.lowercasedString
        user_id = summary.actorUserID.lowercasedString
        patient_id = summary.patientID?.lowercasedString
        reason = summary.reason
        opened_at = APITime.string(summary.openedAt)
        expires_at = APITime.string(summary.expiresAt)
    }
}

/// `GET /v1/elevated-sessions`' answer.
struct ElevatedSessionList: ResponseCodable, Equatable {
    let sessions: [ElevatedSessionBody]
}

/// `DELETE /v1/…-sessions/{id}`'s answer: whether this call closed it (`false`: it was closed
/// already).
struct SessionClosed: ResponseCodable, Equatable {
    let closed: Bool
}

/// Times in answers: ISO 8601, UTC, milliseconds.
enum APITime {
    /// Made once: the time zone's lookup by name is not free, and every body with a time
    /// formats one or two.
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)

    static func string(_ date: Date) -> String {
        date.formatted(style)
    }
}

extension CoreRequestContext {
    /// The signed-in principal's tenant context (the authentication middleware has run).
    func requireTenant() throws -> TenantContext {
        guard let tenant else { throw RequestError(.missingToken, "send Authorization: Bearer <token>") }
        return tenant
    }
}

/// A path or body id: a UUID, or 400 naming the field.
func uuid(_ text: String?, field: String) throws -> UUID {
    guard let text, let id = UUID(uuidString: text) else { throw RequestError(.invalidField, "\(field) must be a UUID") }
    return id
}

/// Elevated sessions (the library's ``ElevatedSessions``, on the admin role): a clinic's staff
/// member opens a break-glass session (emergency access to every record of the clinic, every
/// transaction audited) or an impersonation session (acting as one patient), with a reason and
/// a bounded duration; lists the open ones (owners and admins see all, other staff their own);
/// closes their own. Opening and closing each write their audit row in the same transaction.
/// Another clinic's session is a 404.
func addElevatedSessionRoutes(to group: RouterGroup<CoreRequestContext>, sessions: ElevatedSessions) {
    for kind in ElevatedSession.Kind.allCases {
        let path = kind == .breakGlass ? "break-glass-sessions" : "impersonation-sessions"
        group.post(RouterPath(path)) { request, context -> EditedResponse<ElevatedSessionBody> in
            let tenant = try context.requireTenant()
            let body = try await request.decode(as: OpenSessionRequest.self, context: context)
            let duration = body.duration_seconds.map { Duration.seconds($0) }
            let session: ElevatedSession
            switch kind {
            case .breakGlass:
                guard body.patient_id == nil else { throw RequestError(.invalidField, "patient_id is for impersonation sessions only") }
                session = try await sessions.openBreakGlass(
                    organization: tenant.organizationID, user: tenant.userID, reason: body.reason, duration: duration ?? .seconds(3600)
                )
            case .impersonation:
                guard body.patient_id != nil else { throw RequestError(.invalidField, "patient_id is required") }
                session = try await sessions.openImpersonation(
                    organization: tenant.organizationID, actor: tenant.userID, patient: try uuid(body.patient_id, field: "patient_id"),
                    reason: body.reason, duration: duration ?? .seconds(1800)
                )
            }
            return EditedResponse(status: .created, response: ElevatedSessionBody(session, reason: body.reason))
        }
        group.delete(RouterPath("\(path)/{id}")) { _, context -> SessionClosed in
            let tenant = try context.requireTenant()
            let id = try uuid(context.parameters.get("id"), field: "id")
            return SessionClosed(closed: try await sessions.close(kind, id: id, organization: tenant.organizationID, by: tenant.userID))
        }
    }
    group.get("elevated-sessions") { _, context -> ElevatedSessionList in
        let tenant = try context.requireTenant()
        let open = try await sessions.listOpen(organization: tenant.organizationID, viewer: tenant)
        return ElevatedSessionList(sessions: open.map(ElevatedSessionBody.init))
    }
}
