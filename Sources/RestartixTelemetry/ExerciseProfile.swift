import RestartixCore
/// What an exercise tracks and how its repetitions are recognised: the joint (one triple per
/// side), which side or sides, which way the angle moves into the working zone, the hysteresis
/// thresholds, and the limits that flag a repetition as partial or too fast.
///
/// The built-ins (``kneeFlexion``, ``elbowFlexion``, ``shoulderAbduction``, ``hipFlexion``,
/// ``kneeExtension``) use adaptive thresholds, because a patient in rehabilitation rarely has a
/// textbook range; give one fixed thresholds with ``with(sides:thresholds:targetRange:minimumRepDuration:smoothingAlpha:gapReset:restTolerance:angle:)``, or build your own with
/// ``init(name:left:right:sides:motion:thresholds:into:targetRange:minimumRepDuration:smoothingAlpha:gapReset:restTolerance:angle:)``.
public struct ExerciseProfile: Sendable, Hashable {
    /// Which way the joint angle moves as the patient goes into the working part of a repetition.
    public enum Motion: Sendable, Hashable {
        /// The angle closes (knee in a squat: about 175° standing, 90° at the bottom).
        case angleDecreases
        /// The angle opens (shoulder abduction: about 15° with the arm down, 90° raised).
        case angleIncreases
    }

    /// Which side's triple gives the angle.
    public enum Sides: Sendable, Hashable {
        /// The left triple only.
        case left
        /// The right triple only.
        case right
        /// Both sides move together: the mean of the two sides' angles where both are tracked,
        /// either side's where only one is.
        case together
        /// The side with the higher mean visibility over the session (a camera seeing the patient
        /// side-on sees the far side badly); ``PoseAnalysis/side`` says which.
        case moreVisible
    }

    /// Whether moving into the working zone is the concentric or the eccentric phase.
    public enum Phase: Sendable, Hashable {
        /// Muscle shortening under load (raising the weight in a curl).
        case concentric
        /// Muscle lengthening under load (lowering into a squat).
        case eccentric
    }

    /// The hysteresis thresholds, as angles of the joint.
    public enum Thresholds: Sendable, Hashable {
        /// A repetition is entered when the angle passes `enter` (going into the working zone)
        /// and counted when it passes back beyond `exit`. These are angles, so for
        /// ``Motion/angleDecreases`` `enter` is below `exit` (a squat: enter under 100°, count
        /// over 140°) and for ``Motion/angleIncreases`` above it; either way the enter threshold
        /// is the deeper one, as in MediaPipe's counter.
        case fixed(enter: Float, exit: Float)
        /// Thresholds at fractions of the range observed so far (0 = the rest end, 1 = the
        /// deepest point seen), `enter` above `exit` (MediaPipe's 0.6 and 0.4). No repetition can
        /// begin until the observed range is at least `minimumRange` degrees.
        case adaptive(enter: Float, exit: Float, minimumRange: Float)
    }

    /// A name for reports ("knee-flexion").
    public let name: String
    /// The left side's triple.
    public let left: JointTriple
    /// The right side's triple.
    public let right: JointTriple
    /// Which side(s) to measure.
    public let sides: Sides
    /// Which way the angle moves into the working zone.
    public let motion: Motion
    /// The hysteresis thresholds.
    public let thresholds: Thresholds
    /// Whether going into the working zone is concentric or eccentric.
    public let into: Phase
    /// A repetition whose range of motion is below this many degrees is flagged partial; nil
    /// flags none.
    public let targetRange: Float?
    /// A repetition shorter than this many seconds is flagged too fast.
    public let minimumRepDuration: Double
    /// The exponential smoothing factor per frame (see ``ExponentialSmoother``).
    public let smoothingAlpha: Float
    /// A tracking gap longer than this many seconds resets the smoother and the counter.
    public let gapReset: Double
    /// Degrees: a repetition starts at the last frame, and ends at the first, within this of the
    /// rest position (the most extended point between repetitions), so time spent resting is in
    /// no repetition.
    public let restTolerance: Float
    /// How angles are measured (planar or spatial, visibility threshold, aspect ratio).
    public let angle: AngleOptions

