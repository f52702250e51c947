public import AsyncHTTPClient
public import Foundation
public import Logging
import Metrics
public import RestartixAWS
public import RestartixCrypto
import RestartixKit
public import RestartixProviders
import Synchronization
public import RestartixTenancy
public import ServiceLifecycle

/// One thing a booking owes after it commits: its confirmation e-mail, or the Daily room of a
/// video appointment. The database writes these with the booking, in its transaction
/// (migration 14), so a booking never stands without them, whoever wrote it.
public struct AppointmentFollowup: Sendable, Hashable {
    /// What is owed.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The confirmation e-mail to the patient, through the clinic's `email` provider (SES).
        case confirmationEmail = "confirmation_email"
        /// The Daily room of a video appointment, through the clinic's `video` provider.
        case videoRoom = "video_room"

        /// The provider capability it uses, and meters: one unit per e-mail sent or room made.
        public var capability: ProviderCapability {
            switch self {
            case .confirmationEmail: .email
            case .videoRoom: .video
            }
        }
    }

    /// Where it stands.
    public enum State: String, Sendable, Hashable, CaseIterable {
        /// Not done yet: tried again at ``AppointmentFollowup/nextAttemptAt``.
        case pending
        /// Done: ``AppointmentFollowup/result`` holds SES's message id or the room's URL.
        case done
        /// Nothing to do after all (the appointment was canceled or is over, the patient has no
        /// e-mail address or it is suppressed): ``AppointmentFollowup/lastError`` says which.
        case skipped
        /// Given up after ``AppointmentFollowups/Options/maxAttempts`` attempts.
        case failed
    }

    public let id: UUID
    public let organizationID: UUID
    public let appointmentID: UUID
    public let kind: Kind
    public let state: State
    /// Attempts so far.
    public let attempts: Int
    /// When a pending one is due.
    public let nextAttemptAt: Date
    /// Why the last attempt failed, or why it was skipped (a kind and a reason, never an
    /// address, a key or a provider's free text).
    public let lastError: String?
    /// SES's message id, or the room's URL.
    public let result: String?
    public let updatedAt: Date
}

/// How a principal joins a video appointment: the room and a meeting token of its own.
public struct VideoAccess: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// The room's URL (Daily's), where the call is joined with ``token``.
    public let roomURL: String
    /// The principal's meeting token: a bearer secret, never logged or printed.
    public let token: String
    /// Whether the token gives owner rights (the clinic's staff) or joins as a participant.
    public let isOwner: Bool
    /// The token works from this time...
    public let notBefore: Date
    /// ...until this one (the room closes then too, and ejects whoever is in it).
    public let expiresAt: Date

    public var description: String { "VideoAccess(\(roomURL), owner: \(isOwner), token: <redacted>)" }
    public var customMirror: Mirror { Mirror(self, children: ["roomURL": roomURL, "isOwner": isOwner], displayStyle: .struct) }
}

