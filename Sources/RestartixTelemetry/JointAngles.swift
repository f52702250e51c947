import RestartixCore
import Foundation

/// Three landmarks whose middle one is the joint: knee flexion is hip–knee–ankle.
public struct JointTriple: Sendable, Hashable {
    /// The first arm's end (the hip for a knee).
    public let a: Int
    /// The joint (the knee).
    public let b: Int
    /// The second arm's end (the ankle).
    public let c: Int

    /// A triple of landmark indices (0-32).
    public init(_ a: PoseLandmark, _ b: PoseLandmark, _ c: PoseLandmark) {
        self.a = a.rawValue
        self.b = b.rawValue
        self.c = c.rawValue
    }
}

/// How joint angles are measured.
public struct AngleOptions: Sendable, Hashable {
    /// Planar (image plane, the default) or spatial (with MediaPipe's relative depth).
    public enum Space: Sendable, Hashable {
        /// `|atan2(c − b) − atan2(a − b)|` in the image plane, folded to [0°, 180°].
        case planar
        /// The angle between the vectors b→a and b→c in three dimensions.
        case spatial
    }

    /// Planar or spatial.
    public var space: Space = .planar
    /// Frames where any of the three landmarks is less visible than this are gaps. Default 0.5.
    public var minimumVisibility: Float = 0.5
    /// The image's width divided by its height. x is normalized to the width and y to the
    /// height, so x is scaled by this before measuring, or angles in a 16:9 frame come out
    /// wrong. Default 1 (coordinates already isotropic). z is on x's scale and is scaled the same.
    public var aspectRatio: Float = 1

    /// The defaults: planar, visibility 0.5, aspect ratio 1.
    public init(space: Space = .planar, minimumVisibility: Float = 0.5, aspectRatio: Float = 1) {
        self.space = space
        self.minimumVisibility = minimumVisibility
        self.aspectRatio = aspectRatio
    }
}

/// Joint angles, in degrees in [0, 180], of `joint` in every frame of `frames`, written into
/// `output` (resized to the frame count); a gap (a landmark below the visibility threshold, or
/// an arm of no length) is NaN. No allocation when `output` already has
/// the capacity.
public func jointAngles(_ frames: PoseFrames, _ joint: JointTriple, options: AngleOptions = AngleOptions(), into output: inout [Float]) {
    let n = frames.count
    output.removeAll(keepingCapacity: true)
    guard n > 0 else { return }
    output.reserveCapacity(n)
    frames.withTriples([joint]) { triples in
        let triple = triples[0]
        for i in 0..<n { output.append(triple.angle(at: i, options)) }
    }
}

/// Pointers to the twelve columns (x, y, z, visibility of a, b, c) of one joint triple, valid
/// inside ``PoseFrames/withTriples(_:_:)``.
struct TriplePointers {
    let ax, ay, az, av, bx, by, bz, bv, cx, cy, cz, cv: UnsafePointer<Float>

    /// The angle at frame `i`, degrees, or NaN for a gap.
    @inline(__always)
    func angle(at i: Int, _ options: AngleOptions) -> Float {
        let threshold = options.minimumVisibility
        guard av[i] >= threshold, bv[i] >= threshold, cv[i] >= threshold else { return .nan }
        let scale = options.aspectRatio
        let ux = (ax[i] - bx[i]) * scale, uy = ay[i] - by[i]
        let vx = (cx[i] - bx[i]) * scale, vy = cy[i] - by[i]
        let radians: Float
        switch options.space {
        case .planar:
            radians = planarAngle(ux, uy, vx, vy)
        case .spatial:
            let uz = (az[i] - bz[i]) * scale, vz = (cz[i] - bz[i]) * scale
            radians = spatialAngle(ux, uy, uz, vx, vy, vz)
        }
        return radians * (Float(180) / .pi)
    }

    /// The mean visibility of the three landmarks at frame `i`.
    @inline(__always)
    func visibility(at i: Int) -> Float { (av[i] + bv[i] + cv[i]) / 3 }
}

/// `|atan2(v) − atan2(u)|` folded to [0, π], computed as `atan2(|u × v|, u · v)`: the same
/// angle by identity (both are the unsigned angle between u and v), one arctangent instead of
/// two, and exact at 0 and π. NaN (a gap) when either arm has no length.
@inline(__always)
func planarAngle(_ ux: Float, _ uy: Float, _ vx: Float, _ vy: Float) -> Float {
    guard ux != 0 || uy != 0, vx != 0 || vy != 0 else { return .nan }
    return atan2f(abs(ux * vy - uy * vx), ux * vx + uy * vy)
}

/// The angle between u and v, robust near 0 and π (atan2 of the cross and dot products); NaN
/// when either has no length.
@inline(__always)
func spatialAngle(_ ux: Float, _ uy: Float, _ uz: Float, _ vx: Float, _ vy: Float, _ vz: Float) -> Float {
    let cx = uy * vz - uz * vy, cy = uz * vx - ux * vz, cz = ux * vy - uy * vx
    let cross = (cx * cx + cy * cy + cz * cz).squareRoot()
    let dot = ux * vx + uy * vy + uz * vz
    guard cross != 0 || dot != 0 else { return .nan }
    return atan2f(cross, dot)
}

/// Exponential smoothing of an angle signal with gaps.
///
/// `s₀ = x₀`, `sₜ = α·xₜ + (1 − α)·sₜ₋₁`. A gap (NaN) gives NaN and leaves the state as it was;
/// when the gap is longer than `resetAfter` seconds the state is dropped and the next sample
/// starts it again, so a long tracking loss never drags old values into new ones.
public struct ExponentialSmoother: Sendable {
    /// The weight of the newest sample, in (0, 1]; 1 is no smoothing.
    public let alpha: Float
    /// A gap longer than this (seconds) resets the state.
    public let resetAfter: Double

    /// A smoother; `alpha` must be in (0, 1] and `resetAfter` positive.
    public init(alpha: Float, resetAfter: Double = 0.5) throws(TelemetryError) {
        guard alpha > 0, alpha <= 1, resetAfter > 0 else {
            throw TelemetryError(.invalidArgument, "alpha must be in (0, 1] and resetAfter positive")
        }
        self.alpha = alpha
        self.resetAfter = resetAfter
    }

    /// Smooths `values` (one per timestamp) into `output`, NaN for gaps; `invalidArgument` when
    /// the counts differ.
    public func smooth(_ values: [Float], timestamps: [Double], into output: inout [Float]) throws(TelemetryError) {
        guard values.count == timestamps.count else {
            throw TelemetryError(.invalidArgument, "smoothing needs one timestamp per value (\(values.count) values, \(timestamps.count) timestamps)")
        }
        output.removeAll(keepingCapacity: true)
        output.reserveCapacity(values.count)
        var state = SmoothingState()
        for i in 0..<values.count { output.append(state.step(values[i], at: timestamps[i], alpha: alpha, resetAfter: resetAfter)) }
    }
}

/// The smoother's running state, one step per sample (shared by ``ExponentialSmoother`` and the
/// fused loop of ``PoseAnalyzer``).
struct SmoothingState {
    var value = Float.nan
    var lastSeen = -Double.infinity

    @inline(__always)
    mutating func step(_ x: Float, at t: Double, alpha: Float, resetAfter: Double) -> Float {
        guard !x.isNaN else { return .nan }
        if value.isNaN || t - lastSeen > resetAfter {
            value = x
        } else {
            value = alpha * x + (1 - alpha) * value
        }
        lastSeen = t
        return value
    }
}