    /// A profile, checked: thresholds ordered for the motion, adaptive fractions with
    /// 0 < exit < enter < 1, a positive gap reset, a non-negative minimum duration and rest
    /// tolerance, alpha in (0, 1].
    public init(
        name: String,
        left: JointTriple,
        right: JointTriple,
        sides: Sides = .moreVisible,
        motion: Motion,
        thresholds: Thresholds,
        into: Phase,
        targetRange: Float? = nil,
        minimumRepDuration: Double = 1.0,
        smoothingAlpha: Float = 0.4,
        gapReset: Double = 0.5,
        restTolerance: Float = 2,
        angle: AngleOptions = AngleOptions()
    ) throws(TelemetryError) {
        switch thresholds {
        case .fixed(let enter, let exit):
            guard enter.isFinite, exit.isFinite, (0...180).contains(enter), (0...180).contains(exit) else {
                throw TelemetryError(.invalidArgument, "fixed thresholds are angles in [0, 180]")
            }
            let ordered = motion == .angleDecreases ? enter < exit : enter > exit
            guard ordered else {
                throw TelemetryError(.invalidArgument, motion == .angleDecreases
                    ? "for an angle that closes, the enter threshold must be below the exit threshold"
                    : "for an angle that opens, the enter threshold must be above the exit threshold")
            }
        case .adaptive(let enter, let exit, let minimumRange):
            // Fractions strictly inside (0, 1): enter 1 or exit 0 could never be crossed.
            guard exit > 0, enter < 1, enter > exit else {
                throw TelemetryError(.invalidArgument, "adaptive thresholds are fractions with 0 < exit < enter < 1")
            }
            guard minimumRange.isFinite, minimumRange > 0, minimumRange <= 180 else {
                throw TelemetryError(.invalidArgument, "the minimum range must be in (0, 180] degrees")
            }
        }
        guard smoothingAlpha > 0, smoothingAlpha <= 1 else { throw TelemetryError(.invalidArgument, "the smoothing alpha must be in (0, 1]") }
        guard gapReset > 0, gapReset.isFinite else { throw TelemetryError(.invalidArgument, "the gap reset must be a positive number of seconds") }
        guard minimumRepDuration >= 0, minimumRepDuration.isFinite else {
            throw TelemetryError(.invalidArgument, "the minimum repetition duration must be a non-negative number of seconds")
        }
        guard restTolerance >= 0, restTolerance.isFinite else { throw TelemetryError(.invalidArgument, "the rest tolerance must be non-negative degrees") }
        if let targetRange { guard targetRange > 0, targetRange <= 180 else { throw TelemetryError(.invalidArgument, "the target range must be in (0, 180] degrees") } }
        guard angle.minimumVisibility >= 0, angle.minimumVisibility <= 1, angle.aspectRatio > 0, angle.aspectRatio.isFinite else {
            throw TelemetryError(.invalidArgument, "the minimum visibility must be in [0, 1] and the aspect ratio positive")
        }
        self.name = name
        self.left = left
        self.right = right
        self.sides = sides
        self.motion = motion
        self.thresholds = thresholds
        self.into = into
        self.targetRange = targetRange
        self.minimumRepDuration = minimumRepDuration
        self.smoothingAlpha = smoothingAlpha
        self.gapReset = gapReset
        self.restTolerance = restTolerance
        self.angle = angle
    }

