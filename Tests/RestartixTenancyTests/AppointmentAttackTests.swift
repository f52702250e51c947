import Foundation
import RestartixKit
import RestartixPlatform
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// Bookings under attack from the app role's SQL (migration 11): a patient booking for someone
/// else, taking a booked slot, replaying a stale fence, moving or deleting a booking, forging the
/// slot fences; staff reaching another clinic. Every attack is refused and nothing changes; the
/// legitimate twins (a patient books and cancels its own) still work.
extension AdversarialTests {
    @Test("appointments: a patient books and cancels only its own; taken slots, stale fences, moved or deleted bookings and forged fences are refused", arguments: TenancyBackend.all)
    func appointmentAttacks(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let fixture = world.fixture
            let a = fixture.a.id, b = fixture.b.id
            let rows = fixture.rows["appointments"]!
            let patient = world.context(.patient)  // A1
            let later = Date().addingTimeInterval(86_400), end = later.addingTimeInterval(1800)
            // The slot key of A2's booking (the fixture books slot "appt:matrix:<row id>").
            let a2Slot = "appt:matrix:" + rows.a2.lowercasedString
            func insert(id: UUID = UUIDv7.generate(), organization: UUID = a, patient: UUID, account: UUID?, slot: String, fence: Int = 5) -> SQLQuery {
                """
                INSERT INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, starts_at, ends_at, kind, status, slot, booked_slot, fence) \
                VALUES (\(id), \(organization), \(patient), \(account), \(fixture.a.staffUser), \(later), \(end), 'in_person', 'booked', \(slot), \(slot), \(fence))
                """
            }
            let before = try await world.snapshot(databases.admin)
            var attacks: [(String, TenantContext, SQLQuery, (Refusal) -> Bool)] = [
                ("book for another patient, as that patient's account", patient,
                 insert(patient: fixture.a2.patient, account: fixture.a2.user, slot: "attack-1"), { $0 == .rowLevelSecurity }),
                ("book another patient's record under one's own account", patient,
                 insert(patient: fixture.a2.patient, account: fixture.a1.user, slot: "attack-2"), { "\($0)".contains("appointments_patient_user_check") }),
                ("take the slot another patient booked", patient,
                 insert(patient: fixture.a1.patient, account: fixture.a1.user, slot: a2Slot, fence: 999_999_999), { $0 == .unique }),
                ("replay a fence not greater than the slot's last booking's", world.context(.specialist),
                 """
                 INSERT INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, starts_at, ends_at, kind, status, slot, \
                 booked_slot, fence, canceled_at) VALUES (\(UUIDv7.generate()), \(a), \(fixture.a1.patient), \(fixture.a1.user), \(fixture.a.staffUser), \
                 \(later), \(end), 'in_person', 'canceled', \(a2Slot), NULL, 1, \(later))
                 """,
                 { "\($0)".contains("appointments_fence_order_check") }),
                ("move one's booking to another patient's account", patient,
                 "UPDATE appointments SET patient_user_id = \(fixture.a2.user) WHERE id = \(rows.a1)", { $0 == .privilege }),
                ("raise one's booking's fence", patient, "UPDATE appointments SET fence = 999999999 WHERE id = \(rows.a1)", { $0 == .privilege }),
                ("move one's booking to another time", world.context(.owner), "UPDATE appointments SET starts_at = \(end) WHERE id = \(rows.a1)", { $0 == .privilege }),
                ("delete a booking", world.context(.owner), "DELETE FROM appointments WHERE id = \(rows.a1)", { $0 == .privilege }),
                ("cancel another patient's booking", patient,
                 "UPDATE appointments SET status = 'canceled', booked_slot = NULL, canceled_at = \(later) WHERE id = \(rows.a2)", { $0 == .none(0) }),
                ("cancel another clinic's booking", world.context(.owner),
                 "UPDATE appointments SET status = 'canceled', booked_slot = NULL, canceled_at = \(later) WHERE id = \(rows.b)", { $0 == .none(0) }),
                ("book in another clinic", world.context(.owner),
                 insert(organization: b, patient: fixture.b1.patient, account: nil, slot: "attack-3"), { $0 == .rowLevelSecurity }),
                ("push a free slot's fence out of every later hold's reach", patient,
                 insert(patient: fixture.a1.patient, account: fixture.a1.user, slot: "attack-6", fence: Int(Int64.max)),
                 { "\($0)".contains("appointments_fence_range_check") }),
            ]
            if backend == .sqlite {
                attacks.append(("replace another clinic's booking by id", world.context(.owner),
                                """
                                INSERT OR REPLACE INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, starts_at, ends_at, \
                                kind, status, slot, booked_slot, fence) VALUES (\(rows.b), \(a), \(fixture.a1.patient), NULL, \(fixture.a.staffUser), \(later), \
                                \(end), 'in_person', 'booked', 'attack-4', 'attack-4', 9)
                                """,
                                { $0 == .unique }))
            } else {
                // The fences are the trigger's alone: no grant reads or writes them, nor runs it.
                for (label, sql) in [
                    ("read the slot fences", "SELECT count(*) FROM slot_fences"),
                    ("forge a slot's fence", "INSERT INTO slot_fences (organization_id, slot, fence) VALUES ('\(a.lowercasedString)', 'attack-5', 9223372036854775807)"),
                    ("raise every fence", "UPDATE slot_fences SET fence = fence + 1000000"),
                    ("run the fence trigger's function", "SELECT restartix_appointment_fence()"),
                ] {
                    attacks.append((label, world.context(.owner), SQLQuery(unsafeSQL: sql), { $0 == .privilege }))
                }
            }
            for (label, context, attack, refused) in attacks {
                let outcome = await Refusal.of(attack, as: context, on: databases.app)
                #expect(refused(outcome), "\(backend): \(label) → \(outcome)")
            }
            #expect(try await world.snapshot(databases.admin) == before)
            // The legitimate twins: the patient books a free slot for itself, then cancels it.
            let own = UUIDv7.generate()
            #expect(try await databases.app.execute(patient, insert(id: own, patient: fixture.a1.patient, account: fixture.a1.user, slot: "legit-\(own.lowercasedString)")) == 1)
            #expect(try await databases.app.execute(patient, "UPDATE appointments SET status = 'canceled', booked_slot = NULL, canceled_at = \(later) WHERE id = \(own)") == 1)
            // Canceled stays canceled: no UPDATE brings a booking back without a hold and a fence.
            for who in [patient, world.context(.owner)] {
                let revived = await Refusal.of(
                    "UPDATE appointments SET status = 'booked', booked_slot = \("legit-\(own.lowercasedString)"), canceled_at = NULL WHERE id = \(own)",
                    as: who, on: databases.app
                )
                #expect(revived == .privilege, "\(backend): revived as \(who.role) → \(revived)")
            }
        }
    }

    @Test("appointment follow-ups: the database writes them with every booking, whoever books; the app role only reads them, staff only", arguments: TenancyBackend.all)
    func followupAttacks(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let fixture = world.fixture
            let a = fixture.a.id
            let patient = world.context(.patient)  // A1
            let owner = world.context(.owner)
            let later = Date().addingTimeInterval(86_400), end = later.addingTimeInterval(1800)
            func book(_ id: UUID, kind: String) -> SQLQuery {
                let slot = "followup-" + id.lowercasedString
                return """
                    INSERT INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, starts_at, ends_at, kind, status, slot, booked_slot, fence) \
                    VALUES (\(id), \(a), \(fixture.a1.patient), \(fixture.a1.user), \(fixture.a.staffUser), \(later), \(end), \(kind), 'booked', \(slot), \(slot), 5)
                    """
            }
            func owed(_ appointment: UUID) async throws -> [String] {
                try await databases.admin.withOrganization(a, actor: .system("tests")) { tx in
                    try await tx.query("""
                        SELECT kind, state, attempts FROM appointment_followups WHERE appointment_id = \(appointment) ORDER BY kind
                        """).map { "\(try $0.decode("kind", as: String.self)):\(try $0.decode("state", as: String.self)):\(try $0.decode("attempts", as: Int.self))" }
                }
            }
            // A patient booking with the app role's own SQL, not through the API, still owes its follow-ups.
            let video = UUIDv7.generate(), visit = UUIDv7.generate()
            #expect(try await databases.app.execute(patient, book(video, kind: "video")) == 1)
            #expect(try await databases.app.execute(patient, book(visit, kind: "in_person")) == 1)
            #expect(try await owed(video) == ["confirmation_email:pending:0", "video_room:pending:0"])
            #expect(try await owed(visit) == ["confirmation_email:pending:0"])
            // Staff read their clinic's; a patient reads none, not even its own.
            #expect(try await databases.app.query(owner, "SELECT kind FROM appointment_followups WHERE appointment_id = \(video)").count == 2)
            #expect(try await databases.app.query(patient, "SELECT kind FROM appointment_followups WHERE appointment_id = \(video)").isEmpty)
            #expect(try await databases.app.query(owner, "SELECT kind FROM appointment_followups WHERE organization_id = \(fixture.b.id)").isEmpty)

            let before = try await world.snapshot(databases.admin)
            var attacks: [(String, TenantContext, SQLQuery)] = [
                ("mark one's confirmation sent so it never goes", patient, "UPDATE appointment_followups SET state = 'done' WHERE appointment_id = \(video)"),
                ("settle a follow-up as staff", owner, "UPDATE appointment_followups SET state = 'skipped' WHERE appointment_id = \(video)"),
                ("push a retry out of reach", owner, "UPDATE appointment_followups SET next_attempt_at = \(later) WHERE appointment_id = \(video)"),
                ("delete the follow-ups", owner, "DELETE FROM appointment_followups WHERE appointment_id = \(video)"),
                ("order a room for an in-person visit", patient, """
                    INSERT INTO appointment_followups (id, organization_id, appointment_id, kind) VALUES (\(UUIDv7.generate()), \(a), \(visit), 'video_room')
                    """),
                ("queue a second e-mail as staff", owner, """
                    INSERT INTO appointment_followups (id, organization_id, appointment_id, kind, state) \
                    VALUES (\(UUIDv7.generate()), \(a), \(visit), 'confirmation_email', 'pending')
                    """),
            ]
            if backend.isPostgres {
                attacks.append(("run the booking trigger's function", owner, "SELECT restartix_appointment_followups()"))
            }
            for (label, context, attack) in attacks {
                let outcome = await Refusal.of(attack, as: context, on: databases.app)
                #expect(outcome == .privilege, "\(backend): \(label) → \(outcome)")
            }
            #expect(try await world.snapshot(databases.admin) == before)
        }
    }
}
