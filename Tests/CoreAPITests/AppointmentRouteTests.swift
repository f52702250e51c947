@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixRedis
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Synchronization
import Testing

/// The appointment routes with the patient tests' clinics (SQLite, and Postgres through
/// PgBouncer with Redis, and with Redis down): hold, book, cancel, read, list; each role, each
/// bad input, another clinic's ids; races for one slot; the database's rows as the ground truth.
extension PatientRouteTests {
    /// The next slot on the 30-minute grid, `days` ahead (a different one for every test run).
    static func slotStart(days: Int = 2, offset: Int = 0) -> Date {
        let grid = 1800.0
        let base = (Date().timeIntervalSince1970 / grid).rounded(.up) * grid
        return Date(timeIntervalSince1970: base + Double(days) * 86_400 + Double(offset) * grid)
    }

    static func iso(_ date: Date) -> String { APITime.string(date) }

    /// Holds `start` with the fixture's specialist for `patient` as `who`; the response.
    static func hold(
        _ client: some TestClientProtocol, _ fixture: Fixture, as who: String, patient: String, start: Date, specialist: UUID? = nil,
        headers: HTTPFields? = nil
    ) async throws -> (HTTPResponse.Status, HoldBody?, Problem?) {
        let body = json([
            "patient_id": patient, "specialist_id": (specialist ?? fixture.users["specialist"]!).lowercasedString, "starts_at": iso(start),
        ])
        return try await client.execute(uri: "/v1/appointments/holds", method: .post, headers: headers ?? fixture.auth(who), body: body) { response in
            (response.status, decode(HoldBody.self, response), decode(Problem.self, response))
        }
    }

    /// Books with `hold` as `who`; the response.
    static func book(
        _ client: some TestClientProtocol, _ fixture: Fixture, as who: String, hold: HoldBody, kind: String = "in_person", headers: HTTPFields? = nil
    ) async throws -> (HTTPResponse.Status, AppointmentBody?, Problem?) {
        let body = json([
            "hold": ["token": hold.hold.token, "fence": hold.hold.fence, "store": hold.hold.store] as [String: Any],
            "patient_id": hold.patient_id, "specialist_id": hold.specialist_id, "starts_at": hold.starts_at, "kind": kind,
        ])
        return try await client.execute(uri: "/v1/appointments", method: .post, headers: headers ?? fixture.auth(who), body: body) { response in
            (response.status, decode(AppointmentBody.self, response), decode(Problem.self, response))
        }
    }

    /// The two clinics' appointment rows (the ground truth).
    static func appointmentRows(_ fixture: Fixture) async throws -> Int {
        try await fixture.count("SELECT count(*) AS n FROM appointments WHERE organization_id IN (\(fixture.clinic), \(fixture.otherClinic))")
    }