/// The follow-ups of bookings: the confirmation e-mail through SES and the Daily room of a video
/// appointment, each through the clinic's provider as ``ProviderResolver`` resolves it on every
/// attempt (a rotated key is used at once), as the platform's providers document integrates them.
///
/// A provider that is down never costs a booking: the booking commits with its follow-ups
/// pending; ``run(appointment:organization:)`` tries them right after (the Core API does, through
/// ``AppointmentFollowupWorker``), and ``runDue(limit:)`` (`restartix-jobs appointment-followups`,
/// on a schedule) tries every due one again, with exponential backoff (``Options/firstRetry``
/// doubling up to ``Options/maxRetry``) until it is done or ``Options/maxAttempts`` are spent.
///
/// Exactly once: an attempt first claims its row (a lease of ``Options/lease``, fenced by the
/// attempt count), so two workers — the API's and a job's, or two jobs — never send one e-mail
/// or make one room twice. The one window left is a worker that dies after SES accepted the
/// e-mail and before the row was settled: when its lease lapses the e-mail is sent again (SES's
/// `SendEmail` takes no idempotency key). Rooms have no such window: Daily's room name is the
/// appointment's (`rx-<id>`), and a second create returns the room.
///
/// Skipped, not sent: the confirmation of an appointment canceled meanwhile, to a patient with
/// no e-mail address or one on the suppression list (``EmailSuppressions``); the room of an
/// appointment that was canceled or is over.
///
/// Attempts write to the log by follow-up, clinic and appointment id, kind and outcome, never
/// an address, a subject, a body, a token or a key; the metric `restartix_appointment_followups_total`
/// counts attempts by `kind` and `outcome` (`done`, `skipped`, `retry`, `failed`).
public struct AppointmentFollowups: Sendable {
    /// Retries, leases and the video room's hours.
    public struct Options: Sendable {
        /// Attempts before a follow-up is given up (`failed`). Default 12 (with the default
        /// backoff, about seven hours of trying).
        public var maxAttempts = 12
        /// How long an attempt holds its row; longer than an attempt can take (each provider
        /// call is bounded by ``callTimeout``). Default 2 minutes.
        public var lease: Duration = .seconds(120)
        /// The wait after the first failure; doubled after each next one. Default 30 seconds.
        public var firstRetry: Duration = .seconds(30)
        /// The longest wait between attempts. Default one hour.
        public var maxRetry: Duration = .seconds(3600)
        /// Each call to SES or Daily. Default 10 seconds.
        public var callTimeout: Duration = .seconds(10)
        /// The credentials of SES rows that store no keys (the task role's); none by default
        /// (such rows fail): the library reads no environment.
        public var defaultAWSCredentials: AWSCredentialSource?
        /// How long before the appointment its room opens and its tokens start to work.
        /// Default 15 minutes.
        public var roomOpensBefore: Duration = .seconds(15 * 60)
        /// How long after the appointment's end its room and tokens last. Default 15 minutes.
        public var roomClosesAfter: Duration = .seconds(15 * 60)

        /// The defaults.
        public init() {}
    }

    /// One attempt's outcome.
    public struct Outcome: Sendable, Hashable {
        public let followupID: UUID
        public let organizationID: UUID
        public let appointmentID: UUID
        public let kind: AppointmentFollowup.Kind
        /// The state after the attempt (`pending`: it will be tried again).
        public let state: AppointmentFollowup.State
        /// Why it failed or was skipped (safe to log).
        public let reason: String?
    }

    /// What one pass of ``runDue(limit:)`` did.
    public struct PassReport: Sendable, Hashable {
        /// Due follow-ups found.
        public var due = 0
        /// Those another worker held (or settled) first: left to it.
        public var busy = 0
        /// Each attempted one's outcome.
        public var outcomes: [Outcome] = []
    }

    let admin: AdminDatabase
    let providers: ProviderResolver
    let suppressions: EmailSuppressions
    let store: PatientStore
    let httpClient: HTTPClient
    let logger: Logger
    /// The default credentials, fetched at the first send that needs them and then kept
    /// fresh (``AWSCredentialProvider``), not fetched again for every e-mail.
    let defaultCredentials: SharedCredentialProvider?
    /// Retries, leases and the video room's hours.
    public let options: Options

    /// The follow-ups over `admin` (the platform's claims and settlements), `providers` (the
    /// `email` and `video` providers), `suppressions` and `cipher` (to open the patient's e-mail
    /// address).
    public init(
        admin: AdminDatabase, providers: ProviderResolver, suppressions: EmailSuppressions, cipher: ColumnCipher,
        options: Options = Options(), httpClient: HTTPClient = .shared, logger: Logger
    ) {
        precondition(options.maxAttempts >= 1 && options.lease > options.callTimeout && options.firstRetry > .zero && options.maxRetry >= options.firstRetry,
                     "follow-up options: at least one attempt, a lease longer than a call, positive retries")
        self.admin = admin
        self.providers = providers
        self.suppressions = suppressions
        self.store = PatientStore(cipher: cipher)
        self.options = options
        self.httpClient = httpClient
        self.logger = logger
        self.defaultCredentials = options.defaultAWSCredentials.map { SharedCredentialProvider($0, httpClient: httpClient) }
    }

