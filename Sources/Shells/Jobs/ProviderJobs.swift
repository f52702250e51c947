import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import PlatformSupport
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixTenancy
import ServiceSupport

/// Runs `body` with a plain pool on the admin role's URL (`--database-url`, else `DATABASE_URL`,
/// else the embedded SQLite file): for platform tables outside row-level security.
func withAdminPool<T>(_ databaseURL: String?, _ context: JobContext, label: String, _ body: (Database, Logger) async throws -> T) async throws -> T {
    let logger = context.makeLogger(label)
    return try await opened({ Database(configuration: try adminConfiguration(databaseURL, context.service), logger: logger) }, shutdown: { await $0.shutdown() }) {
        try await body($0, logger)
    }
}

struct CheckProviders: Job {
    static let configuration = CommandConfiguration(
        commandName: "check-providers",
        abstract: "Probe every Cat A provider row and record its status (N failures in a row: down; one success: active).",
        discussion: "Exits non-zero only for its own failure (database, keyring), never for a provider's. Keyring from ENCRYPTION_KEYS (or _SECRET_ID, _FILE, _KMS). Admin role: --database-url, else $DATABASE_URL."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

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

    struct Report: Codable, Sendable, Equatable {
        struct Outcome: Codable, Sendable, Equatable {
            var capability: String
            var organizationID: UUID?
            var kind: String
            /// Not checked: no check for this kind, or another run recorded a later check.
            var skipped: Bool
            /// Why the check failed (a reason, never a body or a key); nil when it passed.
            var failure: String?
            var status: String
            var consecutiveFailures: Int
        }
        var outcomes: [Outcome]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let keyring = try await loadKeyring(context.service)
        let outcomes = try await withAdminPool(admin.databaseURL, context, label: "restartix.jobs.check-providers") { database, logger in
            var options = ProviderHealthCheck.Options()
            options.timeout = .seconds(timeout)
            options.failuresToDown = failuresToDown
            options.defaultAWSCredentials = try context.service.awsCredentials()
            let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: keyring, logger: logger))
            let only = capabilities.isEmpty ? nil : Set(capabilities.compactMap { try? ProviderCapability($0) })
            // Probes follow no redirect: a key is never sent to another host, and a 3xx fails.
            var http = HTTPClient.Configuration()
            http.redirectConfiguration = .disallow
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
            do {
                let outcomes = try await ProviderHealthCheck(registry: registry, options: options, httpClient: client, logger: logger).run(capabilities: only)
                try? await client.shutdown()
                return outcomes
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
        return Report(outcomes: outcomes.map {
            Report.Outcome(
                capability: $0.capability, organizationID: $0.organizationID, kind: $0.kind, skipped: $0.skipped, failure: $0.failure,
                status: $0.status.rawValue, consecutiveFailures: $0.consecutiveFailures
            )
        })
    }

    func lines(_ report: Report) -> [String] {
        var lines: [String] = []
        for outcome in report.outcomes {
            let scope = outcome.organizationID.map { "organization \($0.lowercasedString)" } ?? "platform"
            let head = "check-providers: \(outcome.capability) (\(scope)) \(outcome.kind):"
            if outcome.skipped {
                lines.append("\(head) skipped (no check for this kind, or another run recorded a later check)")
            } else if let failure = outcome.failure {
                lines.append("\(head) failed: \(failure) -> \(outcome.status) (\(outcome.consecutiveFailures) in a row)")
            } else {
                lines.append("\(head) ok -> \(outcome.status)")
            }
        }
        lines.append("check-providers: done, \(report.outcomes.count) rows, \(report.outcomes.filter { $0.failure != nil }.count) failing")
        return lines
    }
}

struct UsageQuotaReset: Job {
    static let configuration = CommandConfiguration(
        commandName: "usage-quota-reset",
        abstract: "Advance every usage quota whose period ended to the current month, its units at zero (each once, however many runs).",
        discussion: "Admin role: --database-url, else $DATABASE_URL. One audited transaction per run."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    struct Report: Codable, Sendable, Equatable {
        /// Quotas this run reset.
        var reset: Int
        /// Quotas another run had reset first.
        var alreadyReset: Int
    }

    func perform(_ context: JobContext) async throws -> Report {
        let report = try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.usage-quota-reset") { admin, _ in
            try await UsageJobs.resetQuotas(admin)
        }
        return Report(reset: report.reset, alreadyReset: report.alreadyReset)
    }

