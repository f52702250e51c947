public import RestartixCore

/// What a finished telemetry session hands the Core API (its internal aggregates endpoint):
/// the kernels' rows, in the wire form both services share — JSON with the tables' column names.
/// The Telemetry API encodes it; the Core API decodes it, checks it with ``validate()`` and
/// writes the rows of `pose_session_metrics`, `pose_rep_metrics`, `media_session_metrics` and
/// `media_buffering_events` under the patient's tenant context.
///
/// Times inside a session are milliseconds from its start; `started_at` and `ended_at` are RFC
/// 3339 date-times (the receiver parses them: this module has no calendar).
public struct SessionAggregates: Codable, Sendable, Hashable {
    /// One repetition (a `pose_rep_metrics` row).
    public struct Rep: Codable, Sendable, Hashable {
        public var repIndex: Int
        public var startMs: Int64
        public var endMs: Int64
        public var durationMs: Int64
        public var minAngleDegrees: Double
        public var maxAngleDegrees: Double
        public var romDegrees: Double
        public var concentricMs: Int64?
        public var eccentricMs: Int64?
        public var peakVelocityDps: Double?
        public var meanVisibility: Double?
        public var partialRange: Bool
        public var tooFast: Bool

        /// A repetition as ``RepMetrics`` measures it.
        public init(
            repIndex: Int, startMs: Int64, endMs: Int64, durationMs: Int64, minAngleDegrees: Double, maxAngleDegrees: Double, romDegrees: Double,
            concentricMs: Int64? = nil, eccentricMs: Int64? = nil, peakVelocityDps: Double? = nil, meanVisibility: Double? = nil,
            partialRange: Bool = false, tooFast: Bool = false
        ) {
            self.repIndex = repIndex
            self.startMs = startMs
            self.endMs = endMs
            self.durationMs = durationMs
            self.minAngleDegrees = minAngleDegrees
            self.maxAngleDegrees = maxAngleDegrees
            self.romDegrees = romDegrees
            self.concentricMs = concentricMs
            self.eccentricMs = eccentricMs
            self.peakVelocityDps = peakVelocityDps
            self.meanVisibility = meanVisibility
            self.partialRange = partialRange
            self.tooFast = tooFast
        }

        enum CodingKeys: String, CodingKey {
            case repIndex = "rep_index", startMs = "start_ms", endMs = "end_ms", durationMs = "duration_ms"
            case minAngleDegrees = "min_angle_degrees", maxAngleDegrees = "max_angle_degrees", romDegrees = "rom_degrees"
            case concentricMs = "concentric_ms", eccentricMs = "eccentric_ms", peakVelocityDps = "peak_velocity_dps"
            case meanVisibility = "mean_visibility", partialRange = "partial_range", tooFast = "too_fast"
        }
    }

    /// The session's pose summary (a `pose_session_metrics` row) and its repetitions.
    public struct Pose: Codable, Sendable, Hashable {
        public var repCount: Int
        public var meanRomDegrees: Double?
        public var minRomDegrees: Double?
        public var maxRomDegrees: Double?
        public var meanRepDurationMs: Double?
        public var tempoCv: Double?
        public var activeTimeMs: Int64
        public var trackedFrameRatio: Double?
        public var meanVisibility: Double?
        public var effectiveFps: Double?
        public var reps: [Rep]

        /// A pose summary; `repCount` must be `reps.count`.
        public init(
            repCount: Int, meanRomDegrees: Double? = nil, minRomDegrees: Double? = nil, maxRomDegrees: Double? = nil, meanRepDurationMs: Double? = nil,
            tempoCv: Double? = nil, activeTimeMs: Int64 = 0, trackedFrameRatio: Double? = nil, meanVisibility: Double? = nil, effectiveFps: Double? = nil,
            reps: [Rep] = []
        ) {
            self.repCount = repCount
            self.meanRomDegrees = meanRomDegrees
            self.minRomDegrees = minRomDegrees
            self.maxRomDegrees = maxRomDegrees
            self.meanRepDurationMs = meanRepDurationMs
            self.tempoCv = tempoCv
            self.activeTimeMs = activeTimeMs
            self.trackedFrameRatio = trackedFrameRatio
            self.meanVisibility = meanVisibility
            self.effectiveFps = effectiveFps
            self.reps = reps
        }

        enum CodingKeys: String, CodingKey {
            case repCount = "rep_count", meanRomDegrees = "mean_rom_degrees", minRomDegrees = "min_rom_degrees", maxRomDegrees = "max_rom_degrees"
            case meanRepDurationMs = "mean_rep_duration_ms", tempoCv = "tempo_cv", activeTimeMs = "active_time_ms"
            case trackedFrameRatio = "tracked_frame_ratio", meanVisibility = "mean_visibility", effectiveFps = "effective_fps", reps
        }
    }

