import Foundation
@testable import RestartixTelemetry
import RestartixTestSupport
import Testing

@Suite("Replay-blob codec")
struct ReplayBlobTests {
    /// A random session: frames with random coordinates and visibilities, random events.
    static func randomSession(seed: UInt64) -> ReplaySession {
        var random = SeededRandom(seed: seed)
        var frames = PoseFrames()
        var t = Double.random(in: 0...1000, using: &random)
        for _ in 0..<Int.random(in: 0...400, using: &random) {
            t += Double.random(in: 0.001...0.1, using: &random)
            let landmarks = (0..<PoseFrames.landmarkCount).map { _ in
                Landmark(
                    x: .random(in: -0.2...1.2, using: &random), y: .random(in: -0.2...1.2, using: &random),
                    z: .random(in: -1...1, using: &random), visibility: .random(in: 0...1, using: &random)
                )
            }
            try! frames.append(timestamp: t, landmarks: landmarks)
        }
        let kinds = MediaEvent.Kind.allCases
        let videos = ["intro", "squat-demo", "", "ståmp nº 2"]
        let events = (0..<Int.random(in: 0...60, using: &random)).map { _ in
            VideoEvent(videoID: videos.randomElement(using: &random)!, event: MediaEvent(
                kinds.randomElement(using: &random)!, at: .random(in: 0...1e6, using: &random),
                playhead: Bool.random(using: &random) ? .random(in: 0...3600, using: &random) : nil, fatal: Bool.random(using: &random)
            ))
        }
        return ReplaySession(frames: frames, events: events)
    }

    static func code(_ body: () throws -> Void) -> TelemetryError.Code? {
        do { try body(); return nil } catch { return (error as? TelemetryError)?.code }
    }

    @Test("lossless round trip of random sessions, empty ones included; the blob is gzip")
    func roundTrip() throws {
        for seed in UInt64(1)...40 {
            let session = Self.randomSession(seed: seed)
            let blob = try ReplayBlob.encode(session)
            #expect(blob.starts(with: [0x1F, 0x8B]), "gzip magic")
            #expect(try ReplayBlob.decode(blob) == session, "seed \(seed)")
        }
        let empty = ReplaySession(frames: PoseFrames())
        #expect(try ReplayBlob.decode(ReplayBlob.encode(empty)) == empty)
    }

    @Test("version 1 blobs (no video ids) still decode: the same frames and events, each of an unnamed video")
    func version1() throws {
        for seed in UInt64(1)...10 {
            let session = Self.randomSession(seed: seed)
            let old = try ReplayBlob.encode(session, maximumSize: ReplayBlob.defaultMaximumSize, version: 1)
            #expect(try gunzip(old)[4] == 1)
            let back = try ReplayBlob.decode(old)
            #expect(back.frames == session.frames && back.mediaEvents == session.mediaEvents, "seed \(seed)")
            #expect(back.events.allSatisfy { $0.videoID.isEmpty })
        }
    }

    @Test("a smooth session compresses well below its raw size")
    func compact() throws {
        let frames = SyntheticPose(reps: Array(repeating: SyntheticPose.Rep(), count: 20)).frames(seed: 1)
        let blob = try ReplayBlob.encode(ReplaySession(frames: frames))
        let raw = frames.count * (8 + 4 * 132)
        #expect(blob.count * 4 < raw, "\(blob.count) bytes for \(raw) raw")
        #expect(try ReplayBlob.decode(blob).frames == frames)
    }

    @Test("every truncation and every single-byte corruption is refused; nothing trails")
    func corruption() throws {
        let blob = try ReplayBlob.encode(Self.randomSession(seed: 7))
        for length in stride(from: 0, to: blob.count, by: max(1, blob.count / 200)) {
            #expect(Self.code { _ = try ReplayBlob.decode(blob.prefix(length)) } == .corruptBlob, "truncated to \(length)")
        }
        #expect(Self.code { _ = try ReplayBlob.decode(blob.dropLast()) } == .corruptBlob)
        var random = SeededRandom(seed: 9)
        for _ in 0..<200 {
            var damaged = blob
            let index = Int.random(in: 0..<blob.count, using: &random)
            damaged[index] ^= UInt8.random(in: 1...255, using: &random)
            let code = Self.code { _ = try ReplayBlob.decode(damaged) }
            // Bytes 4-9 of a gzip header are mtime, flags and OS, which gzip does not check.
            if (4...9).contains(index) { continue }
            #expect(code == .corruptBlob || code == .tooLarge, "byte \(index): \(String(describing: code))")
        }
        #expect(Self.code { _ = try ReplayBlob.decode(blob + [0]) } == .corruptBlob, "trailing bytes")
        #expect(Self.code { _ = try ReplayBlob.decode([UInt8]("not a blob".utf8)) } == .corruptBlob)
    }

