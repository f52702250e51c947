import Foundation
import RestartixCrypto
import RestartixKit
import RestartixTelemetry
import RestartixTestSupport
import Synchronization
import Testing

/// `restartix-telemetry-api` under the load of a busy clinic network, on loopback: 200 sessions
/// at once, each sending 30 frames a second in batches of half a second, for a bounded time.
/// The process's peak memory stays under the bound its limits imply, and every batch it
/// acknowledged is in its spool (none lost, none stored twice).
@Suite("Telemetry load", .timeLimit(.minutes(3)))
struct TelemetryLoadTests {
    static let sessions = 200
    static let seconds = 8
    static let framesPerBatch = 15
    /// The bound: the runtime and its pools (about 60 MB), plus the batches being stored at once
    /// (64 of at most 336 KB binary or 2 MiB JSON each, decoded), with room for the allocator.
    static let memoryBound = 256 << 20

    @Test("200 sessions at 30 fps on loopback: peak memory under the bound, every acknowledged batch stored once")
    func load() async throws {
        for name in ["restartix-telemetry-api"] {
            try #require(FileManager.default.isExecutableFile(atPath: EndToEndTests.binaries.appendingPathComponent(name).path), "build \(name) first")
        }
        let directory = try TemporaryDirectory("telemetry-load")
        defer { directory.remove() }
        let secret = "telemetry-load-session-secret-0123456789abcdef"
        let port = try LoopbackPorts.free(2)
        let server = try EndToEndTests.Server("restartix-telemetry-api", port: port[0], environment: [
            "APP_ENV": "test", "LOG_LEVEL": "warning", "TELEMETRY_SESSION_TOKEN_SECRET": secret,
            "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": "telemetry-load-service-secret-0123456789abcdef",
            // Nothing listens there: finished sessions would wait as pending; none finish here.
            "CORE_API_URL": "http://127.0.0.1:\(port[1])",
            "TELEMETRY_DIRECTORY": directory.path("telemetry"), "TELEMETRY_SPOOL_DIRECTORY": directory.path("spool"),
            "TELEMETRY_MAX_OPEN_SESSIONS": "250", "TELEMETRY_MAX_CONCURRENT_BATCHES": "64",
            "RESTARTIX_SQLITE_PATH": directory.path("data/restartix.sqlite"), "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "",
        ], log: directory.path("telemetry.log"))
        try await server.ready()
        let tokens = try SessionTokens(secrets: [secret])
        let organization = UUIDv7.generate()
        let frames = SyntheticSquats(repetitions: 3).frames()
        let counts = Counts()
        let started = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<Self.sessions {
                group.addTask {
                    do {
                        let session = UUIDv7.generate()
                        let token = try tokens.issue(session: session, organization: organization, patient: UUIDv7.generate())
                        let base = "\(server.url)/v1/sessions/\(session.lowercasedString)"
                        let start = try await EndToEndTests.http("POST", "\(base)/start", token: token, contentType: "application/json", body: Array(#"{"exercise":"knee_flexion"}"#.utf8))
                        guard start.status == 201 else { throw LoadFailure("start: \(start.status)") }
                        let batches = Self.seconds * 30 / Self.framesPerBatch
                        for sequence in 0..<batches {
                            // Paced: batch k leaves k half-seconds after the start (spread over the
                            // first half-second across sessions), as a browser's timer would send it.
                            let due = started + .milliseconds(500 * sequence + index * 500 / Self.sessions)
                            try await Task.sleep(until: due, clock: .continuous)
                            var batch = PoseFrames()
                            for offset in 0..<Self.framesPerBatch {
                                let frame = (sequence * Self.framesPerBatch + offset) % frames.count
                                try batch.append(timestamp: Double(sequence * Self.framesPerBatch + offset) / 30, landmarks: frames.landmarks(at: frame))
                            }
                            let body = TelemetryBatch(frames: batch).encodeBinary()
                            var answer = try await EndToEndTests.http("PUT", "\(base)/batches/\(sequence)", token: token, contentType: TelemetryBatch.binaryMediaType, body: body)
                            while answer.status == 503 {
                                counts.refused.add(1, ordering: .relaxed)
                                try await Task.sleep(for: .milliseconds(200))
                                answer = try await EndToEndTests.http("PUT", "\(base)/batches/\(sequence)", token: token, contentType: TelemetryBatch.binaryMediaType, body: body)
                            }
                            guard answer.status == 201 else { throw LoadFailure("batch \(sequence): \(answer.status)") }
                            counts.acknowledged.add(1, ordering: .relaxed)
                        }
                    } catch {
                        counts.failures.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        let peak = ChildProcess.peakResidentBytes(of: server.child.pid) ?? 0
        await server.stop()
        let stored = try await TelemetryAPITests.spooledBatches(in: directory.path("spool"))
        let expected = Self.sessions * (Self.seconds * 30 / Self.framesPerBatch)
        print("telemetry load: \(counts.acknowledged.load(ordering: .relaxed)) batches acknowledged of \(expected) in \(elapsed), \(counts.refused.load(ordering: .relaxed)) refused with 503 and retried, \(stored) stored, peak RSS \(peak >> 20) MiB (bound \(Self.memoryBound >> 20) MiB)")
        #expect(counts.failures.withLock { $0 }.isEmpty, "\(counts.failures.withLock { $0.prefix(5) })")
        #expect(counts.acknowledged.load(ordering: .relaxed) == expected)
        #expect(stored == expected)
        #expect(peak > 0 && peak < Self.memoryBound)
        // The server kept the pace: the last batches left on time and were acknowledged within
        // a quarter of the run's length after it.
        #expect(elapsed < .seconds(Double(Self.seconds) * 1.25))
    }

    final class Counts: Sendable {
        let acknowledged = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        let failures = Mutex<[String]>([])
    }

    struct LoadFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
