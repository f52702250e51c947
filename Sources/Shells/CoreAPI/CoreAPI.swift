import Hummingbird
import Logging
import ServiceSupport

@main
struct CoreAPI {
    static func main() async throws {
        let configuration: CoreAPIConfiguration
        do {
            configuration = try CoreAPIConfiguration(ServiceEnvironment())
        } catch {
            exitWithError(.coreAPI, error)
        }
        LogBootstrap.bootstrap(format: configuration.logFormat, level: configuration.logLevel)
        let metrics = MetricsBootstrap.bootstrap()
        do {
            let app = try await buildApplication(configuration: configuration, metrics: metrics)
            try await runUntilSignalled(app, policy: configuration.drain, logger: Logger(label: "restartix.core-api"))
        } catch {
            // Errors here name tables, roles and hosts, never passwords or data.
            exitWithError(.coreAPI, error)
        }
    }
}
