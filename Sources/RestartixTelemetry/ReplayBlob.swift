import RestartixCore
public import Foundation
import CompressNIO
import NIOCore

/// A session as recorded for replay: its pose frames and its player events, each with the video
/// it is about.
public struct ReplaySession: Sendable, Equatable {
    /// The pose frames.
    public var frames: PoseFrames
    /// The player events, in the order they were received. A version 1 blob recorded no video
    /// ids: its events decode with an empty ``VideoEvent/videoID``.
    public var events: [VideoEvent]

    /// A session.
    public init(frames: PoseFrames, events: [VideoEvent] = []) {
        self.frames = frames
        self.events = events
    }

    /// A session whose events are of one video that needs no name (each gets an empty id).
    public init(frames: PoseFrames, mediaEvents: [MediaEvent]) {
        self.init(frames: frames, events: mediaEvents.map { VideoEvent(videoID: "", event: $0) })
    }

    /// The events without their videos.
    public var mediaEvents: [MediaEvent] { events.map(\.event) }
}

/// The replay-blob codec: a compact, versioned, lossless binary encoding of a session, gzipped.
///
/// Layout of version 2 before compression (all little-endian), documented in
/// Documentation/telemetry-metrics.md:
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `RXRB` |
/// | 2 | version (2) |
/// | 2 | flags (0; a decoder refuses bits it does not know) |
/// | 4 | frame count n |
/// | 1 | landmarks per frame (33) |
/// | 3 | zero |
/// | 8·n | timestamps, float64 |
/// | 4·n·132 | coordinates, float32, one column at a time: x of landmarks 0…32, then y, z, visibility |
/// | 4 | event count m |
/// | 2 | video count v |
/// | v × (1 + len) | video ids: length uint8, UTF-8 bytes |
/// | 20·m | events: time float64, kind uint8, flags uint8 (1 fatal, 2 has playhead), video index uint16, playhead float64 |
///
/// Version 1 (still read) had no video table and 18-byte events without the video index: its
/// events decode with an empty video id.
///
/// Columns compress far better than frames (neighbouring values in a column are close). The
/// gzip trailer's CRC-32 and length guard the whole payload; the decoder also checks that every
/// count matches the bytes present, that nothing trails, and that the frames pass the same
/// validation as ``PoseFrames/append(timestamp:landmarks:)``.
public enum ReplayBlob {
    /// The version this codec writes (it reads 1 too).
    public static let version: UInt16 = 2
    /// The largest payload (before compression) ``encode(_:maximumSize:)`` writes and
    /// ``decode(_:maximumSize:)`` accepts by default: 256 MiB, about 500,000 frames (4.6 hours at
    /// 30 frames a second; a frame is 536 bytes).
    public static let defaultMaximumSize = 256 << 20

    static let magic: [UInt8] = Array("RXRB".utf8)
    static let headerSize = 16
    static let eventSize = 20
    static let version1EventSize = 18
    static let columnCount = 4 * PoseFrames.landmarkCount

    /// The object-store key for a session's blob: `{org_id}/{session_id}.bin.gz`.
    public static func objectKey(organization: UUID, session: UUID) -> String {
        "\(organization.uuidString.lowercased())/\(session.uuidString.lowercased()).bin.gz"
    }

    /// Encodes and compresses `session`. A payload over `maximumSize` bytes is refused
    /// (`tooLarge`), so every blob written decodes with the same limit.
    public static func encode(_ session: ReplaySession, maximumSize: Int = defaultMaximumSize) throws(TelemetryError) -> [UInt8] {
        try encode(session, maximumSize: maximumSize, version: version)
    }