    static let actor = PlatformActor.service("appointment-followups")

    // MARK: Attempts

    /// Tries the pending follow-ups of `appointment` that are due (right after its booking
    /// committed: all of them). Never throws: each outcome is recorded on its row, and one that
    /// could not even be claimed (the database is down) is left to the job.
    @discardableResult
    public func run(appointment: UUID, organization: UUID) async -> [Outcome] {
        await run(appointment: appointment, organization: organization, now: Date())
    }

    /// `only`: that kind alone. `force`: a principal is waiting (``Appointments/videoAccess(to:as:followups:requestID:)``):
    /// try now whatever the schedule says, and a follow-up given up on too.
    package func run(
        appointment: UUID, organization: UUID, now: Date, only kind: AppointmentFollowup.Kind? = nil, force: Bool = false
    ) async -> [Outcome] {
        let ids: [UUID]
        let only: SQLQuery = kind.map { " AND kind = \($0.rawValue)" } ?? ""
        // A failed row is tried again only when forced; the claim would refuse it otherwise.
        let states: SQLQuery = force ? "state IN ('pending', 'failed')" : "state = 'pending'"
        do {
            ids = try await admin.withOrganization(organization, actor: Self.actor) { tx in
                try await tx.query("""
                    SELECT id FROM appointment_followups WHERE appointment_id = \(appointment) AND \(states)\(only) ORDER BY kind
                    """).map { try $0.decode("id", as: UUID.self) }
            }
        } catch {
            logger.warning("appointment follow-ups not tried; the job will", metadata: ["appointment.id": "\(appointment.lowercasedString)", "error": "\(safeDescription(of: error))"])
            return []
        }
        var outcomes: [Outcome] = []
        for id in ids {
            do {
                if let outcome = try await attempt(id, organization: organization, now: now, force: force) { outcomes.append(outcome) }
            } catch {
                logger.warning("appointment follow-up not tried; the job will", metadata: ["followup.id": "\(id.lowercasedString)", "error": "\(safeDescription(of: error))"])
            }
        }
        return outcomes
    }

    /// One pass of the job: every pending follow-up that is due, across clinics, oldest first,
    /// at most `limit` (1-10,000). Throws only for its own failures (the database); a
    /// provider's are recorded on the rows.
    public func runDue(limit: Int = 100) async throws -> PassReport {
        try await runDue(limit: limit, now: Date())
    }

    /// `organization`: that clinic's only (tests share one database between suites).
    package func runDue(limit: Int, now: Date, organization: UUID? = nil) async throws -> PassReport {
        precondition((1...10_000).contains(limit), "limit: 1 to 10,000")
        let only: SQLQuery = organization.map { " AND organization_id = \($0)" } ?? ""
        // One audited cross-clinic read finds the work; each row is then claimed inside its clinic.
        let due = try await admin.unscoped(reason: "appointment follow-ups: find the due ones", actor: Self.actor) { tx in
            try await tx.query("""
                SELECT id, organization_id FROM appointment_followups \
                WHERE state = 'pending' AND next_attempt_at <= \(now) AND (lease_until IS NULL OR lease_until <= \(now))\(only) \
                ORDER BY next_attempt_at, id LIMIT \(limit)
                """).map { (try $0.decode("id", as: UUID.self), try $0.decode("organization_id", as: UUID.self)) }
        }
        var report = PassReport(due: due.count)
        for (id, organization) in due {
            if let outcome = try await attempt(id, organization: organization, now: now) {
                report.outcomes.append(outcome)
            } else {
                report.busy += 1
            }
        }
        return report
    }

