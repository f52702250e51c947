import ArgumentParser
import Foundation
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// `restartix-jobs dev-token`: a local development token for a demo person (`--as demo-owner`)
/// or any user and clinic (`--user`, `--organization`), signed with the secret the Core API uses
/// on the embedded default (`RESTARTIX_DEV_TOKEN_SECRET`, else the `dev-token-secret` file
/// beside the SQLite file). Development and test only; the token alone is printed, so
/// `TOKEN=$(restartix-jobs dev-token --as demo-owner)` works.
struct DevToken: Job {
    static let configuration = CommandConfiguration(
        commandName: "dev-token",
        abstract: "Print a local development token (development and test only): --as demo-owner|demo-specialist|demo-patient|other-owner, or --user and --organization.",
        discussion: "Signed with RESTARTIX_DEV_TOKEN_SECRET, else the embedded default's dev-token-secret (RESTARTIX_SQLITE_PATH's folder). The Core API must accept the same secret."
    )

    @OptionGroup var output: OutputOptions

    @Option(name: .customLong("as"), help: "A demo person: \(DemoData.people.map(\.handle).joined(separator: ", ")).")
    var handle: String?

    @Option(help: "A user id (with --organization).")
    var user: String?

    @Option(help: "A clinic id (with --user).")
    var organization: String?

    @Option(help: "Seconds the token is valid (1 to 86400).")
    var lifetime: Int = 3600

    func validate() throws {
        guard (1...86_400).contains(lifetime) else { throw ValidationError("--lifetime must be between 1 and 86400 seconds") }
        switch (handle, user, organization) {
        case (let handle?, nil, nil):
            guard DemoData.person(handle) != nil else {
                throw ValidationError("--as must be one of \(DemoData.people.map(\.handle).joined(separator: ", "))")
            }
        case (nil, let user?, let organization?):
            guard UUID(uuidString: user) != nil, UUID(uuidString: organization) != nil else { throw ValidationError("--user and --organization are UUIDs") }
        default:
            throw ValidationError("give --as, or --user with --organization")
        }
    }

    struct Report: Codable, Sendable, Equatable {
        var token: String
        var userID: UUID
        var organizationID: UUID
        var expiresAt: Date
    }

    func perform(_ context: JobContext) async throws -> Report {
        let service = context.service
        let (userID, organizationID): (UUID, UUID)
        if let handle, let person = DemoData.person(handle) {
            (userID, organizationID) = (person.userID, person.organizationID)
        } else if let user = user.flatMap(UUID.init(uuidString:)), let organization = organization.flatMap(UUID.init(uuidString:)) {
            (userID, organizationID) = (user, organization)
        } else {
            throw ValidationError("give --as, or --user with --organization")
        }
        do {
            let environment = try service.deployment()
            // Refused before anything is read or written: no secret file outside development.
            guard environment == .development || environment == .test else {
                throw ConfigurationError(.invalidValue, "development tokens are refused in \(environment.rawValue); configure Clerk")
            }
            let secret = try service.string("RESTARTIX_DEV_TOKEN_SECRET") ?? PlatformBoot.localDevTokenSecret(
                in: URL(fileURLWithPath: service.sqlitePath()).deletingLastPathComponent()
            )
            let issuer = try await LocalDevIssuer(environment: environment, secret: secret)
            let token = try await issuer.issue(user: userID, organization: organizationID, lifetime: .seconds(lifetime))
            return Report(token: token, userID: userID, organizationID: organizationID, expiresAt: Date().addingTimeInterval(Double(lifetime)))
        } catch {
            throw CleanExit.message(error)
        }
    }

    func lines(_ report: Report) -> [String] { [report.token] }
}