    func lines(_ report: Report) -> [String] {
        ["usage-quota-reset: done, \(report.reset) quotas reset, \(report.alreadyReset) already reset by another run"]
    }
}

struct UsageSummaryRollup: Job {
    static let configuration = CommandConfiguration(
        commandName: "usage-summary-rollup",
        abstract: "Close last month's usage_summaries row per organization and capability (idempotent; a closed row is never rewritten).",
        discussion: "Admin role: --database-url, else $DATABASE_URL. Months are calendar months in UTC."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "The month to close, YYYY-MM (default: the previous month).")
    var month: String?

    func validate() throws {
        if let month, Self.parse(month) == nil { throw ValidationError("--month must be YYYY-MM") }
    }

    /// The first instant of the month `YYYY-MM` names (UTC).
    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: "-")
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let year = Int(parts[0]), let month = Int(parts[1]),
              (2000...2999).contains(year)
        else { return nil }
        return UsagePeriods.month(year: year, month: month)?.start
    }

    struct Report: Codable, Sendable, Equatable {
        /// The month closed: its first instant and the next month's (UTC).
        var periodStart: Date
        var periodEnd: Date
        /// Summaries this run closed.
        var closed: Int
        /// Summaries another run had closed first.
        var alreadyClosed: Int
    }

    func perform(_ context: JobContext) async throws -> Report {
        let report = try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.usage-summary-rollup") { admin, _ in
            try await UsageJobs.rollUp(admin, month: month.flatMap(Self.parse))
        }
        return Report(periodStart: report.periodStart, periodEnd: report.periodEnd, closed: report.closed, alreadyClosed: report.alreadyClosed)
    }

    func lines(_ report: Report) -> [String] {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        return ["usage-summary-rollup: \(formatter.string(from: report.periodStart)) to \(formatter.string(from: report.periodEnd)): \(report.closed) summaries closed, \(report.alreadyClosed) already closed"]
    }
}

struct ProviderReseed: Job {
    static let configuration = CommandConfiguration(
        commandName: "provider-reseed",
        abstract: "Emergency re-seed: replace a capability's platform default row with its seed variables (SES_FROM_ADDRESS, CLERK_SECRET_KEY...), audited.",
        discussion: """
            For a platform row whose credentials are lost (a keyring key gone) or wrong and cannot be fixed through the \
            admin PATCH. The seed is built and validated from the same variables the Core API seeds from, before anything \
            is written; an existing row is replaced as a rotation (provider.rotate audit row, version + 1, sealed under the \
            primary key, even when its old credentials no longer open), a missing one inserted. Instances read the new \
            row within their resolver's TTL. Keyring from ENCRYPTION_KEYS (or _SECRET_ID, _FILE, _KMS). Admin role: \
            --database-url, else $DATABASE_URL.
            """
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "The capability to re-seed (email, objectstore, auth, video, ai).")
    var capability: String

    func validate() throws {
        guard (try? ProviderCapability(capability)) != nil else { throw ValidationError("--capability \(capability.prefix(40)) is not a capability name") }
    }

    struct Report: Codable, Sendable, Equatable {
        var capability: String
        var kind: String
        /// `replaced` (the row existed) or `inserted`.
        var action: String
        var version: Int
    }

    func perform(_ context: JobContext) async throws -> Report {
        let wanted = try ProviderCapability(capability)
        let seeds: [ProviderSeed]
        do { seeds = try context.service.providerSeeds() } catch { throw CleanExit.message(error) }
        guard let seed = seeds.first(where: { $0.capability == wanted }) else {
            throw ValidationFailure(description: "there is no seed for \(wanted): set its variables (Documentation/RestartixProviders.md, \"Bootstrap\"); nothing was changed")
        }
        let keyring = try await loadKeyring(context.service)
        return try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.provider-reseed") { adminDatabase, logger in
            try await opened({ Database(configuration: try adminConfiguration(admin.databaseURL, context.service), logger: logger) }, shutdown: { await $0.shutdown() }) { pool in
                let registry = ProviderRegistry(database: pool, cipher: ColumnCipher(keyring: keyring, logger: logger))
                do {
                    let record = try await registry.rotate(
                        wanted, organization: nil, kind: seed.kind, config: seed.config, secrets: seed.secrets, actor: .system("provider-reseed"), admin: adminDatabase
                    )
                    return Report(capability: wanted.name, kind: seed.kind.name, action: "replaced", version: record.version)
                } catch let error as ProviderError where error.code == .notFound {
                    try await registry.insertIfAbsent(wanted, kind: seed.kind, config: seed.config, secrets: seed.secrets)
                    return Report(capability: wanted.name, kind: seed.kind.name, action: "inserted", version: 1)
                }
            }
        }
    }

    func lines(_ report: Report) -> [String] {
        ["provider-reseed: \(report.capability) (\(report.kind)) \(report.action) from its seed, now version \(report.version); instances read it within their resolver's TTL"]
    }
}