    /// One stall (a `media_buffering_events` row).
    public struct Buffering: Codable, Sendable, Hashable {
        public var startedAtMs: Int64
        public var durationMs: Int64
        public var seekInduced: Bool

        public init(startedAtMs: Int64, durationMs: Int64, seekInduced: Bool = false) {
            self.startedAtMs = startedAtMs
            self.durationMs = durationMs
            self.seekInduced = seekInduced
        }

        enum CodingKeys: String, CodingKey {
            case startedAtMs = "started_at_ms", durationMs = "duration_ms", seekInduced = "seek_induced"
        }
    }

    /// One video's quality of experience (a `media_session_metrics` row) and its stalls.
    public struct Media: Codable, Sendable, Hashable {
        public var videoID: String
        public var startupTimeMs: Int64?
        public var exitBeforeStart: Bool
        public var watchTimeMs: Int64
        public var playingTimeMs: Int64
        public var rebufferCount: Int
        public var rebufferDurationMs: Int64
        public var rebufferPercentage: Double?
        public var rebufferFrequencyPerMinute: Double?
        public var startupScore: Double?
        public var smoothnessScore: Double?
        public var failureCount: Int
        public var bufferingEvents: [Buffering]

        /// A video's metrics.
        public init(
            videoID: String, startupTimeMs: Int64? = nil, exitBeforeStart: Bool = false, watchTimeMs: Int64 = 0, playingTimeMs: Int64 = 0,
            rebufferCount: Int = 0, rebufferDurationMs: Int64 = 0, rebufferPercentage: Double? = nil, rebufferFrequencyPerMinute: Double? = nil,
            startupScore: Double? = nil, smoothnessScore: Double? = nil, failureCount: Int = 0, bufferingEvents: [Buffering] = []
        ) {
            self.videoID = videoID
            self.startupTimeMs = startupTimeMs
            self.exitBeforeStart = exitBeforeStart
            self.watchTimeMs = watchTimeMs
            self.playingTimeMs = playingTimeMs
            self.rebufferCount = rebufferCount
            self.rebufferDurationMs = rebufferDurationMs
            self.rebufferPercentage = rebufferPercentage
            self.rebufferFrequencyPerMinute = rebufferFrequencyPerMinute
            self.startupScore = startupScore
            self.smoothnessScore = smoothnessScore
            self.failureCount = failureCount
            self.bufferingEvents = bufferingEvents
        }

        enum CodingKeys: String, CodingKey {
            case videoID = "video_id", startupTimeMs = "startup_time_ms", exitBeforeStart = "exit_before_start"
            case watchTimeMs = "watch_time_ms", playingTimeMs = "playing_time_ms", rebufferCount = "rebuffer_count"
            case rebufferDurationMs = "rebuffer_duration_ms", rebufferPercentage = "rebuffer_percentage"
            case rebufferFrequencyPerMinute = "rebuffer_frequency_per_minute", startupScore = "startup_score"
            case smoothnessScore = "smoothness_score", failureCount = "failure_count", bufferingEvents = "buffering_events"
        }
    }

    /// At most this many repetitions in one session. With the other maxima, the largest
    /// aggregates stay under the Core API's 1 MiB body limit (about 0.6 MB of JSON).
    public static let maximumReps = 1_500
    /// At most this many videos in one session, and stalls in one video.
    public static let maximumMedia = 20
    public static let maximumBuffering = 200

    /// The clinic and the patient record the session was started for (its token's; the
    /// receiver checks them against the session it recorded).
    public var organizationID: String
    public var patientID: String
    /// The exercise performed: 1-64 of `a-z`, `0-9`, `_`.
    public var exercise: String
    /// RFC 3339.
    public var startedAt: String
    /// RFC 3339, not before `startedAt`.
    public var endedAt: String
    /// The pose summary, when the session tracked a pose.
    public var pose: Pose?
    /// The videos played.
    public var media: [Media]

    /// A session's aggregates.
    public init(organizationID: String, patientID: String, exercise: String, startedAt: String, endedAt: String, pose: Pose? = nil, media: [Media] = []) {
        self.organizationID = organizationID
        self.patientID = patientID
        self.exercise = exercise
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.pose = pose
        self.media = media
    }

    enum CodingKeys: String, CodingKey {
        case organizationID = "organization_id", patientID = "patient_id", exercise, startedAt = "started_at", endedAt = "ended_at", pose, media
    }

