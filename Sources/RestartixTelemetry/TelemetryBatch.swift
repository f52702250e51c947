public import RestartixCore
import Foundation

/// One player event of one video, as a batch carries it.
public struct VideoEvent: Sendable, Hashable {
    /// The video the event is about (1-200 bytes without control characters).
    public var videoID: String
    /// The event.
    public var event: MediaEvent

    public init(videoID: String, event: MediaEvent) {
        self.videoID = videoID
        self.event = event
    }
}

/// What a patient's browser sends the Telemetry API at a time: some pose frames and some player
/// events, in one of two forms.
///
/// **Binary** (``binaryMediaType``), little-endian, the compact form (536 bytes a frame):
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `RXTB` |
/// | 2 | version (1) |
/// | 2 | flags (0; a decoder refuses bits it does not know) |
/// | 4 | frame count n |
/// | 1 | landmarks per frame (33) |
/// | 1 | video count v |
/// | 2 | zero |
/// | 4 | event count m |
/// | 536·n | frames: timestamp float64 (seconds), then 33 landmarks of x, y, z, visibility float32 |
/// | v × (1 + len) | video ids: length uint8, UTF-8 bytes |
/// | 20·m | events: video index uint8, kind uint8 (the replay blob's codes), flags uint8 (1 fatal, 2 has playhead), zero uint8, time float64, playhead float64 |
///
/// **JSON** (`application/json`):
/// `{"frames": [{"t": 0.033, "landmarks": [[x, y, z, visibility], ... 33]}], "events":
/// [{"video_id": "intro", "type": "playing", "t": 1.5, "playhead": 0.0, "fatal": false}]}`;
/// `type` is a DOM media event name (``MediaEvent/Kind``; `buffering` is read as `waiting`).
///
/// Times are seconds on the page's monotonic clock (`performance.now() / 1000`), frames and
/// events alike. Both decoders check everything a kernel relies on and refuse the whole batch at
/// the first problem, with an error that names the rule and where (frame or event index), never
/// a value: frame timestamps strictly increasing, every number finite, times and playheads
/// within ``maximumTime`` (a billion seconds) of zero, visibilities in [0, 1],
/// 33 landmarks, event times not decreasing, known event types, at most ``maximumFrames`` frames,
/// ``maximumEvents`` events and ``maximumVideos`` videos.
public struct TelemetryBatch: Sendable, Equatable {
    /// The batch's frames.
    public var frames: PoseFrames
    /// The batch's player events, in the order sent.
    public var events: [VideoEvent]

    /// The binary form's media type.
    public static let binaryMediaType = "application/vnd.restartix.telemetry-batch"
    /// At most this many frames in a batch: 20 seconds at 30 frames a second.
    public static let maximumFrames = 600
    /// At most this many events in a batch.
    public static let maximumEvents = 2_000
    /// At most this many videos in a batch (and in a session: ``SessionAggregates/maximumMedia``).
    public static let maximumVideos = SessionAggregates.maximumMedia
    /// The largest binary batch: ``maximumFrames`` frames and ``maximumEvents`` events.
    public static let maximumBinarySize = headerSize + maximumFrames * frameSize + maximumVideos * 201 + maximumEvents * eventSize

    static let magic: [UInt8] = Array("RXTB".utf8)
    static let version: UInt16 = 1
    static let headerSize = 20
    static let frameSize = 8 + 4 * 4 * PoseFrames.landmarkCount
    static let eventSize = 20

    /// A batch; the frames and events are taken as they are (the decoders are what check).
    public init(frames: PoseFrames, events: [VideoEvent] = []) {
        self.frames = frames
        self.events = events
    }

    /// The first and last frame times, or nil without frames.
    public var timeSpan: ClosedRange<Double>? {
        guard let first = frames.timestamps.first, let last = frames.timestamps.last else { return nil }
        return first...last
    }

    // MARK: - Binary