    /// Claims follow-up `id` (nil when it is not due or another worker holds it), does it, and
    /// settles it.
    func attempt(_ id: UUID, organization: UUID, now: Date, force: Bool = false) async throws -> Outcome? {
        guard let work = try await claim(id, organization: organization, now: now, force: force) else { return nil }
        let verdict: Verdict
        if let problem = work.problem {
            verdict = .retry(problem)
        } else {
            do {
                verdict = try await perform(work, now: now)
            } catch {
                verdict = .retry(safeDescription(of: error))
            }
        }
        let outcome = try await settle(work, verdict, now: Date())
        Self.counter(work.kind, outcome.state).increment()
        let metadata: Logger.Metadata = [
            "followup.id": "\(id.lowercasedString)", "organization.id": "\(organization.lowercasedString)",
            "appointment.id": "\(work.appointmentID.lowercasedString)", "followup.kind": "\(work.kind.rawValue)",
            "followup.state": "\(outcome.state.rawValue)", "followup.attempt": "\(work.attempts)",
        ]
        switch outcome.state {
        case .done: logger.info("appointment follow-up done", metadata: metadata)
        case .skipped: logger.info("appointment follow-up skipped", metadata: metadata.merging(["reason": "\(outcome.reason ?? "")"]) { $1 })
        case .pending, .failed: logger.warning("appointment follow-up failed", metadata: metadata.merging(["error": "\(outcome.reason ?? "")"]) { $1 })
        }
        return outcome
    }

    /// What an attempt needs, read when it claims the row.
    struct Work: Sendable {
        let id: UUID
        let organizationID: UUID
        let appointmentID: UUID
        let kind: AppointmentFollowup.Kind
        /// This attempt's number: the settlement's fence.
        let attempts: Int
        let appointment: Appointment
        let clinicName: String
        /// The patient's e-mail address (confirmation only; nil when none or deleted).
        let email: String?
        /// Why the row's data cannot be used (a sealed address that does not open): the attempt
        /// fails with it, so one bad row is retried and given up on like any other, and never
        /// stops a pass.
        var problem: String? = nil
    }

    /// Claims follow-up `id` for one attempt: pending, due (a new one is due at once, whatever
    /// the clocks of the database and this host say), and not held by another worker's lease.
    /// `force` takes one that is not due yet, or was given up on, too.
    func claim(_ id: UUID, organization: UUID, now: Date, force: Bool = false) async throws -> Work? {
        let leaseUntil = now.addingTimeInterval(options.lease.secondsValue)
        let eligible: SQLQuery = force
            ? "state IN ('pending', 'failed')"
            : "state = 'pending' AND (attempts = 0 OR next_attempt_at <= \(now))"
        return try await admin.withOrganization(organization, actor: Self.actor) { tx in
            let claimed = try await tx.execute("""
                UPDATE appointment_followups SET state = 'pending', attempts = attempts + 1, lease_until = \(leaseUntil), updated_at = \(now) \
                WHERE id = \(id) AND \(eligible) AND (lease_until IS NULL OR lease_until <= \(now))
                """)
            guard claimed == 1 else { return nil }
            guard let row = try await tx.first("""
                SELECT f.appointment_id, f.kind, f.attempts, o.name AS clinic_name \
                FROM appointment_followups f JOIN organizations o ON o.id = f.organization_id WHERE f.id = \(id)
                """),
                let kind = AppointmentFollowup.Kind(rawValue: try row.decode("kind", as: String.self))
            else { return nil }
            let appointmentID = try row.decode("appointment_id", as: UUID.self)
            guard let appointment = try await tx.first("\(unsafeRaw: Appointments.select) WHERE id = \(appointmentID)").map(Appointments.appointment) else {
                return nil
            }
            var email: String?
            var problem: String?
            if kind == .confirmationEmail,
                let patient = try await tx.first("\(unsafeRaw: PatientStore.select) WHERE id = \(appointment.patientID) AND deleted_at IS NULL")
            {
                // Opened here, inside the claim: a value that does not open fails this attempt
                // (recorded on the row), not the transaction that claimed it.
                do { email = try store.open(patient).pii.email } catch { problem = safeDescription(of: error) }
            }
            return Work(
                id: id, organizationID: organization, appointmentID: appointmentID, kind: kind, attempts: try row.decode("attempts", as: Int.self),
                appointment: appointment, clinicName: try row.decode("clinic_name", as: String.self), email: email, problem: problem
            )
        }
    }

