public import RestartixCore

/// The 33 landmarks of MediaPipe's pose model, by index.
public enum PoseLandmark: Int, CaseIterable, Sendable {
    case nose, leftEyeInner, leftEye, leftEyeOuter, rightEyeInner, rightEye, rightEyeOuter, leftEar, rightEar
    case mouthLeft, mouthRight, leftShoulder, rightShoulder, leftElbow, rightElbow, leftWrist, rightWrist
    case leftPinky, rightPinky, leftIndex, rightIndex, leftThumb, rightThumb, leftHip, rightHip
    case leftKnee, rightKnee, leftAnkle, rightAnkle, leftHeel, rightHeel, leftFootIndex, rightFootIndex
}

/// One landmark as the browser's pose estimator reports it: `x` and `y` normalized to the
/// image's width and height ([0, 1] inside the image), `z` depth relative to the hips (about the
/// scale of `x`), `visibility` the model's confidence in [0, 1].
public struct Landmark: Sendable, Hashable {
    public var x: Float
    public var y: Float
    public var z: Float
    public var visibility: Float

    /// A landmark.
    public init(x: Float, y: Float, z: Float = 0, visibility: Float = 1) {
        self.x = x
        self.y = y
        self.z = z
        self.visibility = visibility
    }
}

/// Why a frame, an event list, a parameter or a replay blob was refused. The detail names
/// positions and counts, never a coordinate, a visibility or a time: those are a patient's data.
public typealias TelemetryError = DomainError<TelemetryErrorDomain>

/// The `telemetry` error domain: its codes' HTTP statuses.
public enum TelemetryErrorDomain: ErrorDomain {
    public static let name = "telemetry"

    /// 413 for a blob, batch or session beyond the size limit, 400 for a body that is not what
    /// its content type says, 422 for anything else refused.
    public static func httpStatus(for code: ErrorCode<TelemetryErrorDomain>) -> Int {
        switch code {
        case .tooLarge: 413
        case .malformedBatch: 400
        default: 422
        }
    }
}

extension ErrorCode where Domain == TelemetryErrorDomain {
    /// A frame without exactly 33 landmarks.
    public static var wrongLandmarkCount: Self { Self("wrongLandmarkCount") }
    /// A NaN or infinite timestamp or coordinate.
    public static var nonFiniteValue: Self { Self("nonFiniteValue") }
    /// A visibility outside [0, 1].
    public static var visibilityOutOfRange: Self { Self("visibilityOutOfRange") }
    /// A timestamp not after the previous frame's.
    public static var timestampNotIncreasing: Self { Self("timestampNotIncreasing") }
    /// A parameter out of range (a smoothing factor, a threshold).
    public static var invalidArgument: Self { Self("invalidArgument") }
    /// A replay blob that is truncated or does not decode.
    public static var corruptBlob: Self { Self("corruptBlob") }
    /// A replay blob written by a newer version of the codec.
    public static var unsupportedVersion: Self { Self("unsupportedVersion") }
    /// A replay blob (or session) beyond the codec's size limit.
    public static var tooLarge: Self { Self("tooLarge") }
    /// A batch body that is not what its content type says (``TelemetryBatch``).
    public static var malformedBatch: Self { Self("malformedBatch") }
    /// A player event of a type the kernels do not know.
    public static var unknownEventType: Self { Self("unknownEventType") }
}

/// A session's pose frames in structure-of-arrays form: one contiguous `Float` column per
/// landmark and component (x, y, z, visibility) and one column of timestamps (seconds), so a
/// kernel reading three landmarks streams six columns front to back.
///
/// Every frame in the buffer passed validation when it was appended: exactly 33 landmarks,
/// finite values, visibility in [0, 1], timestamps strictly increasing. ``append(timestamp:landmarks:)``
/// refuses a bad frame with a ``TelemetryError`` and leaves the buffer as it was;
/// ``init(validating:)`` instead drops bad frames and counts them by reason.
public struct PoseFrames: Sendable, Equatable {
    /// Landmarks per frame (MediaPipe's pose layout).
    public static let landmarkCount = 33

    /// Frame timestamps, seconds, strictly increasing.
    public private(set) var timestamps: [Double] = []
    /// Column `component * 33 + landmark`; components 0 x, 1 y, 2 z, 3 visibility.
    private var columns: [[Float]] = Array(repeating: [], count: 4 * PoseFrames.landmarkCount)

    /// An empty buffer with room for `capacity` frames.
    public init(capacity: Int = 0) {
        timestamps.reserveCapacity(capacity)
        for index in columns.indices { columns[index].reserveCapacity(capacity) }
    }

    /// Frames, with the bad ones dropped: what was dropped, by reason, is in `dropped`.
    public init(validating frames: some Sequence<(timestamp: Double, landmarks: [Landmark])>) {
        self.init()
        for frame in frames {
            do { try append(timestamp: frame.timestamp, landmarks: frame.landmarks) } catch {
                dropped[error.code, default: 0] += 1
            }
        }
    }

