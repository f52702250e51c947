public import Foundation
public import RestartixKit
public import RestartixTelemetry
public import RestartixTenancy

/// A finished session's pose metrics as recorded (`pose_session_metrics` and its
/// `pose_rep_metrics`).
public struct RecordedSessionMetrics: Sendable, Hashable {
    public let sessionID: UUID
    public let patientID: UUID
    public let exercise: String
    public let startedAt: Date
    public let endedAt: Date
    /// The summary and, when asked for one session, its repetitions (empty in lists).
    public let pose: SessionAggregates.Pose
}

/// Reading recorded telemetry metrics, under the reader's tenant context: row-level security
/// decides what is seen, so a patient sees its own sessions, the clinic's staff the clinic's,
/// and a session of another clinic (or another patient, for a patient) is not found.
public struct TelemetryMetrics: Sendable {
    /// At most this many sessions in one list.
    public static let maximumPageSize = 100

    let tenants: TenantDatabase

    public init(tenants: TenantDatabase) {
        self.tenants = tenants
    }

    static let summaryColumns: SQLQuery = """
        id, patient_id, exercise, started_at, ended_at, rep_count, mean_rom_degrees, min_rom_degrees, max_rom_degrees, \
        mean_rep_duration_ms, tempo_cv, active_time_ms, tracked_frame_ratio, mean_visibility, effective_fps
        """

    /// One session's metrics with its repetitions; `notFound` when the reader cannot see it.
    public func session(_ id: UUID, as context: TenantContext) async throws -> RecordedSessionMetrics {
        try await tenants.withTenant(context) { tx in
            guard let row = try await tx.first("SELECT \(Self.summaryColumns) FROM pose_session_metrics WHERE id = \(id)") else {
                throw TenancyError(.notFound, "no such telemetry session in this clinic")
            }
            let reps = try await tx.query("""
                SELECT rep_index, start_ms, end_ms, duration_ms, min_angle_degrees, max_angle_degrees, rom_degrees, concentric_ms, eccentric_ms, \
                peak_velocity_dps, mean_visibility, partial_range, too_fast FROM pose_rep_metrics WHERE session_id = \(id) ORDER BY rep_index
                """).map { row in
                SessionAggregates.Rep(
                    repIndex: try row.decode("rep_index", as: Int.self), startMs: try row.decode("start_ms", as: Int64.self),
                    endMs: try row.decode("end_ms", as: Int64.self), durationMs: try row.decode("duration_ms", as: Int64.self),
                    minAngleDegrees: try row.decode("min_angle_degrees", as: Double.self), maxAngleDegrees: try row.decode("max_angle_degrees", as: Double.self),
                    romDegrees: try row.decode("rom_degrees", as: Double.self), concentricMs: try row.decode("concentric_ms", as: Int64?.self),
                    eccentricMs: try row.decode("eccentric_ms", as: Int64?.self), peakVelocityDps: try row.decode("peak_velocity_dps", as: Double?.self),
                    meanVisibility: try row.decode("mean_visibility", as: Double?.self), partialRange: try row.decode("partial_range", as: Bool.self),
                    tooFast: try row.decode("too_fast", as: Bool.self)
                )
            }
            return try Self.metrics(row, reps: reps)
        }
    }

    /// The newest `limit` sessions (1 to ``maximumPageSize``), of `patient` when given, without
    /// their repetitions.
    public func list(patient: UUID? = nil, limit: Int = 50, as context: TenantContext) async throws -> [RecordedSessionMetrics] {
        guard (1...Self.maximumPageSize).contains(limit) else {
            throw TelemetryError(.invalidArgument, "limit must be 1 to \(Self.maximumPageSize)")
        }
        return try await tenants.withTenant(context) { tx in
            let rows = if let patient {
                try await tx.query("SELECT \(Self.summaryColumns) FROM pose_session_metrics WHERE patient_id = \(patient) ORDER BY started_at DESC, id DESC LIMIT \(limit)")
            } else {
                try await tx.query("SELECT \(Self.summaryColumns) FROM pose_session_metrics ORDER BY started_at DESC, id DESC LIMIT \(limit)")
            }
            return try rows.map { try Self.metrics($0, reps: []) }
        }
    }

    static func metrics(_ row: SQLRow, reps: [SessionAggregates.Rep]) throws -> RecordedSessionMetrics {
        RecordedSessionMetrics(
            sessionID: try row.decode("id", as: UUID.self), patientID: try row.decode("patient_id", as: UUID.self),
            exercise: try row.decode("exercise", as: String.self), startedAt: try row.decode("started_at", as: Date.self),
            endedAt: try row.decode("ended_at", as: Date.self),
            pose: SessionAggregates.Pose(
                repCount: try row.decode("rep_count", as: Int.self), meanRomDegrees: try row.decode("mean_rom_degrees", as: Double?.self),
                minRomDegrees: try row.decode("min_rom_degrees", as: Double?.self), maxRomDegrees: try row.decode("max_rom_degrees", as: Double?.self),
                meanRepDurationMs: try row.decode("mean_rep_duration_ms", as: Double?.self), tempoCv: try row.decode("tempo_cv", as: Double?.self),
                activeTimeMs: try row.decode("active_time_ms", as: Int64.self), trackedFrameRatio: try row.decode("tracked_frame_ratio", as: Double?.self),
                meanVisibility: try row.decode("mean_visibility", as: Double?.self), effectiveFps: try row.decode("effective_fps", as: Double?.self),
                reps: reps
            )
        )
    }
}
