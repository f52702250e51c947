import Foundation
import Hummingbird
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// `POST /v1/telemetry/session-tokens`' answer: the token for the Telemetry API and what it is
/// bound to.
struct TelemetrySessionBody: ResponseCodable, Equatable {
    let token: String
    let session_id: String
    let organization_id: String
    let patient_id: String
    let expires_at: String

    init(_ started: StartedTelemetrySession) {
        token = started.token
        session_id = started.sessionID.lowercasedString
        organization_id = started.organizationID.lowercasedString
        patient_id = started.patientID.lowercasedString
        expires_at = APITime.string(started.expiresAt)
    }
}

/// `POST /v1/telemetry/session-tokens`: a patient starts a telemetry session (the library's
/// ``TelemetrySessions``): a new session id and a token bound to its clinic, its patient record
/// and that session, for the Telemetry API. No body.
func addTelemetryRoutes(to group: RouterGroup<CoreRequestContext>, sessions: TelemetrySessions?) {
    group.post("telemetry/session-tokens") { _, context -> EditedResponse<TelemetrySessionBody> in
        let tenant = try context.requireTenant()
        guard let sessions else { throw SecretNotConfigured(variable: SessionTokens.secretVariable, refused: "telemetry sessions cannot start") }
        let started = try await sessions.start(as: tenant, requestID: context.requestID)
        return EditedResponse(status: .created, headers: [.cacheControl: "no-store"], response: TelemetrySessionBody(started))
    }
}
