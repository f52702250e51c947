import Foundation
import RestartixTelemetry
import RestartixTestSupport

extension SeededRandom {
    /// A standard normal sample (Box–Muller).
    mutating func gaussian() -> Double {
        let u = Double.random(in: Double.ulpOfOne..<1, using: &self), v = Double.random(in: 0..<1, using: &self)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

/// Knee-flexion sessions with a known answer: each repetition goes from `restAngle` down to its
/// `bottom` in `down` seconds and back up in `up` seconds (cosine easing, so the joint slows at
/// both ends as a person does), then rests. Both legs move together. Noise is added to the
/// landmark coordinates, jitter to the timestamps; frames can be dropped and visibility can dip.
struct SyntheticPose {
    struct Rep {
        var down: Double = 1.2
        var up: Double = 1.0
        var bottom: Double = 85
        var rest: Double = 0.8
    }

    var reps: [Rep]
    var restAngle = 175.0
    var fps = 30.0
    /// Seconds at rest before the first repetition.
    var lead = 1.0
    /// Standard deviation of the coordinate noise, in normalized image units (the shin is 0.2).
    var noise = 0.0
    /// Timestamp jitter, as a fraction of the frame interval (uniform ±).
    var jitter = 0.0
    /// The probability that a frame is missing.
    var dropRate = 0.0
    /// Intervals (start, seconds) where every landmark's visibility is 0.2.
    var dips: [(start: Double, duration: Double)] = []

    var duration: Double { lead + reps.reduce(0) { $0 + $1.down + $1.up + $1.rest } }

    /// The true knee angle at time `t`.
    func angle(at t: Double) -> Double {
        var clock = lead
        guard t >= clock else { return restAngle }
        for rep in reps {
            let depth = restAngle - rep.bottom
            if t < clock + rep.down { return restAngle - depth * (1 - cos(.pi * (t - clock) / rep.down)) / 2 }
            clock += rep.down
            if t < clock + rep.up { return rep.bottom + depth * (1 - cos(.pi * (t - clock) / rep.up)) / 2 }
            clock += rep.up + rep.rest
            if t < clock { return restAngle }
        }
        return restAngle
    }

    /// The frames, as the browser would send them (a frame per 1/fps, possibly jittered,
    /// possibly dropped).
    func frames(seed: UInt64) -> PoseFrames {
        var random = SeededRandom(seed: seed)
        var frames = PoseFrames(capacity: Int(duration * fps) + 1)
        let count = Int(duration * fps)
        for k in 0...count {
            var t = Double(k) / fps
            if jitter > 0 { t += Double.random(in: -jitter...jitter, using: &random) / fps }
            if dropRate > 0, Double.random(in: 0..<1, using: &random) < dropRate { continue }
            let dipped = dips.contains { t >= $0.start && t < $0.start + $0.duration }
            let offsets = noise > 0 ? (0..<12).map { _ in noise * random.gaussian() } : []
            let landmarks = Self.landmarks(knee: angle(at: t), visibility: dipped ? 0.2 : 0.95, noise: offsets)
            try? frames.append(timestamp: t, landmarks: landmarks)
        }
        return frames
    }

    /// 33 landmarks with both legs bent to `knee` degrees; `noise` (12 values, or none) is added
    /// to the coordinates of the hips, knees and ankles.
    static func landmarks(knee degrees: Double, visibility: Float = 0.95, noise: [Double] = []) -> [Landmark] {
        var points = [Landmark](repeating: Landmark(x: 0.5, y: 0.5, visibility: visibility), count: PoseFrames.landmarkCount)
        let r = degrees * .pi / 180
        var used = 0
        func put(_ landmark: PoseLandmark, _ x: Double, _ y: Double) {
            let dx = noise.isEmpty ? 0 : noise[used], dy = noise.isEmpty ? 0 : noise[used + 1]
            used += 2
            points[landmark.rawValue] = Landmark(x: Float(x + dx), y: Float(y + dy), visibility: visibility)
        }
        for (hip, knee, ankle, offset) in [(PoseLandmark.leftHip, PoseLandmark.leftKnee, PoseLandmark.leftAnkle, 0.45), (.rightHip, .rightKnee, .rightAnkle, 0.55)] {
            put(hip, offset, 0.3)
            put(knee, offset, 0.5)
            put(ankle, offset + 0.2 * sin(r), 0.5 - 0.2 * cos(r))
        }
        return points
    }

    /// `frames` played backwards: frame k at time `T − t`.
    static func reversed(_ frames: PoseFrames) -> PoseFrames {
        var out = PoseFrames(capacity: frames.count)
        guard let end = frames.timestamps.last else { return out }
        for index in stride(from: frames.count - 1, through: 0, by: -1) {
            try? out.append(timestamp: end - frames.timestamps[index], landmarks: frames.landmarks(at: index))
        }
        return out
    }

    /// `frames` with every frame in the given time intervals made invisible (a tracking gap).
    static func withGaps(_ frames: PoseFrames, _ gaps: [(start: Double, duration: Double)]) -> PoseFrames {
        var out = PoseFrames(capacity: frames.count)
        for index in 0..<frames.count {
            let t = frames.timestamps[index]
            var landmarks = frames.landmarks(at: index)
            if gaps.contains(where: { t >= $0.start && t < $0.start + $0.duration }) {
                for k in landmarks.indices { landmarks[k].visibility = 0.1 }
            }
            try? out.append(timestamp: t, landmarks: landmarks)
        }
        return out
    }
}

/// A knee-flexion session scripted repetition by repetition, with the answer kept: each
/// repetition starts from its own top (held at least `hold` seconds), goes down to its bottom
/// and comes back to a top of its own, with cosine easing; between repetitions the rest angle
/// drifts linearly to the next top, then holds. Noise-free, both legs together, 30 fps.
struct ScriptedSquats {
    struct Rep {
        var top: Double
        var bottom: Double
        var down: Double
        var up: Double
        /// Where the return ends; the drift then runs to the next repetition's top.
        var returnTop: Double
        /// Seconds of drift after the return, then `hold` seconds still at the next top.
        var drift: Double
        var hold: Double
    }

    var reps: [Rep]
    var lead = 1.0
    var fps = 30.0

    /// What was performed: the times the movement starts, bottoms out and ends, and its two
    /// excursions (down, and back up).
    struct Truth {
        var start: Double
        var bottom: Double
        var end: Double
        var range: Double
        var returnRange: Double
    }

    var truth: [Truth] {
        var clock = lead
        return reps.map { rep in
            defer { clock += rep.down + rep.up + rep.drift + rep.hold }
            return Truth(start: clock, bottom: clock + rep.down, end: clock + rep.down + rep.up,
                         range: rep.top - rep.bottom, returnRange: rep.returnTop - rep.bottom)
        }
    }

    var duration: Double { lead + reps.reduce(0) { $0 + $1.down + $1.up + $1.drift + $1.hold } }

    func angle(at t: Double) -> Double {
        var clock = lead
        guard let first = reps.first else { return 175 }
        if t < clock { return first.top }
        for (k, rep) in reps.enumerated() {
            func ease(_ from: Double, _ to: Double, _ s: Double) -> Double { from + (to - from) * (1 - cos(.pi * s)) / 2 }
            if t < clock + rep.down { return ease(rep.top, rep.bottom, (t - clock) / rep.down) }
            clock += rep.down
            if t < clock + rep.up { return ease(rep.bottom, rep.returnTop, (t - clock) / rep.up) }
            clock += rep.up
            let next = k + 1 < reps.count ? reps[k + 1].top : rep.returnTop
            if t < clock + rep.drift { return rep.returnTop + (next - rep.returnTop) * (t - clock) / rep.drift }
            clock += rep.drift
            if t < clock + rep.hold { return next }
            clock += rep.hold
        }
        return reps.last!.returnTop
    }

    func frames() -> PoseFrames {
        var frames = PoseFrames(capacity: Int(duration * fps) + 1)
        for k in 0...Int(duration * fps) {
            let t = Double(k) / fps
            try? frames.append(timestamp: t, landmarks: SyntheticPose.landmarks(knee: angle(at: t)))
        }
        return frames
    }

    /// `count` repetitions whose tops drift up and down by 5 to 15 degrees from one to the next.
    static func drifting(count: Int, seed: UInt64) -> ScriptedSquats {
        var random = SeededRandom(seed: seed)
        var top = 172.0
        var reps: [Rep] = []
        for _ in 0..<count {
            let returnTop = min(179, max(150, top + Double.random(in: -15...15, using: &random)))
            var next = returnTop + (Bool.random(using: &random) ? 1 : -1) * Double.random(in: 5...15, using: &random)
            next = min(179, max(150, next))
            reps.append(Rep(
                top: top, bottom: .random(in: 75...100, using: &random),
                down: .random(in: 1.2...2.0, using: &random), up: .random(in: 1.0...1.8, using: &random),
                returnTop: returnTop, drift: .random(in: 0.5...1.5, using: &random), hold: .random(in: 0.3...0.8, using: &random)
            ))
            top = next
        }
        return ScriptedSquats(reps: reps)
    }
}
