/// One repetition: a row of `pose_rep_metrics`. Times are seconds on the frames' clock;
/// angles are the smoothed joint angle, in degrees. Documentation/telemetry-metrics.md defines
/// every field.
public struct RepMetrics: Sendable, Hashable {
    /// 0 for the session's first repetition.
    public var index: Int
    /// The last frame at rest (within ``ExerciseProfile/restTolerance`` of the rest position)
    /// before the repetition.
    public var startTime: Double
    /// The first frame back at rest after it.
    public var endTime: Double
    /// The smallest angle in the repetition.
    public var minAngle: Float
    /// The largest angle in the repetition.
    public var maxAngle: Float
    /// Seconds spent in the concentric phase.
    public var concentricDuration: Double
    /// Seconds spent in the eccentric phase.
    public var eccentricDuration: Double
    /// The fastest the angle changed between two tracked frames, degrees per second.
    public var peakAngularVelocity: Float
    /// The mean visibility of the measured landmarks over the repetition's frames.
    public var meanVisibility: Float
    /// The range of motion is below the profile's target.
    public var partialRange: Bool
    /// The repetition is shorter than the profile's minimum duration.
    public var tooFast: Bool

    /// `endTime − startTime`, seconds.
    public var duration: Double { endTime - startTime }
    /// `maxAngle − minAngle`, degrees.
    public var rangeOfMotion: Float { maxAngle - minAngle }
}

/// A session's summary: the row of `pose_session_metrics` (less the identifiers the caller
/// owns). Means and ratios are nil where they have no denominator.
public struct PoseSessionMetrics: Sendable, Hashable {
    /// Repetitions counted.
    public var repCount: Int
    /// The mean, smallest and largest range of motion over the repetitions, degrees.
    public var meanRangeOfMotion: Float?
    public var minRangeOfMotion: Float?
    public var maxRangeOfMotion: Float?
    /// The mean repetition duration, seconds.
    public var meanRepDuration: Double?
    /// The coefficient of variation of the repetition durations (population standard deviation
    /// over the mean); nil with fewer than two repetitions.
    public var tempoCV: Double?
    /// The sum of the repetition durations, seconds.
    public var activeTime: Double
    /// Frames where the joint angle could be measured, over all frames.
    public var trackedFrameRatio: Double?
    /// The mean visibility of the measured landmarks over all frames.
    public var meanVisibility: Double?
    /// `(frames − 1) / (last timestamp − first timestamp)`.
    public var effectiveFrameRate: Double?
}

/// The result of ``PoseAnalyzer/analyze(_:profile:)``.
public struct PoseAnalysis: Sendable, Hashable {
    /// The side measured: the profile's choice, or for ``ExerciseProfile/Sides/moreVisible``
    /// the side chosen.
    public enum Side: Sendable, Hashable { case left, right, both }

    /// The side or sides whose angle was counted.
    public var side: Side
    /// The repetitions, in order.
    public var reps: [RepMetrics]
    /// The session summary.
    public var session: PoseSessionMetrics
    /// The first frame's timestamp (rows store times as milliseconds after it).
    public var sessionStart: Double?
}

/// The pose pipeline: joint angles → exponential smoothing → hysteresis repetition counting →
/// per-repetition and per-session metrics.
///
/// An analyzer keeps its working buffers between calls, so analysing session after session on
/// one analyzer allocates nothing per frame once the buffers have grown to the longest session.
/// It is a value: give each task its own.
public struct PoseAnalyzer: Sendable {
    private var smoothed: [Float] = []
    private var visibility: [Float] = []

    /// An analyzer with empty buffers.
    public init() {}

    /// The smoothed angle signal of the last analysis (NaN for gaps), for plots and tests.
    public var lastSmoothedAngles: [Float] { smoothed }

    /// Runs the whole pipeline over `frames` with `profile`.
    public mutating func analyze(_ frames: PoseFrames, profile: ExerciseProfile) -> PoseAnalysis {
        let n = frames.count
        let side = Self.side(frames, profile)
        let tracked = measure(frames, profile, side)

        var reps: [RepMetrics] = []
        frames.timestamps.withUnsafeBufferPointer { t in
            smoothed.withUnsafeBufferPointer { s in
                visibility.withUnsafeBufferPointer { v in
                    var counter = RepCounter(profile: profile, t: t, s: s, v: v)
                    counter.run(into: &reps)
                }
            }
        }

        var session = PoseSessionMetrics(repCount: reps.count, activeTime: 0)
        if !reps.isEmpty {
            var sumRange: Float = 0, minRange = Float.infinity, maxRange = -Float.infinity, sumDuration = 0.0
            for rep in reps {
                sumRange += rep.rangeOfMotion
                minRange = min(minRange, rep.rangeOfMotion)
                maxRange = max(maxRange, rep.rangeOfMotion)
                sumDuration += rep.duration
            }
            let mean = sumDuration / Double(reps.count)
            session.meanRangeOfMotion = sumRange / Float(reps.count)
            session.minRangeOfMotion = minRange
            session.maxRangeOfMotion = maxRange
            session.meanRepDuration = mean
            session.activeTime = sumDuration
            if reps.count >= 2, mean > 0 {
                var squares = 0.0
                for rep in reps { squares += (rep.duration - mean) * (rep.duration - mean) }
                session.tempoCV = (squares / Double(reps.count)).squareRoot() / mean
            }
        }
        if n > 0 {
            session.trackedFrameRatio = Double(tracked) / Double(n)
            var sum = 0.0
            for value in visibility { sum += Double(value) }
            session.meanVisibility = sum / Double(n)
        }
        if n >= 2, let first = frames.timestamps.first, let last = frames.timestamps.last, last > first {
            session.effectiveFrameRate = Double(n - 1) / (last - first)
        }
        return PoseAnalysis(side: side, reps: reps, session: session, sessionStart: frames.timestamps.first)
    }

