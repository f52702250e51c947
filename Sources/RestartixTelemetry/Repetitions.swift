import Foundation

/// One repetition: a row of `pose_rep_metrics`. Times are seconds on the frames' clock;
/// angles are the smoothed joint angle, in degrees. Documentation/telemetry-metrics.md defines
/// every field.
public struct RepMetrics: Sendable, Hashable {
    /// 0 for the session's first repetition.
    public var index: Int
    /// Where the joint starts moving into the repetition: the last frame of the speed valley
    /// before it (rest, drift of the rest position or a turn are all before this).
    public var startTime: Double
    /// The bottom: the first frame deepest into the working zone.
    public var bottomTime: Double
    /// Where the joint stops after coming back: the first frame of the speed valley after it.
    public var endTime: Double
    /// The frames (indices into the session's frames) of the start, the bottom and the end.
    public var startFrame: Int
    public var bottomFrame: Int
    public var endFrame: Int
    /// The smallest angle of the movement into the repetition (start to bottom).
    public var minAngle: Float
    /// The largest angle of the movement into the repetition (start to bottom).
    public var maxAngle: Float
    /// The excursion of the return, bottom to end, degrees; it differs from
    /// ``rangeOfMotion`` when the joint comes back to another position than it started from.
    public var returnRangeOfMotion: Float
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
    /// `maxAngle − minAngle`: the excursion of the repetition's own movement, from where it
    /// started to its bottom, degrees.
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
    /// Frames where the joint angle could be measured.
    public var trackedFrameCount: Int = 0
    /// Runs of tracked frames without a gap longer than the profile's `gapReset`; 0 with none.
    public var trackingSegments: Int = 0
    /// Gaps longer than `gapReset` (each restarts the smoothing): `trackingSegments − 1`.
    public var trackingResets: Int { max(0, trackingSegments - 1) }
    /// The mean visibility of the measured landmarks over the tracked frames; nil with none.
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
    private var raw: [Float] = []
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
        let segments = frames.timestamps.withUnsafeBufferPointer { t in
            smoothed.withUnsafeBufferPointer { s in
                raw.withUnsafeBufferPointer { r in
                    visibility.withUnsafeBufferPointer { v in
                        var counter = RepCounter(profile: profile, t: t, s: s, r: r, v: v, tracked: tracked)
                        counter.run(into: &reps)
                        return counter.segments
                    }
                }
            }
        }

        var session = PoseSessionMetrics(repCount: reps.count, activeTime: 0)
        session.trackedFrameCount = tracked
        session.trackingSegments = segments
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
        }
        if tracked > 0 {
            var sum = 0.0
            for (value, angle) in zip(visibility, smoothed) where !angle.isNaN { sum += Double(value) }
            session.meanVisibility = sum / Double(tracked)
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
        Self.resize(&raw, n)
        Self.resize(&visibility, n)
        guard n > 0 else { return 0 }
        let joints = side == .both ? [profile.left, profile.right] : [side == .left ? profile.left : profile.right]
        let alpha = profile.smoothingAlpha, resetAfter = profile.gapReset, options = profile.angle
        return frames.timestamps.withUnsafeBufferPointer { t in
            withMutableBuffers { s, r, v in
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
                            r[i] = x
                            s[i] = state.step(x, at: t[i], alpha: alpha, resetAfter: resetAfter)
                            v[i] = (first.visibility(at: i) + second.visibility(at: i)) / 2
                        }
                    } else {
                        for i in 0..<n {
                            let x = first.angle(at: i, options)
                            if !x.isNaN { tracked += 1 }
                            r[i] = x
                            s[i] = state.step(x, at: t[i], alpha: alpha, resetAfter: resetAfter)
                            v[i] = first.visibility(at: i)
                        }
                    }
                    return tracked
                }
            }
        }
    }

    /// The smoothed, raw and visibility buffers, writable, for one fused pass.
    private mutating func withMutableBuffers<R>(
        _ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> R
    ) -> R {
        smoothed.withUnsafeMutableBufferPointer { s in
            raw.withUnsafeMutableBufferPointer { r in
                visibility.withUnsafeMutableBufferPointer { v in body(s, r, v) }
            }
        }
    }

    /// `count` zeros, in the buffer's existing storage when it is big enough.
    private static func resize(_ buffer: inout [Float], _ count: Int) {
        buffer.removeAll(keepingCapacity: true)
        buffer.append(contentsOf: repeatElement(0, count: count))
    }
}

