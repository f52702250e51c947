import Foundation
@testable import RestartixTelemetry
import RestartixTestSupport
import Testing

/// The ingest batch forms: both decode to what was sent, and every rule refuses the whole batch
/// with an error naming the rule and where, never a value.
@Suite("Telemetry batches")
struct TelemetryBatchTests {
    /// A batch of `count` random frames (values chosen to be recognisable in error text) and
    /// random events over two videos.
    static func batch(seed: UInt64, frames count: Int = 40, events eventCount: Int = 12) -> TelemetryBatch {
        var random = SeededRandom(seed: seed)
        var frames = PoseFrames()
        var t = 1000.0 + Double(seed)
        for _ in 0..<count {
            t += Double.random(in: 0.01...0.05, using: &random)
            try! frames.append(timestamp: t, landmarks: (0..<PoseFrames.landmarkCount).map { _ in
                Landmark(x: .random(in: 0.1...0.9, using: &random), y: .random(in: 0.1...0.9, using: &random), z: .random(in: -0.5...0.5, using: &random), visibility: .random(in: 0...1, using: &random))
            })
        }
        var time = 1000.0
        let events = (0..<eventCount).map { index -> VideoEvent in
            time += Double.random(in: 0...2, using: &random)
            let kind = MediaEvent.Kind.allCases.randomElement(using: &random)!
            return VideoEvent(videoID: index % 3 == 0 ? "intro-video" : "squat-demo", event: MediaEvent(kind, at: time, playhead: Bool.random(using: &random) ? .random(in: 0...60, using: &random) : nil, fatal: kind == .error))
        }
        return TelemetryBatch(frames: frames, events: events)
    }

    static func refusal(_ body: () throws -> Any) -> TelemetryError? {
        do { _ = try body(); return nil } catch { return error as? TelemetryError }
    }

    @Test("binary and JSON round trips are lossless, and the binary form is 536 bytes a frame")
    func roundTrips() throws {
        for seed in UInt64(1)...20 {
            let batch = Self.batch(seed: seed, frames: Int(seed) * 7, events: Int(seed) % 5)
            let binary = batch.encodeBinary()
            #expect(try TelemetryBatch.decodeBinary(binary) == batch)
            #expect(try TelemetryBatch.decodeJSON(batch.encodeJSON()) == batch)
            let videos = Set(batch.events.map(\.videoID))
            #expect(binary.count == 20 + 536 * batch.frames.count + videos.reduce(0) { $0 + 1 + $1.utf8.count } + 20 * batch.events.count)
        }
        let empty = TelemetryBatch(frames: PoseFrames())
        #expect(try TelemetryBatch.decodeBinary(empty.encodeBinary()) == empty)
        #expect(try TelemetryBatch.decodeJSON(Array("{}".utf8)) == empty)
    }

