public import Foundation
public import RestartixCrypto
import RestartixKit
public import RestartixTenancy

/// A telemetry session a patient started: the token its browser sends the Telemetry API, and
/// what the token is bound to.
public struct StartedTelemetrySession: Sendable, Hashable {
    /// The signed session token (HS256, ``SessionTokens``): audience the Telemetry API.
    public let token: String
    /// The new session.
    public let sessionID: UUID
    /// The clinic.
    public let organizationID: UUID
    /// The patient record the session's metrics will belong to.
    public let patientID: UUID
    /// When the token stops being accepted.
    public let expiresAt: Date
}

extension StartedTelemetrySession: CustomStringConvertible {
    /// Ids only; never the token.
    public var description: String {
        "StartedTelemetrySession(session: \(sessionID.lowercasedString), organization: \(organizationID.lowercasedString), patient: \(patientID.lowercasedString))"
    }
}

/// Starting telemetry sessions (the platform's telemetry sub-stack): a patient, signed in to
/// its clinic, asks the Core API for a session; it gets a new session id and a short-lived
/// token bound to its clinic, its patient record and that session, which is all the Telemetry
/// API will accept frames and media events with. Starting one is audited
/// (`telemetry.session.start`, the session's id, the patient record's id) and recorded in
/// `telemetry_sessions`, where ``TelemetryAggregates`` finds it when the session's aggregates
/// arrive.
///
/// Only a patient principal starts one, for its own record (staff acting as a patient through
/// an impersonation session do so as that patient, audited as impersonation); a patient member
/// without a patient record in the clinic has nothing to record metrics against: 404.
public struct TelemetrySessions: Sendable {
    /// How long a token lives unless asked otherwise: an exercise session's length with room
    /// to resume.
    public static let defaultLifetime: Duration = .seconds(3600)

    let tenants: TenantDatabase
    let tokens: SessionTokens
    let store: PatientStore
    let lifetime: Duration

    /// Sessions of `tenants`' patients, tokens signed by `tokens`, living `lifetime`.
    public init(tenants: TenantDatabase, tokens: SessionTokens, cipher: ColumnCipher, lifetime: Duration = Self.defaultLifetime) {
        self.tenants = tenants
        self.tokens = tokens
        store = PatientStore(cipher: cipher)
        self.lifetime = lifetime
    }

    /// Starts a session for `context`'s patient.
    public func start(as context: TenantContext, requestID: String? = nil) async throws -> StartedTelemetrySession {
        guard context.role == .patient else {
            throw TenancyError(.roleNotAllowed, "only a patient starts a telemetry session, for itself")
        }
        let session = UUIDv7.generate()
        return try await tenants.withTenant(context) { tx in
            guard let patient = try await store.record(ofUser: context.userID, in: tx) else {
                throw TenancyError(.notFound, "this account has no patient record in the clinic")
            }
            let token = try tokens.issue(session: session, organization: context.organizationID, patient: patient, lifetime: lifetime)
            let verified = try tokens.verify(token)
            // The session as the aggregates endpoint will find it (TelemetryAggregates).
            try await tx.execute("""
                INSERT INTO telemetry_sessions (id, organization_id, patient_id, patient_user_id, expires_at) \
                VALUES (\(session), \(context.organizationID), \(patient), \(context.userID), \(verified.expiresAt))
                """)
            try await tx.audit(AuditEvent(
                action: "telemetry.session.start", resourceType: "telemetry_session", resourceID: session, requestID: requestID,
                metadata: ["patient_id": patient.lowercasedString]
            ))
            return StartedTelemetrySession(
                token: token, sessionID: session, organizationID: context.organizationID, patientID: patient, expiresAt: verified.expiresAt
            )
        }
    }
}
