import Foundation

/// A synthetic squat session with a known answer, for examples, demos and end-to-end tests:
/// `repetitions` knee flexions (both legs together) from ``restAngle`` down to ``bottom`` in
/// ``down`` seconds and back in ``up`` seconds, with cosine easing, each followed by ``rest``
/// seconds standing, after ``lead`` seconds standing; frames every 1/``fps`` seconds, with all
/// 33 landmarks present and the hips, knees and ankles placed to make that knee angle.
/// ``PoseAnalyzer`` with ``ExerciseProfile/kneeFlexion`` counts `repetitions` repetitions of
/// about `restAngle − bottom` degrees each.
public struct SyntheticSquats: Sendable, Hashable {
    public var repetitions: Int
    /// Seconds down, seconds up, seconds standing after each repetition, seconds before the first.
    public var down = 1.2
    public var up = 1.0
    public var rest = 0.8
    public var lead = 1.0
    /// The standing and the deepest knee angle, degrees.
    public var restAngle = 175.0
    public var bottom = 85.0
    public var fps = 30.0

    /// `repetitions` squats with the default timing (3 seconds each).
    public init(repetitions: Int) {
        self.repetitions = repetitions
    }

    /// Squats filling about `seconds` (a 2-minute session is 39 repetitions).
    public init(lasting seconds: Double) {
        repetitions = 0
        repetitions = max(1, Int((seconds - lead) / (down + up + rest)))
    }

    /// The session's length, seconds.
    public var duration: Double { lead + Double(repetitions) * (down + up + rest) }

    /// The true knee angle at `t` seconds into the session.
    public func angle(at t: Double) -> Double {
        let period = down + up + rest
        guard t >= lead else { return restAngle }
        let index = Int((t - lead) / period)
        guard index < repetitions else { return restAngle }
        let local = t - lead - Double(index) * period, depth = restAngle - bottom
        if local < down { return restAngle - depth * (1 - cos(.pi * local / down)) / 2 }
        if local < down + up { return bottom + depth * (1 - cos(.pi * (local - down) / up)) / 2 }
        return restAngle
    }

    /// The session's frames, timestamps from `origin` (seconds on the page's clock).
    public func frames(startingAt origin: Double = 0) -> PoseFrames {
        let count = Int(duration * fps)
        var frames = PoseFrames(capacity: count + 1)
        for k in 0...count {
            let t = Double(k) / fps
            try? frames.append(timestamp: origin + t, landmarks: Self.landmarks(knee: angle(at: t)))
        }
        return frames
    }

    /// 33 landmarks, both knees bent to `degrees`.
    public static func landmarks(knee degrees: Double, visibility: Float = 0.95) -> [Landmark] {
        var points = [Landmark](repeating: Landmark(x: 0.5, y: 0.5, visibility: visibility), count: PoseFrames.landmarkCount)
        let r = degrees * .pi / 180
        for (hip, knee, ankle, offset) in [(PoseLandmark.leftHip, PoseLandmark.leftKnee, PoseLandmark.leftAnkle, 0.45), (.rightHip, .rightKnee, .rightAnkle, 0.55)] {
            points[hip.rawValue] = Landmark(x: Float(offset), y: 0.3, visibility: visibility)
            points[knee.rawValue] = Landmark(x: Float(offset), y: 0.5, visibility: visibility)
            points[ankle.rawValue] = Landmark(x: Float(offset + 0.2 * sin(r)), y: Float(0.5 - 0.2 * cos(r)), visibility: visibility)
        }
        return points
    }

    /// The frames cut into batches of `size` frames, in order.
    public static func batches(of frames: PoseFrames, size: Int) -> [PoseFrames] {
        stride(from: 0, to: frames.count, by: max(1, size)).map { start in
            var batch = PoseFrames(capacity: size)
            for index in start..<min(start + size, frames.count) { try? batch.append(timestamp: frames.timestamps[index], landmarks: frames.landmarks(at: index)) }
            return batch
        }
    }
}