/// The hysteresis counter over one smoothed signal, and each counted repetition's measurement
/// (see Documentation/telemetry-metrics.md).
///
/// Works in the flexion coordinate d = ±angle, larger deeper into the working zone. A repetition
/// is entered when d rises above the enter threshold and counted when it falls below the exit
/// threshold (enter above exit, so a signal hovering at one threshold never counts). Entering
/// needs the segment to have been seen below the exit threshold, so a repetition is only counted
/// when it was seen from rest. A tracking gap longer than the profile's `gapReset` keeps what was
/// known before it: the counter stays armed if it was at rest and armed; a repetition in progress
/// goes on if the signal after the gap is still in the working zone, and is dropped otherwise.
///
/// A repetition's own movement runs from where the joint starts moving into it to where it
/// stops after coming back: the speed valleys on either side of it (``movementBounds``).
struct RepCounter {
    let profile: ExerciseProfile
    let t: UnsafeBufferPointer<Double>
    /// The smoothed angle (counting and the angles reported) and the unsmoothed one (where a
    /// movement starts and ends); NaN for gaps.
    let s: UnsafeBufferPointer<Float>
    let r: UnsafeBufferPointer<Float>
    let v: UnsafeBufferPointer<Float>
    let sign: Float
    /// Tracked frames (not NaN in `r`), as the measuring pass counted them.
    let tracked: Int

    init(
        profile: ExerciseProfile,
        t: UnsafeBufferPointer<Double>,
        s: UnsafeBufferPointer<Float>,
        r: UnsafeBufferPointer<Float>,
        v: UnsafeBufferPointer<Float>,
        tracked: Int
    ) {
        self.profile = profile
        self.t = t
        self.s = s
        self.r = r
        self.v = v
        self.tracked = tracked
        self.sign = profile.motion == .angleDecreases ? -1 : 1
    }

    /// A counted repetition before it is measured.
    struct Counted {
        /// The frame that crossed the enter threshold, and the one that crossed back.
        var entry: Int
        var count: Int
        /// Where the search for its start begins: the entry, or, when the entry is the first
        /// frame after a long gap (the descent happened during it), the last frame before it.
        var scanFrom: Int
        /// Where its start may lie: the previous repetition's count, or the start of the
        /// segment it was armed in.
        var lower: Int
        /// Where its end may lie: the last tracked frame before the next entry or the segment's end.
        var upper: Int
        /// The thresholds (flexion coordinate) at its entry and at its count.
        var enterThreshold: Float
        var exitThreshold: Float
    }

    /// Tracking segments (runs of tracked frames without a gap longer than `gapReset`).
    private(set) var segments = 0

    mutating func run(into reps: inout [RepMetrics]) {
        let counted = count()
        guard !counted.isEmpty else { return }
        let noise = noise()
        reps.reserveCapacity(reps.count + counted.count)
        for rep in counted { reps.append(measure(rep, noise: noise, index: reps.count)) }
    }