    /// This profile with some parameters changed, checked as the initializer checks them:
    /// `ExerciseProfile.kneeFlexion.with(thresholds: .fixed(enter: 100, exit: 140))`. A parameter
    /// left out (nil) keeps its value; `targetRange: .some(nil)` removes the target.
    public func with(
        sides: Sides? = nil,
        thresholds: Thresholds? = nil,
        targetRange: Float?? = nil,
        minimumRepDuration: Double? = nil,
        smoothingAlpha: Float? = nil,
        gapReset: Double? = nil,
        restTolerance: Float? = nil,
        angle: AngleOptions? = nil
    ) throws(TelemetryError) -> ExerciseProfile {
        try ExerciseProfile(
            name: name, left: left, right: right, sides: sides ?? self.sides, motion: motion,
            thresholds: thresholds ?? self.thresholds, into: into, targetRange: targetRange ?? self.targetRange,
            minimumRepDuration: minimumRepDuration ?? self.minimumRepDuration, smoothingAlpha: smoothingAlpha ?? self.smoothingAlpha,
            gapReset: gapReset ?? self.gapReset, restTolerance: restTolerance ?? self.restTolerance, angle: angle ?? self.angle
        )
    }

    /// MediaPipe's repetition-counter fractions (enter 0.6, exit 0.4) with a 20° minimum range.
    public static let adaptiveDefault = Thresholds.adaptive(enter: 0.6, exit: 0.4, minimumRange: 20)

    // The built-ins are valid by construction; `try!` cannot fail on them (their values are
    // checked by the test suite too).

    /// Squat or sit-to-stand: hip–knee–ankle (23/24, 25/26, 27/28), both legs together, the angle
    /// closes (eccentric going down). Partial below 60°, too fast under 1 s.
    public static let kneeFlexion = try! ExerciseProfile(
        name: "knee-flexion", left: JointTriple(.leftHip, .leftKnee, .leftAnkle), right: JointTriple(.rightHip, .rightKnee, .rightAnkle),
        sides: .together, motion: .angleDecreases, thresholds: adaptiveDefault, into: .eccentric, targetRange: 60
    )

    /// Biceps curl: shoulder–elbow–wrist (11/12, 13/14, 15/16), the better-seen arm, the angle
    /// closes (concentric going up). Partial below 90°.
    public static let elbowFlexion = try! ExerciseProfile(
        name: "elbow-flexion", left: JointTriple(.leftShoulder, .leftElbow, .leftWrist), right: JointTriple(.rightShoulder, .rightElbow, .rightWrist),
        sides: .moreVisible, motion: .angleDecreases, thresholds: adaptiveDefault, into: .concentric, targetRange: 90
    )

    /// Lateral raise: hip–shoulder–elbow (23/24, 11/12, 13/14), both arms, the angle opens
    /// (concentric going up). Partial below 60°.
    public static let shoulderAbduction = try! ExerciseProfile(
        name: "shoulder-abduction", left: JointTriple(.leftHip, .leftShoulder, .leftElbow), right: JointTriple(.rightHip, .rightShoulder, .rightElbow),
        sides: .together, motion: .angleIncreases, thresholds: adaptiveDefault, into: .concentric, targetRange: 60
    )

    /// Standing knee raise: shoulder–hip–knee (11/12, 23/24, 25/26), the better-seen leg, the
    /// angle closes (concentric going up). Partial below 45°.
    public static let hipFlexion = try! ExerciseProfile(
        name: "hip-flexion", left: JointTriple(.leftShoulder, .leftHip, .leftKnee), right: JointTriple(.rightShoulder, .rightHip, .rightKnee),
        sides: .moreVisible, motion: .angleDecreases, thresholds: adaptiveDefault, into: .concentric, targetRange: 45
    )

    /// Seated knee extension: hip–knee–ankle, the better-seen leg, the angle opens from about 90°
    /// (concentric going up). Partial below 45°.
    public static let kneeExtension = try! ExerciseProfile(
        name: "knee-extension", left: JointTriple(.leftHip, .leftKnee, .leftAnkle), right: JointTriple(.rightHip, .rightKnee, .rightAnkle),
        sides: .moreVisible, motion: .angleIncreases, thresholds: adaptiveDefault, into: .concentric, targetRange: 45
    )

    /// The built-in profiles.
    public static let builtIns: [ExerciseProfile] = [kneeFlexion, elbowFlexion, shoulderAbduction, hipFlexion, kneeExtension]
}