    enum Verdict: Sendable {
        case done(String)
        case skip(String)
        case retry(String)
    }

    func perform(_ work: Work, now: Date) async throws -> Verdict {
        guard work.appointment.status == .booked else { return .skip("the appointment was canceled") }
        switch work.kind {
        case .confirmationEmail:
            guard let address = work.email else { return .skip("the patient has no e-mail address") }
            if let reason = try await suppressions.reason(for: address) { return .skip("the address is on the suppression list (\(reason.rawValue))") }
            guard try await quotaAllows(.email, work.organizationID) else { return .skip("the clinic's email quota for the month is used up") }
            let (ses, settings) = try await sesClient(for: work.organizationID)
            var email = SESClient.Email(
                from: settings.fromAddress, to: [address], subject: "Your appointment at \(Self.oneLine(work.clinicName))",
                text: Self.confirmationText(work.appointment, clinic: work.clinicName, roomOpensBefore: options.roomOpensBefore)
            )
            email.configurationSet = settings.configurationSet
            email.tags = ["kind": "appointment_confirmation"]
            return .done(try await ses.send(email))
        case .videoRoom:
            guard work.appointment.kind == .video else { return .skip("the appointment is in person") }
            let hours = roomHours(of: work.appointment)
            guard hours.closes > now else { return .skip("the appointment is over") }
            guard try await quotaAllows(.video, work.organizationID) else { return .skip("the clinic's video quota for the month is used up") }
            let room = try await daily(for: work.organizationID).createRoom(
                name: Self.roomName(work.appointmentID), notBefore: hours.opens, expiresAt: hours.closes
            )
            return .done(room.url)
        }
    }

    /// When `appointment`'s video room opens and closes (``Options/roomOpensBefore`` its start,
    /// ``Options/roomClosesAfter`` its end): the room's `nbf` and `exp`, and every meeting
    /// token's, so a token is never valid while its room is not.
    public func roomHours(of appointment: Appointment) -> (opens: Date, closes: Date) {
        (appointment.startsAt.addingTimeInterval(-options.roomOpensBefore.secondsValue),
         appointment.endsAt.addingTimeInterval(options.roomClosesAfter.secondsValue))
    }

    /// Records an attempt's verdict, if the row is still this attempt's (its lease may have
    /// lapsed and another worker claimed it: then that one settles it).
    func settle(_ work: Work, _ verdict: Verdict, now: Date) async throws -> Outcome {
        let state: AppointmentFollowup.State
        var result: String?
        var reason: String?
        var next = now
        switch verdict {
        case .done(let value):
            state = .done
            result = String(value.prefix(500))
        case .skip(let why):
            state = .skipped
            reason = why
        case .retry(let why):
            reason = why
            state = work.attempts >= options.maxAttempts ? .failed : .pending
            next = now.addingTimeInterval(backoff(after: work.attempts))
        }
        let error = reason.map { String($0.prefix(500)) }
        try await admin.withOrganization(work.organizationID, actor: Self.actor) { tx in
            let settled = try await tx.execute("""
                UPDATE appointment_followups SET state = \(state.rawValue), result = \(result), last_error = \(error), \
                next_attempt_at = \(next), lease_until = NULL, updated_at = \(now) \
                WHERE id = \(work.id) AND attempts = \(work.attempts) AND state = 'pending'
                """)
            // A message sent or a room made is a unit of the clinic's usage, counted with the
            // row that says so (already spent, so never refused: perform looked first).
            if state == .done, settled == 1 {
                try await UsageMeter.record(
                    1, capability: work.kind.capability, organization: work.organizationID,
                    metadata: ["appointment_id": work.appointmentID.lowercasedString, "followup": work.kind.rawValue],
                    enforcingQuota: false, in: tx
                )
            }
        }
        return Outcome(
            followupID: work.id, organizationID: work.organizationID, appointmentID: work.appointmentID, kind: work.kind, state: state, reason: error
        )
    }

