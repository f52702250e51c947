import Foundation
import RestartixTelemetry
import Testing

@Suite("Pose frames, joint angles and smoothing")
struct PoseKernelTests {
    /// A frame with every landmark at the centre, fully visible, except those in `at`.
    static func frame(_ at: [PoseLandmark: Landmark]) -> [Landmark] {
        (0..<PoseFrames.landmarkCount).map { at[PoseLandmark(rawValue: $0)!] ?? Landmark(x: 0.5, y: 0.5) }
    }

    static let knee = JointTriple(.leftHip, .leftKnee, .leftAnkle)

    /// A knee at (0.5, 0.5) with the hip straight up and the ankle at `degrees` from it.
    static func kneeFrame(degrees: Double, visibility: Float = 1) -> [Landmark] {
        let radians = degrees * .pi / 180
        return frame([
            .leftHip: Landmark(x: 0.5, y: 0.3, visibility: visibility),
            .leftKnee: Landmark(x: 0.5, y: 0.5),
            .leftAnkle: Landmark(x: 0.5 + Float(0.2 * sin(radians)), y: 0.5 - Float(0.2 * cos(radians))),
        ])
    }

    @Test("known angles: 45, 90, 135, 180 and 0 degrees; folded to [0, 180] whichever side")
    func knownAngles() throws {
        var frames = PoseFrames()
        for (i, degrees) in [45.0, 90, 135, 180, 0, 270, 315].enumerated() { try frames.append(timestamp: Double(i) / 30, landmarks: Self.kneeFrame(degrees: degrees)) }
        var angles: [Float] = []
        jointAngles(frames, Self.knee, into: &angles)
        let expected: [Float] = [45, 90, 135, 180, 0, 90, 45]
        for (angle, want) in zip(angles, expected) { #expect(abs(angle - want) < 1e-3, "\(angle) vs \(want)") }
        // Spatial with no depth is the same; depth bends it.
        jointAngles(frames, Self.knee, options: AngleOptions(space: .spatial), into: &angles)
        for (angle, want) in zip(angles, expected) { #expect(abs(angle - want) < 1e-3) }
    }

    @Test("an arm's end below the visibility threshold, or an arm of no length, is a gap (NaN)")
    func gaps() throws {
        var frames = PoseFrames()
        try frames.append(timestamp: 0, landmarks: Self.kneeFrame(degrees: 90, visibility: 0.49))
        try frames.append(timestamp: 0.1, landmarks: Self.kneeFrame(degrees: 90, visibility: 0.5))
        try frames.append(timestamp: 0.2, landmarks: Self.frame([:]))  // every landmark on one point
        var angles: [Float] = []
        jointAngles(frames, Self.knee, into: &angles)
        #expect(angles[0].isNaN)
        #expect(abs(angles[1] - 90) < 1e-3, "the threshold is inclusive")
        #expect(angles[2].isNaN)
        jointAngles(frames, Self.knee, options: AngleOptions(minimumVisibility: 0.4), into: &angles)
        #expect(!angles[0].isNaN)
    }

    @Test("the aspect ratio: a 45-degree angle drawn in a 16:9 frame's normalized coordinates")
    func aspectRatio() throws {
        // Pixels: knee (960, 540), hip straight up 200 px, ankle 200 px up and 200 px right.
        let width: Float = 1920, height: Float = 1080
        var frames = PoseFrames()
        try frames.append(timestamp: 0, landmarks: Self.frame([
            .leftHip: Landmark(x: 960 / width, y: 340 / height),
            .leftKnee: Landmark(x: 960 / width, y: 540 / height),
            .leftAnkle: Landmark(x: 1160 / width, y: 340 / height),
        ]))
        var angles: [Float] = []
        jointAngles(frames, Self.knee, options: AngleOptions(aspectRatio: width / height), into: &angles)
        #expect(abs(angles[0] - 45) < 1e-3)
        jointAngles(frames, Self.knee, into: &angles)
        #expect(abs(angles[0] - 45) > 5, "without the aspect ratio the angle is distorted")
    }

    @Test("EMA: known sequence, gaps keep the state, a long gap resets it")
    func smoothing() throws {
        let smoother = try ExponentialSmoother(alpha: 0.5, resetAfter: 0.5)
        var out: [Float] = []
        try smoother.smooth([10, 20, 20, .nan, 40], timestamps: [0, 0.1, 0.2, 0.3, 0.4], into: &out)
        #expect(out[0] == 10 && out[1] == 15 && out[2] == 17.5 && out[3].isNaN && out[4] == 28.75)
        try smoother.smooth([10, 20, .nan, 100], timestamps: [0, 0.1, 0.3, 0.9], into: &out)
        #expect(out[0] == 10 && out[1] == 15 && out[2].isNaN && out[3] == 100, "0.8 s since the last sample: reset")
        #expect(throws: TelemetryError.self) { try ExponentialSmoother(alpha: 0) }
        #expect(throws: TelemetryError.self) { try ExponentialSmoother(alpha: 1.5) }
        let none = try ExponentialSmoother(alpha: 1)
        try none.smooth([1, 5, 3], timestamps: [0, 1 / 30, 2 / 30], into: &out)
        #expect(out == [1, 5, 3], "alpha 1 is no smoothing")
        #expect(throws: TelemetryError.self) { try none.smooth([1, 2], timestamps: [0], into: &out) }
    }

    @Test("validation: each bad frame refused with its own code and nothing appended; or dropped and counted")
    func validation() throws {
        var frames = PoseFrames()
        try frames.append(timestamp: 1, landmarks: Self.frame([:]))
        func code(_ body: () throws -> Void) -> TelemetryError.Code? {
            do { try body(); return nil } catch { return (error as? TelemetryError)?.code }
        }
        var nan = Self.frame([:]); nan[3].x = .nan
        var infinite = Self.frame([:]); infinite[7].z = .infinity
        var visible = Self.frame([:]); visible[0].visibility = 1.2
        #expect(code { try frames.append(timestamp: 2, landmarks: Array(Self.frame([:]).prefix(32))) } == .wrongLandmarkCount)
        #expect(code { try frames.append(timestamp: 2, landmarks: nan) } == .nonFiniteValue)
        #expect(code { try frames.append(timestamp: 2, landmarks: infinite) } == .nonFiniteValue)
        #expect(code { try frames.append(timestamp: 2, landmarks: visible) } == .visibilityOutOfRange)
        #expect(code { try frames.append(timestamp: 1, landmarks: Self.frame([:])) } == .timestampNotIncreasing)
        #expect(code { try frames.append(timestamp: .nan, landmarks: Self.frame([:])) } == .nonFiniteValue)
        #expect(frames.count == 1, "nothing appended")
        #expect(frames.x(0).count == 1 && frames.visibility(32).count == 1)

        let lenient = PoseFrames(validating: [
            (0.0, Self.frame([:])), (0.5, nan), (0.0, Self.frame([:])), (1.0, Array(Self.frame([:]).prefix(3))), (1.5, Self.frame([:])),
        ])
        #expect(lenient.count == 2)
        #expect(lenient.dropped == [.nonFiniteValue: 1, .timestampNotIncreasing: 1, .wrongLandmarkCount: 1])
        #expect(lenient.landmarks(at: 1) == Self.frame([:]))
    }
}

@Suite("Telemetry errors carry no patient data")
struct TelemetryErrorPrivacyTests {
    @Test("a refused frame's or event's message names no coordinate, visibility or time")
    func noValuesInMessages() throws {
        var frames = PoseFrames()
        let odd: Float = 0.123_456_7, when = 1_234.567_8
        var landmarks = (0..<PoseFrames.landmarkCount).map { _ in Landmark(x: odd, y: odd, z: odd, visibility: odd) }
        try frames.append(timestamp: when, landmarks: landmarks)
        var messages: [String] = []
        do { try frames.append(timestamp: when, landmarks: landmarks) } catch { messages.append(error.description) }
        landmarks[5].visibility = 1.234_567
        do { try frames.append(timestamp: when + 1, landmarks: landmarks) } catch { messages.append(error.description) }
        do { _ = try mediaSessionMetrics([MediaEvent(.play, at: when), MediaEvent(.playing, at: 1_000.987_6)]) } catch { messages.append(error.description) }
        #expect(messages.count == 3)
        for message in messages {
            for value in ["0.123", "1234.5", "1.234", "1000.98"] { #expect(!message.contains(value), "\(message)") }
        }
    }
}
