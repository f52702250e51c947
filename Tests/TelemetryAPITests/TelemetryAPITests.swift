import Foundation
import Hummingbird
import HummingbirdTesting
import ServiceSupport
@testable import TelemetryAPI
import Testing

/// The Telemetry API's shell: the services' shared edge (request ids, problem+json, 405).
@Suite("Telemetry API", .timeLimit(.minutes(3)))
struct TelemetryAPITests {
    @Test("health with a request id; 405 with Allow for another method; 404 as problem+json")
    func edge() async throws {
        let app = buildApplication(host: "127.0.0.1", port: 0)
        try await app.test(.router) { client in
            try await client.execute(uri: "/health", method: .get, headers: [.requestID: "probe-1"]) { response in
                #expect(response.status == .ok && String(buffer: response.body) == #"{"status":"ok"}"#)
                #expect(response.headers[.requestID] == "probe-1")
            }
            try await client.execute(uri: "/health", method: .put) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, HEAD")
                #expect(response.headers[.contentType] == Problem.mediaType)
            }
            try await client.execute(uri: "/v1/sessions", method: .get) { response in
                #expect(response.status == .notFound)
                let problem = try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8))
                #expect(problem?.code == "http.notFound" && problem?.requestId == response.headers[.requestID])
            }
        }
    }
}
