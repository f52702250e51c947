import Foundation
import Hummingbird
import Logging
import ServiceSupport

/// `restartix-telemetry-api`: the patients' browsers stream exercise sessions here (pose
/// frames, player events) with the session token the Core API issued; finished sessions go
/// through the kernels, their aggregates to the Core API and their replay blob to the telemetry
/// bucket. It never touches Postgres.
@main
struct TelemetryAPI {
    static func main() async throws {
        let configuration: TelemetryAPIConfiguration
        do {
            configuration = try TelemetryAPIConfiguration(ServiceEnvironment())
        } catch {
            exitWithError(.telemetryAPI, error)
        }
        LogBootstrap.bootstrap(format: configuration.logFormat, level: configuration.logLevel)
        let metrics = MetricsBootstrap.bootstrap()
        let logger = Logger(label: "restartix.telemetry-api")
        do {
            let app = try await buildApplication(configuration: configuration, metrics: metrics, logger: logger)
            if configuration.bucket == nil {
                logger.notice("Storing replay blobs and pending aggregates in a local directory; set TELEMETRY_S3_BUCKET for S3", metadata: [
                    "telemetry.directory": "\(configuration.directory)", "telemetry.core_api": "\(configuration.coreAPIURL.absoluteString)",
                ])
            }
            try await runUntilSignalled(app, policy: configuration.drain, logger: logger)
        } catch {
            exitWithError(.telemetryAPI, error)
        }
    }
}