    @Test("a valid gzip of a wrong payload: bad magic, newer version, wrong counts, frames that do not validate")
    func wrongPayloads() throws {
        let session = ReplaySession(frames: SyntheticPose(reps: [SyntheticPose.Rep()]).frames(seed: 1), events: [VideoEvent(videoID: "v", event: MediaEvent(.play, at: 1))])
        let payload = try gunzip(ReplayBlob.encode(session))
        func regzipped(_ edit: (inout [UInt8]) -> Void) throws -> [UInt8] {
            var copy = payload
            edit(&copy)
            return try gzip(copy)
        }
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[0] = UInt8(ascii: "X") }) } == .corruptBlob)
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[4] = 3 }) } == .unsupportedVersion)
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[6] = 1 }) } == .corruptBlob, "unknown flags")
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[8] &+= 1 }) } == .corruptBlob, "frame count")
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[12] = 32 }) } == .corruptBlob, "landmark count")
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0.removeLast() }) } == .corruptBlob, "event section")
        // The event's video index (after its time, kind and flags) names a video the table lacks.
        let videoIndex = payload.count - 8 - 2
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[videoIndex] = 1 }) } == .corruptBlob, "video index")
        // The video table's one id, "v", made a byte that is not UTF-8.
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0[payload.count - 20 - 1] = 0xFF }) } == .corruptBlob, "video id")
        // Frame 1's timestamp set to frame 0's: not increasing.
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0.replaceSubrange(24..<32, with: $0[16..<24]) }) } == .corruptBlob)
        // The first visibility (column 99, frame 0) set to 2.0.
        let visibility = 16 + 8 * session.frames.count + 4 * session.frames.count * 99
        #expect(Self.code { _ = try ReplayBlob.decode(try regzipped { $0.replaceSubrange(visibility..<visibility + 4, with: withUnsafeBytes(of: Float(2)) { Array($0) }) }) } == .corruptBlob)
        // The encoder keeps to the same limit, so whatever it writes decodes.
        #expect(Self.code { _ = try ReplayBlob.encode(session, maximumSize: 1000) } == .tooLarge)
        let limit = 16 + 8 * session.frames.count + 528 * session.frames.count + 4 + 2 + (1 + 1) + 20
        #expect(try ReplayBlob.decode(ReplayBlob.encode(session, maximumSize: limit), maximumSize: limit) == session)
        // A decompression bomb is refused by size before it is decoded.
        #expect(Self.code { _ = try ReplayBlob.decode(try gzip([UInt8](repeating: 0, count: 1 << 20)), maximumSize: 1 << 16) } == .tooLarge)
    }

    @Test("the object key is {org_id}/{session_id}.bin.gz, lower case")
    func objectKey() {
        let org = UUID(uuidString: "6F9619FF-8B86-D011-B42D-00C04FC964FF")!, session = UUID(uuidString: "00000000-0000-0000-0000-0000000000AB")!
        #expect(ReplayBlob.objectKey(organization: org, session: session) == "6f9619ff-8b86-d011-b42d-00c04fc964ff/00000000-0000-0000-0000-0000000000ab.bin.gz")
    }
}

/// gzip and gunzip through the system's tools, independent of the codec under test.
func gzip(_ bytes: [UInt8]) throws -> [UInt8] { try pipe(["gzip", "-c", "-n"], bytes) }
func gunzip(_ bytes: [UInt8]) throws -> [UInt8] { try pipe(["gzip", "-d", "-c"], bytes) }

private func pipe(_ command: [String], _ input: [UInt8]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    try process.run()
    let writer = Thread { stdin.fileHandleForWriting.write(Data(input)); try? stdin.fileHandleForWriting.close() }
    writer.start()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return [UInt8](output)
}
