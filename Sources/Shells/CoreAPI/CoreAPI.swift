import Hummingbird
import Logging

@main
struct CoreAPI {
    static func main() async throws {
        let configuration: CoreAPIConfiguration
        do {
            configuration = try CoreAPIConfiguration(environment: ProcessEnvironment.current)
        } catch {
            ProcessEnvironment.fail("restartix-core-api: \(error)")
        }
        do {
            let app = try await buildApplication(configuration: configuration)
            try await app.runService()
        } catch {
            // Errors here name tables, roles and hosts, never passwords or data.
            ProcessEnvironment.fail("restartix-core-api: \(error)")
        }
    }
}