    /// The side(s) to measure.
    private static func side(_ frames: PoseFrames, _ profile: ExerciseProfile) -> PoseAnalysis.Side {
        switch profile.sides {
        case .left: return .left
        case .right: return .right
        case .together: return .both
        case .moreVisible:
            guard frames.count > 0 else { return .left }
            return frames.withTriples([profile.left, profile.right]) { triples in
                var left = 0.0, right = 0.0
                for i in 0..<frames.count {
                    left += Double(triples[0].visibility(at: i))
                    right += Double(triples[1].visibility(at: i))
                }
                return right > left ? .right : .left
            }
        }
    }

    /// One fused pass over the frames: the joint angle (the mean of both sides where both are
    /// tracked, either where one is), smoothed into `smoothed`, and the mean visibility of the
    /// landmarks used into `visibility`. Returns the number of tracked frames.
    private mutating func measure(_ frames: PoseFrames, _ profile: ExerciseProfile, _ side: PoseAnalysis.Side) -> Int {
        let n = frames.count
        Self.resize(&smoothed, n)
        Self.resize(&visibility, n)
        guard n > 0 else { return 0 }
        let joints = side == .both ? [profile.left, profile.right] : [side == .left ? profile.left : profile.right]
        let alpha = profile.smoothingAlpha, resetAfter = profile.gapReset, options = profile.angle
        return frames.timestamps.withUnsafeBufferPointer { t in
            smoothed.withUnsafeMutableBufferPointer { s in
                visibility.withUnsafeMutableBufferPointer { v in
                    frames.withTriples(joints) { triples in
                        var tracked = 0
                        var state = SmoothingState()
                        let first = triples[0]
                        if triples.count == 2 {
                            let second = triples[1]
                            for i in 0..<n {
                                let a = first.angle(at: i, options), b = second.angle(at: i, options)
                                let x = a.isNaN ? b : (b.isNaN ? a : (a + b) / 2)
                                if !x.isNaN { tracked += 1 }
                                s[i] = state.step(x, at: t[i], alpha: alpha, resetAfter: resetAfter)
                                v[i] = (first.visibility(at: i) + second.visibility(at: i)) / 2
                            }
                        } else {
                            for i in 0..<n {
                                let x = first.angle(at: i, options)
                                if !x.isNaN { tracked += 1 }
                                s[i] = state.step(x, at: t[i], alpha: alpha, resetAfter: resetAfter)
                                v[i] = first.visibility(at: i)
                            }
                        }
                        return tracked
                    }
                }
            }
        }
    }

    /// `count` zeros, in the buffer's existing storage when it is big enough.
    private static func resize(_ buffer: inout [Float], _ count: Int) {
        buffer.removeAll(keepingCapacity: true)
        buffer.append(contentsOf: repeatElement(0, count: count))
    }
}

/// The hysteresis counter over one smoothed signal (see Documentation/telemetry-metrics.md).
///
/// Works in the flexion coordinate d = ±angle, larger deeper into the working zone. A repetition
/// is entered when d rises above the enter threshold and counted when it falls below the exit
/// threshold (enter above exit, so a signal hovering at one threshold never counts). Entering
/// needs the segment (the frames since the start or the last reset) to have been below the exit
/// threshold, so a repetition is only counted when it was seen from rest. A tracking gap longer
/// than the profile's `gapReset` drops a repetition in progress and disarms.
struct RepCounter {
    let profile: ExerciseProfile
    let t: UnsafeBufferPointer<Double>
    let s: UnsafeBufferPointer<Float>
    let v: UnsafeBufferPointer<Float>
    let sign: Float

    init(profile: ExerciseProfile, t: UnsafeBufferPointer<Double>, s: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>) {
        self.profile = profile
        self.t = t
        self.s = s
        self.v = v
        self.sign = profile.motion == .angleDecreases ? -1 : 1
    }

