import ArgumentParser
import Foundation
import RestartixKit
import RestartixPlatform
import ServiceSupport

/// `restartix-jobs demo-data`: the demo clinics and their people (``DemoData``) on any database
/// of a development or test deployment, as the Core API makes them itself on the embedded
/// default. For the Postgres path of a newcomer or a test run: after `migrate`, tokens from
/// `dev-token --as demo-owner` name real people. Refused (before connecting) in staging and
/// production; a no-op once they exist.
struct DemoDataJob: Job {
    static let configuration = CommandConfiguration(
        commandName: "demo-data",
        abstract: "Create the demo clinics (Demo Clinic, Other Clinic) and their people where missing (development and test only).",
        discussion: "Connects as the admin role: --database-url, else $DATABASE_URL, else the embedded SQLite file. Run after migrate; safe to run again."
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    struct Report: Codable, Sendable, Equatable {
        /// Whether anything was created (false: they all existed).
        var created: Bool
        /// The people, by handle, whose tokens `dev-token --as` mints.
        var people: [String]
    }

    func perform(_ context: JobContext) async throws -> Report {
        let environment: DeploymentEnvironment
        do { environment = try context.service.deployment() } catch { throw CleanExit.message(error) }
        guard environment == .development || environment == .test else {
            throw CleanExit.message(ConfigurationError(.invalidValue, "the demo clinics are refused in \(environment.rawValue)"))
        }
        let created = try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.demo-data") { admin, _ in
            try await DemoData.seed(admin, environment: environment)
        }
        return Report(created: created, people: DemoData.people.map(\.handle))
    }

    func lines(_ report: Report) -> [String] {
        [
            report.created ? "demo-data: created the demo clinics and their people" : "demo-data: the demo clinics were already there",
            "demo-data: mint a token with: restartix-jobs dev-token --as \(report.people.joined(separator: "|"))",
        ]
    }
}
