import Foundation
import RestartixTelemetry
import RestartixTestSupport
import Testing

@Suite("Exercise profiles, repetition counting, per-rep and per-session metrics")
struct RepetitionTests {
    static let tenReps = SyntheticPose(reps: Array(repeating: SyntheticPose.Rep(), count: 10))

    /// The knee profile with fixed thresholds (enter below 100°, count above 140°) and no
    /// smoothing, for exact sequences.
    static func fixedKnee(alpha: Float = 1) throws -> ExerciseProfile {
        try ExerciseProfile(
            name: "test-knee", left: ExerciseProfile.kneeFlexion.left, right: ExerciseProfile.kneeFlexion.right, sides: .together,
            motion: .angleDecreases, thresholds: .fixed(enter: 100, exit: 140), into: .eccentric, targetRange: 60, smoothingAlpha: alpha
        )
    }

    /// Frames at 30 fps with both knees at the given angles.
    static func frames(_ angles: [Double]) throws -> PoseFrames {
        var frames = PoseFrames()
        for (k, angle) in angles.enumerated() { try frames.append(timestamp: Double(k) / 30, landmarks: SyntheticPose.landmarks(knee: angle)) }
        return frames
    }

    static func count(_ angles: [Double], _ profile: ExerciseProfile) throws -> Int {
        var analyzer = PoseAnalyzer()
        return analyzer.analyze(try frames(angles), profile: profile).reps.count
    }

    @Test("hysteresis: hovering at either threshold counts nothing; one entry and one exit count once")
    func hysteresis() throws {
        let profile = try Self.fixedKnee()
        let rest = [Double](repeating: 175, count: 10)
        let hoverEnter = Array([[101.0, 99], [99, 101]].joined().prefix(120))
        let hoverExit = Array(repeating: [139.0, 141], count: 60).joined()
        #expect(try Self.count(rest + Array(hoverExit) + rest, profile) == 0, "never entered")
        #expect(try Self.count(rest + hoverEnter, profile) == 0, "entered, never left")
        #expect(try Self.count(rest + [150, 120, 101, 120, 150] + rest, profile) == 0, "not deep enough")
        #expect(try Self.count(rest + hoverEnter + rest, profile) == 1, "a long hover at the enter threshold is one repetition")
        #expect(try Self.count(rest + [120, 95, 130, 95, 130, 95, 150] + rest, profile) == 1, "bounces inside the band are one repetition")
        #expect(try Self.count(rest + [120, 95, 150, 120, 95, 150] + rest, profile) == 2)
        // A counter must see rest first: a session that starts deep in the working zone does not
        // count its first exit.
        #expect(try Self.count([95, 95, 150, 175, 120, 95, 150, 175], profile) == 1)
        // Just short of either threshold is not past it.
        #expect(try Self.count(rest + [100.3, 100.3, 175], profile) == 0)
        #expect(try Self.count(rest + [99, 139.7, 99, 175], profile) == 1)
    }

    @Test("adaptive thresholds: nothing until the observed range reaches the minimum; then MediaPipe's 0.6/0.4 of it")
    func adaptive() throws {
        let profile = try ExerciseProfile.kneeFlexion.with(smoothingAlpha: 1)
        let rest = [Double](repeating: 175, count: 10)
        let small = Array(repeating: [175.0, 165, 160, 165], count: 20).joined()
        #expect(try Self.count(rest + Array(small) + rest, profile) == 0, "a 15-degree wobble is no repetition")
        // A patient who only reaches 140 degrees still counts: the range is 35 degrees.
        let shallow = Array(repeating: [175.0, 165, 150, 140, 150, 165], count: 5).joined()
        #expect(try Self.count(rest + Array(shallow) + rest, profile) == 5)
        let deep = Array(repeating: [175.0, 140, 100, 80, 100, 140], count: 4).joined()
        #expect(try Self.count(rest + Array(deep) + rest, profile) == 4)
    }