    /// A counted repetition whose end is not known until the rest interval after it closes.
    private var pending: (start: Int, rest: Int)?
    /// The start of the current rest interval: the last exit, or the segment's first frame.
    private var intervalStart = -1

    mutating func run(into reps: inout [RepMetrics]) {
        var lo = Float.infinity, hi = -Float.infinity
        // The smallest d since the session's start or the last reset: the counter is armed once
        // it is below the exit threshold (the segment has been seen at rest).
        var segmentLow = Float.infinity
        var working = false
        var start = 0, restBefore = 0
        var lastValid = -1
        let tolerance = profile.restTolerance
        for i in 0..<s.count {
            let x = s[i]
            if x.isNaN { continue }
            if lastValid >= 0, t[i] - t[lastValid] > profile.gapReset {
                closeInterval(through: lastValid, into: &reps)
                working = false
                segmentLow = .infinity
                intervalStart = i
            }
            if intervalStart < 0 { intervalStart = i }
            lastValid = i
            let d = sign * x
            lo = min(lo, d)
            hi = max(hi, d)
            segmentLow = min(segmentLow, d)
            let enter: Float, exit: Float
            switch profile.thresholds {
            case .fixed(let e, let x):
                enter = sign * e
                exit = sign * x
            case .adaptive(let e, let x, let minimumRange):
                let range = hi - lo
                guard range >= minimumRange else { continue }
                enter = lo + e * range
                exit = lo + x * range
            }
            if !working {
                if segmentLow < exit, d > enter {
                    // The rest interval closes: it ends the pending repetition and starts this one.
                    let near = nearRest(from: intervalStart, to: i - 1, tolerance: tolerance)
                    if let pending { finish(pending, end: near.first, restAfter: near.rest, into: &reps) }
                    pending = nil
                    start = near.last
                    restBefore = near.rest
                    working = true
                }
            } else if d < exit {
                pending = (start, restBefore)
                working = false
                intervalStart = i
            }
        }
        if lastValid >= 0 { closeInterval(through: lastValid, into: &reps) }
    }

    /// Ends the pending repetition at the first frame near rest in [intervalStart, last].
    private mutating func closeInterval(through last: Int, into reps: inout [RepMetrics]) {
        guard let pending else { return }
        let near = nearRest(from: intervalStart, to: last, tolerance: profile.restTolerance)
        finish(pending, end: near.first, restAfter: near.rest, into: &reps)
        self.pending = nil
    }

    /// In the rest interval `lower...upper`: the rest position (the tracked frame with the
    /// smallest d), and the first and last tracked frames within `tolerance` of it.
    private func nearRest(from lower: Int, to upper: Int, tolerance: Float) -> (first: Int, last: Int, rest: Int) {
        var low = Float.infinity, rest = lower
        for i in lower...upper where !s[i].isNaN && sign * s[i] < low {
            low = sign * s[i]
            rest = i
        }
        var first = -1, last = lower
        for i in lower...upper where !s[i].isNaN && sign * s[i] <= low + tolerance {
            if first < 0 { first = i }
            last = i
        }
        return (first < 0 ? lower : first, last, rest)
    }

    /// Measures a repetition and appends it: its time runs from `pending.start` to `end` (the
    /// last and first frames near rest), its angles span the rest positions on either side
    /// (`pending.rest` and `restAfter`), so the range of motion runs from full rest.
    private func finish(_ pending: (start: Int, rest: Int), end: Int, restAfter: Int, into reps: inout [RepMetrics]) {
        let start = pending.start
        var minAngle = Float.infinity, maxAngle = -Float.infinity
        var peak = start, peakD = -Float.infinity
        var velocity: Float = 0
        var visibilitySum: Float = 0
        var previous = -1
        for i in min(pending.rest, start)...max(restAfter, end) {
            let inside = i >= start && i <= end
            if inside { visibilitySum += v[i] }
            let x = s[i]
            if x.isNaN { continue }
            minAngle = min(minAngle, x)
            maxAngle = max(maxAngle, x)
            if inside, sign * x > peakD {
                peakD = sign * x
                peak = i
            }
            if previous >= 0 {
                let rate = abs(x - s[previous]) / Float(t[i] - t[previous])
                velocity = max(velocity, rate)
            }
            previous = i
        }
        let into = t[peak] - t[start], out = t[end] - t[peak]
        let duration = t[end] - t[start]
        let range = maxAngle - minAngle
        reps.append(RepMetrics(
            index: reps.count,
            startTime: t[start],
            endTime: t[end],
            minAngle: minAngle,
            maxAngle: maxAngle,
            concentricDuration: profile.into == .concentric ? into : out,
            eccentricDuration: profile.into == .eccentric ? into : out,
            peakAngularVelocity: velocity,
            meanVisibility: visibilitySum / Float(end - start + 1),
            partialRange: profile.targetRange.map { range < $0 } ?? false,
            tooFast: duration < profile.minimumRepDuration
        ))
    }
}
