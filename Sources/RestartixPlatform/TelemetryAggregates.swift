public import Foundation
import RestartixKit
public import RestartixTelemetry
public import RestartixTenancy

/// What recording a session's aggregates did.
public struct RecordedAggregates: Sendable, Hashable {
    public let sessionID: UUID
    public let organizationID: UUID
    public let patientID: UUID
    /// `true` when the session's aggregates had been recorded before: this call wrote nothing.
    public let duplicate: Bool
    /// Repetitions and videos recorded for the session.
    public let reps: Int
    public let mediaSessions: Int
    /// The patient's done count for the session's exercise, as it stands now.
    public let exerciseDoneCount: Int
}

/// The Core API's end of the telemetry sub-stack: a finished session's aggregates, which the
/// Telemetry API posts (a service-account principal) to
/// `POST /internal/v1/telemetry/sessions/{id}/aggregates`.
///
/// - The session must be one the Core API started (``TelemetrySessions``, a `telemetry_sessions`
///   row) in the clinic and for the patient the aggregates name; anything else is
///   ``TenancyError/Code/notFound``.
/// - The rows (`pose_session_metrics` with the session's id, `pose_rep_metrics`,
///   `media_session_metrics`, `media_buffering_events`) are written under the patient's own
///   tenant context — the patient policies confine them to its record — in one transaction
///   with the session's mark, the patient's exercise log and the audit row
///   (`telemetry.session.aggregate`, naming the service), so a failure leaves nothing.
/// - Idempotent by session: the session is marked recorded in that transaction (the first
///   statement, which also orders concurrent deliveries), and a delivery of a recorded session
///   writes nothing and answers what was recorded (``RecordedAggregates/duplicate``).
/// - The exercise log (`patient_exercise_logs`): a session with at least one repetition counts
///   as one done for its exercise.
public struct TelemetryAggregates: Sendable {
    let tenants: TenantDatabase
    let admin: AdminDatabase

    /// The service over `tenants` (the app role, where the rows are written as the patient) and
    /// `admin` (to find a session's patient account inside its clinic).
    public init(tenants: TenantDatabase, admin: AdminDatabase) {
        self.tenants = tenants
        self.admin = admin
    }