    /// The wait after failed attempt `attempts`: ``Options/firstRetry`` doubled per attempt,
    /// at most ``Options/maxRetry``, less up to a fifth at random (so a provider that comes back
    /// is not met by every retry at once).
    func backoff(after attempts: Int) -> TimeInterval {
        let base = options.firstRetry.secondsValue * pow(2, Double(min(max(attempts - 1, 0), 30)))
        let capped = min(base, options.maxRetry.secondsValue)
        return capped * Double.random(in: 0.8...1.0)
    }

    // MARK: Providers

    func quotaAllows(_ capability: ProviderCapability, _ organization: UUID) async throws -> Bool {
        try await admin.withOrganization(organization, actor: Self.actor) { tx in
            try await UsageMeter.allows(1, capability: capability, organization: organization, in: tx)
        }
    }

    func sesClient(for organization: UUID) async throws -> (SESClient, SESSettings) {
        let record = try await providers.provider(for: .email, organization: organization)
        guard case .ses(let settings) = try record.settings() else {
            throw ProviderError(.invalidArgument, "the email provider is \(record.kind), which the platform cannot send with")
        }
        let credentials: AWSCredentialProvider
        if let stored = settings.credentials {
            credentials = AWSCredentialProvider(stored)
        } else if let defaultCredentials {
            credentials = try await defaultCredentials.provider()
        } else {
            throw ProviderError(.invalidArgument, "the email provider stores no AWS keys and no default credentials are configured")
        }
        let client = try SESClient(
            region: settings.region, credentials: credentials, endpoint: settings.endpoint?.absoluteString, httpClient: httpClient, timeout: options.callTimeout
        )
        return (client, settings)
    }

    func daily(for organization: UUID) async throws -> DailyClient {
        let record = try await providers.provider(for: .video, organization: organization)
        guard case .daily(let settings) = try record.settings() else {
            throw ProviderError(.invalidArgument, "the video provider is \(record.kind), which the platform cannot make rooms with")
        }
        return DailyClient(settings: settings, httpClient: httpClient, timeout: options.callTimeout)
    }

    /// The Daily room of `appointment`: one name per appointment, so making it twice is making it once.
    public static func roomName(_ appointment: UUID) -> String { "rx-" + appointment.lowercasedString }

    /// The room's URL once its follow-up is done.
    func roomURL(of appointment: Appointment) async throws -> String? {
        try await admin.withOrganization(appointment.organizationID, actor: Self.actor) { tx in
            try await tx.first("""
                SELECT result FROM appointment_followups WHERE appointment_id = \(appointment.id) AND kind = 'video_room' AND state = 'done'
                """)?.decode("result", as: String?.self)
        }
    }

    static func followup(_ row: SQLRow) throws -> AppointmentFollowup {
        AppointmentFollowup(
            id: try row.decode("id", as: UUID.self),
            organizationID: try row.decode("organization_id", as: UUID.self),
            appointmentID: try row.decode("appointment_id", as: UUID.self),
            kind: try AppointmentFollowup.Kind(rawValue: row.decode("kind", as: String.self)) ?? .confirmationEmail,
            state: try AppointmentFollowup.State(rawValue: row.decode("state", as: String.self)) ?? .failed,
            attempts: try row.decode("attempts", as: Int.self),
            nextAttemptAt: try row.decode("next_attempt_at", as: Date.self),
            lastError: try row.decode("last_error", as: String?.self),
            result: try row.decode("result", as: String?.self),
            updatedAt: try row.decode("updated_at", as: Date.self)
        )
    }

    // MARK: Text

