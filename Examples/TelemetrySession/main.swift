// A patient's exercise session from start to metrics, as a browser would drive it: the Core API
// starts the session and hands out its token, the Telemetry API takes the pose frames in
// half-second batches and finishes the session, and the Core API then has its metrics.
//
//     swift run TelemetrySession --token "$(swift run -q restartix-jobs dev-token --as demo-patient)"
//         [--core http://localhost:8080] [--telemetry http://localhost:8081] [--seconds 120]
//
// The frames are a synthetic squat session (RestartixTelemetry's SyntheticSquats: 39
// repetitions in two minutes), sent in the compact binary form (TelemetryBatch). Run against
// the embedded default of both APIs: README.md, "An exercise session, end to end".

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RestartixTelemetry

struct Failure: Error, CustomStringConvertible {
    let description: String
}

func option(_ name: String, default fallback: String? = nil) -> String? {
    let arguments = CommandLine.arguments
    if let index = arguments.firstIndex(of: "--\(name)"), index + 1 < arguments.count { return arguments[index + 1] }
    return fallback
}

/// One request; the answer's status and body.
func call(_ method: HTTPMethod, _ url: String, token: String, type: String? = nil, body: [UInt8]? = nil) async throws -> (status: UInt, body: String) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    if let type { request.headers.add(name: "Content-Type", value: type) }
    if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    let collected = try await response.body.collect(upTo: 4 << 20)
    return (response.status.code, String(buffer: collected))
}

/// A field of a flat JSON answer.
func field(_ name: String, in body: String) -> String? {
    guard let data = body.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
    return object[name].map { "\($0)" }
}

func expect(_ answer: (status: UInt, body: String), _ statuses: Set<UInt>, _ what: String) throws {
    guard statuses.contains(answer.status) else { throw Failure(description: "\(what): HTTP \(answer.status) \(answer.body)") }
}

guard let patientToken = option("token") ?? ProcessInfo.processInfo.environment["PATIENT_TOKEN"] else {
    print("usage: TelemetrySession --token <a patient's token> [--core URL] [--telemetry URL] [--seconds 120]")
    exit(2)
}
let core = option("core", default: "http://localhost:8080")!
let telemetry = option("telemetry", default: "http://localhost:8081")!
let seconds = Double(option("seconds", default: "120")!) ?? 120

do {
    // 1. The Core API starts the session: its id and the token the Telemetry API takes.
    let started = try await call(.POST, "\(core)/v1/telemetry/session-tokens", token: patientToken)
    try expect(started, [201], "starting the session at the Core API")
    guard let session = field("session_id", in: started.body), let sessionToken = field("token", in: started.body) else {
        throw Failure(description: "the Core API's answer has no session_id or token")
    }
    let base = "\(telemetry)/v1/sessions/\(session)"
    try expect(try await call(.POST, "\(base)/start", token: sessionToken, type: "application/json", body: Array(#"{"exercise":"knee_flexion"}"#.utf8)), [201], "starting the session at the Telemetry API")

    // 2. The frames, half a second (15 frames) a batch, each with its sequence number.
    let squats = SyntheticSquats(lasting: seconds)
    let batches = SyntheticSquats.batches(of: squats.frames(), size: 15)
    for (sequence, frames) in batches.enumerated() {
        let answer = try await call(.PUT, "\(base)/batches/\(sequence)", token: sessionToken, type: TelemetryBatch.binaryMediaType, body: TelemetryBatch(frames: frames).encodeBinary())
        try expect(answer, [200, 201], "batch \(sequence)")
    }
    print("streamed \(batches.count) batches (\(batches.reduce(0) { $0 + $1.count }) frames) of \(squats.repetitions) synthetic squats")

    // 3. Finish: the kernels run, the aggregates go to the Core API, the replay blob is stored.
    let finished = try await call(.POST, "\(base)/finish", token: sessionToken)
    try expect(finished, [200], "finishing")
    print(finished.body)

    // 4. The metrics, as the patient reads them from the Core API.
    let metrics = try await call(.GET, "\(core)/v1/telemetry/sessions/\(session)", token: patientToken)
    try expect(metrics, [200], "reading the metrics")
    print(metrics.body.prefix(400))
} catch {
    print("TelemetrySession: \(error)")
    exit(1)
}
