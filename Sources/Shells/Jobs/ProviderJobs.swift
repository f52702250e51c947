import ArgumentParser
import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import RestartixProviders

/// Runs `body` with a plain pool on the admin role's URL (`--database-url`, else `DATABASE_URL`,
/// else the embedded SQLite file): for platform tables outside row-level security.
func withAdminPool<T>(_ databaseURL: String?, label: String, _ body: (Database, Logger) async throws -> T) async throws -> T {
    let logger = makeLogger(label)
    return try await opened({ Database(configuration: try adminConfiguration(databaseURL), logger: logger) }, shutdown: { await $0.shutdown() }) {
        try await body($0, logger)
    }
}

struct CheckProviders: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-providers",
        abstract: "Probe every Cat A provider row and record its status (N failures in a row: down; one success: active).",
        discussion: "Exits non-zero only for its own failure (database, keyring), never for a provider's. Keyring from ENCRYPTION_KEYS (or _SECRET_ID, _FILE, _KMS). Admin role: --database-url, else $DATABASE_URL."
    )

    @OptionGroup var admin: AdminDatabaseOptions

    @Option(help: "Seconds each probe may take.")
    var timeout: Int = 5

    @Option(help: "Failures in a row before a provider is marked down.")
    var failuresToDown: Int = 3

    @Option(name: .customLong("capability"), help: "Check only this capability (repeatable). Default: every row.")
    var capabilities: [String] = []

    func validate() throws {
        guard (1...120).contains(timeout) else { throw ValidationError("--timeout must be between 1 and 120 seconds") }
        guard (1...100).contains(failuresToDown) else { throw ValidationError("--failures-to-down must be between 1 and 100") }
        for name in capabilities {
            guard (try? ProviderCapability(name)) != nil else { throw ValidationError("--capability \(name.prefix(40)) is not a capability name") }
        }
    }

    func run() async throws {
        let keyring = try await loadKeyring()
        let outcomes = try await withAdminPool(admin.databaseURL, label: "restartix.jobs.check-providers") { database, logger in
            var options = ProviderHealthCheck.Options()
            options.timeout = .seconds(timeout)
            options.failuresToDown = failuresToDown
            let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: keyring, logger: logger))
            let only = capabilities.isEmpty ? nil : Set(capabilities.compactMap { try? ProviderCapability($0) })
            return try await ProviderHealthCheck(registry: registry, options: options, logger: logger).run(capabilities: only)
        }
        for outcome in outcomes {
            let scope = outcome.organizationID.map { "organization \($0.lowercasedString)" } ?? "platform"
            let head = "check-providers: \(outcome.capability) (\(scope)) \(outcome.kind):"
            if outcome.skipped {
                say("\(head) skipped (no check for this kind)")
            } else if let failure = outcome.failure {
                say("\(head) failed: \(failure) -> \(outcome.status.rawValue) (\(outcome.consecutiveFailures) in a row)")
            } else {
                say("\(head) ok -> \(outcome.status.rawValue)")
            }
        }
        let failing = outcomes.filter { $0.failure != nil }.count
        say("check-providers: done, \(outcomes.count) rows, \(failing) failing")
    }
}