    /// Equal when they hold the same frames (what was dropped on the way in does not count).
    public static func == (lhs: PoseFrames, rhs: PoseFrames) -> Bool {
        lhs.timestamps == rhs.timestamps && lhs.columns == rhs.columns
    }

    /// Frames dropped by ``init(validating:)``, by reason.
    public private(set) var dropped: [TelemetryError.Code: Int] = [:]

    /// The number of frames.
    public var count: Int { timestamps.count }

    /// Appends one frame after checking it; a bad frame changes nothing.
    public mutating func append(timestamp: Double, landmarks: [Landmark]) throws(TelemetryError) {
        guard landmarks.count == Self.landmarkCount else {
            throw TelemetryError(.wrongLandmarkCount, "a frame has \(Self.landmarkCount) landmarks; this one has \(landmarks.count)")
        }
        guard timestamp.isFinite else { throw TelemetryError(.nonFiniteValue, "the frame's timestamp is not a finite number") }
        if let last = timestamps.last, timestamp <= last {
            throw TelemetryError(.timestampNotIncreasing, "frame timestamps must increase (this frame is not after the previous one)")
        }
        for (index, landmark) in landmarks.enumerated() {
            guard landmark.x.isFinite, landmark.y.isFinite, landmark.z.isFinite, landmark.visibility.isFinite else {
                throw TelemetryError(.nonFiniteValue, "landmark \(index) has a value that is not a finite number")
            }
            guard (0...1).contains(landmark.visibility) else {
                throw TelemetryError(.visibilityOutOfRange, "landmark \(index) has a visibility outside [0, 1]")
            }
        }
        timestamps.append(timestamp)
        for (index, landmark) in landmarks.enumerated() {
            columns[index].append(landmark.x)
            columns[Self.landmarkCount + index].append(landmark.y)
            columns[2 * Self.landmarkCount + index].append(landmark.z)
            columns[3 * Self.landmarkCount + index].append(landmark.visibility)
        }
    }

    /// Appends `other`'s frames that come after this buffer's last one (all of them, when it
    /// starts later); returns how many of its first frames were skipped for not doing so (a
    /// batch that overlaps the one before it). Both buffers are valid, so nothing else is checked.
    @discardableResult
    public mutating func append(contentsOf other: PoseFrames) -> Int {
        let last = timestamps.last ?? -.infinity
        // `other`'s timestamps increase: everything from the first one after `last` is after it.
        let start = other.timestamps.firstIndex { $0 > last } ?? other.count
        timestamps += other.timestamps[start...]
        for index in columns.indices { columns[index] += other.columns[index][start...] }
        return start
    }

    /// The x column of `landmark` (0…32; one value per frame).
    public func x(_ landmark: Int) -> [Float] { column(0, landmark) }
    /// The y column of `landmark`.
    public func y(_ landmark: Int) -> [Float] { column(1, landmark) }
    /// The z column of `landmark`.
    public func z(_ landmark: Int) -> [Float] { column(2, landmark) }
    /// The visibility column of `landmark`.
    public func visibility(_ landmark: Int) -> [Float] { column(3, landmark) }

    private func column(_ component: Int, _ landmark: Int) -> [Float] {
        precondition((0..<Self.landmarkCount).contains(landmark), "a landmark index is 0...32")
        return columns[component * Self.landmarkCount + landmark]
    }

    /// Calls `body` with pointers to the columns of each triple (the frame count must be
    /// positive: an empty column has no storage to point at).
    func withTriples<R>(_ joints: [JointTriple], _ body: ([TriplePointers]) -> R) -> R {
        precondition(count > 0)
        var indices: [Int] = []
        for joint in joints {
            for component in 0..<4 { indices += [joint.a, joint.b, joint.c].map { component * Self.landmarkCount + $0 } }
        }
        var pointers: [UnsafePointer<Float>] = []
        pointers.reserveCapacity(indices.count)
        return withPointers(indices[...], &pointers) { p in
            body(joints.indices.map { k in
                let q = Array(p[(12 * k)..<(12 * k + 12)])
                // indices per triple: x a b c, y a b c, z a b c, visibility a b c
                return TriplePointers(ax: q[0], ay: q[3], az: q[6], av: q[9], bx: q[1], by: q[4], bz: q[7], bv: q[10], cx: q[2], cy: q[5], cz: q[8], cv: q[11])
            })
        }
    }

    private func withPointers<R>(_ indices: ArraySlice<Int>, _ pointers: inout [UnsafePointer<Float>], _ body: ([UnsafePointer<Float>]) -> R) -> R {
        guard let first = indices.first else { return body(pointers) }
        return columns[first].withUnsafeBufferPointer { buffer in
            pointers.append(buffer.baseAddress!)
            return withPointers(indices.dropFirst(), &pointers, body)
        }
    }

    /// Every column, `component * 33 + landmark` (for the codec).
    var storage: [[Float]] { columns }