    /// Encodes in `version` (1 only for tests of the reader: it drops the video ids).
    static func encode(_ session: ReplaySession, maximumSize: Int, version: UInt16) throws(TelemetryError) -> [UInt8] {
        let n = session.frames.count
        // The videos in the order of their first event.
        var videos: [String] = [], videoIndex: [String: Int] = [:]
        if version >= 2 {
            for item in session.events where videoIndex[item.videoID] == nil {
                videoIndex[item.videoID] = videos.count
                videos.append(item.videoID)
            }
        }
        guard videos.count <= Int(UInt16.max), videos.allSatisfy({ $0.utf8.count <= Int(UInt8.max) }) else {
            throw TelemetryError(.invalidArgument, "a replay blob names at most \(UInt16.max) videos, each id at most \(UInt8.max) bytes")
        }
        let videoBytes = version >= 2 ? 2 + videos.reduce(0) { $0 + 1 + $1.utf8.count } : 0
        let size = headerSize + n * (8 + 4 * columnCount) + 4 + videoBytes + (version >= 2 ? eventSize : version1EventSize) * session.events.count
        guard n <= Int(UInt32.max), session.events.count <= Int(UInt32.max), size <= maximumSize else {
            throw TelemetryError(.tooLarge, "the session is \(n) frames and \(session.events.count) events; a replay blob holds at most \(maximumSize) bytes")
        }
        var payload = ByteBufferAllocator().buffer(capacity: size)
        payload.writeBytes(magic)
        payload.writeInteger(version, endianness: .little)
        payload.writeInteger(UInt16(0), endianness: .little)
        payload.writeInteger(UInt32(n), endianness: .little)
        payload.writeInteger(UInt8(PoseFrames.landmarkCount))
        payload.writeBytes([0, 0, 0])
        writeLittleEndian(session.frames.timestamps, to: &payload)
        for column in session.frames.storage { writeLittleEndian(column, to: &payload) }
        payload.writeInteger(UInt32(session.events.count), endianness: .little)
        if version >= 2 {
            payload.writeInteger(UInt16(videos.count), endianness: .little)
            for video in videos {
                payload.writeInteger(UInt8(video.utf8.count))
                payload.writeBytes(Array(video.utf8))
            }
        }
        for item in session.events {
            let event = item.event
            payload.writeInteger(event.time.bitPattern, endianness: .little)
            payload.writeInteger(kindCode(event.kind))
            payload.writeInteger(UInt8((event.fatal ? 1 : 0) | (event.playhead != nil ? 2 : 0)))
            if version >= 2 { payload.writeInteger(UInt16(videoIndex[item.videoID]!), endianness: .little) }
            payload.writeInteger((event.playhead ?? 0).bitPattern, endianness: .little)
        }
        do {
            let compressed = try payload.compress(with: .gzip())
            return Array(compressed.readableBytesView)
        } catch {
            throw TelemetryError(.invalidArgument, "the session could not be compressed (\(error))")
        }
    }

    /// Decompresses and decodes a blob. Truncated, corrupt or trailing-garbage input is
    /// `corruptBlob`; a newer layout is `unsupportedVersion`; a payload over `maximumSize` bytes
    /// is `tooLarge`. Nothing is returned unless the whole blob checks out.
    public static func decode(_ blob: some Collection<UInt8>, maximumSize: Int = defaultMaximumSize) throws(TelemetryError) -> ReplaySession {
        var compressed = ByteBufferAllocator().buffer(capacity: blob.count)
        compressed.writeBytes(blob)
        var payload: ByteBuffer
        do {
            payload = try compressed.decompress(with: .gzip(), maxSize: maximumSize)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw TelemetryError(.tooLarge, "the replay blob decompresses to more than \(maximumSize) bytes")
        } catch {
            throw TelemetryError(.corruptBlob, "the replay blob is not a complete gzip stream (\(error))")
        }
        guard compressed.readableBytes == 0 else { throw TelemetryError(.corruptBlob, "the replay blob has bytes after its gzip stream") }
        // zlib checks the gzip trailer when it reaches it, but compress-nio does not report
        // whether the stream ended, so a blob cut inside its trailer would pass: check the
        // trailer here (CRC-32 and length of the payload, RFC 1952).
        let trailer = Array(blob.suffix(8))
        let payloadCRC = payload.withUnsafeReadableBytes { CRC32.checksum($0) }
        guard trailer.count == 8,
              UInt32(littleEndianBytes: trailer[0..<4]) == payloadCRC,
              UInt32(littleEndianBytes: trailer[4..<8]) == UInt32(truncatingIfNeeded: payload.readableBytes)
        else { throw TelemetryError(.corruptBlob, "the replay blob's gzip trailer is missing or does not match its contents") }
        return try decodePayload(&payload)
    }