    /// `text` on one line: control characters (a line break would be a header injection in
    /// the subject, which SES's client refuses) become spaces.
    static func oneLine(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { CharacterSet.controlCharacters.contains($0) ? " " : $0 }))
    }

    /// The confirmation's body: the clinic, the time (UTC) and the kind. No patient data beyond
    /// the fact of the booking.
    static func confirmationText(_ appointment: Appointment, clinic: String, roomOpensBefore: Duration) -> String {
        let day = appointment.startsAt.formatted(Date.FormatStyle(date: .complete, time: .omitted, timeZone: TimeZone(identifier: "UTC")!))
        let time = Date.FormatStyle(date: .omitted, time: .shortened, timeZone: TimeZone(identifier: "UTC")!)
        let place = appointment.kind == .video
            ? "A video call: join it from your appointments in the app (the room opens \(Int(roomOpensBefore.secondsValue / 60)) minutes before)."
            : "At the clinic."
        return """
            Your appointment at \(oneLine(clinic)) is booked.

            When: \(day), \(appointment.startsAt.formatted(time))–\(appointment.endsAt.formatted(time)) UTC
            Where: \(place)

            To change or cancel it, use your appointments in the app.
            """
    }

    static func counter(_ kind: AppointmentFollowup.Kind, _ state: AppointmentFollowup.State) -> Counter {
        let outcome = switch state {
        case .done: "done"
        case .skipped: "skipped"
        case .pending: "retry"
        case .failed: "failed"
        }
        return Counter(label: "restartix_appointment_followups_total", dimensions: [("kind", kind.rawValue), ("outcome", outcome)])
    }
}

/// Tries each new booking's follow-ups in the background, so the booking's answer never waits
/// on SES or Daily: the Core API enqueues an appointment after it commits, and this service
/// runs ``AppointmentFollowups/run(appointment:organization:)`` for it, a few at a time.
///
/// Bounded: at most `capacity` appointments wait; past that, and for whatever is still queued
/// when the process dies, nothing is lost — the rows are pending in the database, and
/// `restartix-jobs appointment-followups` does them. On graceful shutdown it stops taking new
/// work, finishes what is queued and in flight, then returns (run it after the database pools
/// in a service group, so it shuts down before them).
public final class AppointmentFollowupWorker: Service, Sendable {
    let followups: AppointmentFollowups
    let concurrency: Int
    let stream: AsyncStream<(UUID, UUID)>
    let continuation: AsyncStream<(UUID, UUID)>.Continuation

    /// A worker over `followups`, `concurrency` appointments at a time (1-64), at most
    /// `capacity` waiting.
    public init(followups: AppointmentFollowups, concurrency: Int = 4, capacity: Int = 1000) {
        precondition((1...64).contains(concurrency) && capacity >= 1, "concurrency 1-64, capacity at least 1")
        self.followups = followups
        self.concurrency = concurrency
        (stream, continuation) = AsyncStream.makeStream(of: (UUID, UUID).self, bufferingPolicy: .bufferingOldest(capacity))
    }

    /// Queues `appointment`'s follow-ups; when the queue is full (or the worker has stopped),
    /// they are left to the job.
    public func enqueue(appointment: UUID, organization: UUID) {
        if case .dropped = continuation.yield((appointment, organization)) {
            followups.logger.notice("follow-up queue full: the job will do them", metadata: ["appointment.id": "\(appointment.lowercasedString)"])
        }
    }

    public func run() async throws {
        let followups = followups, concurrency = concurrency
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                for await (appointment, organization) in stream {
                    if running >= concurrency {
                        await group.next()
                        running -= 1
                    }
                    group.addTask { await followups.run(appointment: appointment, organization: organization) }
                    running += 1
                }
            }
        } onGracefulShutdown: { [continuation] in
            continuation.finish()
        }
    }
}

/// One ``AWSCredentialProvider`` for a source, made by the first caller that needs it (its
/// first fetch happens then, not at construction, which is synchronous) and shared after that.
final class SharedCredentialProvider: Sendable {
    let source: AWSCredentialSource
    let httpClient: HTTPClient
    private let made = Mutex<AWSCredentialProvider?>(nil)

    init(_ source: AWSCredentialSource, httpClient: HTTPClient) {
        self.source = source
        self.httpClient = httpClient
    }

    /// The provider; a failed first fetch is the caller's error and the next caller tries again.
    func provider() async throws(AWSError) -> AWSCredentialProvider {
        if let existing = made.withLock({ $0 }) { return existing }
        let fresh = try await AWSCredentialProvider(source, httpClient: httpClient)
        return made.withLock { made in
            if let existing = made { return existing }
            made = fresh
            return fresh
        }
    }
}
