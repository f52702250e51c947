// Ingest throughput of restartix-telemetry-api: pose frames per second accepted and persisted
// (acknowledged only once its spool has them on disk), for the binary and the JSON batch form,
// beside two limits measured in the same run on the same machine:
//
// - the kernels' own frames per second (PoseAnalyzer over the same synthetic session, one core):
//   what finishing a session costs against what ingesting it does;
// - a plain HTTP echo of the same bytes: bare-hummingbird's `PUT /echo`, which reads each body
//   whole and answers a few bytes, as the ingest route answers its receipt — what HTTP and the
//   loopback alone cost, with no token, decoding, checks or disk.
//
// And the server's CPU per 1,000 frames (its user + system time from /proc over the run).
//
//     RESTARTIX_BENCHMARKS=1 swift build -c release
//     RESTARTIX_BENCHMARKS=1 swift run -c release telemetry-ingest-benchmark   # BENCH_SECONDS (8), BENCH_CLIENTS (32)
//
// The servers are this build's release binaries, started here on free loopback ports; the spool
// is a directory under the system's temporary directory (a disk, as in production).
import AsyncHTTPClient
import BenchmarkSupport
import Foundation
import NIOCore
import NIOHTTP1
import RestartixCrypto
import RestartixTelemetry
import Synchronization

Bench.name = "telemetry-ingest-benchmark"
let environment = ProcessInfo.processInfo.environment
let seconds = Int(environment["BENCH_SECONDS"] ?? "") ?? 8
let clients = Int(environment["BENCH_CLIENTS"] ?? "") ?? 32
let framesPerBatch = 30
let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
let secret = "telemetry-ingest-benchmark-secret-0123456789"
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ingest-bench-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: scratch) }

func freePort() -> Int { Int.random(in: 21000..<29000) }

/// Starts one of this build's executables; returns the process.
func start(_ name: String, port: Int, _ extra: [String: String]) throws -> Process {
    let process = Process()
    process.executableURL = binaries.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: process.executableURL!.path) else {
        Bench.fail("\(name) is not built: RESTARTIX_BENCHMARKS=1 swift build -c release")
    }
    process.environment = ["PORT": "\(port)", "HOST": "127.0.0.1", "PATH": environment["PATH"] ?? "", "LOG_LEVEL": "error"].merging(extra) { $1 }
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

func request(_ method: HTTPMethod, _ url: String, token: String? = nil, type: String? = nil, body: [UInt8]? = nil) async throws -> UInt {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let type { request.headers.add(name: "Content-Type", value: type) }
    if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    _ = try await response.body.collect(upTo: 1 << 20)
    return response.status.code
}

