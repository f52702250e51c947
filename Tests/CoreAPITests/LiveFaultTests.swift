@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Synchronization
import Testing

/// The Core API served against Postgres through PgBouncer and Redis while they fail: one built
/// application (no process restart) with its own Postgres, PgBouncer (`DrillInstance`) and Redis
/// (`RedisServer`), through a Redis kill and restart, a Postgres restart (immediate: the backends
/// die mid-statement) and a PgBouncer SIGKILL and start. Throughout, every answer is a success
/// or a 503 problem (never a 500, never a hang); within seconds of each service coming back the
/// flows succeed again; and the ground truth holds: every break-glass session the API said it
/// opened is in the database, and no more than were asked for.
@Suite("Core API live under faults", .serialized, .timeLimit(.minutes(3)), .enabled(if: DrillInstance.enabled))
struct LiveFaultTests {
    @Test("Redis killed and back, Postgres restarted, PgBouncer killed: 2xx or 503 throughout, back within seconds, nothing lost")
    func restarts() async throws {
        guard RedisServer.available else { return }
        let instance = try await DrillInstance.start()
        let redis: RedisServer
        do { redis = try await RedisServer() } catch {
            await instance.stop()
            throw error
        }
        do {
            try await drill(instance, redis)
        } catch {
            redis.stop()
            await instance.stop()
            throw error
        }
        redis.stop()
        await instance.stop()
    }

    /// What the flows saw.
    final class Tally: Sendable {
        let statuses = Mutex<[Int: Int]>([:])
        /// Break-glass sessions the API answered 201 for, and asked for.
        let opened = Atomic<Int>(0)
        let asked = Atomic<Int>(0)
        /// Patients the API answered 201 for, and asked for.
        let created = Atomic<Int>(0)
        let createAsked = Atomic<Int>(0)
        /// Appointments the API answered 201 for, and bookings asked for; slots handed out.
        let booked = Atomic<Int>(0)
        let bookAsked = Atomic<Int>(0)
        let slots = Atomic<Int>(0)
        /// Requests that got no HTTP answer at all (a reset, a client timeout).
        let unanswered = Atomic<Int>(0)
        let unansweredWhy = Mutex<[String]>([])
        var unavailable: Int { statuses.withLock { $0[503, default: 0] } }

        func record(_ status: HTTPResponse.Status) { statuses.withLock { $0[status.code, default: 0] += 1 } }
        var unexpected: [Int: Int] { statuses.withLock { $0.filter { !(200..<300).contains($0.key) && $0.key != 503 } } }
    }

