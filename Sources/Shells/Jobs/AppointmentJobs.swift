import ArgumentParser
import Foundation
import Logging
import PlatformSupport
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import ServiceSupport

struct AppointmentFollowupsJob: Job {
    static let configuration = CommandConfiguration(
        commandName: "appointment-followups",
        abstract: "Send the confirmation e-mails and make the video rooms that bookings still owe (due ones only, with backoff; each once, safe to run twice at once).",
        discussion: """
            Run it every minute or few: a booking whose provider was down at the time is done by the next run after its \
            retry time. Keyring from ENCRYPTION_KEYS (or _SECRET_ID, _FILE, _KMS; on the embedded default, the local \
            keyring beside the SQLite file). Admin role: --database-url, else $DATABASE_URL. SES rows without keys use \
            AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the task role. Exits non-zero only for its own failures, never a provider's.
            """
    )

    @OptionGroup var admin: AdminDatabaseOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Follow-ups tried in this run, at most (1-10000); the rest wait for the next run.")
    var limit: Int = 200

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
    }

    struct Report: Codable, Sendable, Equatable {
        struct Outcome: Codable, Sendable, Equatable {
            var followupID: UUID
            var organizationID: UUID
            var appointmentID: UUID
            var kind: String
            /// `done`, `skipped`, `pending` (tried again later) or `failed` (given up).
            var state: String
            /// Why it failed or was skipped (a reason, never an address or a key).
            var reason: String?
        }
        /// Due follow-ups found.
        var due: Int
        /// Those another worker was doing: left to it.
        var busy: Int
        var outcomes: [Outcome]

        func count(_ state: String) -> Int { outcomes.filter { $0.state == state }.count }
    }

    func perform(_ context: JobContext) async throws -> Report {
        let keyring = try await jobKeyring(admin.databaseURL, context)
        let report = try await withAdminPool(admin.databaseURL, context, label: "restartix.jobs.appointment-followups") { database, logger in
            try await withAdminDatabase(admin.databaseURL, context, label: "restartix.jobs.appointment-followups") { adminDatabase, _ in
                let cipher = ColumnCipher(keyring: keyring, logger: logger)
                var options = AppointmentFollowups.Options()
                options.defaultAWSCredentials = try context.service.awsCredentials()
                let followups = AppointmentFollowups(
                    admin: adminDatabase,
                    providers: ProviderResolver(registry: ProviderRegistry(database: database, cipher: cipher), logger: logger),
                    suppressions: EmailSuppressions(database: database, keyring: keyring), cipher: cipher, options: options, logger: logger
                )
                return try await followups.runDue(limit: limit)
            }
        }
        return Report(due: report.due, busy: report.busy, outcomes: report.outcomes.map {
            Report.Outcome(
                followupID: $0.followupID, organizationID: $0.organizationID, appointmentID: $0.appointmentID, kind: $0.kind.rawValue,
                state: $0.state.rawValue, reason: $0.reason
            )
        })
    }

    func lines(_ report: Report) -> [String] {
        var lines = report.outcomes.map { outcome in
            let head = "appointment-followups: \(outcome.kind) of appointment \(outcome.appointmentID.lowercasedString)"
            return switch outcome.state {
            case "done": "\(head): done"
            case "skipped": "\(head): skipped (\(outcome.reason ?? ""))"
            case "pending": "\(head): failed, will retry (\(outcome.reason ?? ""))"
            default: "\(head): failed, given up (\(outcome.reason ?? ""))"
            }
        }
        lines.append(
            "appointment-followups: \(report.due) due, \(report.count("done")) done, \(report.count("skipped")) skipped, "
                + "\(report.count("pending")) to retry, \(report.count("failed")) given up, \(report.busy) left to another worker"
        )
        return lines
    }
}

/// The keyring for a job on the admin role's database: the configured one (``loadKeyring(_:)``),
/// or, on the embedded default with none configured, the local keyring the Core API made beside
/// the SQLite file.
func jobKeyring(_ databaseURL: String?, _ context: JobContext) async throws -> Keyring {
    let service = context.service
    let embedded = databaseURL == nil && service.string("DATABASE_URL") == nil
    let configured: KeyringConfiguration?
    do { configured = try service.keyring() } catch { throw CleanExit.message(error) }
    guard embedded, configured == nil else { return try await loadKeyring(service) }
    do {
        let directory = URL(fileURLWithPath: service.sqlitePath()).deletingLastPathComponent()
        return try await PlatformBoot.localKeyring(in: directory, logger: context.makeLogger("restartix.jobs.keyring"))
    } catch { throw CleanExit.message(error) }
}