    @Test("a patient books at most 10 upcoming appointments for itself (409 tooManyUpcoming), staff may book more; a patient cannot cancel one that has started, the clinic can", arguments: PatientRouteTests.backends)
    func patientLimits(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let mine = try await Self.createOwn(client, fixture)
            var booked: [AppointmentBody] = []
            for slot in 0..<Appointments.defaultMaximumUpcomingPerPatient {
                let (_, granted, _) = try await Self.hold(client, fixture, as: "patient", patient: mine.id, start: Self.slotStart(offset: slot))
                let (status, made, problem) = try await Self.book(client, fixture, as: "patient", hold: try #require(granted))
                #expect(status == .created, "\(slot): \(String(describing: problem))")
                booked.append(try #require(made))
            }
            let start = Self.slotStart(offset: 20)
            let (_, granted, _) = try await Self.hold(client, fixture, as: "patient", patient: mine.id, start: start)
            let (refused, _, problem) = try await Self.book(client, fixture, as: "patient", hold: try #require(granted))
            #expect(refused == .conflict && problem?.code == "appointment.tooManyUpcoming", "\(String(describing: problem))")
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE patient_id = \(UUID(uuidString: mine.id)!)") == 10)
            // The refused hold was freed: staff book the slot for the patient.
            let (_, staffHold, _) = try await Self.hold(client, fixture, as: "owner", patient: mine.id, start: start)
            let (byStaff, _, _) = try await Self.book(client, fixture, as: "owner", hold: try #require(staffHold))
            #expect(byStaff == .created)
            // One that started an hour ago: the patient may not cancel it; the clinic may.
            let first = try #require(UUID(uuidString: booked[0].id))
            try await fixture.admin.unscoped(reason: "test: an appointment in the past", actor: .system("tests")) { tx in
                try await tx.execute("UPDATE appointments SET starts_at = \(Date().addingTimeInterval(-3600)), ends_at = \(Date().addingTimeInterval(-1800)) WHERE id = \(first)")
            }
            try await client.execute(uri: "/v1/appointments/\(booked[0].id)/cancel", method: .post, headers: fixture.auth("patient")) { response in
                #expect(response.status == .conflict && Self.decode(Problem.self, response)?.code == "appointment.alreadyStarted")
            }
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE id = \(first) AND status = 'booked'") == 1, "nothing changed")
            try await client.execute(uri: "/v1/appointments/\(booked[0].id)/cancel", method: .post, headers: fixture.auth("owner")) { response in
                #expect(response.status == .ok)
            }
            // An upcoming one the patient still cancels.
            try await client.execute(uri: "/v1/appointments/\(booked[1].id)/cancel", method: .post, headers: fixture.auth("patient")) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("deleting a linked patient record cuts its account off: its appointments and everything else of the clinic are refused from then on, and the membership is gone", arguments: PatientRouteTests.backends)
    func deletedPatientCutOff(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let mine = try await Self.createOwn(client, fixture)
            let (_, granted, _) = try await Self.hold(client, fixture, as: "patient", patient: mine.id, start: Self.slotStart())
            let (_, made, _) = try await Self.book(client, fixture, as: "patient", hold: try #require(granted))
            let appointment = try #require(made)
            try await client.execute(uri: "/v1/appointments/\(appointment.id)", method: .get, headers: fixture.auth("patient")) { #expect($0.status == .ok) }
            // Under break-glass (the library's callers; no route acts under a session) the
            // membership cannot be removed, so the record is not deleted either.
            let tenants = TenantDatabase(
                configuration: try #require(fixture.appDatabase ?? fixture.platformDatabase), tables: PlatformSchema.tenantTables, logger: Logger(label: "test")
            )
            let patients = Patients(tenants: tenants, cipher: ColumnCipher(keyring: try #require(fixture.keyring), logger: Logger(label: "test")))
            let glass = try await ElevatedSessions(admin: fixture.admin).openBreakGlass(
                organization: fixture.clinic, user: fixture.users["owner"]!, reason: "test: a delete under break-glass"
            )
            let patientID = try #require(UUID(uuidString: mine.id))
            let refused = await #expect(throws: TenancyError.self) { try await patients.delete(patientID, as: glass.context) }
            #expect(refused?.code == .roleNotAllowed, "\(String(describing: refused))")
            #expect(try await fixture.count("SELECT count(*) AS n FROM patients WHERE id = \(patientID) AND deleted_at IS NULL") == 1, "nothing changed")
            await tenants.shutdown()
            try await client.execute(uri: "/v1/patients/\(mine.id)", method: .delete, headers: fixture.auth("owner")) { #expect($0.status == .noContent) }
            // At once, though memberships are cached: the route drops the cache.
            for uri in ["/v1/appointments/\(appointment.id)", "/v1/me", "/v1/patients/\(mine.id)"] {
                try await client.execute(uri: uri, method: .get, headers: fixture.auth("patient")) { response in
                    #expect(response.status == .forbidden, "\(uri): \(response.status)")
                }
            }
            try await client.execute(uri: "/v1/appointments/\(appointment.id)/cancel", method: .post, headers: fixture.auth("patient")) { #expect($0.status == .forbidden) }
            let patientUser = fixture.users["patient"]!
            #expect(try await fixture.count("SELECT count(*) AS n FROM memberships WHERE user_id = \(patientUser) AND organization_id = \(fixture.clinic)") == 0)
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE id = \(UUID(uuidString: appointment.id)!) AND status = 'booked'") == 1)
            // The clinic still sees and manages the appointment.
            try await client.execute(uri: "/v1/appointments/\(appointment.id)", method: .get, headers: fixture.auth("owner")) { #expect($0.status == .ok) }
        }
    }

    @Test("appointments: a patient holds a slot and books it; it is taken for everyone else; canceled, the slot is booked again with a greater fence; audited", arguments: PatientRouteTests.backends)
    func appointmentLifecycle(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let mine = try await Self.createOwn(client, fixture)
            let other = try await Self.create(client, fixture, ["name": "Jane Doe"])
            let start = Self.slotStart()

            let (status, granted, _) = try await Self.hold(client, fixture, as: "patient", patient: mine.id, start: start)
            #expect(status == .created)
            let hold = try #require(granted)
            #expect(hold.hold.store == (backend.isPostgres ? "redis" : "database"))
            #expect(hold.ends_at == Self.iso(start.addingTimeInterval(1800)))
            #expect(abs(try APITime.parse(hold.expires_at, field: "expires_at").timeIntervalSinceNow - 600) < 60, "ten minutes")
            // Held: nobody else holds it, staff included.
            let (held, _, heldProblem) = try await Self.hold(client, fixture, as: "owner", patient: other.id, start: start)
            #expect(held == .conflict && heldProblem?.code == "appointment.slotHeld")

            let (booked, made, _) = try await Self.book(client, fixture, as: "patient", hold: hold, kind: "video")
            #expect(booked == .created)
            let appointment = try #require(made)
            #expect(appointment.patient_id == mine.id && appointment.specialist_id == fixture.users["specialist"]!.lowercasedString)
            #expect(appointment.status == "booked" && appointment.kind == "video" && appointment.starts_at == Self.iso(start) && appointment.canceled_at == nil)
            // The row: the slot booked under the hold's fence, owned by the patient's account.
            let id = try #require(UUID(uuidString: appointment.id))
            let row = try #require(try await fixture.rows("SELECT booked_slot, slot, fence, patient_user_id, status FROM appointments WHERE id = \(id)").first)
            #expect(try row.decode("fence", as: Int.self) == hold.hold.fence)
            #expect(try row.decode("booked_slot", as: String?.self) == row.decode("slot", as: String.self))
            #expect(try row.decode("patient_user_id", as: UUID?.self) == fixture.users["patient"]!)

            // Taken now: held by no one (the hold was freed), booked once.
            let (taken, _, takenProblem) = try await Self.hold(client, fixture, as: "owner", patient: other.id, start: start)
            #expect(taken == .conflict && takenProblem?.code == "appointment.slotTaken")
            // The same hold again (a retry whose answer was lost): that booking, not a second one.
            let (again, repeated, _) = try await Self.book(client, fixture, as: "patient", hold: hold)
            #expect(again == .created && repeated == appointment, "a retry returns the booking it made")
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE organization_id = \(fixture.clinic)") == 1)

            // Read and listed, by staff and by the patient.
            for who in ["patient", "specialist", "owner"] {
                try await client.execute(uri: "/v1/appointments/\(appointment.id)", method: .get, headers: fixture.auth(who)) { response in
                    #expect(response.status == .ok && Self.decode(AppointmentBody.self, response) == appointment, "\(who)")
                }
            }
            let day = String(Self.iso(start).prefix(10))
            try await client.execute(uri: "/v1/appointments?date=\(day)", method: .get, headers: fixture.auth("specialist")) { response in
                #expect(Self.decode(AppointmentDayBody.self, response)?.appointments.map(\.id) == [appointment.id])
            }
            try await client.execute(uri: "/v1/appointments?date=\(day)&specialist_id=\(fixture.users["owner"]!.lowercasedString)", method: .get, headers: fixture.auth("owner")) { response in
                #expect(response.status == .ok && Self.decode(AppointmentDayBody.self, response)?.appointments.isEmpty == true, "another specialist's day")
            }

            // The patient cancels: the slot is free; a second cancel is 409.
            let canceled = try await client.execute(uri: "/v1/appointments/\(appointment.id)/cancel", method: .post, headers: fixture.auth("patient")) { response -> AppointmentBody? in
                #expect(response.status == .ok)
                return Self.decode(AppointmentBody.self, response)
            }
            #expect(canceled?.status == "canceled" && canceled?.canceled_at != nil)
            try await client.execute(uri: "/v1/appointments/\(appointment.id)/cancel", method: .post, headers: fixture.auth("owner")) { response in
                #expect(response.status == .conflict && Self.decode(Problem.self, response)?.code == "appointment.alreadyCanceled")
            }
            // Booked again, for another patient, by staff: a greater fence.
            let (_, second, _) = try await Self.hold(client, fixture, as: "owner", patient: other.id, start: start)
            let rehold = try #require(second)
            #expect(rehold.hold.fence > hold.hold.fence)
            let (rebooked, next, _) = try await Self.book(client, fixture, as: "owner", hold: rehold)
            #expect(rebooked == .created && next?.patient_id == other.id)
            // The day shows both, by start then id; the patient sees only its own.
            try await client.execute(uri: "/v1/appointments?date=\(day)", method: .get, headers: fixture.auth("owner")) { response in
                #expect(Self.decode(AppointmentDayBody.self, response)?.appointments.map(\.status).sorted() == ["booked", "canceled"])
            }
            try await client.execute(uri: "/v1/appointments?date=\(day)", method: .get, headers: fixture.auth("patient")) { response in
                #expect(Self.decode(AppointmentDayBody.self, response)?.appointments.map(\.id) == [appointment.id])
            }
            // The audit trail: who booked and canceled.
            let trail = try await fixture.rows("""
                SELECT action, actor_user_id FROM audit_log WHERE organization_id = \(fixture.clinic) AND resource_type = 'appointment' ORDER BY created_at, id
                """)
            #expect(try trail.map { try $0.decode("action", as: String.self) } == ["appointment.book", "appointment.cancel", "appointment.book"])
            #expect(try trail.map { try $0.decode("actor_user_id", as: UUID.self) } == [fixture.users["patient"]!, fixture.users["patient"]!, fixture.users["owner"]!])
        }
    }

    @Test("appointments across the line: another clinic's and another patient's are 404 on every route and unchanged", arguments: PatientRouteTests.backends)
    func appointmentIsolation(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            _ = try await Self.createOwn(client, fixture)
            let other = try await Self.create(client, fixture, ["name": "Jane Doe"])
            let start = Self.slotStart(days: 3)
            let (_, granted, _) = try await Self.hold(client, fixture, as: "owner", patient: other.id, start: start)
            let (_, made, _) = try await Self.book(client, fixture, as: "owner", hold: try #require(granted))
            let appointment = try #require(made)
            let state = { try await fixture.rows("SELECT status, updated_at FROM appointments WHERE id = \(UUID(uuidString: appointment.id)!)").map { "\(try $0.decode("status", as: String.self)) \(try $0.decode("updated_at", as: Date.self))" } }
            let before = try await state()
            // Another clinic's owner, and a patient of the clinic who is not this appointment's.
            for who in ["other-owner", "patient"] {
                try await client.execute(uri: "/v1/appointments/\(appointment.id)", method: .get, headers: fixture.auth(who)) { response in
                    #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound", "\(who)")
                }
                try await client.execute(uri: "/v1/appointments/\(appointment.id)/cancel", method: .post, headers: fixture.auth(who)) { response in
                    #expect(response.status == .notFound, "\(who)")
                }
                try await client.execute(uri: "/v1/appointments?date=\(Self.iso(start).prefix(10))", method: .get, headers: fixture.auth(who)) { response in
                    #expect(response.status == .ok && Self.decode(AppointmentDayBody.self, response)?.appointments.isEmpty == true, "\(who)")
                }
                // Holding for a patient the principal cannot see: 404, nothing held.
                let (status, _, problem) = try await Self.hold(client, fixture, as: who, patient: other.id, start: start.addingTimeInterval(1800))
                #expect(status == .notFound && problem?.code == "tenancy.notFound", "\(who)")
            }
            // Another clinic's owner naming this clinic's specialist for a patient of its own clinic:
            // the specialist is not on its staff.
            let theirs = try await Self.create(client, fixture, as: "other-owner", ["name": "Tom Smith"])
            let (foreign, _, foreignProblem) = try await Self.hold(client, fixture, as: "other-owner", patient: theirs.id, start: start)
            #expect(foreign == .badRequest && foreignProblem?.detail.contains("specialist_id") == true)
            // The stolen hold of one clinic books nothing in another.
            let (_, slot2, _) = try await Self.hold(client, fixture, as: "owner", patient: other.id, start: start.addingTimeInterval(3600))
            var stolen = try #require(slot2)
            stolen = HoldBody(hold: stolen.hold, patient_id: theirs.id, specialist_id: stolen.specialist_id, starts_at: stolen.starts_at, ends_at: stolen.ends_at, expires_at: stolen.expires_at)
            let (stolenStatus, _, _) = try await Self.book(client, fixture, as: "other-owner", hold: stolen)
            #expect(stolenStatus == .conflict || stolenStatus == .badRequest, "\(stolenStatus)")
            #expect(try await state() == before)
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE organization_id = \(fixture.otherClinic)") == 0)
        }
    }

    @Test("appointments, bad input: each rule named, nothing written; no token 401; a forged fence books nothing", arguments: PatientRouteTests.backends)
    func appointmentBadInput(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let patient = try await Self.create(client, fixture, ["name": "Jane Doe"])
            let start = Self.slotStart(days: 4)
            let cases: [(String, Date, UUID?, String)] = [
                ("off the grid", start.addingTimeInterval(600), nil, "slot grid"),
                ("with seconds", start.addingTimeInterval(0.5), nil, "slot grid"),
                ("in the past", Self.slotStart(days: -2), nil, "future"),
                ("beyond a year", Self.slotStart(days: 400), nil, "within a year"),
                ("a patient as specialist", start, fixture.users["patient"]!, "specialist_id"),
                ("another clinic's owner as specialist", start, fixture.users["other-owner"]!, "specialist_id"),
                ("nobody as specialist", start, UUIDv7.generate(), "specialist_id"),
            ]
            for (label, when, specialist, rule) in cases {
                let (status, _, problem) = try await Self.hold(client, fixture, as: "owner", patient: patient.id, start: when, specialist: specialist)
                #expect(status == .badRequest && problem?.code == "appointment.invalidField" && problem?.detail.contains(rule) == true, "\(label): \(String(describing: problem))")
            }
            let bodies: [(String, [String: Any], String)] = [
                ("no start", ["patient_id": patient.id, "specialist_id": fixture.users["specialist"]!.lowercasedString], "starts_at"),
                ("a start without offset", ["patient_id": patient.id, "specialist_id": fixture.users["specialist"]!.lowercasedString, "starts_at": "2027-01-04T10:00:00"], "starts_at"),
                ("a patient that is not a UUID", ["patient_id": "Ana Popescu", "specialist_id": fixture.users["specialist"]!.lowercasedString, "starts_at": Self.iso(start)], "patient_id"),
            ]
            for (label, body, field) in bodies {
                try await client.execute(uri: "/v1/appointments/holds", method: .post, headers: fixture.auth("owner"), body: Self.json(body)) { response in
                    let problem = Self.decode(Problem.self, response)
                    #expect(response.status == .badRequest && problem?.detail.contains(field) == true, "\(label): \(String(describing: problem))")
                    #expect(!(problem?.detail.contains("Ana Popescu") ?? true), "the value is never echoed")
                }
            }
            let (_, granted, _) = try await Self.hold(client, fixture, as: "owner", patient: patient.id, start: start)
            let hold = try #require(granted)
            // A fence of the client's own, a token of its own, the hold of another slot, another kind: nothing booked.
            let forged = [
                HoldBody(hold: HoldReference(token: hold.hold.token, fence: hold.hold.fence + 10_000_000, store: hold.hold.store), patient_id: hold.patient_id, specialist_id: hold.specialist_id, starts_at: hold.starts_at, ends_at: hold.ends_at, expires_at: hold.expires_at),
                HoldBody(hold: HoldReference(token: "0d5e6b1c-0000-4000-8000-000000000000", fence: hold.hold.fence, store: hold.hold.store), patient_id: hold.patient_id, specialist_id: hold.specialist_id, starts_at: hold.starts_at, ends_at: hold.ends_at, expires_at: hold.expires_at),
                HoldBody(hold: hold.hold, patient_id: hold.patient_id, specialist_id: hold.specialist_id, starts_at: Self.iso(start.addingTimeInterval(1800)), ends_at: hold.ends_at, expires_at: hold.expires_at),
            ]
            for (index, body) in forged.enumerated() {
                let (status, _, problem) = try await Self.book(client, fixture, as: "owner", hold: body)
                #expect(status == .conflict && problem?.code == "appointment.holdExpired", "forged \(index)")
            }
            for (label, kind, store) in [("kind", "house_call", hold.hold.store), ("store", "in_person", "disk")] {
                let body = HoldBody(hold: HoldReference(token: hold.hold.token, fence: hold.hold.fence, store: store), patient_id: hold.patient_id, specialist_id: hold.specialist_id, starts_at: hold.starts_at, ends_at: hold.ends_at, expires_at: hold.expires_at)
                let (status, _, problem) = try await Self.book(client, fixture, as: "owner", hold: body, kind: kind)
                #expect(status == .badRequest && problem?.detail.contains(label) == true, "\(label)")
            }
            try await client.execute(uri: "/v1/appointments?date=2026-13-45", method: .get, headers: fixture.auth("owner")) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v1/appointments", method: .get, headers: fixture.auth("owner")) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v1/appointments/not-an-id", method: .get, headers: fixture.auth("owner")) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v1/appointments/\(UUIDv7.generate().lowercasedString)/cancel", method: .post, headers: fixture.auth("owner")) { #expect($0.status == .notFound) }
            for (uri, method) in [("/v1/appointments/holds", HTTPRequest.Method.post), ("/v1/appointments", .post), ("/v1/appointments?date=2027-01-04", .get)] {
                try await client.execute(uri: uri, method: method) { #expect($0.status == .unauthorized, "\(uri)") }
            }
            #expect(try await Self.appointmentRows(fixture) == 0, "nothing written")
            // The real hold still books after all that.
            let (status, _, _) = try await Self.book(client, fixture, as: "owner", hold: hold)
            #expect(status == .created)
        }
    }

    @Test("booking race: fifty patients for one slot at once, one booking; with Redis down too", arguments: PatientRouteTests.backends, [false, true])
    func bookingRace(backend: Backend, redisDown: Bool) async throws {
        guard !redisDown || backend.isPostgres else { return }  // SQLite has no Redis to lose
        try await withAPI(backend, configure: { configuration in
            if redisDown {
                // Nothing listens there: every hold falls back to the database reservation.
                var redis = try! RedisConfiguration(url: "redis://127.0.0.1:\(try! LoopbackPorts.free())/0")
                redis.connectTimeout = .milliseconds(200)
                configuration.redis = redis
            }
        }) { client, fixture in
            // Fifty patient members with their records and tokens.
            let issuer = try await LocalDevIssuer(environment: .development, secret: fixture.devSecret)
            var people: [(token: String, patient: UUID)] = []
            try await fixture.admin.unscoped(reason: "test: fifty patients", actor: .system("tests")) { tx in
                for index in 0..<50 {
                    let user = UUIDv7.generate(), patient = UUIDv7.generate()
                    try await tx.execute("INSERT INTO users (id, display_name) VALUES (\(user), \("racer-\(index)"))")
                    try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(fixture.clinic), \(user), 'patient')")
                    try await tx.execute("INSERT INTO patients (id, organization_id, user_id, name) VALUES (\(patient), \(fixture.clinic), \(user), \(Data([0x00])))")
                    people.append((try await issuer.issue(user: user, organization: fixture.clinic), patient))
                }
            }
            let start = Self.slotStart(days: 5)
            let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
                for person in people {
                    group.addTask {
                        let headers: HTTPFields = [.authorization: "Bearer \(person.token)", .contentType: "application/json"]
                        let (status, hold, problem) = try await Self.hold(client, fixture, as: "", patient: person.patient.lowercasedString, start: start, headers: headers)
                        guard status == .created, let hold else { return problem?.code ?? "\(status)" }
                        if redisDown { #expect(hold.hold.store == "database") }
                        let (booked, _, bookProblem) = try await Self.book(client, fixture, as: "", hold: hold, headers: headers)
                        return booked == .created ? "booked" : bookProblem?.code ?? "\(booked)"
                    }
                }
                return try await group.reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(outcomes["booked"] == 1, "\(outcomes)")
            #expect(outcomes.values.reduce(0, +) == 50 && Set(outcomes.keys).isSubset(of: ["booked", "appointment.slotHeld", "appointment.slotTaken"]), "\(outcomes)")
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE organization_id = \(fixture.clinic) AND status = 'booked'") == 1)
        }
    }

    @Test("the database has the last word: with a hold store that grants everyone, fifty bookings of one slot make one; a stale fence books nothing", arguments: PatientRouteTests.backends)
    func databaseLastWord(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
            let tenants = TenantDatabase(configuration: try #require(fixture.appDatabase), tables: PlatformSchema.tenantTables, logger: logger)
            defer { Task { await tenants.shutdown() } }
            let grants = GrantingHolds()
            let appointments = Appointments(tenants: tenants, admin: fixture.admin, holds: grants)
            let staff = TenantContext(organizationID: fixture.clinic, userID: fixture.users["owner"]!, role: .owner)
            var created: [UUID] = []
            for index in 0..<5 { created.append(UUID(uuidString: try await Self.create(client, fixture, ["name": "Racer \(index)"]).id)!) }
            let patients = created
            let slot = AppointmentSlot(specialistID: fixture.users["specialist"]!, startsAt: Self.slotStart(days: 6))
            // Fifty holds granted (the store is broken), then fifty bookings at once.
            var granted: [SlotHold] = []
            for index in 0..<50 { granted.append(try await appointments.hold(slot, patient: patients[index % 5], as: staff)) }
            let holds = granted
            let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<50 {
                    group.addTask {
                        let hold = holds[index]
                        do {
                            _ = try await appointments.book(hold, slot: slot, patient: patients[index % 5], kind: .inPerson, as: staff)
                            return "booked"
                        } catch let error as AppointmentError {
                            return error.codeName
                        }
                    }
                }
                return try await group.reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(outcomes["booked"] == 1, "\(outcomes)")
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE organization_id = \(fixture.clinic) AND status = 'booked'") == 1)
            // Cancel it; a booking under a fence older than the one it was booked with is stale.
            let booked = try await fixture.rows("SELECT id, fence FROM appointments WHERE organization_id = \(fixture.clinic) AND status = 'booked'")[0]
            _ = try await appointments.cancel(try booked.decode("id", as: UUID.self), as: staff)
            let stale = SlotHold(slot: "", holder: "", token: "t", fence: try booked.decode("fence", as: Int.self), expiresAt: Date(), store: .memory)
            await #expect(throws: AppointmentError(.holdSuperseded, "a later hold of the slot has been booked with: hold the slot again")) {
                _ = try await appointments.book(stale, slot: slot, patient: patients[0], kind: .inPerson, as: staff)
            }
            #expect(try await fixture.count("SELECT count(*) AS n FROM appointments WHERE organization_id = \(fixture.clinic) AND status = 'booked'") == 0)
        }
    }
}

/// A broken hold store: grants every hold and confirms every one, with the fences a clock would
/// give (the test of what the database alone guarantees).
final class GrantingHolds: SlotHolds {
    private let counter = Mutex(0)

    func hold(slot: String, holder: String, ttl: Duration) async throws -> SlotHold? {
        let fence = counter.withLock { value -> Int in
            value += 1
            return Int(Date().timeIntervalSince1970 * 1_000_000) + value
        }
        return SlotHold(slot: slot, holder: holder, token: UUID().uuidString, fence: fence, expiresAt: Date().addingTimeInterval(ttl.secondsValue), store: .memory)
    }

    func release(_ hold: SlotHold) async throws -> Bool { true }

    func confirm(_ hold: SlotHold) async throws -> Date? { Date().addingTimeInterval(60) }
}
