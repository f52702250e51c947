import Foundation
import Hummingbird
import Logging

/// `restartix-telemetry-api`: at this stage only its health endpoint; ingest and session
/// finish arrive with the telemetry issues.
@main
struct TelemetryAPI {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        let host = environment["HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        let portText = environment["PORT"] ?? "8081"
        guard let port = Int(portText), (0...65535).contains(port) else {
            FileHandle.standardError.write(Data("restartix-telemetry-api: PORT must be a number from 0 to 65535\n".utf8))
            exit(1)
        }
        let app = buildApplication(host: host, port: port)
        try await app.runService()
    }
}

/// Builds the Telemetry API application.
func buildApplication(host: String, port: Int) -> some ApplicationProtocol {
    let router = Router()
    router.get("health") { _, _ -> Response in
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#))
        )
    }
    return Application(
        router: router,
        configuration: .init(address: .hostname(host, port: port), serverName: "restartix-telemetry-api"),
        logger: Logger(label: "restartix.telemetry-api")
    )
}
