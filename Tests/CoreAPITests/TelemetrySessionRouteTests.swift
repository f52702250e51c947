@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// `POST /v1/telemetry/session-tokens`, with the patient tests' clinics (on SQLite and on
/// Postgres through PgBouncer): the token verified with the secret the API signs with.
extension PatientRouteTests {
    @Test("telemetry sessions: a patient gets a token bound to its clinic, its record and a new session, audited; staff 403; no record 404; no token 401", arguments: PatientRouteTests.backends)
    func telemetrySession(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let url = "/v1/telemetry/session-tokens"
            // A patient member without a patient record has nothing to record metrics against.
            try await client.execute(uri: url, method: .post, headers: fixture.auth("patient")) { response in
                #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound")
            }
            let record = try await Self.createOwn(client, fixture)
            var sessions: [String] = []
            for _ in 0..<2 {
                let started = try await client.execute(uri: url, method: .post, headers: fixture.auth("patient")) { response -> TelemetrySessionBody? in
                    #expect(response.status == .created && response.headers[.cacheControl] == "no-store")
                    return Self.decode(TelemetrySessionBody.self, response)
                }
                let session = try #require(started)
                #expect(session.patient_id == record.id && session.organization_id == fixture.clinic.lowercasedString)
                // The Telemetry API's check: the token names the same session, clinic and patient.
                let tokens = try SessionTokens(secrets: [try #require(fixture.sessionSecret)])
                let verified = try tokens.verify(session.token)
                #expect(verified.sessionID.lowercasedString == session.session_id)
                #expect(verified.organizationID == fixture.clinic && verified.patientID.lowercasedString == record.id)
                #expect(abs(verified.expiresAt.timeIntervalSinceNow - 3600) < 60, "an hour")
                // Another secret's tokens are not this one's.
                let other = try SessionTokens(secrets: [String(repeating: "k", count: 40)])
                #expect(throws: TokenError.self) { try other.verify(session.token) }
                sessions.append(session.session_id)
            }
            #expect(Set(sessions).count == 2, "a new session each time")
            let audited = try await fixture.rows("SELECT resource_id FROM audit_log WHERE action = 'telemetry.session.start' AND organization_id = \(fixture.clinic)")
            #expect(Set(try audited.map { try $0.decode("resource_id", as: UUID.self).lowercasedString }) == Set(sessions))
            for who in ["owner", "specialist", "other-owner"] {
                try await client.execute(uri: url, method: .post, headers: fixture.auth(who)) { response in
                    #expect(response.status == .forbidden && Self.decode(Problem.self, response)?.code == "tenancy.roleNotAllowed", "\(who)")
                }
            }
            try await client.execute(uri: url, method: .post) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: url, method: .get, headers: fixture.auth("patient")) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "POST")
            }
        }
    }

    /// (Postgres only: the embedded default makes a local secret when none is set.)
    @Test("telemetry sessions without a session secret: 503 service.notConfigured, nothing written", arguments: PatientRouteTests.backends.filter { $0.isPostgres })
    func telemetrySessionNotConfigured(backend: Backend) async throws {
        try await withAPI(backend, configure: { $0.sessionTokens = nil }) { client, fixture in
            _ = try await Self.createOwn(client, fixture)
            try await client.execute(uri: "/v1/telemetry/session-tokens", method: .post, headers: fixture.auth("patient")) { response in
                #expect(response.status == .serviceUnavailable && Self.decode(Problem.self, response)?.code == "service.notConfigured")
                #expect(!String(buffer: response.body).contains("telemetry-session-secret"))
            }
            #expect(try await fixture.count("SELECT count(*) AS n FROM audit_log WHERE action = 'telemetry.session.start' AND organization_id = \(fixture.clinic)") == 0)
        }
    }
}