    /// Records `aggregates` for `session`, delivered by `service`.
    public func record(_ aggregates: SessionAggregates, session: UUID, by service: String, requestID: String? = nil) async throws -> RecordedAggregates {
        try aggregates.validate()
        guard let organization = UUID(uuidString: aggregates.organizationID) else { throw TelemetryError(.invalidArgument, "organization_id must be a UUID") }
        guard let patient = UUID(uuidString: aggregates.patientID) else { throw TelemetryError(.invalidArgument, "patient_id must be a UUID") }
        let startedAt = try Self.time(aggregates.startedAt, field: "started_at")
        let endedAt = try Self.time(aggregates.endedAt, field: "ended_at")
        guard endedAt >= startedAt else { throw TelemetryError(.invalidArgument, "ended_at must not be before started_at") }
        // The session's patient account, inside the clinic the aggregates name.
        let found = try await admin.withOrganization(organization, actor: .service(service)) { tx in
            try await tx.first("SELECT patient_id, patient_user_id FROM telemetry_sessions WHERE id = \(session)")
        }
        guard let found, try found.decode("patient_id", as: UUID.self) == patient else { throw Self.notFound }
        guard let account = try found.decode("patient_user_id", as: UUID?.self) else {
            throw TenancyError(.notFound, "the session's patient has no account in the clinic any more")
        }
        let context = TenantContext(organizationID: organization, userID: account, role: .patient)
        return try await tenants.withTenant(context) { tx in
            // The mark first: a second delivery waits here for the first to commit, then finds
            // the session recorded.
            let now = tx.dialect.now
            let reps = aggregates.pose?.reps.count ?? 0
            let claimed = try await tx.execute("""
                UPDATE telemetry_sessions SET aggregated_at = \(now), exercise = \(aggregates.exercise), rep_count = \(reps), \
                media_count = \(aggregates.media.count) WHERE id = \(session) AND aggregated_at IS NULL
                """)
            guard claimed == 1 else { return try await Self.recorded(session, organization: organization, patient: patient, in: tx) }
            var writes: [SQLQuery] = []
            if let pose = aggregates.pose {
                writes.append("""
                    INSERT INTO pose_session_metrics (id, organization_id, patient_id, exercise, started_at, ended_at, rep_count, \
                    mean_rom_degrees, min_rom_degrees, max_rom_degrees, mean_rep_duration_ms, tempo_cv, active_time_ms, \
                    tracked_frame_ratio, mean_visibility, effective_fps) VALUES (\(session), \(organization), \(patient), \(aggregates.exercise), \
                    \(startedAt), \(endedAt), \(pose.repCount), \(pose.meanRomDegrees), \(pose.minRomDegrees), \(pose.maxRomDegrees), \
                    \(pose.meanRepDurationMs), \(pose.tempoCv), \(pose.activeTimeMs), \(pose.trackedFrameRatio), \(pose.meanVisibility), \(pose.effectiveFps))
                    """)
                for rep in pose.reps {
                    writes.append("""
                        INSERT INTO pose_rep_metrics (id, organization_id, session_id, rep_index, start_ms, end_ms, duration_ms, \
                        min_angle_degrees, max_angle_degrees, rom_degrees, concentric_ms, eccentric_ms, peak_velocity_dps, mean_visibility, \
                        partial_range, too_fast) VALUES (\(UUIDv7.generate()), \(organization), \(session), \(rep.repIndex), \(rep.startMs), \
                        \(rep.endMs), \(rep.durationMs), \(rep.minAngleDegrees), \(rep.maxAngleDegrees), \(rep.romDegrees), \(rep.concentricMs), \
                        \(rep.eccentricMs), \(rep.peakVelocityDps), \(rep.meanVisibility), \(rep.partialRange), \(rep.tooFast))
                        """)
                }
            }
            for video in aggregates.media {
                let id = UUIDv7.generate()
                writes.append("""
                    INSERT INTO media_session_metrics (id, organization_id, patient_id, video_id, startup_time_ms, exit_before_start, \
                    watch_time_ms, playing_time_ms, rebuffer_count, rebuffer_duration_ms, rebuffer_percentage, \
                    rebuffer_frequency_per_minute, startup_score, smoothness_score, failure_count) VALUES (\(id), \(organization), \
                    \(patient), \(video.videoID), \(video.startupTimeMs), \(video.exitBeforeStart), \(video.watchTimeMs), \(video.playingTimeMs), \
                    \(video.rebufferCount), \(video.rebufferDurationMs), \(video.rebufferPercentage), \(video.rebufferFrequencyPerMinute), \
                    \(video.startupScore), \(video.smoothnessScore), \(video.failureCount))
                    """)
                for stall in video.bufferingEvents {
                    writes.append("""
                        INSERT INTO media_buffering_events (id, organization_id, media_session_id, started_at_ms, duration_ms, seek_induced) \
                        VALUES (\(UUIDv7.generate()), \(organization), \(id), \(stall.startedAtMs), \(stall.durationMs), \(stall.seekInduced))
                        """)
                }
            }
            // One round trip for the rows, however many (Postgres pipelines them).
            if !writes.isEmpty { _ = try await tx.pipeline(writes) }
            if (aggregates.pose?.repCount ?? 0) > 0 {
                // One log row per patient and exercise: two sessions of it recorded at once must
                // not both insert it (SQLite has one writer; Postgres takes a transaction-scoped lock).
                try await tx.lockForTransaction("restartix.exercise-log", organization.lowercasedString, patient.lowercasedString, aggregates.exercise)
                let counted = try await tx.execute("""
                    UPDATE patient_exercise_logs SET done_count = done_count + 1, last_session_id = \(session), last_done_at = \(endedAt), \
                    updated_at = \(now) WHERE patient_id = \(patient) AND exercise = \(aggregates.exercise)
                    """)
                if counted == 0 {
                    try await tx.execute("""
                        INSERT INTO patient_exercise_logs (id, organization_id, patient_id, patient_user_id, exercise, done_count, \
                        last_session_id, last_done_at) VALUES (\(UUIDv7.generate()), \(organization), \(patient), \(account), \
                        \(aggregates.exercise), 1, \(session), \(endedAt))
                        """)
                }
            }
            try await tx.audit(AuditEvent(
                action: "telemetry.session.aggregate", resourceType: "telemetry_session", resourceID: session, requestID: requestID,
                metadata: ["service": service, "reps": String(reps), "media_sessions": String(aggregates.media.count)]
            ))
            let done = try await Self.doneCount(patient: patient, exercise: aggregates.exercise, in: tx)
            return RecordedAggregates(
                sessionID: session, organizationID: organization, patientID: patient, duplicate: false, reps: reps,
                mediaSessions: aggregates.media.count, exerciseDoneCount: done
            )
        }
    }

    static let notFound = TenancyError(.notFound, "no such telemetry session for this clinic and patient")

    /// What was recorded for `session` before, as its row says.
    static func recorded(_ session: UUID, organization: UUID, patient: UUID, in tx: borrowing TenantTransaction) async throws -> RecordedAggregates {
        guard let row = try await tx.first("SELECT exercise, rep_count, media_count FROM telemetry_sessions WHERE id = \(session) AND aggregated_at IS NOT NULL") else {
            throw notFound
        }
        let done = try await doneCount(patient: patient, exercise: try row.decode("exercise", as: String.self), in: tx)
        return RecordedAggregates(
            sessionID: session, organizationID: organization, patientID: patient, duplicate: true, reps: try row.decode("rep_count", as: Int.self),
            mediaSessions: try row.decode("media_count", as: Int.self), exerciseDoneCount: done
        )
    }

    static func doneCount(patient: UUID, exercise: String, in tx: borrowing TenantTransaction) async throws -> Int {
        try await tx.first("SELECT done_count FROM patient_exercise_logs WHERE patient_id = \(patient) AND exercise = \(exercise)")?.decode("done_count", as: Int.self) ?? 0
    }

    /// An RFC 3339 date-time, or the field named.
    static func time(_ text: String, field: String) throws(TelemetryError) -> Date {
        guard let date = RFC3339.date(text) else {
            throw TelemetryError(.invalidArgument, "\(field) must be an RFC 3339 date-time with an offset")
        }
        return date
    }
}
