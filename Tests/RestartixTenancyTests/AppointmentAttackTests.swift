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
}