    @Test("JSON: wrong landmark count, NaN/null, a non-increasing time, an unknown event type, a body that is not JSON, too many frames: each its own code, naming the frame or event and never a value")
    func jsonRules() throws {
        let good = Self.batch(seed: 7, frames: 5, events: 3)
        let object = try JSONSerialization.jsonObject(with: Data(good.encodeJSON())) as! [String: Any]
        let frames = object["frames"] as! [[String: Any]]
        let coordinate = ((frames[2]["landmarks"] as! [[Double]])[4][0])

        func decode(_ change: ([String: Any]) -> [String: Any]) -> TelemetryError? {
            let body = try! JSONSerialization.data(withJSONObject: change(object))
            return Self.refusal { try TelemetryBatch.decodeJSON(Array(body)) }
        }
        var shortFrame = frames
        var landmarks = shortFrame[2]["landmarks"] as! [[Double]]
        landmarks.removeLast()
        shortFrame[2]["landmarks"] = landmarks
        let short = decode { var o = $0; o["frames"] = shortFrame; return o }
        #expect(short?.code == .wrongLandmarkCount && short?.detail.contains("frame 2") == true)

        var nullFrame = frames
        var nulls = nullFrame[3]["landmarks"] as! [[Any]]
        nulls[1][0] = NSNull()
        nullFrame[3]["landmarks"] = nulls
        let null = decode { var o = $0; o["frames"] = nullFrame; return o }
        #expect(null?.code == .malformedBatch && null?.detail.contains("frames[3]") == true)

        var backwards = frames
        backwards[3]["t"] = backwards[1]["t"]
        let time = decode { var o = $0; o["frames"] = backwards; return o }
        #expect(time?.code == .timestampNotIncreasing)

        var events = object["events"] as! [[String: Any]]
        events[1]["type"] = "teleport"
        let unknown = decode { var o = $0; o["events"] = events; return o }
        #expect(unknown?.code == .unknownEventType && unknown?.detail.contains("event 1") == true && unknown?.detail.contains("teleport") == false)

        let notJSON = Self.refusal { try TelemetryBatch.decodeJSON(Array("frames=1".utf8)) }
        #expect(notJSON?.code == .malformedBatch && notJSON?.httpStatus == 400)
        let tooMany = Self.refusal { try TelemetryBatch.decodeJSON(Self.batch(seed: 1, frames: TelemetryBatch.maximumFrames + 1, events: 0).encodeJSON()) }
        #expect(tooMany?.code == .tooLarge && tooMany?.httpStatus == 413)

        // JSON has no NaN: a client that writes one sends a body that is not JSON.
        let text = String(decoding: good.encodeJSON(), as: UTF8.self)
        let nan = Self.refusal { try TelemetryBatch.decodeJSON(Array(text.replacingOccurrences(of: "\"t\":", with: "\"t\":NaN,\"u\":").utf8)) }
        #expect(nan?.code == .malformedBatch)

        // Times and playheads within a billion seconds of zero, in both forms; null is absent.
        var far = frames
        far[4]["t"] = 2e9
        let farFrame = decode { var o = $0; o["frames"] = far; return o }
        #expect(farFrame?.code == .invalidArgument && farFrame?.detail.contains("frame 4") == true)
        var lateEvent = events
        lateEvent[1]["type"] = "playing"
        lateEvent[2]["t"] = 5e9
        let farEvent = decode { var o = $0; o["events"] = lateEvent; return o }
        #expect(farEvent?.code == .invalidArgument && farEvent?.detail.contains("event 2") == true)
        var farPlayhead = events
        farPlayhead[1]["type"] = "playing"
        farPlayhead[1]["playhead"] = 3e9
        #expect(decode { var o = $0; o["events"] = farPlayhead; return o }?.code == .invalidArgument)
        var nullable = events
        nullable[1]["type"] = "playing"
        nullable[1]["playhead"] = NSNull()
        nullable[1]["fatal"] = NSNull()
        #expect(decode { var o = $0; o["events"] = nullable; return o } == nil, "null playhead and fatal read as absent")
        // Landmarks are 32-bit floats: a number too small for one rounds to zero, one too large
        // for one is refused.
        var tiny = frames
        var tinyLandmarks = tiny[1]["landmarks"] as! [[Double]]
        tinyLandmarks[0][2] = 2.7e-298
        tiny[1]["landmarks"] = tinyLandmarks
        let tinyBody = try JSONSerialization.data(withJSONObject: { var o = object; o["frames"] = tiny; o["events"] = []; return o }())
        #expect(try TelemetryBatch.decodeJSON(Array(tinyBody)).frames.landmarks(at: 1)[0].z == 0)
        var huge = frames
        var hugeLandmarks = huge[1]["landmarks"] as! [[Double]]
        hugeLandmarks[5][0] = 1e39
        huge[1]["landmarks"] = hugeLandmarks
        let tooBig = decode { var o = $0; o["frames"] = huge; return o }
        #expect(tooBig?.code == .malformedBatch && tooBig?.detail.contains("frame 1, landmark 5") == true)

        var binaryFar = good
        binaryFar.events[0].event.time = -2e9
        #expect(Self.refusal { try TelemetryBatch.decodeBinary(binaryFar.encodeBinary()) }.map(\.code) == .invalidArgument)

        for error in [short, null, time, unknown, notJSON, tooMany, nan, farFrame, farEvent].compactMap({ $0 }) {
            #expect(!error.detail.contains(String(coordinate).prefix(6)), "no coordinate in \(error.detail)")
        }
    }

