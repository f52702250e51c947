import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceSupport

/// `restartix-telemetry-api`: at this stage only its health endpoint; ingest and session
/// finish arrive with the telemetry issues.
@main
struct TelemetryAPI {
    static func main() async throws {
        // The executables' one configuration layer and logging bootstrap (ServiceSupport).
        let service = ServiceEnvironment()
        let host: String, port: Int, edge: EdgeOptions, drain: DrainPolicy
        do {
            (host, port) = try service.listenAddress(defaultPort: 8081)
            edge = try service.edgeOptions()
            drain = try service.drainPolicy()
            LogBootstrap.bootstrap(format: try service.logFormat(for: try service.deployment()), level: try service.logLevel())
        } catch {
            exitWithError(.telemetryAPI, error)
        }
        let app = buildApplication(host: host, port: port, metrics: MetricsBootstrap.bootstrap(), edge: edge)
        do { try await runUntilSignalled(app, policy: drain, logger: Logger(label: "restartix.telemetry-api")) } catch { exitWithError(.telemetryAPI, error) }
    }
}

/// Builds the Telemetry API application.
func buildApplication(host: String, port: Int, metrics: PrometheusCollectorRegistry? = nil, edge: EdgeOptions = EdgeOptions()) -> some ApplicationProtocol {
    let router = Router(context: ServiceRequestContext.self, options: .autoGenerateHeadEndpoints)
    let routes = addServiceEdge(to: router, options: edge)
    if let metrics { addMetricsRoute(to: router, registry: metrics) }
    router.get("health") { _, _ -> Response in
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#))
        )
    }
    finishServiceEdge(router, slot: routes)
    return Application(
        router: router,
        configuration: .init(address: .hostname(host, port: port), serverName: "restartix-telemetry-api"),
        logger: Logger(label: "restartix.telemetry-api")
    )
}