func waitReady(_ url: String) async throws {
    for _ in 0..<300 {
        if let status = try? await request(.GET, url), status == 200 { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Bench.fail("\(url) did not answer")
}

/// The process's user + system CPU seconds so far (/proc/<pid>/stat, clock ticks).
func cpuSeconds(of pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

final class Counter: Sendable {
    let frames = Atomic<Int>(0)
}

// The frames: a synthetic squat session, cut into batches of a second.
let session = SyntheticSquats(repetitions: 40).frames()
let batches = SyntheticSquats.batches(of: session, size: framesPerBatch).map { TelemetryBatch(frames: $0) }
let binaryBodies = batches.map { $0.encodeBinary() }
let jsonBodies = batches.map { $0.encodeJSON() }

// Limit 1: the kernels.
var analyzer = PoseAnalyzer()
let kernelRuns = 20
let kernelStart = ContinuousClock.now
for _ in 0..<kernelRuns { _ = analyzer.analyze(session, profile: .kneeFlexion) }
let kernelElapsed = ContinuousClock.now - kernelStart
let kernelFramesPerSecond = Double(kernelRuns * session.count) / (Double(kernelElapsed.components.seconds) + Double(kernelElapsed.components.attoseconds) / 1e18)

// The servers.
let ingestPort = freePort(), echoPort = freePort() + 1
let ingest = try start("restartix-telemetry-api", port: ingestPort, [
    "APP_ENV": "test", "TELEMETRY_SESSION_TOKEN_SECRET": secret, "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": secret,
    "CORE_API_URL": "http://127.0.0.1:1", "TELEMETRY_DIRECTORY": scratch.appendingPathComponent("telemetry").path,
    "TELEMETRY_SPOOL_DIRECTORY": scratch.appendingPathComponent("spool").path, "RESTARTIX_SQLITE_PATH": scratch.appendingPathComponent("data/x.sqlite").path,
    "TELEMETRY_MAX_CONCURRENT_BATCHES": "1000", "TELEMETRY_MAX_OPEN_SESSIONS": "1000000",
])
let echo = try start("bare-hummingbird", port: echoPort, [:])
defer {
    ingest.terminate()
    echo.terminate()
}
try await waitReady("http://127.0.0.1:\(ingestPort)/ready")
try await waitReady("http://127.0.0.1:\(echoPort)/health")
let tokens = try SessionTokens(secrets: [secret])

/// `clients` senders for `seconds`, each sending `bodies` in order as one session's batches
/// (a new session when they run out, so no two batches of a session overlap); frames per
/// second acknowledged, and the server's CPU seconds per 1,000 frames.
func run(_ name: String, ingesting: Bool, type: String, bodies: [[UInt8]], pid: Int32) async throws -> (framesPerSecond: Double, cpuPerThousand: Double) {
    let counter = Counter()
    let cpuBefore = cpuSeconds(of: pid)
    let started = ContinuousClock.now
    let deadline = started + .seconds(seconds)
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<clients {
            group.addTask {
                while ContinuousClock.now < deadline {
                    let id = UUID()
                    let token = try tokens.issue(session: id, organization: UUID(), patient: UUID())
                    let base = "http://127.0.0.1:\(ingestPort)/v1/sessions/\(id.uuidString.lowercased())"
                    if ingesting {
                        guard try await request(.POST, "\(base)/start", token: token, type: "application/json", body: Array(#"{"exercise":"knee_flexion"}"#.utf8)) == 201 else {
                            Bench.fail("\(name): a session did not start")
                        }
                    }
                    for (sequence, body) in bodies.enumerated() where ContinuousClock.now < deadline {
                        let url = ingesting ? "\(base)/batches/\(sequence)" : "http://127.0.0.1:\(echoPort)/echo"
                        let status = try await request(.PUT, url, token: token, type: type, body: body)
                        guard status == 201 else { Bench.fail("\(name): HTTP \(status)") }
                        counter.frames.add(framesPerBatch, ordering: .relaxed)
                    }
                }
            }
        }
        try await group.waitForAll()
    }
    let elapsed = ContinuousClock.now - started
    let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let frames = counter.frames.load(ordering: .relaxed)
    return (Double(frames) / wall, (cpuSeconds(of: pid) - cpuBefore) / Double(frames) * 1000)
}

let echoBinary = try await run("echo binary", ingesting: false, type: "application/octet-stream", bodies: binaryBodies, pid: echo.processIdentifier)
let ingestBinary = try await run("ingest binary", ingesting: true, type: TelemetryBatch.binaryMediaType, bodies: binaryBodies, pid: ingest.processIdentifier)
let echoJSON = try await run("echo JSON", ingesting: false, type: "application/json", bodies: jsonBodies, pid: echo.processIdentifier)
let ingestJSON = try await run("ingest JSON", ingesting: true, type: "application/json", bodies: jsonBodies, pid: ingest.processIdentifier)

func f(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }
Bench.say("telemetry ingest, \(clients) sessions, \(seconds) s each, batches of \(framesPerBatch) frames (binary \(binaryBodies[0].count) B, JSON \(jsonBodies[0].count) B)")
Bench.say("| form | ingest frames/s | echo frames/s (same bytes) | ingest/echo | kernel frames/s | kernel/ingest | server CPU ms per 1,000 frames (ingest / echo) |")
Bench.say("|---|---:|---:|---:|---:|---:|---:|")
for (form, ingestRun, echoRun) in [("binary", ingestBinary, echoBinary), ("JSON", ingestJSON, echoJSON)] {
    Bench.say("| \(form) | \(f(ingestRun.framesPerSecond)) | \(f(echoRun.framesPerSecond)) | \(f(ingestRun.framesPerSecond / echoRun.framesPerSecond, 3)) | \(f(kernelFramesPerSecond)) | \(f(kernelFramesPerSecond / ingestRun.framesPerSecond, 1)) | \(f(ingestRun.cpuPerThousand * 1000, 2)) / \(f(echoRun.cpuPerThousand * 1000, 2)) |")
}