    /// Frames in bulk, from columns: `timestamps` (seconds) and 132 columns of
    /// `timestamps.count` values each, column `component * 33 + landmark` with components
    /// 0 x, 1 y, 2 z, 3 visibility (the layout of ``x(_:)`` and the replay blob). The arrays are
    /// kept as they are, not copied.
    ///
    /// Checked as ``append(timestamp:landmarks:)`` checks each frame, in one pass per column:
    /// if a frame is bad, the error is the one `append` would have thrown for the first bad
    /// frame (`nonFiniteValue`, `timestampNotIncreasing`, `visibilityOutOfRange`), and nothing
    /// is created. A column count other than 132 is `wrongLandmarkCount`; columns of another
    /// length than the timestamps, `invalidArgument`.
    public init(timestamps: [Double], columns: [[Float]]) throws(TelemetryError) {
        guard columns.count == 4 * Self.landmarkCount else {
            throw TelemetryError(.wrongLandmarkCount, "bulk frames have \(4 * Self.landmarkCount) columns (4 per landmark); these have \(columns.count)")
        }
        guard columns.allSatisfy({ $0.count == timestamps.count }) else {
            throw TelemetryError(.invalidArgument, "every column must have one value per timestamp")
        }
        if !Self.timestampsValid(timestamps) || !columns.enumerated().allSatisfy({ Self.columnValid($1, visibility: $0 >= 3 * Self.landmarkCount) }) {
            // Something is bad: find what `append` would have said, frame by frame (slow, but
            // only on the way to an error).
            var previous = -Double.infinity
            for frame in timestamps.indices {
                let time = timestamps[frame]
                guard time.isFinite else { throw TelemetryError(.nonFiniteValue, "the frame's timestamp is not a finite number") }
                guard time > previous else {
                    throw TelemetryError(.timestampNotIncreasing, "frame timestamps must increase (this frame is not after the previous one)")
                }
                previous = time
                for landmark in 0..<Self.landmarkCount {
                    let values = (0..<4).map { columns[$0 * Self.landmarkCount + landmark][frame] }
                    guard values.allSatisfy(\.isFinite) else {
                        throw TelemetryError(.nonFiniteValue, "landmark \(landmark) has a value that is not a finite number")
                    }
                    guard (0...1).contains(values[3]) else {
                        throw TelemetryError(.visibilityOutOfRange, "landmark \(landmark) has a visibility outside [0, 1]")
                    }
                }
            }
        }
        self.timestamps = timestamps
        self.columns = columns
    }

    /// Frames in bulk from a frame-major buffer, as a browser or the binary ingest form lays
    /// them out: for each frame, 33 landmarks of 4 floats (x, y, z, visibility). `landmarks`
    /// must hold `timestamps.count × 132` values. Checked as ``init(timestamps:columns:)``.
    public init(timestamps: [Double], frameMajor landmarks: UnsafeBufferPointer<Float>) throws(TelemetryError) {
        let n = timestamps.count, width = 4 * Self.landmarkCount
        guard landmarks.count == n * width else {
            throw TelemetryError(.wrongLandmarkCount, "a frame-major buffer holds \(width) values per frame (33 landmarks of 4)")
        }
        var columns = [[Float]](repeating: [], count: width)
        for landmark in 0..<Self.landmarkCount {
            for component in 0..<4 {
                columns[component * Self.landmarkCount + landmark] = [Float](unsafeUninitializedCapacity: n) { buffer, count in
                    var source = 4 * landmark + component
                    for frame in 0..<n {
                        buffer[frame] = landmarks[source]
                        source += width
                    }
                    count = n
                }
            }
        }
        try self.init(timestamps: timestamps, columns: columns)
    }

    /// Finite and strictly increasing.
    private static func timestampsValid(_ timestamps: [Double]) -> Bool {
        var previous = -Double.infinity
        var ok = true
        for time in timestamps {
            // No early exit: a branch-free loop the compiler can keep in registers.
            ok = ok && time.isFinite && time > previous
            previous = time
        }
        return ok
    }

    /// Every value finite (and, for a visibility column, in [0, 1]). On the bit patterns, as
    /// integer compares the compiler turns into vector instructions (Swift's `SIMD` masks do
    /// not lower as well): a float is finite when its exponent bits are not all ones; in
    /// [0, 1] when its bits are at most those of 1.0, or it is −0.0.
    private static func columnValid(_ column: [Float], visibility: Bool) -> Bool {
        column.withUnsafeBufferPointer { floats in
            floats.withMemoryRebound(to: UInt32.self) { bits in
                var bad: UInt32 = 0
                if visibility {
                    for b in bits { bad |= (b <= 0x3F80_0000 || b == 0x8000_0000) ? 0 : 1 }
                } else {
                    for b in bits { bad |= (b & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0 }
                }
                return bad == 0
            }
        }
    }

    /// Frame `index` as landmarks (for the codec and tests; kernels read columns).
    public func landmarks(at index: Int) -> [Landmark] {
        (0..<Self.landmarkCount).map { Landmark(x: columns[$0][index], y: y($0)[index], z: z($0)[index], visibility: visibility($0)[index]) }
    }
}
