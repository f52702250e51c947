import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RestartixAWS
import RestartixKit
import RestartixTelemetry
import RestartixTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The telemetry sub-stack with real processes: `restartix-core-api` on Postgres through
/// PgBouncer, `restartix-telemetry-api` with its bucket on moto, `restartix-jobs` for the
/// migrations, the demo clinics and the patients' development tokens.
@Suite(
    "Telemetry end to end",
    .enabled(if: RequiredServices.shouldRun("DATABASE_URL", "DATABASE_APP_URL", "DATABASE_DIRECT_URL", "AWS_ENDPOINT_URL")),
    .timeLimit(.minutes(5))
)
struct EndToEndTests {
    static let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

    /// A running executable of ours, stopped (SIGTERM, then SIGKILL) by ``stop()``, killed when
    /// released without it (a failed test leaves nothing running).
    final class Server: Sendable {
        let child: ChildProcess
        let stopped = Mutex(false)
        let port: Int
        let log: String
        var url: String { "http://127.0.0.1:\(port)" }

        init(_ name: String, port: Int, environment: [String: String], log: String) throws {
            let process = Process()
            process.executableURL = EndToEndTests.binaries.appendingPathComponent(name)
            process.environment = environment.merging(["HOST": "127.0.0.1", "PORT": "\(port)", "LOG_FORMAT": "json"]) { $1 }
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            child = try ChildProcess(starting: process)
            self.port = port
            self.log = log
        }

