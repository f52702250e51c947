import Foundation
import Hummingbird
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTelemetry
import ServiceSupport

/// What `GET /internal/v1/whoami` answers: the calling service as its token says.
struct ServiceWhoAmI: ResponseCodable, Equatable {
    /// The calling service (the token's `sub`).
    let service: String
    /// The scopes the token grants, sorted.
    let scopes: [String]
    /// When the token expires (RFC 3339, UTC).
    let expires_at: String
}

/// What `POST /internal/v1/telemetry/sessions/{id}/aggregates` answers.
struct RecordedAggregatesBody: ResponseCodable, Equatable {
    let session_id: String
    let organization_id: String
    let patient_id: String
    /// `recorded`, or `duplicate` for a session recorded before (nothing written).
    let status: String
    let reps: Int
    let media_sessions: Int
    let exercise_done_count: Int
}

/// The scope a service-account token needs to post a session's aggregates.
let aggregatesScope = "telemetry:aggregates:write"

/// The `/internal/v1` routes, for the platform's own services with a service-account token
/// (``ServiceAccountAuthMiddleware``). `GET /internal/v1/whoami` answers who the token says is
/// calling: a deploy check that the Telemetry API's secret and the Core API's agree (it needs no
/// scope). `POST /internal/v1/telemetry/sessions/{id}/aggregates` records a finished session's
/// aggregates (the library's ``TelemetryAggregates``; scope `telemetry:aggregates:write`): 201
/// the first time, 200 `duplicate` for a session recorded before.
func addInternalRoutes(to group: RouterGroup<CoreRequestContext>, aggregates: TelemetryAggregates) {
    group.post("telemetry/sessions/{id}/aggregates") { request, context -> EditedResponse<RecordedAggregatesBody> in
        guard let service = context.service else { throw RequestError(.missingToken, "send Authorization: Bearer <service-account token>") }
        guard service.scopes.contains(aggregatesScope) else {
            throw SignatureError(.insufficientScope, "the token does not grant the scope this endpoint requires (\(aggregatesScope))")
        }
        let session = try uuid(context.parameters.get("id"), field: "id")
        let body = try await request.decode(as: SessionAggregates.self, context: context)
        let recorded = try await aggregates.record(body, session: session, by: service.service, requestID: context.requestID)
        return EditedResponse(status: recorded.duplicate ? .ok : .created, response: RecordedAggregatesBody(
            session_id: session.lowercasedString, organization_id: recorded.organizationID.lowercasedString,
            patient_id: recorded.patientID.lowercasedString, status: recorded.duplicate ? "duplicate" : "recorded",
            reps: recorded.reps, media_sessions: recorded.mediaSessions, exercise_done_count: recorded.exerciseDoneCount
        ))
    }
    group.get("whoami") { _, context -> ServiceWhoAmI in
        guard let service = context.service else { throw RequestError(.missingToken, "send Authorization: Bearer <service-account token>") }
        return ServiceWhoAmI(service: service.service, scopes: service.scopes.sorted(), expires_at: APITime.string(service.expiresAt))
    }
}