    static func decodePayload(_ payload: inout ByteBuffer) throws(TelemetryError) -> ReplaySession {
        guard payload.readableBytes >= headerSize, payload.readBytes(length: 4) == magic else {
            throw TelemetryError(.corruptBlob, "not a replay blob (no RXRB header)")
        }
        let version = payload.readInteger(endianness: .little, as: UInt16.self)!
        guard version == 1 || version == 2 else {
            throw TelemetryError(.unsupportedVersion, "replay blob version \(version); this codec reads versions 1 and 2")
        }
        let flags = payload.readInteger(endianness: .little, as: UInt16.self)!
        let n = Int(payload.readInteger(endianness: .little, as: UInt32.self)!)
        let landmarks = payload.readInteger(as: UInt8.self)!
        let reserved = payload.readBytes(length: 3)!
        guard flags == 0, reserved == [0, 0, 0] else { throw TelemetryError(.corruptBlob, "the replay blob sets header bits this version does not define") }
        guard Int(landmarks) == PoseFrames.landmarkCount else {
            throw TelemetryError(.corruptBlob, "the replay blob has \(landmarks) landmarks per frame, not \(PoseFrames.landmarkCount)")
        }
        let frameBytes = n * (8 + 4 * columnCount)
        guard payload.readableBytes >= frameBytes + 4 else { throw TelemetryError(.corruptBlob, "the replay blob is shorter than its frame count says") }
        let timestamps: [Double] = readLittleEndian(&payload, count: n)
        var columns: [[Float]] = []
        columns.reserveCapacity(columnCount)
        for _ in 0..<columnCount { columns.append(readLittleEndian(&payload, count: n)) }
        let m = Int(payload.readInteger(endianness: .little, as: UInt32.self)!)
        var videos: [String] = [""]
        if version >= 2 {
            guard let v = payload.readInteger(endianness: .little, as: UInt16.self) else {
                throw TelemetryError(.corruptBlob, "the replay blob ends before its video table")
            }
            videos = []
            for _ in 0..<v {
                guard let length = payload.readInteger(as: UInt8.self), let bytes = payload.readBytes(length: Int(length)),
                      let id = String(validating: bytes, as: UTF8.self)
                else { throw TelemetryError(.corruptBlob, "the replay blob's video table is cut short or not UTF-8") }
                videos.append(id)
            }
        }
        let size = version >= 2 ? eventSize : version1EventSize
        guard payload.readableBytes == m * size else {
            throw TelemetryError(.corruptBlob, "the replay blob's event section is \(payload.readableBytes) bytes; \(m) events need \(m * size)")
        }
        var events: [VideoEvent] = []
        events.reserveCapacity(m)
        for _ in 0..<m {
            let time = Double(bitPattern: payload.readInteger(endianness: .little, as: UInt64.self)!)
            let code = payload.readInteger(as: UInt8.self)!
            let eventFlags = payload.readInteger(as: UInt8.self)!
            let video = version >= 2 ? Int(payload.readInteger(endianness: .little, as: UInt16.self)!) : 0
            let playhead = Double(bitPattern: payload.readInteger(endianness: .little, as: UInt64.self)!)
            guard let kind = kind(code: code), eventFlags & ~3 == 0 else { throw TelemetryError(.corruptBlob, "the replay blob has an event of unknown kind or flags") }
            guard video < videos.count else { throw TelemetryError(.corruptBlob, "the replay blob has an event of a video it does not name") }
            events.append(VideoEvent(videoID: videos[video], event: MediaEvent(kind, at: time, playhead: eventFlags & 2 != 0 ? playhead : nil, fatal: eventFlags & 1 != 0)))
        }
        let frames: PoseFrames
        do {
            frames = try PoseFrames(timestamps: timestamps, columns: columns)
        } catch {
            throw TelemetryError(.corruptBlob, "the replay blob's frames do not validate: \(error.detail)")
        }
        return ReplaySession(frames: frames, events: events)
    }

    /// Stable one-byte codes for event kinds (never reuse a number).
    static let kindCodes: [(MediaEvent.Kind, UInt8)] = [
        (.play, 1), (.playing, 2), (.pause, 3), (.seeking, 4), (.seeked, 5), (.waiting, 6), (.timeUpdate, 7), (.renditionChange, 8), (.error, 9), (.ended, 10),
    ]

    static func kindCode(_ kind: MediaEvent.Kind) -> UInt8 { kindCodes.first { $0.0 == kind }!.1 }
    static func kind(code: UInt8) -> MediaEvent.Kind? { kindCodes.first { $0.1 == code }?.0 }

    /// Writes `values` little-endian: one copy on little-endian machines.
    static func writeLittleEndian<T: BinaryFloatingPoint & BitwiseCopyable>(_ values: [T], to buffer: inout ByteBuffer) {
        #if _endian(little)
        values.withUnsafeBytes { _ = buffer.writeBytes($0) }
        #else
        for value in values {
            if let double = value as? Double { buffer.writeInteger(double.bitPattern, endianness: .little) }
            if let float = value as? Float { buffer.writeInteger(float.bitPattern, endianness: .little) }
        }
        #endif
    }

    /// Reads `count` little-endian values (the caller has checked the bytes are there).
    static func readLittleEndian<T: BinaryFloatingPoint & BitwiseCopyable>(_ buffer: inout ByteBuffer, count: Int) -> [T] {
        let size = MemoryLayout<T>.size
        #if _endian(little)
        let values = buffer.withUnsafeReadableBytes { raw in
            [T](unsafeUninitializedCapacity: count) { output, initialized in
                UnsafeMutableRawBufferPointer(output).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(count * size)))
                initialized = count
            }
        }
        buffer.moveReaderIndex(forwardBy: count * size)
        return values
        #else
        return (0..<count).map { _ in
            size == 8
                ? T(Double(bitPattern: buffer.readInteger(endianness: .little, as: UInt64.self)!))
                : T(Float(bitPattern: buffer.readInteger(endianness: .little, as: UInt32.self)!))
        }
        #endif
    }
}

/// CRC-32 (IEEE 802.3, reflected, as gzip uses it); the Telemetry API's spool checks its
/// records with it too.
package enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    package static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

extension UInt32 {
    /// Four bytes, least significant first.
    init(littleEndianBytes bytes: ArraySlice<UInt8>) {
        self = bytes.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
}
