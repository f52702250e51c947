import Foundation
import RestartixTelemetry
import Testing

/// The wire form of a session's aggregates: the largest one that validates still fits the Core
/// API's 1 MiB request body, and the limits themselves are enforced.
@Suite("Session aggregates")
struct SessionAggregatesTests {
    static func largest() -> SessionAggregates {
        let reps = (0..<SessionAggregates.maximumReps).map { index in
            SessionAggregates.Rep(
                repIndex: index, startMs: 9_999_999_999 + Int64(index), endMs: 9_999_999_999 + Int64(index) + 123_456, durationMs: 123_456,
                minAngleDegrees: -179.123456789, maxAngleDegrees: 179.123456789, romDegrees: 358.246913578, concentricMs: 61_728, eccentricMs: 61_728,
                peakVelocityDps: 12345.678901234, meanVisibility: 0.987654321, partialRange: true, tooFast: true
            )
        }
        let stalls = (0..<SessionAggregates.maximumBuffering).map { SessionAggregates.Buffering(startedAtMs: 9_999_999_999 + Int64($0), durationMs: 99_999, seekInduced: true) }
        let media = (0..<SessionAggregates.maximumMedia).map { index in
            SessionAggregates.Media(
                videoID: String(repeating: "v", count: 195) + String(format: "%05d", index), startupTimeMs: 99_999, watchTimeMs: 9_999_999, playingTimeMs: 9_999_999,
                rebufferCount: 200, rebufferDurationMs: 9_999_999, rebufferPercentage: 99.123456789, rebufferFrequencyPerMinute: 99.123456789,
                startupScore: 99.123456789, smoothnessScore: 99.123456789, failureCount: 99, bufferingEvents: stalls
            )
        }
        return SessionAggregates(
            organizationID: "0193a000-0000-7000-8000-00000000d001", patientID: "0193a000-0000-7000-8000-00000000e003", exercise: String(repeating: "x", count: 64),
            startedAt: "2026-12-05T10:00:00.123456Z", endedAt: "2026-12-05T11:00:00.123456Z",
            pose: SessionAggregates.Pose(
                repCount: reps.count, meanRomDegrees: 358.2, minRomDegrees: 1.5, maxRomDegrees: 359.9, meanRepDurationMs: 123_456.789, tempoCv: 1.23456789,
                activeTimeMs: 3_600_000, trackedFrameRatio: 0.999999, meanVisibility: 0.999999, effectiveFps: 29.97, reps: reps
            ),
            media: media
        )
    }

    @Test("the largest aggregates that validate fit a 1 MiB request body")
    func largestFits() throws {
        let aggregates = Self.largest()
        try aggregates.validate()
        let size = try JSONEncoder().encode(aggregates).count
        #expect(size < 1 << 20, "\(size) bytes")
    }

    @Test("one more repetition, video or stall than the limits is refused, naming what")
    func limits() throws {
        var more = Self.largest()
        more.pose!.reps.append(more.pose!.reps[0])
        more.pose!.reps[more.pose!.reps.count - 1].repIndex = more.pose!.reps.count - 1
        more.pose!.repCount += 1
        #expect(throws: TelemetryError.self) { try more.validate() }
        more = Self.largest()
        more.media.append(more.media[0])
        #expect(throws: TelemetryError.self) { try more.validate() }
        more = Self.largest()
        more.media[0].bufferingEvents.append(more.media[0].bufferingEvents[0])
        #expect(throws: TelemetryError.self) { try more.validate() }
    }
}