        /// Waits until `/ready` answers 200 (at most 60 s).
        func ready() async throws {
            for _ in 0..<600 {
                if let response = try? await EndToEndTests.http("GET", "\(url)/ready"), response.status == 200 { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            Issue.record("\(log): not ready in 60 s: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(2000) ?? "")")
            throw CancellationError()
        }

        deinit {
            if !stopped.withLock({ $0 }) { kill(child.pid, SIGKILL) }
        }

        func stop() async {
            guard !stopped.withLock({ $0 }) else { return }
            kill(child.pid, SIGTERM)
            let exited = Task { [child] in await child.exit() }
            let killer = Task {
                try await Task.sleep(for: .seconds(10))
                kill(child.pid, SIGKILL)
            }
            _ = await exited.value
            killer.cancel()
            self.stopped.withLock { $0 = true }
        }
    }

    struct Answer {
        let status: Int
        let body: Data
        func json() -> [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    static func http(_ method: String, _ url: String, token: String? = nil, contentType: String? = nil, body: [UInt8]? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let collected = try await response.body.collect(upTo: 8 << 20)
        return Answer(status: Int(response.status.code), body: Data(collected.readableBytesView))
    }

    /// Sends the head of a request and part of its body, then closes the connection: a client
    /// that lost its network mid-batch.
    static func dropMidBody(port: Int, path: String, token: String, body: [UInt8]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(connected == 0)
        let head = "PUT \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: \(TelemetryBatch.binaryMediaType)\r\nContent-Length: \(body.count)\r\n\r\n"
        let partial = Array(head.utf8) + body.prefix(body.count / 2)
        _ = partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        usleep(100_000)
    }

    static func job(_ arguments: [String], environment: [String: String]) async throws -> String {
        let result = try await ChildProcess.capture(binaries.appendingPathComponent("restartix-jobs"), arguments, environment: environment)
        #expect(result.status == 0, "restartix-jobs \(arguments.first ?? ""): \(result.stderr.suffix(1000))")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("a patient streams a two-minute squat session (binary and JSON, a duplicate, one batch out of order, a dropped connection), finishes it; the metrics are the patient's and the specialist's to read and another clinic's to miss; the blob decodes to the same frames; with the Core API down at finish the aggregates are delivered once when it is back")
    func session() async throws {
        var environment: [String: String] = [:]
        for name in [
            "DATABASE_URL", "DATABASE_APP_URL", "DATABASE_DIRECT_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
            "TELEMETRY_SESSION_TOKEN_SECRET", "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN", "ENCRYPTION_KEYS", "RESTARTIX_DEV_TOKEN_SECRET",
        ] {
            environment[name] = try RequiredServices.require(name)
        }
        environment["APP_ENV"] = "development"
        environment["PATH"] = ProcessInfo.processInfo.environment["PATH"]
        for name in ["restartix-core-api", "restartix-telemetry-api", "restartix-jobs"] {
            try #require(FileManager.default.isExecutableFile(atPath: Self.binaries.appendingPathComponent(name).path), "build \(name) first (swift build)")
        }
        let directory = try TemporaryDirectory("telemetry-e2e")
        defer { directory.remove() }
        _ = try await Self.job(["migrate"], environment: environment)
        _ = try await Self.job(["demo-data"], environment: environment)
        let patientToken = try await Self.job(["dev-token", "--as", "demo-patient"], environment: environment)
        let specialistToken = try await Self.job(["dev-token", "--as", "demo-specialist"], environment: environment)
        let otherToken = try await Self.job(["dev-token", "--as", "other-owner"], environment: environment)
        let ownerToken = try await Self.job(["dev-token", "--as", "demo-owner"], environment: environment)

        // The telemetry bucket on moto.
        let bucket = "restartix-telemetry-e2e-\(UInt32.random(in: 0...UInt32.max))"
        let s3 = try S3Client(
            bucket: bucket, region: "us-east-1", credentials: AWSCredentials(accessKeyID: environment["AWS_ACCESS_KEY_ID"]!, secretAccessKey: environment["AWS_SECRET_ACCESS_KEY"]!),
            endpoint: environment["AWS_ENDPOINT_URL"], usePathStyle: true
        )
        try await s3.createBucket()

        let ports = try LoopbackPorts.free(2)
        var core = try Server("restartix-core-api", port: ports[0], environment: environment, log: directory.path("core-1.log"))
        try await core.ready()
        // The demo patient's record, linked to its account (409 when an earlier run made it).
        let record = try await Self.http(
            "POST", "\(core.url)/v1/patients", token: ownerToken, contentType: "application/json",
            body: Array(#"{"name":"Ana Pop","user_id":"0193a000-0000-7000-8000-00000000e003"}"#.utf8)
        )
        #expect(record.status == 201 || record.status == 409, "\(String(decoding: record.body, as: UTF8.self))")
        let telemetryEnvironment = environment.merging([
            "CORE_API_URL": core.url, "TELEMETRY_S3_BUCKET": bucket, "TELEMETRY_SPOOL_DIRECTORY": directory.path("spool"),
            "TELEMETRY_S3_SSE": "AES256",
        ]) { $1 }
        var telemetry = try Server("restartix-telemetry-api", port: ports[1], environment: telemetryEnvironment, log: directory.path("telemetry.log"))
        try await telemetry.ready()

        func startSession() async throws -> (id: String, org: String, patient: String, token: String) {
            let started = try await Self.http("POST", "\(core.url)/v1/telemetry/session-tokens", token: patientToken)
            #expect(started.status == 201)
            let body = started.json()
            let session = (body["session_id"] as? String ?? "", body["organization_id"] as? String ?? "", body["patient_id"] as? String ?? "", body["token"] as? String ?? "")
            let start = try await Self.http("POST", "\(telemetry.url)/v1/sessions/\(session.0)/start", token: session.3, contentType: "application/json", body: Array(#"{"exercise":"knee_flexion"}"#.utf8))
            #expect(start.status == 201)
            return session
        }
        func put(_ session: String, _ token: String, _ sequence: Int, _ batch: TelemetryBatch, json: Bool = false) async throws -> Answer {
            try await Self.http(
                "PUT", "\(telemetry.url)/v1/sessions/\(session)/batches/\(sequence)", token: token,
                contentType: json ? "application/json" : TelemetryBatch.binaryMediaType, body: json ? batch.encodeJSON() : batch.encodeBinary()
            )
        }

        // 1. The two-minute session.
        let squats = SyntheticSquats(lasting: 120)
        let frames = squats.frames(startingAt: 3_000)
        let batches = SyntheticSquats.batches(of: frames, size: 30).map { TelemetryBatch(frames: $0) }
        let session = try await startSession()
        var order = Array(batches.indices)
        order.swapAt(10, 11)
        for sequence in order {
            if sequence == 20 {
                try Self.dropMidBody(port: telemetry.port, path: "/v1/sessions/\(session.id)/batches/20", token: session.token, body: batches[20].encodeBinary())
            }
            let answer = try await put(session.id, session.token, sequence, batches[sequence], json: sequence % 3 == 0)
            #expect(answer.status == 201, "batch \(sequence): \(String(decoding: answer.body, as: UTF8.self))")
            if sequence == 30 {
                let again = try await put(session.id, session.token, 30, batches[30])
                #expect(again.status == 200 && again.json()["duplicate"] as? Bool == true)
            }
        }
        let finished = try await Self.http("POST", "\(telemetry.url)/v1/sessions/\(session.id)/finish", token: session.token)
        #expect(finished.status == 200 && finished.json()["state"] as? String == "delivered", "\(String(decoding: finished.body, as: UTF8.self))")
        #expect(finished.json()["reps"] as? Int == squats.repetitions)

        let mine = try await Self.http("GET", "\(core.url)/v1/telemetry/sessions/\(session.id)", token: patientToken)
        #expect(mine.status == 200)
        let pose = mine.json()["pose"] as? [String: Any]
        #expect(pose?["rep_count"] as? Int == squats.repetitions && (pose?["reps"] as? [Any])?.count == squats.repetitions)
        #expect(mine.json()["patient_id"] as? String == session.patient)
        let specialist = try await Self.http("GET", "\(core.url)/v1/telemetry/sessions/\(session.id)", token: specialistToken)
        #expect(specialist.status == 200)
        let other = try await Self.http("GET", "\(core.url)/v1/telemetry/sessions/\(session.id)", token: otherToken)
        #expect(other.status == 404)
        let otherList = try await Self.http("GET", "\(core.url)/v1/telemetry/sessions", token: otherToken)
        #expect(otherList.status == 200 && !String(decoding: otherList.body, as: UTF8.self).contains(session.id))

        // What the instance counted, on /metrics.
        let metrics = String(decoding: try await Self.http("GET", "\(telemetry.url)/metrics").body, as: UTF8.self)
        #expect(metrics.contains("restartix_telemetry_batches_total{result=\"stored\"} \(batches.count)"), "\(metrics.prefix(2000))")
        #expect(metrics.contains("restartix_telemetry_batches_total{result=\"duplicate\"} 1"))
        #expect(metrics.contains("restartix_telemetry_frames_total \(frames.count)"))
        #expect(metrics.contains("restartix_telemetry_deliveries_total{result=\"delivered\"} 1"))

        let blob = try #require(try await s3.get("\(session.org)/\(session.id).bin.gz"))
        #expect(try ReplayBlob.decode(Array(blob)).frames == frames)
        #expect(try await s3.head("\(session.org)/\(session.id).bin.gz")?.serverSideEncryption == "AES256")

        // 2. The Core API down while a session finishes, then back.
        let second = try await startSession()
        let short = SyntheticSquats.batches(of: SyntheticSquats(repetitions: 4).frames(startingAt: 9_000), size: 30).map { TelemetryBatch(frames: $0) }
        for (sequence, batch) in short.enumerated() { #expect(try await put(second.id, second.token, sequence, batch).status == 201) }
        await core.stop()
        let pending = try await Self.http("POST", "\(telemetry.url)/v1/sessions/\(second.id)/finish", token: second.token)
        #expect(pending.status == 200 && pending.json()["state"] as? String == "pending")
        #expect(try await s3.head("pending/\(second.org)/\(second.id).json") != nil)
        core = try Server("restartix-core-api", port: ports[0], environment: environment, log: directory.path("core-2.log"))
        try await core.ready()
        var state = ""
        for _ in 0..<150 where state != "delivered" {
            try await Task.sleep(for: .milliseconds(200))
            state = (try await Self.http("GET", "\(telemetry.url)/v1/sessions/\(second.id)", token: second.token)).json()["state"] as? String ?? ""
        }
        #expect(state == "delivered")
        #expect(try await s3.head("pending/\(second.org)/\(second.id).json") == nil)
        let recorded = try await Self.http("GET", "\(core.url)/v1/telemetry/sessions/\(second.id)", token: patientToken)
        let recordedPose = recorded.json()["pose"] as? [String: Any]
        #expect(recorded.status == 200 && recordedPose?["rep_count"] as? Int == 4 && (recordedPose?["reps"] as? [Any])?.count == 4)
        let list = try await Self.http("GET", "\(core.url)/v1/telemetry/sessions?limit=100", token: patientToken)
        let listed = (list.json()["sessions"] as? [[String: Any]] ?? []).filter { $0["session_id"] as? String == second.id }
        #expect(listed.count == 1)
        // 3. The Telemetry API killed (SIGKILL) mid-session: a new process over the same spool
        //    resumes it with every acknowledged batch, and it finishes whole.
        let third = try await startSession()
        let resumable = SyntheticSquats(repetitions: 5)
        let thirdFrames = resumable.frames(startingAt: 20_000)
        let thirdBatches = SyntheticSquats.batches(of: thirdFrames, size: 30).map { TelemetryBatch(frames: $0) }
        let half = thirdBatches.count / 2
        for sequence in 0..<half { #expect(try await put(third.id, third.token, sequence, thirdBatches[sequence]).status == 201) }
        kill(telemetry.child.pid, SIGKILL)
        _ = await telemetry.child.exit()
        telemetry.stopped.withLock { $0 = true }
        telemetry = try Server("restartix-telemetry-api", port: ports[1], environment: telemetryEnvironment, log: directory.path("telemetry-2.log"))
        try await telemetry.ready()
        let resumed = try await Self.http("POST", "\(telemetry.url)/v1/sessions/\(third.id)/start", token: third.token, contentType: "application/json", body: Array(#"{"exercise":"knee_flexion"}"#.utf8))
        #expect(resumed.status == 200 && resumed.json()["next_sequence"] as? Int == half && (resumed.json()["gaps"] as? [Any])?.isEmpty == true)
        for sequence in half..<thirdBatches.count { #expect(try await put(third.id, third.token, sequence, thirdBatches[sequence]).status == 201) }
        let thirdFinished = try await Self.http("POST", "\(telemetry.url)/v1/sessions/\(third.id)/finish", token: third.token)
        #expect(thirdFinished.json()["state"] as? String == "delivered" && thirdFinished.json()["reps"] as? Int == resumable.repetitions)
        let thirdBlob = try #require(try await s3.get("\(third.org)/\(third.id).bin.gz"))
        #expect(try ReplayBlob.decode(Array(thirdBlob)).frames == thirdFrames)

        // The Telemetry API's log: ids, never a token or a coordinate.
        let log = [directory.path("telemetry.log"), directory.path("telemetry-2.log")].compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined()
        #expect(!log.contains(session.token) && !log.contains(second.token) && !log.contains(third.token) && log.contains("Telemetry aggregates delivered"))
        await telemetry.stop()
        await core.stop()
    }
}