    /// Throws ``TelemetryError`` (`invalidArgument`, `nonFiniteValue`) naming the first field
    /// that breaks its rule: the exercise's name, counts and indexes, every number finite and in
    /// its range (angles within ±360°, ratios and visibilities in [0, 1], percentages in
    /// [0, 100], times and counts not negative, ends not before starts), the bounds on how many.
    public func validate() throws(TelemetryError) {
        func fail(_ detail: String) -> TelemetryError { TelemetryError(.invalidArgument, detail) }
        func number(_ value: Double?, _ field: String, _ range: ClosedRange<Double>) throws(TelemetryError) {
            guard let value else { return }
            guard value.isFinite else { throw TelemetryError(.nonFiniteValue, "\(field) is not a finite number") }
            guard range.contains(value) else { throw fail("\(field) must be in \(range.lowerBound)...\(range.upperBound)") }
        }
        func count<T: BinaryInteger>(_ value: T?, _ field: String) throws(TelemetryError) {
            if let value, value < 0 { throw fail("\(field) must not be negative") }
        }
        guard (1...64).contains(exercise.utf8.count), exercise.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }) else {
            throw fail("exercise must be 1-64 of a-z, 0-9 and _")
        }
        let angle = -360.0...360.0, unit = 0.0...1.0, open = 0.0...Double.greatestFiniteMagnitude
        if let pose {
            guard pose.reps.count <= Self.maximumReps else { throw fail("pose.reps holds at most \(Self.maximumReps) repetitions") }
            guard pose.repCount == pose.reps.count else { throw fail("pose.rep_count must be the number of pose.reps") }
            for (field, value) in [("mean_rom_degrees", pose.meanRomDegrees), ("min_rom_degrees", pose.minRomDegrees), ("max_rom_degrees", pose.maxRomDegrees)] {
                try number(value, "pose.\(field)", 0...360)
            }
            try number(pose.meanRepDurationMs, "pose.mean_rep_duration_ms", open)
            try number(pose.tempoCv, "pose.tempo_cv", open)
            try number(pose.trackedFrameRatio, "pose.tracked_frame_ratio", unit)
            try number(pose.meanVisibility, "pose.mean_visibility", unit)
            try number(pose.effectiveFps, "pose.effective_fps", 0...1000)
            try count(pose.activeTimeMs, "pose.active_time_ms")
            for (position, rep) in pose.reps.enumerated() {
                let field = "pose.reps[\(position)]"
                guard rep.repIndex == position else { throw fail("\(field).rep_index must be \(position): repetitions in order, from 0") }
                try count(rep.startMs, "\(field).start_ms")
                guard rep.endMs >= rep.startMs else { throw fail("\(field).end_ms must not be before its start_ms") }
                guard rep.durationMs == rep.endMs - rep.startMs else { throw fail("\(field).duration_ms must be end_ms - start_ms") }
                try number(rep.minAngleDegrees, "\(field).min_angle_degrees", angle)
                try number(rep.maxAngleDegrees, "\(field).max_angle_degrees", angle)
                try number(rep.romDegrees, "\(field).rom_degrees", 0...720)
                try count(rep.concentricMs, "\(field).concentric_ms")
                try count(rep.eccentricMs, "\(field).eccentric_ms")
                try number(rep.peakVelocityDps, "\(field).peak_velocity_dps", open)
                try number(rep.meanVisibility, "\(field).mean_visibility", unit)
            }
        }
        guard media.count <= Self.maximumMedia else { throw fail("media holds at most \(Self.maximumMedia) videos") }
        for (position, video) in media.enumerated() {
            let field = "media[\(position)]"
            guard (1...200).contains(video.videoID.utf8.count), video.videoID.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw fail("\(field).video_id must be 1-200 bytes without control characters")
            }
            guard video.bufferingEvents.count <= Self.maximumBuffering else { throw fail("\(field).buffering_events holds at most \(Self.maximumBuffering)") }
            for (name, value) in [("startup_time_ms", video.startupTimeMs), ("watch_time_ms", video.watchTimeMs), ("playing_time_ms", video.playingTimeMs), ("rebuffer_duration_ms", video.rebufferDurationMs)] {
                try count(value, "\(field).\(name)")
            }
            try count(video.rebufferCount, "\(field).rebuffer_count")
            try count(video.failureCount, "\(field).failure_count")
            try number(video.rebufferPercentage, "\(field).rebuffer_percentage", 0...100)
            try number(video.rebufferFrequencyPerMinute, "\(field).rebuffer_frequency_per_minute", open)
            try number(video.startupScore, "\(field).startup_score", 0...100)
            try number(video.smoothnessScore, "\(field).smoothness_score", 0...100)
            for (index, stall) in video.bufferingEvents.enumerated() {
                try count(stall.startedAtMs, "\(field).buffering_events[\(index)].started_at_ms")
                try count(stall.durationMs, "\(field).buffering_events[\(index)].duration_ms")
            }
        }
    }
}