    /// An answer's body as `type`, or nil.
    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(type, from: Data(String(buffer: response.body).utf8))
    }

    func drill(_ instance: DrillInstance, _ redis: RedisServer) async throws {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let owner = try Database(url: instance.url("DATABASE_DIRECT_URL"), logger: logger)
        _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
        await owner.shutdown()
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: instance.url("DATABASE_ADMIN_DIRECT_URL")), logger: logger)
        try await DemoData.seed(admin, environment: .development)

        var environment = instance.urls
        environment["REDIS_URL"] = "redis://127.0.0.1:\(redis.port)/0"
        environment["PORT"] = "0"
        environment["LOG_LEVEL"] = "critical"
        // Calls that find the database gone fail fast rather than wait out the request.
        environment["REQUEST_TIMEOUT_SECONDS"] = "10"
        // The drill's loop is one user at full speed: the limits are tested elsewhere.
        environment["RATE_LIMIT_USER_PER_MINUTE"] = "1000000"
        environment["RATE_LIMIT_ADDRESS_PER_MINUTE"] = "1000000"
        let configuration = try CoreAPIConfiguration(environment: environment)
        #expect(configuration.redis != nil && !configuration.isEmbeddedDefault)
        let app = try await buildApplication(configuration: configuration)
        let issuer = try await LocalDevIssuer(environment: .development, secret: try #require(environment["RESTARTIX_DEV_TOKEN_SECRET"]))
        let ownerPerson = try #require(DemoData.person("demo-owner"))
        let token = try await issuer.issue(user: ownerPerson.userID, organization: ownerPerson.organizationID)
        let auth: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
        let tally = Tally()
        let specialist = try #require(DemoData.person("demo-specialist")).userID.lowercasedString
        // Every round books a slot of its own, on the grid, from two days ahead.
        let firstSlot = ((Date().timeIntervalSince1970 / 1800).rounded(.up) + 96) * 1800

        try await app.test(.live) { client in
            /// One round of the flows a clinic's staff runs: who am I, open and close a
            /// break-glass session, which clinic is this address, add a patient, read it back and
            /// book it an appointment. True when every step succeeded.
            @Sendable func flows() async throws -> Bool {
                var ok = true
                try await client.execute(uri: "/v1/me", method: .get, headers: auth) { tally.record($0.status); ok = ok && $0.status == .ok }
                tally.asked.add(1, ordering: .relaxed)
                let id = try await client.execute(
                    uri: "/v1/break-glass-sessions", method: .post, headers: auth,
                    body: ByteBuffer(string: #"{"reason":"Live fault drill: on-call access","duration_seconds":600}"#)
                ) { response -> String? in
                    tally.record(response.status)
                    guard response.status == .created else { return nil }
                    tally.opened.add(1, ordering: .relaxed)
                    return Self.decode(ElevatedSessionBody.self, response)?.id
                }
                ok = ok && id != nil
                if let id {
                    try await client.execute(uri: "/v1/break-glass-sessions/\(id)", method: .delete, headers: auth) { tally.record($0.status); ok = ok && $0.status == .ok }
                }
                try await client.execute(uri: "/v1/public/organizations/resolve?domain=demo-clinic.clinic.localhost", method: .get) {
                    tally.record($0.status)
                    ok = ok && $0.status == .ok
                }
                // A patient: sealed, written with its audit row, read back and opened.
                tally.createAsked.add(1, ordering: .relaxed)
                let patient = try await client.execute(
                    uri: "/v1/patients", method: .post, headers: auth, body: ByteBuffer(string: #"{"name":"Live Drill Patient","phone":"+40 700 000 000"}"#)
                ) { response -> String? in
                    tally.record(response.status)
                    guard response.status == .created else { return nil }
                    tally.created.add(1, ordering: .relaxed)
                    return Self.decode(PatientBody.self, response)?.id
                }
                ok = ok && patient != nil
                if let patient {
                    try await client.execute(uri: "/v1/patients/\(patient)", method: .get, headers: auth) { response in
                        tally.record(response.status)
                        let opened = Self.decode(PatientBody.self, response)
                        ok = ok && response.status == .ok && opened?.phone == "+40 700 000 000"
                    }
                    // Booked: held (in Redis, or the database while Redis is down), then booked
                    // by sending the hold back.
                    let start = Date(timeIntervalSince1970: firstSlot + Double(tally.slots.add(1, ordering: .relaxed).oldValue) * 1800)
                    tally.bookAsked.add(1, ordering: .relaxed)
                    let slot = #"{"patient_id":"\#(patient)","specialist_id":"\#(specialist)","starts_at":"\#(APITime.string(start))"}"#
                    let hold = try await client.execute(uri: "/v1/appointments/holds", method: .post, headers: auth, body: ByteBuffer(string: slot)) { response -> String? in
                        tally.record(response.status)
                        return response.status == .created ? String(String(buffer: response.body).dropLast()) + #","kind":"in_person"}"# : nil
                    }
                    ok = ok && hold != nil
                    if let hold {
                        try await client.execute(uri: "/v1/appointments", method: .post, headers: auth, body: ByteBuffer(string: hold)) { response in
                            tally.record(response.status)
                            if response.status == .created { tally.booked.add(1, ordering: .relaxed) }
                            ok = ok && response.status == .created
                        }
                    }
                }
                return ok
            }
            /// Runs the flows until a round succeeds; how long that took.
            func recovery(_ label: String, within limit: Duration = .seconds(20)) async throws -> Duration {
                let start = ContinuousClock.now
                while ContinuousClock.now - start < limit {
                    if try await flows() { return ContinuousClock.now - start }
                    try await Task.sleep(for: .milliseconds(100))
                }
                Issue.record("\(label): no round succeeded within \(limit); statuses \(tally.statuses.withLock { $0 })")
                return limit
            }
            func rateLimited() async throws -> Bool {
                try await client.execute(uri: "/v1/me", method: .get, headers: auth) { $0.headers[HTTPField.Name("RateLimit-Limit")!] != nil }
            }

            #expect(try await flows(), "the baseline")
            #expect(try await rateLimited(), "the limiter runs through Redis")

            // Redis gone: every request still answers (the limiter fails open, the cache and
            // the activity debounce fall back to the process), and the limiter is back with it.
            await redis.kill()
            for _ in 0..<3 { #expect(try await flows(), "Redis down") }
            try await redis.start()
            var limiterBack = false
            for _ in 0..<100 where !limiterBack {
                limiterBack = try await rateLimited()
                if !limiterBack { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(limiterBack, "the rate limiter uses Redis again once it is back")

            // Postgres restarted under the pools (immediate: backends die without a goodbye),
            // and PgBouncer killed and started: calls in between get 503s, then it all works.
            let faults: [(String, @Sendable () async throws -> Void)] = [
                ("Postgres restart -m immediate", { try await instance.services("postgres", "restart", "immediate") }),
                ("PgBouncer killed with SIGKILL", {
                    try await instance.services("pgbouncer", "kill")
                    try await Task.sleep(for: .milliseconds(500))
                    try await instance.services("pgbouncer", "start")
                }),
            ]
            // Whether the faults were felt: a drill proves nothing if they fell between requests.
            // One fault alone may be ridden out (a pool that reconnects within the request's
            // time answers 200), so the 503s are counted over both.
            var felt: [String] = []
            for (label, inject) in faults {
                let load = Task {
                    // Load while the fault happens: the answers must be successes or 503s.
                    for _ in 0..<200 {
                        if Task.isCancelled { break }
                        do { _ = try await flows() } catch where !(error is CancellationError) {
                            // (A CancellationError is this loop's own end, not the server's.)
                            tally.unanswered.add(1, ordering: .relaxed)
                            tally.unansweredWhy.withLock { $0.append("\(ContinuousClock.now): \(String(describing: error).prefix(200))") }
                        } catch {}
                    }
                }
                try await Task.sleep(for: .milliseconds(200))
                let unavailableBefore = tally.unavailable
                try await inject()
                load.cancel()
                _ = await load.result
                felt.append("\(label): \(tally.unavailable - unavailableBefore) 503s")
                let took = try await recovery(label)
                #expect(took < .seconds(20), "\(label): back after \(took)")
                for _ in 0..<3 { #expect(try await flows(), "\(label): after recovery") }
            }
            #expect(tally.unavailable > 0, "the faults were felt: \(felt)")
        }
        #expect(tally.unexpected.isEmpty, "only successes and 503s: \(tally.statuses.withLock { $0 })")
        #expect(tally.unanswered.load(ordering: .relaxed) == 0, "every request got an HTTP answer: \(tally.unansweredWhy.withLock { $0 })")

        // Ground truth: the sessions the API said it opened are all there, and none that was
        // not asked for.
        let rows = try await admin.unscoped(reason: "live fault drill: count sessions", actor: .system("tests")) { tx in
            try #require(try await tx.first("SELECT count(*) AS n FROM break_glass_sessions")).decode("n", as: Int.self)
        }
        let opened = tally.opened.load(ordering: .relaxed), asked = tally.asked.load(ordering: .relaxed)
        #expect(rows >= opened && rows <= asked, "\(rows) rows for \(opened) answered 201 of \(asked) asked")
        // And the patients, each with its audit row (written in the same transaction or not at all).
        let (patients, audited) = try await admin.unscoped(reason: "live fault drill: count patients", actor: .system("tests")) { tx in
            (
                try #require(try await tx.first("SELECT count(*) AS n FROM patients")).decode("n", as: Int.self),
                try #require(try await tx.first("SELECT count(*) AS n FROM audit_log WHERE action = 'patient.create'")).decode("n", as: Int.self)
            )
        }
        let created = tally.created.load(ordering: .relaxed), createAsked = tally.createAsked.load(ordering: .relaxed)
        #expect(patients >= created && patients <= createAsked, "\(patients) patients for \(created) answered 201 of \(createAsked) asked")
        #expect(audited == patients, "one audit row per patient")
        // And the bookings: each one slot's, with its audit row.
        let (appointments, slots, bookAudited) = try await admin.unscoped(reason: "live fault drill: count appointments", actor: .system("tests")) { tx in
            (
                try #require(try await tx.first("SELECT count(*) AS n FROM appointments WHERE status = 'booked'")).decode("n", as: Int.self),
                try #require(try await tx.first("SELECT count(DISTINCT booked_slot) AS n FROM appointments")).decode("n", as: Int.self),
                try #require(try await tx.first("SELECT count(*) AS n FROM audit_log WHERE action = 'appointment.book'")).decode("n", as: Int.self)
            )
        }
        let booked = tally.booked.load(ordering: .relaxed), bookAsked = tally.bookAsked.load(ordering: .relaxed)
        #expect(appointments >= booked && appointments <= bookAsked && booked > 0, "\(appointments) bookings for \(booked) answered 201 of \(bookAsked) asked")
        #expect(slots == appointments && bookAudited == appointments, "one slot and one audit row per booking")
        await admin.shutdown()
    }
}