    /// The binary form: what ``decodeBinary(_:)`` reads back to an equal batch.
    public func encodeBinary() -> [UInt8] {
        var videos: [String] = []
        for event in events where !videos.contains(event.videoID) { videos.append(event.videoID) }
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize + frames.count * Self.frameSize + events.count * Self.eventSize + videos.count * 32)
        out += Self.magic
        Self.put(Self.version, &out)
        Self.put(UInt16(0), &out)
        Self.put(UInt32(frames.count), &out)
        out.append(UInt8(PoseFrames.landmarkCount))
        out.append(UInt8(videos.count))
        Self.put(UInt16(0), &out)
        Self.put(UInt32(events.count), &out)
        let columns = frames.storage
        for index in 0..<frames.count {
            Self.put(frames.timestamps[index].bitPattern, &out)
            for landmark in 0..<PoseFrames.landmarkCount {
                for component in 0..<4 { Self.put(columns[component * PoseFrames.landmarkCount + landmark][index].bitPattern, &out) }
            }
        }
        for video in videos {
            let bytes = Array(video.utf8)
            out.append(UInt8(bytes.count))
            out += bytes
        }
        for item in events {
            out.append(UInt8(videos.firstIndex(of: item.videoID)!))
            out.append(ReplayBlob.kindCode(item.event.kind))
            out.append(UInt8((item.event.fatal ? 1 : 0) | (item.event.playhead != nil ? 2 : 0)))
            out.append(0)
            Self.put(item.event.time.bitPattern, &out)
            Self.put((item.event.playhead ?? 0).bitPattern, &out)
        }
        return out
    }

    /// Reads the binary form. A body that is not one (wrong magic, counts that do not match its
    /// length, unknown header bits) is `malformedBatch`; a newer version `unsupportedVersion`;
    /// more than the maxima `tooLarge`; a bad frame or event the code of its rule.
    public static func decodeBinary(_ bytes: [UInt8]) throws(TelemetryError) -> TelemetryBatch {
        guard bytes.count >= headerSize, Array(bytes[0..<4]) == magic else {
            throw TelemetryError(.malformedBatch, "the body is not a binary telemetry batch (no RXTB header)")
        }
        let version = UInt16(bytes[4]) | UInt16(bytes[5]) << 8
        guard version == Self.version else { throw TelemetryError(.unsupportedVersion, "binary batch version \(version); this server reads version \(Self.version)") }
        guard bytes[6] == 0, bytes[7] == 0, bytes[14] == 0, bytes[15] == 0 else {
            throw TelemetryError(.malformedBatch, "the batch sets header bits this version does not define")
        }
        let n = Int(read32(bytes, 8)), videoCount = Int(bytes[13]), m = Int(read32(bytes, 16))
        guard Int(bytes[12]) == PoseFrames.landmarkCount else {
            throw TelemetryError(.wrongLandmarkCount, "a frame has \(PoseFrames.landmarkCount) landmarks; this batch says \(bytes[12])")
        }
        try checkCounts(frames: n, events: m, videos: videoCount)
        var offset = headerSize
        let frameBytes = n * frameSize
        guard bytes.count >= offset + frameBytes else { throw TelemetryError(.malformedBatch, "the batch is shorter than its \(n) frames") }
        var timestamps = [Double](repeating: 0, count: n)
        var landmarks = [Float](repeating: 0, count: n * 4 * PoseFrames.landmarkCount)
        bytes.withUnsafeBytes { raw in
            landmarks.withUnsafeMutableBytes { floats in
                for frame in 0..<n {
                    let start = offset + frame * frameSize
                    timestamps[frame] = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: start, as: UInt64.self)))
                    let values = UnsafeRawBufferPointer(rebasing: raw[(start + 8)..<(start + frameSize)])
                    #if _endian(little)
                    UnsafeMutableRawBufferPointer(rebasing: floats[(frame * (frameSize - 8))..<((frame + 1) * (frameSize - 8))]).copyMemory(from: values)
                    #else
                    for k in 0..<(4 * PoseFrames.landmarkCount) {
                        let bits = UInt32(littleEndian: values.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))
                        floats.storeBytes(of: Float(bitPattern: bits), toByteOffset: frame * (frameSize - 8) + 4 * k, as: Float.self)
                    }
                    #endif
                }
            }
        }
        offset += frameBytes
        var videos: [String] = []
        for index in 0..<videoCount {
            guard offset < bytes.count else { throw TelemetryError(.malformedBatch, "the batch is shorter than its \(videoCount) video ids") }
            let length = Int(bytes[offset])
            guard offset + 1 + length <= bytes.count else { throw TelemetryError(.malformedBatch, "the batch is shorter than its \(videoCount) video ids") }
            guard let id = String(validating: bytes[(offset + 1)..<(offset + 1 + length)], as: UTF8.self) else {
                throw TelemetryError(.invalidArgument, "video id \(index) is not UTF-8")
            }
            try checkVideoID(id, "video id \(index)")
            videos.append(id)
            offset += 1 + length
        }
        guard bytes.count - offset == m * eventSize else {
            throw TelemetryError(.malformedBatch, "the batch's event section is \(bytes.count - offset) bytes; \(m) events need \(m * eventSize)")
        }
        var events: [VideoEvent] = []
        events.reserveCapacity(m)
        for index in 0..<m {
            let start = offset + index * eventSize
            let video = Int(bytes[start]), code = bytes[start + 1], flags = bytes[start + 2]
            guard video < videos.count else { throw TelemetryError(.invalidArgument, "event \(index) names video \(video); the batch lists \(videos.count)") }
            guard let kind = ReplayBlob.kind(code: code) else { throw TelemetryError(.unknownEventType, "event \(index) has an unknown type code") }
            guard flags & ~3 == 0, bytes[start + 3] == 0 else { throw TelemetryError(.malformedBatch, "event \(index) sets flag bits this version does not define") }
            let time = Double(bitPattern: read64(bytes, start + 4)), playhead = Double(bitPattern: read64(bytes, start + 12))
            events.append(VideoEvent(videoID: videos[video], event: MediaEvent(kind, at: time, playhead: flags & 2 != 0 ? playhead : nil, fatal: flags & 1 != 0)))
        }
        let frames = try landmarks.withUnsafeBufferPointer { buffer throws(TelemetryError) in try PoseFrames(timestamps: timestamps, frameMajor: buffer) }
        try checkTimes(timestamps)
        try checkEvents(events)
        return TelemetryBatch(frames: frames, events: events)
    }

    // MARK: - JSON

    /// The JSON shape: written with the frames' 32-bit floats (their shortest text), read as
    /// 64-bit numbers and narrowed here, since Foundation's decoder refuses a number too small
    /// for a `Float` (1e-300) though it rounds to zero.
    struct JSONForm<Number: Codable & BinaryFloatingPoint>: Codable {
        struct Frame: Codable {
            var t: Double
            var landmarks: [[Number]]
        }
        struct Event: Codable {
            var video_id: String
            var type: String
            var t: Double
            var playhead: Double?
            var fatal: Bool?
        }
        var frames: [Frame]?
        var events: [Event]?
    }

    /// The JSON form (for clients and tests; the binary form is a quarter of its size).
    public func encodeJSON() -> [UInt8] {
        let form = JSONForm<Float>(
            frames: (0..<frames.count).map { index in
                JSONForm<Float>.Frame(t: frames.timestamps[index], landmarks: frames.landmarks(at: index).map { [$0.x, $0.y, $0.z, $0.visibility] })
            },
            events: events.map { JSONForm<Float>.Event(video_id: $0.videoID, type: $0.event.kind.rawValue, t: $0.event.time, playhead: $0.event.playhead, fatal: $0.event.fatal) }
        )
        return Array((try? JSONEncoder().encode(form)) ?? Data())
    }

    /// Reads the JSON form, with the checks of ``decodeBinary(_:)``. A body that is not JSON of
    /// this shape is `malformedBatch`, naming the field path (never a value).
    public static func decodeJSON(_ bytes: [UInt8]) throws(TelemetryError) -> TelemetryBatch {
        let form: JSONForm<Double>
        do {
            form = try JSONDecoder().decode(JSONForm<Double>.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw TelemetryError(.malformedBatch, "the body is not a JSON telemetry batch (\(describe(error)))")
        } catch {
            throw TelemetryError(.malformedBatch, "the body is not a JSON telemetry batch")
        }
        let frameList = form.frames ?? [], eventList = form.events ?? []
        var videoIDs: Set<String> = []
        for event in eventList { videoIDs.insert(event.video_id) }
        try checkCounts(frames: frameList.count, events: eventList.count, videos: videoIDs.count)
        let width = 4 * PoseFrames.landmarkCount
        var landmarks = [Float]()
        landmarks.reserveCapacity(frameList.count * width)
        for (index, frame) in frameList.enumerated() {
            guard frame.landmarks.count == PoseFrames.landmarkCount else {
                throw TelemetryError(.wrongLandmarkCount, "frame \(index) has \(frame.landmarks.count) landmarks; a frame has \(PoseFrames.landmarkCount)")
            }
            for (landmark, values) in frame.landmarks.enumerated() {
                guard values.count == 4 else {
                    throw TelemetryError(.malformedBatch, "frame \(index), landmark \(landmark): a landmark is [x, y, z, visibility]")
                }
                for value in values {
                    guard abs(value) <= Double(Float.greatestFiniteMagnitude) else {
                        throw TelemetryError(.malformedBatch, "frame \(index), landmark \(landmark): a number beyond a 32-bit float's range")
                    }
                    landmarks.append(Float(value))
                }
            }
        }
        let frames: PoseFrames
        do {
            frames = try landmarks.withUnsafeBufferPointer { buffer throws(TelemetryError) in
                try PoseFrames(timestamps: frameList.map(\.t), frameMajor: buffer)
            }
        }
        try checkTimes(frames.timestamps)
        var events: [VideoEvent] = []
        events.reserveCapacity(eventList.count)
        for (index, event) in eventList.enumerated() {
            try checkVideoID(event.video_id, "event \(index)'s video_id")
            guard let kind = MediaEvent.Kind(eventName: event.type) else {
                throw TelemetryError(.unknownEventType, "event \(index) has an unknown type (one of \(MediaEvent.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            events.append(VideoEvent(videoID: event.video_id, event: MediaEvent(kind, at: event.t, playhead: event.playhead, fatal: event.fatal ?? false)))
        }
        try checkEvents(events)
        return TelemetryBatch(frames: frames, events: events)
    }

    // MARK: - Checks

    static func checkCounts(frames: Int, events: Int, videos: Int) throws(TelemetryError) {
        guard frames <= maximumFrames else { throw TelemetryError(.tooLarge, "a batch holds at most \(maximumFrames) frames; this one has \(frames)") }
        guard events <= maximumEvents else { throw TelemetryError(.tooLarge, "a batch holds at most \(maximumEvents) events; this one has \(events)") }
        guard videos <= maximumVideos else { throw TelemetryError(.tooLarge, "a batch names at most \(maximumVideos) videos; this one names \(videos)") }
    }

    static func checkVideoID(_ id: String, _ field: String) throws(TelemetryError) {
        guard (1...200).contains(id.utf8.count), id.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw TelemetryError(.invalidArgument, "\(field) must be 1-200 bytes without control characters")
        }
    }

    /// The largest time or playhead a batch may carry, in seconds either side of zero (about 31
    /// years: a page's monotonic clock starts at its load).
    public static let maximumTime: Double = 1_000_000_000

    /// Frame times within ``maximumTime`` (PoseFrames has checked they are finite and increasing).
    static func checkTimes(_ timestamps: [Double]) throws(TelemetryError) {
        if let index = timestamps.firstIndex(where: { abs($0) > maximumTime }) {
            throw TelemetryError(.invalidArgument, "frame \(index)'s time is beyond \(Int(maximumTime)) seconds either side of zero")
        }
    }

    /// Finite times within ``maximumTime``, not decreasing; playheads finite, not negative, within
    /// ``maximumTime``.
    static func checkEvents(_ events: [VideoEvent]) throws(TelemetryError) {
        var previous = -Double.infinity
        for (index, item) in events.enumerated() {
            guard item.event.time.isFinite else { throw TelemetryError(.nonFiniteValue, "event \(index)'s time is not a finite number") }
            guard abs(item.event.time) <= maximumTime else {
                throw TelemetryError(.invalidArgument, "event \(index)'s time is beyond \(Int(maximumTime)) seconds either side of zero")
            }
            guard item.event.time >= previous else { throw TelemetryError(.timestampNotIncreasing, "event \(index) is earlier than the event before it") }
            previous = item.event.time
            if let playhead = item.event.playhead {
                guard playhead.isFinite else { throw TelemetryError(.nonFiniteValue, "event \(index)'s playhead is not a finite number") }
                guard playhead >= 0 else { throw TelemetryError(.invalidArgument, "event \(index)'s playhead is negative") }
                guard playhead <= maximumTime else { throw TelemetryError(.invalidArgument, "event \(index)'s playhead is beyond \(Int(maximumTime)) seconds") }
            }
        }
    }

    /// A decoding error as the path and the kind of problem, never the offending value.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "the top level" : String(text.drop { $0 == "." })
        }
        switch error {
        case .typeMismatch(_, let context): return "\(path(context)): wrong type"
        case .valueNotFound(_, let context): return "\(path(context)): missing value"
        case .keyNotFound(let key, let context): return "\(path(context)): missing \(key.stringValue)"
        case .dataCorrupted(let context): return "\(path(context)): not valid JSON or a number out of range"
        @unknown default: return "unreadable"
        }
    }

    static func put<T: FixedWidthInteger>(_ value: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    static func read32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    }

    static func read64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }
}