    @Test("binary: a flipped magic, a newer version, unknown header bits, a frame count longer than the body, trailing bytes, NaN, a visibility above 1, an unknown event kind, a video index out of range: refused, never partly read")
    func binaryRules() throws {
        let good = Self.batch(seed: 3, frames: 6, events: 4).encodeBinary()
        func with(_ change: (inout [UInt8]) -> Void) -> TelemetryError? {
            var bytes = good
            change(&bytes)
            return Self.refusal { try TelemetryBatch.decodeBinary(bytes) }
        }
        #expect(with { $0[0] = 0x58 }?.code == .malformedBatch)
        #expect(with { $0[4] = 2 }?.code == .unsupportedVersion)
        #expect(with { $0[6] = 1 }?.code == .malformedBatch)
        #expect(with { $0[12] = 32 }?.code == .wrongLandmarkCount)
        #expect(with { $0[8] = 200 }?.code == .malformedBatch)
        #expect(with { $0.append(0) }?.code == .malformedBatch)
        #expect(with { $0.removeLast() }?.code == .malformedBatch)
        // Frame 2's landmark 5 x (offset: header, two frames, timestamp, five landmarks of 16 bytes).
        let x = 20 + 2 * 536 + 8 + 5 * 16
        let nan = with { bytes in withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { bytes.replaceSubrange(x..<(x + 4), with: $0) } }
        #expect(nan?.code == .nonFiniteValue)
        let visibility = with { bytes in withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian) { bytes.replaceSubrange((x + 12)..<(x + 16), with: $0) } }
        #expect(visibility?.code == .visibilityOutOfRange)
        let firstEvent = good.count - 4 * 20
        #expect(with { $0[firstEvent + 1] = 99 }?.code == .unknownEventType)
        #expect(with { $0[firstEvent] = 9 }?.code == .invalidArgument)
        let backwards = with { bytes in
            // Frame 1's timestamp set to frame 0's.
            bytes.replaceSubrange((20 + 536)..<(20 + 536 + 8), with: bytes[20..<28])
        }
        #expect(backwards?.code == .timestampNotIncreasing)
    }

    @Test("frames appended across batches keep only what comes after the last kept frame")
    func appendAcrossBatches() throws {
        let frames = SyntheticSquats(repetitions: 2).frames()
        let halves = SyntheticSquats.batches(of: frames, size: frames.count / 2 + 1)
        var joined = PoseFrames()
        #expect(joined.append(contentsOf: halves[0]) == 0)
        #expect(joined.append(contentsOf: halves[1]) == 0)
        #expect(joined == frames)
        #expect(joined.append(contentsOf: halves[1]) == halves[1].count)
        #expect(joined == frames)
    }

    @Test("a synthetic two-minute squat session is counted as its repetitions, and its aggregates validate")
    func syntheticSession() throws {
        let squats = SyntheticSquats(lasting: 120)
        #expect(squats.repetitions == 39)
        let frames = squats.frames(startingAt: 500)
        var analyzer = PoseAnalyzer()
        let analysis = analyzer.analyze(frames, profile: .kneeFlexion)
        #expect(analysis.reps.count == squats.repetitions)
        let aggregates = SessionAggregates(
            organizationID: UUID().uuidString.lowercased(), patientID: UUID().uuidString.lowercased(), exercise: ExerciseProfile.kneeFlexion.exerciseName,
            startedAt: "2026-12-06T10:00:00Z", endedAt: "2026-12-06T10:02:00Z", pose: analysis, media: [], origin: 500
        )
        try aggregates.validate()
        #expect(aggregates.pose?.repCount == squats.repetitions)
        #expect(aggregates.pose?.reps.first.map { $0.startMs >= 900 && $0.startMs <= 1100 } == true)
        #expect(abs((aggregates.pose?.meanRomDegrees ?? 0) - 90) < 3)
        #expect(ExerciseProfile.builtIn(named: "knee_flexion") == .kneeFlexion && ExerciseProfile.builtIn(named: "squat") == nil)
    }
}
