import Foundation
import Hummingbird
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTelemetry
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

/// A recorded session's metrics, as `GET /v1/telemetry/sessions[/{id}]` answer them.
struct TelemetrySessionMetricsBody: ResponseCodable, Equatable {
    let session_id: String
    let patient_id: String
    let exercise: String
    let started_at: String
    let ended_at: String
    let pose: SessionAggregates.Pose

    init(_ metrics: RecordedSessionMetrics) {
        session_id = metrics.sessionID.lowercasedString
        patient_id = metrics.patientID.lowercasedString
        exercise = metrics.exercise
        started_at = APITime.string(metrics.startedAt)
        ended_at = APITime.string(metrics.endedAt)
        pose = metrics.pose
    }
}

/// `GET /v1/telemetry/sessions`' answer.
struct TelemetrySessionListBody: ResponseCodable, Equatable {
    let sessions: [TelemetrySessionMetricsBody]
}

/// `POST /v1/telemetry/session-tokens`: a patient starts a telemetry session (the library's
/// ``TelemetrySessions``): a new session id and a token bound to its clinic, its patient record
/// and that session, for the Telemetry API. No body.
///
/// `GET /v1/telemetry/sessions/{id}` and `GET /v1/telemetry/sessions?patient_id=&limit=`: the
/// recorded metrics (the library's ``TelemetryMetrics``), as far as the caller may see them.
func addTelemetryRoutes(to group: RouterGroup<CoreRequestContext>, sessions: TelemetrySessions?, metrics: TelemetryMetrics) {
    group.get("telemetry/sessions/{id}") { _, context -> TelemetrySessionMetricsBody in
        let tenant = try context.requireTenant()
        return TelemetrySessionMetricsBody(try await metrics.session(try uuid(context.parameters.get("id"), field: "id"), as: tenant))
    }
    group.get("telemetry/sessions") { request, context -> TelemetrySessionListBody in
        let tenant = try context.requireTenant()
        let patient = try request.uri.queryParameters.get("patient_id").map { try uuid(String($0), field: "patient_id") }
        var limit = 50
        if let text = request.uri.queryParameters.get("limit") {
            guard let value = Int(text), (1...TelemetryMetrics.maximumPageSize).contains(value) else {
                throw RequestError(.invalidField, "limit must be an integer from 1 to \(TelemetryMetrics.maximumPageSize)")
            }
            limit = value
        }
        return TelemetrySessionListBody(sessions: try await metrics.list(patient: patient, limit: limit, as: tenant).map(TelemetrySessionMetricsBody.init))
    }
    group.post("telemetry/session-tokens") { _, context -> EditedResponse<TelemetrySessionBody> in
        let tenant = try context.requireTenant()
        guard let sessions else { throw SecretNotConfigured(variable: ServiceKeys.sessionTokenSecret, refused: "telemetry sessions cannot start") }
        let started = try await sessions.start(as: tenant, requestID: context.requestID)
        return EditedResponse(status: .created, response: TelemetrySessionBody(started))
    }
}