extension SessionAggregates {
    /// The aggregates of a session as the kernels measured it: `pose` from
    /// ``PoseAnalyzer/analyze(_:profile:)``, `media` from ``mediaSessionMetrics(_:endedAt:)`` per
    /// video. Times inside the session become whole milliseconds after `origin` (seconds on the
    /// frames' and events' clock: the session's first frame or event); seconds become
    /// milliseconds, degrees stay degrees, `rebuffer_percentage` stays a fraction. A video's
    /// stalls beyond ``maximumBuffering`` are counted in its `rebuffer_count` but not listed. A
    /// reading that is not finite or is out of its column's range (an effective frame rate over
    /// 1,000 from timestamps that nearly coincide) is left out (nil) rather than refused.
    public init(
        organizationID: String, patientID: String, exercise: String, startedAt: String, endedAt: String,
        pose analysis: PoseAnalysis?, media: [(videoID: String, metrics: MediaSessionMetrics)], origin: Double
    ) {
        func ms(_ seconds: Double) -> Int64 {
            let value = (seconds * 1000).rounded()
            return value.isFinite ? Int64(max(0, min(value, 9.0e15))) : 0
        }
        func reading<T: BinaryFloatingPoint>(_ value: T?, _ range: ClosedRange<Double>) -> Double? {
            guard let value else { return nil }
            let double = Double(value)
            return double.isFinite && range.contains(double) ? double : nil
        }
        let open = 0.0...Double.greatestFiniteMagnitude
        self.init(organizationID: organizationID, patientID: patientID, exercise: exercise, startedAt: startedAt, endedAt: endedAt)
        if let analysis {
            let reps = analysis.reps.prefix(Self.maximumReps).enumerated().map { position, rep in
                let start = ms(rep.startTime - origin), end = max(start, ms(rep.endTime - origin))
                return Rep(
                    repIndex: position, startMs: start, endMs: end, durationMs: end - start,
                    minAngleDegrees: reading(rep.minAngle, -360...360) ?? 0, maxAngleDegrees: reading(rep.maxAngle, -360...360) ?? 0,
                    romDegrees: reading(rep.rangeOfMotion, 0...720) ?? 0, concentricMs: ms(rep.concentricDuration), eccentricMs: ms(rep.eccentricDuration),
                    peakVelocityDps: reading(rep.peakAngularVelocity, open), meanVisibility: reading(rep.meanVisibility, 0...1),
                    partialRange: rep.partialRange, tooFast: rep.tooFast
                )
            }
            let session = analysis.session
            pose = Pose(
                repCount: reps.count, meanRomDegrees: reading(session.meanRangeOfMotion, 0...360), minRomDegrees: reading(session.minRangeOfMotion, 0...360),
                maxRomDegrees: reading(session.maxRangeOfMotion, 0...360), meanRepDurationMs: reading(session.meanRepDuration.map { $0 * 1000 }, open),
                tempoCv: reading(session.tempoCV, open), activeTimeMs: ms(session.activeTime), trackedFrameRatio: reading(session.trackedFrameRatio, 0...1),
                meanVisibility: reading(session.meanVisibility, 0...1), effectiveFps: reading(session.effectiveFrameRate, 0...1000), reps: reps
            )
        }
        self.media = media.prefix(Self.maximumMedia).map { video in
            let metrics = video.metrics
            return Media(
                videoID: video.videoID, startupTimeMs: metrics.startupTime.map(ms), exitBeforeStart: metrics.exitBeforeStart,
                watchTimeMs: ms(metrics.watchTime), playingTimeMs: ms(metrics.playingTime), rebufferCount: metrics.rebufferCount,
                rebufferDurationMs: ms(metrics.rebufferDuration), rebufferPercentage: reading(metrics.rebufferPercentage, 0...100),
                rebufferFrequencyPerMinute: reading(metrics.rebufferFrequency, open), startupScore: reading(metrics.startupScore, 0...100),
                smoothnessScore: reading(metrics.smoothnessScore, 0...100), failureCount: metrics.failureCount,
                bufferingEvents: metrics.buffering.prefix(Self.maximumBuffering).map {
                    Buffering(startedAtMs: ms($0.start - origin), durationMs: ms($0.duration), seekInduced: $0.seekInduced)
                }
            )
        }
    }
}

extension ExerciseProfile {
    /// The exercise's name as the aggregates and the database spell it: the profile's name with
    /// `_` for `-` (`knee_flexion`).
    public var exerciseName: String { String(name.map { $0 == "-" ? "_" : $0 }) }

    /// The built-in profile named `name` (`knee_flexion` or `knee-flexion`), or nil.
    public static func builtIn(named name: String) -> ExerciseProfile? {
        builtIns.first { $0.exerciseName == name || $0.name == name }
    }
}
