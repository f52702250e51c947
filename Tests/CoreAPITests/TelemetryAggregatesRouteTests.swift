@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTelemetry
import RestartixTenancy
import ServiceSupport
import Testing

/// `POST /internal/v1/telemetry/sessions/{id}/aggregates` with the patient tests' clinics (on
/// SQLite and on Postgres through PgBouncer): a session the patient started, recorded once under
/// its tenant context, the rows and the exercise log as the ground truth.
extension PatientRouteTests {
    static let serviceSecret = "aggregates-tests-service-secret-0123456789abcdef"

    /// The API with service-account tokens under ``serviceSecret``.
    func withAggregatesAPI(_ backend: Backend, _ body: @escaping @Sendable (any TestClientProtocol, Fixture) async throws -> Void) async throws {
        try await withAPI(backend, configure: { $0.serviceAccounts = try? ServiceAccountTokens(secrets: [Self.serviceSecret]) }, body)
    }

    static func serviceAuth(scopes: Set<String> = ["telemetry:aggregates:write"]) throws -> HTTPFields {
        let token = try ServiceAccountTokens(secrets: [serviceSecret]).issue(service: "telemetry-api", audience: "restartix-core-api", scopes: scopes, lifetime: .seconds(300))
        return [.authorization: "Bearer \(token)", .contentType: "application/json"]
    }

    /// The patient starts a session; its id.
    static func startSession(_ client: some TestClientProtocol, _ fixture: Fixture) async throws -> String {
        let started = try await client.execute(uri: "/v1/telemetry/session-tokens", method: .post, headers: fixture.auth("patient")) { response -> TelemetrySessionBody? in
            #expect(response.status == .created)
            return decode(TelemetrySessionBody.self, response)
        }
        return try #require(started).session_id
    }

    /// A session of `reps` repetitions and one video with two stalls.
    static func aggregates(_ fixture: Fixture, patient: String, exercise: String = "knee_flexion", reps: Int = 3) -> SessionAggregates {
        let list = (0..<reps).map { index in
            SessionAggregates.Rep(
                repIndex: index, startMs: Int64(index) * 2000, endMs: Int64(index) * 2000 + 1800, durationMs: 1800,
                minAngleDegrees: 40, maxAngleDegrees: 120, romDegrees: 80, concentricMs: 900, eccentricMs: 900, meanVisibility: 0.9
            )
        }
        return SessionAggregates(
            organizationID: fixture.clinic.lowercasedString, patientID: patient, exercise: exercise,
            startedAt: "2026-12-05T10:00:00Z", endedAt: "2026-12-05T10:05:00.250Z",
            pose: SessionAggregates.Pose(repCount: reps, meanRomDegrees: reps > 0 ? 80 : nil, activeTimeMs: Int64(reps) * 1800, trackedFrameRatio: 0.97, reps: list),
            media: [SessionAggregates.Media(
                videoID: "video-knee-1", startupTimeMs: 850, watchTimeMs: 290_000, playingTimeMs: 280_000, rebufferCount: 2, rebufferDurationMs: 3000,
                rebufferPercentage: 1.07, bufferingEvents: [.init(startedAtMs: 10_000, durationMs: 1000), .init(startedAtMs: 60_000, durationMs: 2000, seekInduced: true)]
            )]
        )
    }

    static func post(
        _ client: some TestClientProtocol, session: String, _ body: SessionAggregates, headers: HTTPFields? = nil
    ) async throws -> (HTTPResponse.Status, RecordedAggregatesBody?, Problem?) {
        let data = try JSONEncoder().encode(body)
        return try await client.execute(
            uri: "/internal/v1/telemetry/sessions/\(session)/aggregates", method: .post, headers: try headers ?? serviceAuth(), body: ByteBuffer(bytes: data)
        ) { response in
            (response.status, decode(RecordedAggregatesBody.self, response), decode(Problem.self, response))
        }
    }

