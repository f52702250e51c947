import ArgumentParser
import Foundation
import PlatformSupport
import RestartixCrypto
import RestartixKit
import ServiceSupport

/// `restartix-jobs service-token`: a service-account token (Cat F) signed with
/// `TELEMETRY_INTERNAL_SVC_ACCT_TOKEN`, for a deploy check or a runbook
/// (`curl -H "Authorization: Bearer $(restartix-jobs service-token)" …/internal/v1/whoami`).
/// Short-lived by default (5 minutes, at most a day): these tokens cannot be revoked one by
/// one. The token alone is printed.
struct ServiceToken: Job {
    static let configuration = CommandConfiguration(
        commandName: "service-token",
        abstract: "Print a service-account token signed with TELEMETRY_INTERNAL_SVC_ACCT_TOKEN (default: service jobs, audience restartix-core-api, 300 s).",
        discussion: "For deploy checks and runbooks: the services mint their own. A token cannot be revoked before it expires except by rotating the secret, so keep lifetimes short."
    )

    @OptionGroup var output: OutputOptions

    @Option(help: "The calling service (the token's sub).")
    var service = "jobs"

    @Option(help: "The service the token is for.")
    var audience = "restartix-core-api"

    @Option(name: .customLong("scope"), help: "A scope to grant (repeat for several).")
    var scopes: [String] = []

    @Option(help: "Seconds the token is valid (1 to 86400).")
    var lifetime: Int = 300

    func validate() throws {
        guard (1...86_400).contains(lifetime) else { throw ValidationError("--lifetime must be between 1 and 86400 seconds") }
    }

    struct Report: Codable, Sendable, Equatable {
        var token: String
        var service: String
        var audience: String
        var scopes: [String]
        var expiresAt: Date
    }

    func perform(_ context: JobContext) async throws -> Report {
        do {
            guard let secrets = try context.service.tokenSecrets(ServiceKeys.serviceAccountSecret) else {
                throw ConfigurationError(.missing, "\(ServiceKeys.serviceAccountSecret) is not set")
            }
            let tokens = try ServiceAccountTokens(secrets: secrets)
            let token = try tokens.issue(service: service, audience: audience, scopes: Set(scopes), lifetime: .seconds(lifetime))
            return Report(token: token, service: service, audience: audience, scopes: scopes.sorted(), expiresAt: Date().addingTimeInterval(Double(lifetime)))
        } catch {
            throw CleanExit.message(error)
        }
    }

    func lines(_ report: Report) -> [String] { [report.token] }
}