    /// The counting pass: the repetitions with their search bounds.
    private mutating func count() -> [Counted] {
        var counted: [Counted] = []
        var lo = Float.infinity, hi = -Float.infinity
        // The smallest d since the segment began (armed once below the exit threshold).
        var segmentLow = Float.infinity
        var working = false
        var entry = 0, lower = 0
        var intervalStart = -1
        var lastValid = -1
        var lastExit: Float?
        var checkAfterGap = false
        var entryScan = 0
        var entryThreshold: Float = 0
        // The first tracked frame after the latest long gap, and the last one before it.
        var gapEnd = -1, beforeGap = -1
        for i in 0..<s.count {
            let x = s[i]
            if x.isNaN { continue }
            if lastValid < 0 {
                segments = 1
            } else if t[i] - t[lastValid] > profile.gapReset {
                segments += 1
                gapEnd = i
                beforeGap = lastValid
                // What was known before the gap stands: an armed counter at rest stays armed
                // (a descent that began before the gap is counted), a repetition in progress
                // goes on if the signal is still in the working zone after it.
                let armedAtRest = !working && lastExit.map { segmentLow < $0 } == true
                if let last = counted.last, last.upper > lastValid { counted[counted.count - 1].upper = lastValid }
                if working {
                    checkAfterGap = true
                } else if !armedAtRest {
                    segmentLow = .infinity
                    intervalStart = i
                }
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
            lastExit = exit
            if checkAfterGap {
                checkAfterGap = false
                if working, d < exit {
                    // It came back during the gap: the exit was not seen, so it is not counted.
                    working = false
                    intervalStart = i
                }
            }
            if !working {
                if segmentLow < exit, d > enter {
                    if let last = counted.last, last.upper >= i { counted[counted.count - 1].upper = i - 1 }
                    entry = i
                    entryScan = i == gapEnd ? beforeGap : i
                    entryThreshold = enter
                    lower = intervalStart
                    working = true
                }
            } else if d < exit {
                counted.append(Counted(
                    entry: entry, count: i, scanFrom: entryScan, lower: lower, upper: s.count - 1,
                    enterThreshold: entryThreshold, exitThreshold: exit
                ))
                working = false
                intervalStart = i
            }
        }
        if let last = counted.last, last.upper > lastValid { counted[counted.count - 1].upper = lastValid }
        return counted
    }

    /// How much of the unsmoothed angle's wiggle is noise.
    struct Noise {
        /// Degrees: three times the noise, at least 0.05.
        var band: Float
        /// Degrees per second: the speed that noise alone shows, at least 1.5.
        var speed: Float
    }

    /// The session's noise, estimated robustly: the 10th percentile of |second differences| of
    /// the unsmoothed angle is its curvature on a smooth movement (near 0) and about 0.31 of
    /// the noise's standard deviation on noise. From at most 4,096 evenly spaced frames.
    private func noise() -> Noise {
        var samples: [Float] = [], steps: [Double] = []
        if tracked > 2 {
            // Over the tracked frames in order, centres 1, 1 + stride, ... as the numpy reference.
            let stride = max(1, tracked / 4096)
            samples.reserveCapacity(tracked / stride + 1)
            steps.reserveCapacity(tracked / stride + 1)
            var k = 0
            var before = (x: Float.nan, t: 0.0), centre = (x: Float.nan, t: 0.0)
            for i in 0..<r.count where !r[i].isNaN {
                if k >= 2, (k - 2) % stride == 0 {
                    samples.append(abs(r[i] - 2 * centre.x + before.x))
                    steps.append(centre.t - before.t)
                }
                before = centre
                centre = (r[i], t[i])
                k += 1
            }
        }
        guard samples.count >= 10 else { return Noise(band: 0.05, speed: 1.5) }
        // Sorts of at most 4,096 values: cheap beside the frames.
        samples.sort()
        steps.sort()
        let sigma = samples[samples.count / 10] / 0.309
        let interval = Float(steps[steps.count / 2])
        return Noise(
            band: max(0.05, 3 * sigma),
            speed: max(1.5, 3 * Float(2).squareRoot() * sigma / max(interval, 1e-3))
        )
    }

    /// How long the angle must stay within the noise band to count as holding still (at rest,
    /// or paused at the top of a drift).
    static let minimumHold = 0.2

    /// The next tracked frame after `i` in the direction of `step` (±1), within `lower...upper`.
    @inline(__always)
    private func neighbour(_ i: Int, _ step: Int, _ lower: Int, _ upper: Int) -> Int? {
        var j = i + step
        while j >= lower, j <= upper {
            if !r[j].isNaN { return j }
            j += step
        }
        return nil
    }

    /// The unsmoothed angle's speed over the step from frame `i` to its tracked neighbour in the
    /// direction of `step` (within `lower...upper`), degrees per second; nil for a gap or no
    /// neighbour.
    @inline(__always)
    private func speed(_ i: Int, toward step: Int, _ lower: Int, _ upper: Int) -> Float? {
        let a = r[i]
        guard !a.isNaN, let j = neighbour(i, step, lower, upper) else { return nil }
        return abs(r[j] - a) / Float(abs(t[j] - t[i]))
    }

    /// The frames where the repetition's own movement starts and ends, on the unsmoothed angle
    /// (exponential smoothing delays the end of a movement, not its start, so measuring both on
    /// it would lengthen every repetition by the filter's settling time).
    ///
    /// From where the movement into the repetition was last seen, backwards, the angle runs back
    /// to where it started, and the search stops at the first of:
    /// - a hold: the angle within the noise band for ``minimumHold`` seconds (rest, or the end
    ///   of a drift); the start is the hold's frame nearest the movement;
    /// - where the joint, slowing down to near rest, stops slowing (on clean data, where noise
    ///   does not drown the speed): a plateau, a turn, or a drift of the rest position going on
    ///   from there;
    /// - a turn: the angle `restTolerance` deeper than the most extended value seen (the
    ///   neighbour's movement); the start is the frame nearest the movement within the noise band
    ///   of that value.
    /// The end is the same, forwards from the count.
    private func movementBounds(_ rep: Counted, bottom peak: Int, noise: Noise) -> (start: Int, end: Int) {
        let band = noise.band, speedTolerance = noise.speed
        // A turn is the angle going back by more than the rest tolerance, and by more than noise.
        let hysteresis = max(profile.restTolerance, 2 * band)
        var peakSpeed: Float = 0
        for i in rep.entry...rep.count { if let u = speed(i, toward: 1, rep.lower, rep.upper) { peakSpeed = max(peakSpeed, u) } }
        let nearRest = 0.25 * peakSpeed
        // Speeds say where a movement ends only when noise does not drown them.
        let useSpeed = speedTolerance <= 0.1 * peakSpeed
        func boundary(from first: Int, by step: Int, limit: Int) -> Int {
            var low = Float.infinity, lowIndex = first
            // The current run of frames within the band of its first (nearest the movement) one.
            var anchor = Float.nan, anchorIndex = first
            var previousSpeed = Float.infinity
            var i = first
            while step < 0 ? i >= limit : i <= limit {
                let x = r[i]
                if !x.isNaN {
                    let d = sign * x
                    if d > low + hysteresis { break }
                    if d < low { low = d; lowIndex = i }
                    if anchor.isNaN || abs(d - anchor) > band {
                        anchor = d
                        anchorIndex = i
                    } else if abs(t[i] - t[anchorIndex]) >= Self.minimumHold {
                        return anchorIndex
                    }
                    // The step towards the movement: the one the movement itself decides.
                    if useSpeed, let u = speed(i, toward: -step, rep.lower, rep.upper) {
                        // Slowing down to near rest, then no longer slowing: the movement is over.
                        // The step where it ended: into a drift going on from there (this step
                        // is not still), this step; onto a plateau, the step before the first
                        // still one. The boundary is that step's end nearer the movement, less
                        // than a frame from where the movement really ended.
                        if previousSpeed <= nearRest, u >= previousSpeed - speedTolerance {
                            // "The step's end nearer the movement": a tracked frame, not a gap.
                            guard u <= speedTolerance else { return neighbour(i, -step, rep.lower, rep.upper) ?? i }
                            var j = first
                            while j != i {
                                if let w = speed(j, toward: -step, rep.lower, rep.upper), w <= speedTolerance {
                                    return j == first ? first : neighbour(j, -step, rep.lower, rep.upper) ?? j
                                }
                                j += step
                            }
                            return neighbour(i, -step, rep.lower, rep.upper) ?? i
                        }
                        previousSpeed = u
                    }
                }
                i += step
            }
            // The frame nearest the movement within the band of the turn.
            var j = first
            while j != lowIndex {
                let x = r[j]
                if !x.isNaN, sign * x <= low + band { return j }
                j += step
            }
            return lowIndex
        }
        // The searches start where the unsmoothed angle crossed the thresholds, not where the
        // smoothed one did: the smoothed crossing lags and can fall inside a pause at the bottom
        // (a repetition barely reaching the enter threshold) or at rest after the return.
        var from = rep.scanFrom
        while !r[from].isNaN, sign * r[from] >= rep.enterThreshold, let previous = neighbour(from, -1, rep.lower, rep.upper) {
            from = previous
        }
        var to = peak
        while r[to].isNaN || sign * r[to] >= rep.exitThreshold, let next = neighbour(to, 1, rep.lower, rep.upper) {
            to = next
        }
        let start = boundary(from: from, by: -1, limit: rep.lower), end = boundary(from: to, by: 1, limit: rep.upper)
        // Never past the bottom on either side.
        return (min(start, peak), max(end, peak))
    }

    /// Measures a counted repetition (Documentation/telemetry-metrics.md, `pose_rep_metrics`).
    private func measure(_ rep: Counted, noise: Noise, index: Int) -> RepMetrics {
        // The bottom: the first frame of greatest d while in the working zone.
        var peak = rep.entry, peakD = -Float.infinity
        for i in rep.entry...rep.count where !s[i].isNaN && sign * s[i] > peakD {
            peakD = sign * s[i]
            peak = i
        }
        let (start, end) = movementBounds(rep, bottom: peak, noise: noise)
        // The angles at the start, the bottom and the end, on the unsmoothed angle (smoothing
        // would lose the bottom's depth and lag the end). At the start and the end: the mean of
        // the boundary frame and the frames beside it on the rest side that stay within the
        // noise band of it (up to five: on clean data the frame itself, on noisy data the
        // beginning of the rest, which averages the noise away). At the bottom: the deepest mean
        // of five consecutive frames around the smoothed bottom.
        // Frames are counted in tracked frames: a gap frame is skipped, not counted.
        func restAngle(_ frame: Int, away step: Int) -> Float {
            var sum = r[frame], count: Float = 1
            var i = frame
            while count < 5, let next = neighbour(i, step, rep.lower, rep.upper), abs(r[next] - r[frame]) <= noise.band {
                sum += r[next]
                count += 1
                i = next
            }
            return sum / count
        }
        func meanAngle(around frame: Int) -> Float {
            var sum = r[frame], count: Float = 1
            for step in [-1, 1] {
                var i = frame
                for _ in 0..<2 {
                    guard let next = neighbour(i, step, rep.lower, rep.upper) else { break }
                    sum += r[next]
                    count += 1
                    i = next
                }
            }
            return sum / count
        }
        // The centres: the smoothed bottom and up to three tracked frames on either side.
        var bottomAngle = r[peak].isNaN ? s[peak] : meanAngle(around: peak)
        var deepest = sign * bottomAngle
        for step in [-1, 1] {
            var centre = peak
            for _ in 0..<3 {
                guard let next = neighbour(centre, step, rep.lower, rep.upper) else { break }
                centre = next
                let mean = meanAngle(around: centre)
                if sign * mean > deepest {
                    deepest = sign * mean
                    bottomAngle = mean
                }
            }
        }
        let startAngle = r[start].isNaN ? s[start] : restAngle(start, away: -1)
        let endAngle = r[end].isNaN ? s[end] : restAngle(end, away: 1)
        // The range of motion is the movement into the repetition, start to bottom; the return,
        // bottom to end, is reported beside it.
        let minAngle = min(startAngle, bottomAngle), maxAngle = max(startAngle, bottomAngle)
        let returnRange = abs(endAngle - bottomAngle)
        var velocity: Float = 0, visibilitySum: Float = 0, previous = -1
        for i in start...end {
            visibilitySum += v[i]
            if s[i].isNaN { continue }
            if previous >= 0 { velocity = max(velocity, abs(s[i] - s[previous]) / Float(t[i] - t[previous])) }
            previous = i
        }
        let into = t[peak] - t[start], out = t[end] - t[peak]
        let duration = t[end] - t[start]
        let range = maxAngle - minAngle
        return RepMetrics(
            index: index,
            startTime: t[start],
            bottomTime: t[peak],
            endTime: t[end],
            startFrame: start,
            bottomFrame: peak,
            endFrame: end,
            minAngle: minAngle,
            maxAngle: maxAngle,
            returnRangeOfMotion: returnRange,
            concentricDuration: profile.into == .concentric ? into : out,
            eccentricDuration: profile.into == .eccentric ? into : out,
            peakAngularVelocity: velocity,
            meanVisibility: visibilitySum / Float(end - start + 1),
            partialRange: profile.targetRange.map { range < $0 } ?? false,
            tooFast: duration < profile.minimumRepDuration
        )
    }
}