    /// Every row the aggregates of `session` wrote, by table.
    static func written(_ fixture: Fixture, session: UUID, patient: UUID) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        counts["pose_session_metrics"] = try await fixture.count("SELECT count(*) AS n FROM pose_session_metrics WHERE id = \(session)")
        counts["pose_rep_metrics"] = try await fixture.count("SELECT count(*) AS n FROM pose_rep_metrics WHERE session_id = \(session)")
        counts["media_session_metrics"] = try await fixture.count("SELECT count(*) AS n FROM media_session_metrics WHERE patient_id = \(patient)")
        counts["media_buffering_events"] = try await fixture.count("""
            SELECT count(*) AS n FROM media_buffering_events WHERE media_session_id IN (SELECT id FROM media_session_metrics WHERE patient_id = \(patient))
            """)
        counts["audit"] = try await fixture.count("SELECT count(*) AS n FROM audit_log WHERE action = 'telemetry.session.aggregate' AND resource_id = \(session)")
        counts["recorded"] = try await fixture.count("SELECT count(*) AS n FROM telemetry_sessions WHERE id = \(session) AND aggregated_at IS NOT NULL")
        return counts
    }

    @Test("aggregates: a session the patient started is recorded once under its tenant context, rows, exercise log and audit row; a repeat writes nothing", arguments: PatientRouteTests.backends)
    func aggregatesRecorded(backend: Backend) async throws {
        try await withAggregatesAPI(backend) { client, fixture in
            let record = try await Self.createOwn(client, fixture)
            let patient = try #require(UUID(uuidString: record.id))
            let session = try await Self.startSession(client, fixture)
            let sessionID = try #require(UUID(uuidString: session))
            // Started: recorded as the patient's, not yet aggregated.
            #expect(try await fixture.count("SELECT count(*) AS n FROM telemetry_sessions WHERE id = \(sessionID) AND patient_id = \(patient) AND aggregated_at IS NULL") == 1)

            let (status, recorded, _) = try await Self.post(client, session: session, Self.aggregates(fixture, patient: record.id))
            #expect(status == .created)
            #expect(recorded == RecordedAggregatesBody(
                session_id: session, organization_id: fixture.clinic.lowercasedString, patient_id: record.id, status: "recorded",
                reps: 3, media_sessions: 1, exercise_done_count: 1
            ))
            let expected = ["pose_session_metrics": 1, "pose_rep_metrics": 3, "media_session_metrics": 1, "media_buffering_events": 2, "audit": 1, "recorded": 1]
            #expect(try await Self.written(fixture, session: sessionID, patient: patient) == expected)
            // The values, as sent.
            let pose = try #require(try await fixture.rows("SELECT exercise, rep_count, mean_rom_degrees, active_time_ms, tracked_frame_ratio FROM pose_session_metrics WHERE id = \(sessionID)").first)
            #expect(try pose.decode("exercise", as: String.self) == "knee_flexion" && pose.decode("rep_count", as: Int.self) == 3)
            #expect(try pose.decode("mean_rom_degrees", as: Double.self) == 80 && pose.decode("active_time_ms", as: Int.self) == 5400)
            #expect(try pose.decode("tracked_frame_ratio", as: Double.self) == 0.97)
            let stalls = try await fixture.rows("""
                SELECT started_at_ms, duration_ms, seek_induced FROM media_buffering_events WHERE media_session_id IN \
                (SELECT id FROM media_session_metrics WHERE patient_id = \(patient)) ORDER BY started_at_ms
                """)
            #expect(try stalls.map { try $0.decode("duration_ms", as: Int.self) } == [1000, 2000])
            #expect(try stalls.map { try $0.decode("seek_induced", as: Bool.self) } == [false, true])
            // Written as the patient, on behalf of the service that delivered it.
            let audit = try #require(try await fixture.rows("""
                SELECT actor_user_id, CAST(metadata AS TEXT) AS metadata FROM audit_log WHERE action = 'telemetry.session.aggregate' AND resource_id = \(sessionID)
                """).first)
            #expect(try audit.decode("actor_user_id", as: UUID.self) == fixture.users["patient"]!)
            #expect(try audit.decode("metadata", as: String.self).contains("telemetry-api"))

            // Delivered again (a retry): nothing written, the same answer marked duplicate.
            let (again, repeated, _) = try await Self.post(client, session: session, Self.aggregates(fixture, patient: record.id))
            #expect(again == .ok && repeated?.status == "duplicate" && repeated?.reps == 3 && repeated?.media_sessions == 1 && repeated?.exercise_done_count == 1)
            #expect(try await Self.written(fixture, session: sessionID, patient: patient) == expected)

            // Another session of the exercise counts up; one without a repetition does not.
            let second = try await Self.startSession(client, fixture)
            let (_, counted, _) = try await Self.post(client, session: second, Self.aggregates(fixture, patient: record.id))
            #expect(counted?.exercise_done_count == 2)
            let third = try await Self.startSession(client, fixture)
            let (_, idle, _) = try await Self.post(client, session: third, Self.aggregates(fixture, patient: record.id, reps: 0))
            #expect(idle?.exercise_done_count == 2 && idle?.reps == 0)
            let log = try #require(try await fixture.rows("SELECT done_count, last_session_id, patient_user_id FROM patient_exercise_logs WHERE patient_id = \(patient)").first)
            #expect(try log.decode("done_count", as: Int.self) == 2 && log.decode("last_session_id", as: UUID.self) == UUID(uuidString: second))
            #expect(try log.decode("patient_user_id", as: UUID?.self) == fixture.users["patient"]!)
        }
    }

    @Test("aggregates delivered ten times at once: recorded once, nine duplicates; five sessions of one exercise at once: each counted", arguments: PatientRouteTests.backends)
    func aggregatesConcurrent(backend: Backend) async throws {
        try await withAggregatesAPI(backend) { client, fixture in
            let record = try await Self.createOwn(client, fixture)
            let session = try await Self.startSession(client, fixture)
            let body = Self.aggregates(fixture, patient: record.id)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<10 { group.addTask { try await Self.post(client, session: session, body).0.code } }
                return try await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(statuses == [201: 1, 200: 9], "\(statuses)")
            let written = try await Self.written(fixture, session: UUID(uuidString: session)!, patient: UUID(uuidString: record.id)!)
            #expect(written == ["pose_session_metrics": 1, "pose_rep_metrics": 3, "media_session_metrics": 1, "media_buffering_events": 2, "audit": 1, "recorded": 1])
            #expect(try await fixture.count("SELECT done_count AS n FROM patient_exercise_logs WHERE patient_id = \(UUID(uuidString: record.id)!)") == 1)
            // Five other sessions of the exercise recorded at once: each counts (one log row).
            var others: [String] = []
            for _ in 0..<5 { others.append(try await Self.startSession(client, fixture)) }
            let sessions = others
            let created = try await withThrowingTaskGroup(of: Int.self) { group in
                for other in sessions { group.addTask { try await Self.post(client, session: other, body).0.code } }
                return try await group.reduce(0) { $0 + ($1 == 201 ? 1 : 0) }
            }
            #expect(created == 5)
            #expect(try await fixture.count("SELECT done_count AS n FROM patient_exercise_logs WHERE patient_id = \(UUID(uuidString: record.id)!)") == 6)
            #expect(try await fixture.count("SELECT count(*) AS n FROM patient_exercise_logs WHERE patient_id = \(UUID(uuidString: record.id)!)") == 1)
        }
    }

    @Test("aggregates refused: no token, a user's token, no scope, an unknown session, another clinic or patient, each broken rule; nothing written", arguments: PatientRouteTests.backends)
    func aggregatesRefused(backend: Backend) async throws {
        try await withAggregatesAPI(backend) { client, fixture in
            let record = try await Self.createOwn(client, fixture)
            let other = try await Self.create(client, fixture, ["name": "Jane Doe"])
            let session = try await Self.startSession(client, fixture)
            let good = Self.aggregates(fixture, patient: record.id)
            var plain: HTTPFields = [.contentType: "application/json"]
            #expect(try await Self.post(client, session: session, good, headers: plain).0 == .unauthorized)
            plain[.authorization] = "Bearer \(fixture.tokens["owner"]!)"
            #expect(try await Self.post(client, session: session, good, headers: plain).0 == .unauthorized, "a user's token is no service's")
            let (noScope, _, noScopeProblem) = try await Self.post(client, session: session, good, headers: try Self.serviceAuth(scopes: []))
            #expect(noScope == .forbidden && noScopeProblem?.code == "signature.insufficientScope")
            // Sessions the Core API did not start, or not for this clinic and patient: 404.
            #expect(try await Self.post(client, session: UUIDv7.generate().lowercasedString, good).0 == .notFound)
            var otherClinic = good
            otherClinic.organizationID = fixture.otherClinic.lowercasedString
            #expect(try await Self.post(client, session: session, otherClinic).0 == .notFound)
            var otherPatient = good
            otherPatient.patientID = other.id
            #expect(try await Self.post(client, session: session, otherPatient).0 == .notFound)
            // Each rule, named: 422.
            var cases: [(String, SessionAggregates)] = []
            var broken = good
            broken.exercise = "Knee Flexion"
            cases.append(("exercise", broken))
            broken = good
            broken.endedAt = "2026-12-05T09:00:00Z"
            cases.append(("ended_at", broken))
            broken = good
            broken.startedAt = "yesterday"
            cases.append(("started_at", broken))
            broken = good
            broken.pose?.repCount = 7
            cases.append(("rep_count", broken))
            broken = good
            broken.pose?.reps[1].repIndex = 5
            cases.append(("rep_index", broken))
            broken = good
            broken.pose?.reps[0].durationMs = 1
            cases.append(("duration_ms", broken))
            broken = good
            broken.pose?.trackedFrameRatio = 1.5
            cases.append(("tracked_frame_ratio", broken))
            broken = good
            broken.media[0].bufferingEvents[0].durationMs = -1
            cases.append(("duration_ms", broken))
            broken = good
            broken.media[0].videoID = "video\u{0}x"
            cases.append(("video_id", broken))
            for (field, body) in cases {
                let (status, _, problem) = try await Self.post(client, session: session, body)
                #expect(status == .unprocessableContent && problem?.detail.contains(field) == true, "\(field): \(status) \(String(describing: problem))")
            }
            try await client.execute(uri: "/internal/v1/telemetry/sessions/not-a-session/aggregates", method: .post, headers: try Self.serviceAuth(), body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/internal/v1/telemetry/sessions/\(session)/aggregates", method: .post, headers: try Self.serviceAuth(), body: ByteBuffer(string: #"{"exercise":"squat"}"#)) { response in
                #expect(response.status == .badRequest)
            }
            let sessionID = try #require(UUID(uuidString: session))
            #expect(try await Self.written(fixture, session: sessionID, patient: UUID(uuidString: record.id)!).values.allSatisfy { $0 == 0 }, "nothing written")
            // The good delivery still records.
            #expect(try await Self.post(client, session: session, good).0 == .created)
        }
    }
}
