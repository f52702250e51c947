import AsyncHTTPClient
@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixAWS
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// A booking's follow-ups through the clinic's providers (SES on moto, whose sent messages are
/// read back; Daily through the stub that checks requests against Daily's documentation), on
/// SQLite and on Postgres through PgBouncer with Redis: the confirmation e-mail goes out once,
/// a video booking gets its room, patient and staff join with tokens of their own; a provider
/// down at booking leaves the booking standing and the job retries until each is done once.
extension PatientRouteTests {
    /// moto's endpoint; nil where moto is not running here (under CI it must be).
    static func motoEndpoint() throws -> String? {
        if let url = RequiredServices.value("AWS_ENDPOINT_URL") { return url }
        if RequiredServices.areRequired { _ = try RequiredServices.require("AWS_ENDPOINT_URL") }
        return nil
    }

    /// Runs `body` with a provider registry on the API's platform database and keyring.
    static func withRegistry<T>(_ fixture: Fixture, _ body: (ProviderRegistry, Database) async throws -> T) async throws -> T {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let database = Database(configuration: try #require(fixture.platformDatabase), logger: logger)
        do {
            let result = try await body(ProviderRegistry(database: database, cipher: ColumnCipher(keyring: try #require(fixture.keyring), logger: logger)), database)
            await database.shutdown()
            return result
        } catch {
            await database.shutdown()
            throw error
        }
    }

    static let awsKeys = ProviderSecrets(["access_key_id": "testing", "secret_access_key": "testing"])

    /// The clinic's own `email` provider (SES at `sesEndpoint`, sending as a new verified sender
    /// of moto's) and `video` provider (`daily`); the sender.
    @discardableResult
    static func clinicProviders(_ fixture: Fixture, daily: DailyAPIStub, sesEndpoint: String, motoEndpoint: String) async throws -> String {
        let sender = "clinic-\(UUID().uuidString.prefix(8).lowercased())@clinic.example"
        let ses = try SESClient(region: "us-east-1", credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), endpoint: motoEndpoint)
        try await ses.createEmailIdentity(sender)
        try await withRegistry(fixture) { registry, _ in
            try await registry.insertIfAbsent(
                .email, organization: fixture.clinic, kind: .ses,
                config: ["from_address": sender, "region": "us-east-1", "endpoint_url": sesEndpoint], secrets: awsKeys
            )
            try await registry.insertIfAbsent(.video, organization: fixture.clinic, kind: .daily, config: ["api_url": daily.baseURL], secrets: ProviderSecrets(["api_key": daily.apiKey]))
        }
        return sender
    }

    /// A message moto accepted, as `/moto-api/data.json` lists it.
    struct MotoMessage: Decodable {
        let source: String
        let subject: String
        let body: String
        let destinations: [String: [String]]
    }

    /// The messages moto accepted for `address` (it keeps every one: the read-back). moto's
    /// model dump sometimes answers 500 while other tests change its models; it is asked again.
    static func sentMessages(to address: String, endpoint: String) async throws -> [MotoMessage] {
        struct Models: Decodable { let Message: [MotoMessage]? }
        var attempt = 0
        while true {
            attempt += 1
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: endpoint + "/moto-api/data.json"), timeout: .seconds(10))
            let data = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
            if let services = try? JSONDecoder().decode([String: Models].self, from: data) {
                return services.values.flatMap { $0.Message ?? [] }.filter { $0.destinations["ToAddresses"]?.contains(address) == true }
            }
            try #require(attempt < 20, "moto's /moto-api/data.json answered no model dump twenty times")
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// `appointment`'s follow-ups as the owner sees them, once `done(_:)` holds (up to 15 s).
    static func followups(
        _ client: some TestClientProtocol, _ fixture: Fixture, _ appointment: String, until done: ([FollowupBody]) -> Bool
    ) async throws -> [FollowupBody] {
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            let list = try await client.execute(uri: "/v1/appointments/\(appointment)/followups", method: .get, headers: fixture.auth("owner")) { response in
                decode(FollowupListBody.self, response)?.followups ?? []
            }
            if done(list) || ContinuousClock.now > deadline { return list }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// `GET /v1/appointments/{id}/video` as `who`.
    static func video(_ client: some TestClientProtocol, _ fixture: Fixture, _ appointment: String, as who: String) async throws -> (HTTPResponse.Status, VideoAccessBody?, Problem?, String?) {
        try await client.execute(uri: "/v1/appointments/\(appointment)/video", method: .get, headers: fixture.auth(who)) { response in
            (response.status, decode(VideoAccessBody.self, response), decode(Problem.self, response), response.headers[.cacheControl])
        }
    }

    /// A patient record of the fixture's patient member with a mailbox of its own.
    static func ownWithMailbox(_ client: some TestClientProtocol, _ fixture: Fixture) async throws -> (PatientBody, String) {
        let address = "pat-\(UUID().uuidString.prefix(10).lowercased())@example.com"
        var own = ana
        own["email"] = address
        own["user_id"] = fixture.users["patient"]!.lowercasedString
        return (try await create(client, fixture, own), address)
    }

    @Test("follow-ups: the confirmation goes out once through the clinic's SES, a video booking gets its Daily room; patient and staff join with tokens of their own; others get 404", arguments: PatientRouteTests.backends)
    func bookingFollowups(backend: Backend) async throws {
        guard let moto = try Self.motoEndpoint() else { return }
        let daily = try await DailyAPIStub.start()
        defer { daily.stop() }
        try await withAPI(backend) { client, fixture in
            let sender = try await Self.clinicProviders(fixture, daily: daily, sesEndpoint: moto, motoEndpoint: moto)
            let (mine, address) = try await Self.ownWithMailbox(client, fixture)
            let start = Self.slotStart(days: 3)
            let hold = try #require(try await Self.hold(client, fixture, as: "patient", patient: mine.id, start: start).1)
            let (status, made, _) = try await Self.book(client, fixture, as: "patient", hold: hold, kind: "video")
            #expect(status == .created)
            let appointment = try #require(made)

            let settled = try await Self.followups(client, fixture, appointment.id) { $0.count == 2 && $0.allSatisfy { $0.state != "pending" } }
            #expect(settled.map(\.kind) == ["confirmation_email", "video_room"])
            #expect(settled.allSatisfy { $0.state == "done" && $0.attempts == 1 && $0.last_error == nil && $0.next_attempt_at == nil }, "\(settled)")

            // The e-mail, read back from moto: one, from the clinic's sender, about the time, with no patient data.
            let sent = try await Self.sentMessages(to: address, endpoint: moto)
            #expect(sent.count == 1)
            let message = try #require(sent.first)
            #expect(message.source == sender && message.subject == "Your appointment at Test Clinic")
            let time = Date.FormatStyle(date: .omitted, time: .shortened, timeZone: TimeZone(identifier: "UTC")!)
            #expect(message.body.contains(start.formatted(time)) && message.body.contains("video call"), "\(message.body)")
            #expect(!message.body.contains("Ana") && !message.body.contains(address), "no patient data in the body")

            // The room: private, one per appointment, open from 15 minutes before to 15 after.
            let name = "rx-" + appointment.id
            let room = try #require(daily.rooms[name])
            #expect(room.privacy == "private")
            #expect(room.notBefore == Int(start.timeIntervalSince1970) - 900 && room.expiresAt == Int(start.timeIntervalSince1970) + 1800 + 900)

            // Joining: the patient as a participant, staff as owners, each a token of its own.
            let (joined, access, _, cache) = try await Self.video(client, fixture, appointment.id, as: "patient")
            #expect(joined == .ok && cache == "no-store")
            let patientAccess = try #require(access)
            #expect(patientAccess.room_url.hasSuffix("/" + name) && !patientAccess.is_owner && !patientAccess.token.isEmpty)
            #expect(patientAccess.expires_at == Self.iso(start.addingTimeInterval(1800 + 900)))
            let patientToken = try #require(daily.tokens.last)
            #expect(patientToken.room == name && patientToken.userID == fixture.users["patient"]!.lowercasedString && !patientToken.isOwner)
            #expect(patientToken.notBefore == room.notBefore && patientToken.expiresAt == room.expiresAt)
            let (staffJoined, staffAccess, _, _) = try await Self.video(client, fixture, appointment.id, as: "specialist")
            #expect(staffJoined == .ok && staffAccess?.is_owner == true)
            #expect(daily.tokens.last?.isOwner == true && daily.tokens.last?.userID == fixture.users["specialist"]!.lowercasedString)
            #expect(try await fixture.count("SELECT count(*) AS n FROM audit_log WHERE action = 'appointment.video_join' AND resource_id = \(UUID(uuidString: appointment.id)!)") == 2)

            // Another clinic's owner: the appointment does not exist for it; no token is made.
            let tokens = daily.tokens.count
            let (foreign, _, foreignProblem, _) = try await Self.video(client, fixture, appointment.id, as: "other-owner")
            #expect(foreign == .notFound && foreignProblem?.code == "tenancy.notFound")
            let foreignList = try await client.execute(uri: "/v1/appointments/\(appointment.id)/followups", method: .get, headers: fixture.auth("other-owner")) { $0.status }
            #expect(foreignList == .notFound)
            // A patient does not read follow-ups (staff's business).
            let patientList = try await client.execute(uri: "/v1/appointments/\(appointment.id)/followups", method: .get, headers: fixture.auth("patient")) { $0.status }
            #expect(patientList == .forbidden)
            #expect(daily.tokens.count == tokens)

            // In person: the confirmation, no room, nothing to join.
            let visitHold = try #require(try await Self.hold(client, fixture, as: "owner", patient: mine.id, start: start.addingTimeInterval(3600)).1)
            let visit = try #require(try await Self.book(client, fixture, as: "owner", hold: visitHold).1)
            let visitFollowups = try await Self.followups(client, fixture, visit.id) { $0.allSatisfy { $0.state != "pending" } }
            #expect(visitFollowups.map(\.kind) == ["confirmation_email"] && visitFollowups.first?.state == "done")
            let (inPerson, _, inPersonProblem, _) = try await Self.video(client, fixture, visit.id, as: "patient")
            #expect(inPerson == .conflict && inPersonProblem?.code == "appointment.notVideo")
            #expect(try await Self.sentMessages(to: address, endpoint: moto).count == 2)
            // Metered: one unit per message sent and per room made, in the clinic's usage.
            for (capability, units) in [("email", 2), ("video", 1)] {
                let recorded = try await fixture.count(
                    "SELECT count(*) AS n FROM usage_records WHERE organization_id = \(fixture.clinic) AND capability = \(capability) AND units = 1"
                )
                #expect(recorded == units, "\(capability)")
            }

            // Canceled: nothing to join.
            _ = try await client.execute(uri: "/v1/appointments/\(appointment.id)/cancel", method: .post, headers: fixture.auth("patient")) { $0.status }
            let (canceled, _, canceledProblem, _) = try await Self.video(client, fixture, appointment.id, as: "patient")
            #expect(canceled == .conflict && canceledProblem?.code == "appointment.alreadyCanceled")
            #expect(daily.violations.isEmpty, "\(daily.violations)")
        }
    }

    @Test("follow-ups skipped, not sent: a suppressed address, a patient with no e-mail, a clinic over its e-mail quota", arguments: PatientRouteTests.backends)
    func skippedFollowups(backend: Backend) async throws {
        guard let moto = try Self.motoEndpoint() else { return }
        let daily = try await DailyAPIStub.start()
        defer { daily.stop() }
        try await withAPI(backend) { client, fixture in
            try await Self.clinicProviders(fixture, daily: daily, sesEndpoint: moto, motoEndpoint: moto)
            let (mine, address) = try await Self.ownWithMailbox(client, fixture)
            try await Self.withRegistry(fixture) { _, database in
                try await EmailSuppressions(database: database, keyring: try #require(fixture.keyring)).add(address, reason: .bounce)
            }
            let noMail = try await Self.create(client, fixture, ["name": "No Mail"])
            // A clinic whose e-mail quota is used up sends nothing more this month.
            let overQuotaAddress = "quota-\(UUID().uuidString.prefix(8).lowercased())@example.com"
            let overQuota = try await Self.create(client, fixture, ["name": "Over Quota", "email": overQuotaAddress])
            try await fixture.admin.withOrganization(fixture.clinic, actor: .system("tests")) { tx in
                try await UsageMeter.setQuota(0, capability: .email, organization: fixture.clinic, in: tx)
            }
            var outcomes: [String] = []
            for (offset, patient) in [(0, mine.id), (1, noMail.id), (2, overQuota.id)] {
                let hold = try #require(try await Self.hold(client, fixture, as: "owner", patient: patient, start: Self.slotStart(days: 4, offset: offset)).1)
                let booked = try #require(try await Self.book(client, fixture, as: "owner", hold: hold).1)
                let list = try await Self.followups(client, fixture, booked.id) { $0.allSatisfy { $0.state != "pending" } }
                outcomes.append(list.map { "\($0.state): \($0.last_error ?? "")" }.joined())
            }
            #expect(outcomes == [
                "skipped: the address is on the suppression list (bounce)", "skipped: the patient has no e-mail address",
                "skipped: the clinic's email quota for the month is used up",
            ])
            #expect(try await Self.sentMessages(to: address, endpoint: moto).isEmpty)
            #expect(try await Self.sentMessages(to: overQuotaAddress, endpoint: moto).isEmpty)
            #expect(try await fixture.count("SELECT count(*) AS n FROM usage_records WHERE organization_id = \(fixture.clinic)") == 0)
        }
    }

    @Test("a provider down at booking: the booking stands, its follow-ups wait; the job retries until the e-mail went once and the room was made once; a booking canceled meanwhile is skipped", arguments: PatientRouteTests.backends)
    func degradedFollowups(backend: Backend) async throws {
        guard let moto = try Self.motoEndpoint() else { return }
        let daily = try await DailyAPIStub.start()
        defer { daily.stop() }
        daily.fail(next: 1000)
        // SES down: its endpoint answers 503 (a refused connection would do too, but AsyncHTTPClient
        // retries a refused connect until the call's time limit: ten seconds a try).
        let down = try await StubHTTPServer.start { _ in .json(#"{"message":"Service Unavailable"}"#, status: 503) }
        defer { down.stop() }
        try await withAPI(backend) { client, fixture in
            let sender = try await Self.clinicProviders(fixture, daily: daily, sesEndpoint: down.baseURL, motoEndpoint: moto)
            let (mine, address) = try await Self.ownWithMailbox(client, fixture)
            let start = Self.slotStart(days: 5)
            let hold = try #require(try await Self.hold(client, fixture, as: "patient", patient: mine.id, start: start).1)
            let (status, made, _) = try await Self.book(client, fixture, as: "patient", hold: hold, kind: "video")
            #expect(status == .created, "the booking stands whatever the providers do")
            let appointment = try #require(made)
            let id = try #require(UUID(uuidString: appointment.id))
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE id = \(id) AND status = 'booked'") == 1)

            let waiting = try await Self.followups(client, fixture, appointment.id) { $0.count == 2 && $0.allSatisfy { $0.attempts >= 1 } }
            #expect(waiting.allSatisfy { $0.state == "pending" && $0.next_attempt_at != nil && $0.last_error != nil }, "\(waiting)")
            for followup in waiting {
                let error = followup.last_error ?? ""
                #expect(error.hasPrefix("aws.") || error.hasPrefix("provider."), "a kind and a reason: \(error)")
                #expect(!error.contains(address) && !error.contains(daily.apiKey) && !error.contains("testing"), "no address or key: \(error)")
            }
            // Joining before the room exists tries it once more, and says to come back.
            let (pending, _, pendingProblem, _) = try await Self.video(client, fixture, appointment.id, as: "patient")
            #expect(pending == .serviceUnavailable && pendingProblem?.code == "appointment.videoRoomPending")

            // A second booking, canceled before the job's turn: its confirmation is not sent.
            let visitHold = try #require(try await Self.hold(client, fixture, as: "owner", patient: mine.id, start: start.addingTimeInterval(3600)).1)
            let visit = try #require(try await Self.book(client, fixture, as: "owner", hold: visitHold).1)
            _ = try await Self.followups(client, fixture, visit.id) { $0.allSatisfy { $0.attempts >= 1 } }
            _ = try await client.execute(uri: "/v1/appointments/\(visit.id)/cancel", method: .post, headers: fixture.auth("owner")) { $0.status }

            // The providers are back (SES's row now names moto; Daily answers). The job runs: two
            // passes at once, past every retry time.
            daily.fail(next: 0)
            let passes = try await Self.withRegistry(fixture) { registry, database in
                _ = try await registry.rotate(
                    .email, organization: fixture.clinic, config: ["from_address": sender, "region": "us-east-1", "endpoint_url": moto],
                    actor: .system("tests"), admin: fixture.admin
                )
                let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
                let keyring = try #require(fixture.keyring)
                let followups = AppointmentFollowups(
                    admin: fixture.admin, providers: ProviderResolver(registry: registry, logger: logger),
                    suppressions: EmailSuppressions(database: database, keyring: keyring), cipher: ColumnCipher(keyring: keyring, logger: logger), logger: logger
                )
                let later = Date().addingTimeInterval(2 * 3600)
                // This clinic's rows only: the suites share the Postgres database, and another
                // suite's rows are its own business (the job's scan of every clinic is in JobsTests).
                async let one = followups.runDue(limit: 10_000, now: later, organization: fixture.clinic)
                async let two = followups.runDue(limit: 10_000, now: later, organization: fixture.clinic)
                let passes = try await [one, two]
                // A third pass finds nothing of theirs left to do.
                let again = try await followups.runDue(limit: 10_000, now: later, organization: fixture.clinic)
                return passes + [again]
            }
            let ours = [id, try #require(UUID(uuidString: visit.id))]
            let attempted = passes.flatMap(\.outcomes).filter { ours.contains($0.appointmentID) }
            #expect(attempted.count == 3, "each once: \(attempted)")
            #expect(passes[2].outcomes.filter { ours.contains($0.appointmentID) }.isEmpty)

            let done = try await Self.followups(client, fixture, appointment.id) { _ in true }
            #expect(done.allSatisfy { $0.state == "done" && $0.last_error == nil }, "\(done)")
            let skipped = try await Self.followups(client, fixture, visit.id) { _ in true }
            #expect(skipped.map(\.state) == ["skipped"] && skipped.first?.last_error == "the appointment was canceled")
            #expect(try await Self.sentMessages(to: address, endpoint: moto).count == 1, "exactly one e-mail")
            #expect(daily.rooms.keys.filter { $0 == "rx-" + appointment.id }.count == 1, "one room")
            let (joined, access, _, _) = try await Self.video(client, fixture, appointment.id, as: "patient")
            #expect(joined == .ok && access?.room_url.hasSuffix("rx-" + appointment.id) == true)
            #expect(daily.violations.isEmpty, "\(daily.violations)")
        }
    }
}