    @Test("clean synthetic session: the count is exact and range, duration and phases match what was generated")
    func cleanSession() throws {
        let session = Self.tenReps
        var analyzer = PoseAnalyzer()
        let result = analyzer.analyze(session.frames(seed: 1), profile: .kneeFlexion)
        #expect(result.reps.count == 10)
        #expect(result.side == .both)
        for (index, rep) in result.reps.enumerated() {
            #expect(rep.index == index)
            #expect(abs(rep.rangeOfMotion - 90) < 3, "range \(rep.rangeOfMotion)")
            #expect(abs(rep.maxAngle - 175) < 1 && abs(rep.minAngle - 85) < 3)
            #expect(abs(rep.duration - 2.2) < 0.35, "duration \(rep.duration)")
            #expect(abs(rep.eccentricDuration - 1.2) < 0.2, "going down is eccentric in a squat: \(rep.eccentricDuration)")
            #expect(abs(rep.concentricDuration - 1.0) < 0.2, "coming up: \(rep.concentricDuration)")
            #expect(abs(rep.concentricDuration + rep.eccentricDuration - rep.duration) < 1e-9)
            #expect(!rep.partialRange && !rep.tooFast)
            #expect(abs(rep.meanVisibility - 0.95) < 1e-4)
            // The peak speed of a cosine ease over 90 degrees in 1 s is 90·π/2 ≈ 141 °/s.
            #expect(rep.peakAngularVelocity > 110 && rep.peakAngularVelocity < 160, "\(rep.peakAngularVelocity)")
        }
        for (a, b) in zip(result.reps, result.reps.dropFirst()) { #expect(b.startTime > a.endTime, "rest is in no repetition") }
        let summary = result.session
        #expect(summary.repCount == 10)
        #expect(try #require(summary.tempoCV) < 0.03)
        #expect(abs(try #require(summary.meanRepDuration) - 2.2) < 0.35)
        #expect(abs(summary.activeTime - result.reps.reduce(0) { $0 + $1.duration }) < 1e-9)
        #expect(summary.trackedFrameRatio == 1)
        #expect(abs(try #require(summary.effectiveFrameRate) - 30) < 0.01)
        #expect(abs(try #require(summary.meanVisibility) - 0.95) < 1e-4)
        #expect(abs(try #require(summary.meanRangeOfMotion) - 90) < 3)
        #expect(try #require(summary.minRangeOfMotion) <= #require(summary.maxRangeOfMotion))
    }

    @Test("tempo: the coefficient of variation follows the generated durations; short reps are flagged too fast, shallow ones partial")
    func tempoAndFlags() throws {
        let scales = [0.6, 1.0, 1.4, 1.0, 0.6, 1.4]
        var session = SyntheticPose(reps: scales.map { SyntheticPose.Rep(down: 0.9 * $0, up: 0.9 * $0) })
        session.reps.append(SyntheticPose.Rep(down: 0.35, up: 0.35))  // too fast
        session.reps.append(SyntheticPose.Rep(bottom: 130))  // partial: 45 degrees against a 60-degree target
        var analyzer = PoseAnalyzer()
        // Fixed thresholds: adaptive ones (0.6 of the deepest range) would not count the shallow
        // repetition at all.
        let profile = try ExerciseProfile.kneeFlexion.with(thresholds: .fixed(enter: 150, exit: 165))
        let result = analyzer.analyze(session.frames(seed: 2), profile: profile)
        #expect(result.reps.count == 8)
        let durations = result.reps.prefix(6).map(\.duration)
        let truth = scales.map { 1.8 * $0 }
        func cv(_ values: [Double]) -> Double {
            let mean = values.reduce(0, +) / Double(values.count)
            return (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot() / mean
        }
        #expect(abs(cv(durations) - cv(truth)) < 0.05, "\(cv(durations)) vs \(cv(truth))")
        #expect(result.reps.prefix(6).allSatisfy { !$0.tooFast && !$0.partialRange })
        #expect(result.reps[6].tooFast && !result.reps[6].partialRange)
        #expect(result.reps[7].partialRange && !result.reps[7].tooFast)
    }

    @Test("noisy sessions: noise, timestamp jitter, dropped frames and short visibility dips; count within 1, range within 8 degrees")
    func noisySessions() throws {
        var analyzer = PoseAnalyzer()
        var exact = 0
        for seed in UInt64(1)...20 {
            var random = SeededRandom(seed: seed &* 7919)
            var session = Self.tenReps
            session.noise = 0.004
            session.jitter = 0.3
            session.dropRate = 0.1
            session.dips = (0..<3).map { _ in (Double.random(in: 1..<session.duration, using: &random), 0.2) }
            let result = analyzer.analyze(session.frames(seed: seed), profile: .kneeFlexion)
            #expect(abs(result.reps.count - 10) <= 1, "seed \(seed): \(result.reps.count)")
            if result.reps.count == 10 { exact += 1 }
            for rep in result.reps {
                #expect(abs(rep.rangeOfMotion - 90) < 8, "seed \(seed): range \(rep.rangeOfMotion)")
                // Bounds on tracked frames, in order, whatever the dips and drops around them.
                #expect(rep.returnRangeOfMotion.isFinite && rep.startFrame <= rep.bottomFrame && rep.bottomFrame <= rep.endFrame, "seed \(seed)")
                #expect(rep.eccentricDuration >= 0 && rep.concentricDuration >= 0, "seed \(seed)")
            }
            #expect(abs(try #require(result.session.trackedFrameRatio) - 1) < 0.15)
        }
        #expect(exact >= 18, "exact on \(exact) of 20 noisy sessions")
    }

    @Test("a long tracking gap mid-repetition loses that repetition instead of inventing one; a gap at rest loses nothing")
    func longGaps() throws {
        let frames = Self.tenReps.frames(seed: 3)
        var analyzer = PoseAnalyzer()
        // Repetition 3 (0-based) is at its bottom at 1 + 3·3 + 1.2 = 11.2 s.
        let midRep = analyzer.analyze(SyntheticPose.withGaps(frames, [(10.8, 1.0)]), profile: .kneeFlexion)
        #expect(midRep.reps.count == 9)
        #expect(midRep.session.trackedFrameRatio! < 1)
        // Repetition 3 comes back up at 12.2 s and rests until 13.0 s.
        let atRest = analyzer.analyze(SyntheticPose.withGaps(frames, [(12.25, 0.7)]), profile: .kneeFlexion)
        #expect(atRest.reps.count == 10)
        // A short gap (under the 0.5 s reset) mid-repetition keeps it.
        let short = analyzer.analyze(SyntheticPose.withGaps(frames, [(11.0, 0.3)]), profile: .kneeFlexion)
        #expect(short.reps.count == 10)
    }

    @Test("ground truth with drift: tops differ per repetition and the rest drifts 5-15 degrees; range within 1 degree of each repetition's own excursion, times within a frame")
    func driftGroundTruth() throws {
        var analyzer = PoseAnalyzer()
        let frame = 1.0 / 30
        for seed in UInt64(1)...6 {
            let script = ScriptedSquats.drifting(count: 23, seed: seed)
            let truth = script.truth
            let frames = script.frames()
            for (profile, timeTolerance) in [(try ExerciseProfile.kneeFlexion.with(smoothingAlpha: 1), frame + 1e-6), (ExerciseProfile.kneeFlexion, frame + 1e-6)] {
                let result = analyzer.analyze(frames, profile: profile)
                try #require(result.reps.count == truth.count, "seed \(seed): \(result.reps.count) of \(truth.count)")
                for (rep, expected) in zip(result.reps, truth) {
                    let label = "seed \(seed) α \(profile.smoothingAlpha) rep \(rep.index)"
                    #expect(abs(Double(rep.rangeOfMotion) - expected.range) < 1, "\(label): range \(rep.rangeOfMotion) vs \(expected.range)")
                    #expect(abs(Double(rep.returnRangeOfMotion) - expected.returnRange) < 1, "\(label): return \(rep.returnRangeOfMotion) vs \(expected.returnRange)")
                    #expect(abs(rep.startTime - expected.start) <= timeTolerance, "\(label): start \(rep.startTime) vs \(expected.start)")
                    #expect(abs(rep.endTime - expected.end) <= timeTolerance, "\(label): end \(rep.endTime) vs \(expected.end)")
                    // Start and end each within a frame of the scripted times, which fall between
                    // frames: so the duration within two.
                    #expect(abs(rep.duration - (expected.end - expected.start)) <= 2 * timeTolerance, "\(label): duration")
                    // The bottom lags by the smoothing's delay (about 1.5 frames at α 0.4).
                    #expect(abs(rep.bottomTime - expected.bottom) <= 3 * frame, "\(label): bottom \(rep.bottomTime) vs \(expected.bottom)")
                    #expect(abs(rep.eccentricDuration - (expected.bottom - expected.start)) <= 3 * frame, "\(label): eccentric")
                    #expect(rep.startFrame < rep.bottomFrame && rep.bottomFrame < rep.endFrame)
                    #expect(rep.startTime == frames.timestamps[rep.startFrame] && rep.endTime == frames.timestamps[rep.endFrame])
                }
            }
        }
    }

    @Test("a tracking gap during the descent that resumes past the enter threshold: counted from what was known before it")
    func gapDuringDescent() throws {
        var analyzer = PoseAnalyzer()
        let session = Self.tenReps
        let frames = session.frames(seed: 5)
        // Repetition 3 (0-based) descends from 10.0 s to its bottom at 11.2 s; the enter
        // threshold (60% of the range) is crossed at about 10.7 s. A gap from 10.1 s to 11.0 s
        // (longer than the 0.5 s reset) starts at rest-side and ends deep.
        let gapped = analyzer.analyze(SyntheticPose.withGaps(frames, [(10.1, 0.9)]), profile: .kneeFlexion)
        #expect(gapped.reps.count == 10)
        #expect(gapped.session.trackingSegments == 2 && gapped.session.trackingResets == 1)
        let rep = try #require(gapped.reps.first { $0.startTime > 9.5 && $0.startTime < 10.5 })
        #expect(abs(rep.startTime - 10.0) < 0.1, "the start is the last rest before the gap: \(rep.startTime)")
        // A gap that began after the enter threshold and resumes still deep: the repetition goes on.
        let inside = analyzer.analyze(SyntheticPose.withGaps(frames, [(10.75, 0.8)]), profile: .kneeFlexion)
        #expect(inside.reps.count == 10)
        // A session that opens mid-squat after a gap at its start is not counted.
        let opening = analyzer.analyze(SyntheticPose.withGaps(frames, [(0, 1.9)]), profile: .kneeFlexion)
        let lead = analyzer.analyze(frames, profile: .kneeFlexion)
        #expect(lead.reps.count == 10)
        #expect(opening.reps.count == 9, "the first repetition, whose descent was not seen from rest, is not counted")
        // A gap during rest changes nothing.
        let resting = analyzer.analyze(SyntheticPose.withGaps(frames, [(12.25, 0.7)]), profile: .kneeFlexion)
        #expect(resting.reps.count == 10)
        #expect(resting.session.trackedFrameCount < frames.count)
    }

    @Test("bulk load: columns and frame-major buffers give the frames append gives; bad frames refused with append's codes")
    func bulkLoad() throws {
        let frames = Self.tenReps.frames(seed: 7)
        let columns = (0..<4).flatMap { component in
            (0..<PoseFrames.landmarkCount).map { landmark in
                switch component {
                case 0: frames.x(landmark)
                case 1: frames.y(landmark)
                case 2: frames.z(landmark)
                default: frames.visibility(landmark)
                }
            }
        }
        let bulk = try PoseFrames(timestamps: frames.timestamps, columns: columns)
        #expect(bulk == frames)
        var analyzer = PoseAnalyzer()
        #expect(analyzer.analyze(bulk, profile: .kneeFlexion) == analyzer.analyze(frames, profile: .kneeFlexion))
        var interleaved: [Float] = []
        for index in 0..<frames.count {
            for landmark in frames.landmarks(at: index) { interleaved += [landmark.x, landmark.y, landmark.z, landmark.visibility] }
        }
        let fromBuffer = try interleaved.withUnsafeBufferPointer { try PoseFrames(timestamps: frames.timestamps, frameMajor: $0) }
        #expect(fromBuffer == frames)
        // Each bad frame: the bulk path throws what append throws for the first bad frame.
        func codes(_ mutate: (inout [Double], inout [[Float]]) -> Void) -> (TelemetryError.Code?, TelemetryError.Code?) {
            var times = Array(frames.timestamps.prefix(40)), cols = columns.map { Array($0.prefix(40)) }
            mutate(&times, &cols)
            var appended = PoseFrames()
            var appendCode: TelemetryError.Code?
            for k in times.indices {
                let landmarks = (0..<PoseFrames.landmarkCount).map { Landmark(x: cols[$0][k], y: cols[33 + $0][k], z: cols[66 + $0][k], visibility: cols[99 + $0][k]) }
                do { try appended.append(timestamp: times[k], landmarks: landmarks) } catch { appendCode = error.code; break }
            }
            var bulkCode: TelemetryError.Code?
            do { _ = try PoseFrames(timestamps: times, columns: cols) } catch { bulkCode = error.code }
            return (appendCode, bulkCode)
        }
        let cases: [(String, (inout [Double], inout [[Float]]) -> Void)] = [
            ("NaN coordinate", { _, c in c[5][17] = .nan }),
            ("infinite z", { _, c in c[70][3] = .infinity }),
            ("visibility above 1", { _, c in c[100][20] = 1.5 }),
            ("NaN visibility", { _, c in c[120][33] = .nan }),
            ("timestamp repeats", { t, _ in t[9] = t[8] }),
            ("timestamp NaN", { t, _ in t[30] = .nan }),
            ("two bad frames, the earlier one decides", { t, c in c[100][25] = -0.5; t[10] = t[9] }),
        ]
        for (name, mutate) in cases {
            let (expected, seen) = codes(mutate)
            #expect(expected != nil && seen == expected, "\(name): append \(String(describing: expected)), bulk \(String(describing: seen))")
        }
        #expect(throws: TelemetryError.self) { try PoseFrames(timestamps: [0, 1], columns: Array(columns.prefix(10))) }
        #expect(throws: TelemetryError.self) { try PoseFrames(timestamps: [0, 1, 2], columns: columns.map { Array($0.prefix(2)) }) }
    }

    @Test("property: small noise does not change the count")
    func noiseInvariance() throws {
        var analyzer = PoseAnalyzer()
        for seed in UInt64(1)...15 {
            var random = SeededRandom(seed: seed)
            let reps = (0..<Int.random(in: 3...12, using: &random)).map { _ in
                SyntheticPose.Rep(
                    down: .random(in: 0.8...2, using: &random), up: .random(in: 0.8...2, using: &random),
                    bottom: .random(in: 80...100, using: &random), rest: .random(in: 0.2...1.5, using: &random)
                )
            }
            var session = SyntheticPose(reps: reps)
            let clean = analyzer.analyze(session.frames(seed: seed), profile: .kneeFlexion).reps.count
            #expect(clean == reps.count, "seed \(seed)")
            session.noise = 0.002
            session.jitter = 0.2
            #expect(analyzer.analyze(session.frames(seed: seed), profile: .kneeFlexion).reps.count == clean, "seed \(seed)")
        }
    }

    @Test("property: reversing time swaps concentric and eccentric (exactly without smoothing, within the smoothing lag with it)")
    func reversal() throws {
        var analyzer = PoseAnalyzer()
        for seed in UInt64(1)...8 {
            var random = SeededRandom(seed: seed)
            let reps = (0..<5).map { _ in
                SyntheticPose.Rep(down: .random(in: 0.8...2.2, using: &random), up: .random(in: 0.8...2.2, using: &random), bottom: .random(in: 75...110, using: &random))
            }
            let frames = SyntheticPose(reps: reps).frames(seed: seed)
            let backwards = SyntheticPose.reversed(frames)
            let unsmoothed = try ExerciseProfile.kneeFlexion.with(smoothingAlpha: 1)
            for (profile, tolerance) in [(unsmoothed, 1e-6), (ExerciseProfile.kneeFlexion, 0.15)] {
                let forward = analyzer.analyze(frames, profile: profile).reps
                let reverse = analyzer.analyze(backwards, profile: profile).reps
                #expect(forward.count == 5 && reverse.count == 5, "seed \(seed)")
                for (a, b) in zip(forward, reverse.reversed()) {
                    #expect(abs(a.eccentricDuration - b.concentricDuration) < tolerance, "seed \(seed)")
                    #expect(abs(a.concentricDuration - b.eccentricDuration) < tolerance, "seed \(seed)")
                }
            }
        }
    }

    @Test("property: gaps never add repetitions")
    func gapsNeverAdd() throws {
        var analyzer = PoseAnalyzer()
        for seed in UInt64(1)...25 {
            var random = SeededRandom(seed: seed &+ 101)
            var session = Self.tenReps
            session.noise = 0.003
            let frames = session.frames(seed: seed)
            let base = analyzer.analyze(frames, profile: .kneeFlexion).reps.count
            let gaps = (0..<Int.random(in: 1...4, using: &random)).map { _ in
                (Double.random(in: 0..<session.duration, using: &random), Double.random(in: 0.05...1.5, using: &random))
            }
            let gapped = analyzer.analyze(SyntheticPose.withGaps(frames, gaps), profile: .kneeFlexion).reps.count
            #expect(gapped <= base, "seed \(seed): \(gapped) > \(base) with gaps \(gaps)")
        }
    }

    @Test("sides: the better-seen side is chosen; left or right on request; one side's gap is filled by the other when together")
    func sides() throws {
        var frames = PoseFrames()
        let session = Self.tenReps
        for k in 0...Int(session.duration * 30) {
            let t = Double(k) / 30
            var landmarks = SyntheticPose.landmarks(knee: session.angle(at: t))
            for landmark in [PoseLandmark.rightHip, .rightKnee, .rightAnkle] { landmarks[landmark.rawValue].visibility = 0.3 }
            try frames.append(timestamp: t, landmarks: landmarks)
        }
        var analyzer = PoseAnalyzer()
        let chosen = analyzer.analyze(frames, profile: try ExerciseProfile.kneeFlexion.with(sides: .moreVisible))
        #expect(chosen.side == .left && chosen.reps.count == 10)
        let right = analyzer.analyze(frames, profile: try ExerciseProfile.kneeFlexion.with(sides: .right))
        #expect(right.side == .right && right.reps.isEmpty && right.session.trackedFrameRatio == 0)
        let together = analyzer.analyze(frames, profile: .kneeFlexion)
        #expect(together.reps.count == 10 && together.session.trackedFrameRatio == 1)
    }

    @Test("empty and one-frame sessions: no repetitions, nil where there is no denominator")
    func degenerate() throws {
        var analyzer = PoseAnalyzer()
        let empty = analyzer.analyze(PoseFrames(), profile: .kneeFlexion)
        #expect(empty.reps.isEmpty && empty.session.repCount == 0 && empty.session.trackedFrameRatio == nil && empty.sessionStart == nil)
        #expect(empty.session.effectiveFrameRate == nil && empty.session.tempoCV == nil && empty.session.meanRangeOfMotion == nil)
        let one = analyzer.analyze(try Self.frames([175]), profile: .kneeFlexion)
        #expect(one.reps.isEmpty && one.session.trackedFrameRatio == 1 && one.session.effectiveFrameRate == nil)
    }

    @Test("profiles: the built-ins are valid and distinct; bad thresholds and parameters are refused with invalidArgument")
    func profiles() throws {
        #expect(Set(ExerciseProfile.builtIns.map(\.name)).count == 5)
        #expect(ExerciseProfile.kneeFlexion.left == JointTriple(.leftHip, .leftKnee, .leftAnkle))
        #expect(ExerciseProfile.elbowFlexion.right == JointTriple(.rightShoulder, .rightElbow, .rightWrist))
        for profile in ExerciseProfile.builtIns { _ = try profile.with(thresholds: profile.thresholds) }
        func refused(_ body: () throws -> Void) -> Bool {
            do { try body(); return false } catch { return (error as? TelemetryError)?.code == .invalidArgument }
        }
        let knee = ExerciseProfile.kneeFlexion
        #expect(refused { _ = try knee.with(thresholds: .fixed(enter: 150, exit: 100)) }, "a closing angle enters below its exit")
        #expect(refused { _ = try ExerciseProfile.shoulderAbduction.with(thresholds: .fixed(enter: 40, exit: 80)) })
        #expect(refused { _ = try knee.with(thresholds: .fixed(enter: 100, exit: 200)) })
        #expect(refused { _ = try knee.with(thresholds: .fixed(enter: .nan, exit: 140)) })
        #expect(refused { _ = try knee.with(thresholds: .adaptive(enter: 0.4, exit: 0.6, minimumRange: 20)) })
        #expect(refused { _ = try knee.with(thresholds: .adaptive(enter: 1, exit: 0.4, minimumRange: 20)) }, "enter 1 is never crossed")
        #expect(refused { _ = try knee.with(thresholds: .adaptive(enter: 0.6, exit: 0, minimumRange: 20)) }, "exit 0 is never crossed")
        #expect(refused { _ = try knee.with(thresholds: .adaptive(enter: 0.6, exit: 0.4, minimumRange: 200)) })
        #expect(refused { _ = try knee.with(thresholds: .adaptive(enter: 0.6, exit: 0.4, minimumRange: 0)) })
        #expect(refused { _ = try knee.with(angle: AngleOptions(aspectRatio: 0)) })
        #expect(refused {
            _ = try ExerciseProfile(name: "x", left: knee.left, right: knee.right, motion: .angleDecreases, thresholds: knee.thresholds, into: .eccentric, smoothingAlpha: 0)
        })
        #expect(refused {
            _ = try ExerciseProfile(name: "x", left: knee.left, right: knee.right, motion: .angleDecreases, thresholds: knee.thresholds, into: .eccentric, gapReset: -1)
        })
    }
}
