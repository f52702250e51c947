public import Foundation
import RestartixKit
public import RestartixTenancy

/// An appointment of a patient with a clinic's specialist.
public struct Appointment: Sendable, Hashable {
    /// Where it takes place.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// At the clinic.
        case inPerson = "in_person"
        /// A video call (a Daily room).
        case video
    }

    /// Booked, or canceled (never deleted: the history stays).
    public enum Status: String, Sendable, Hashable, CaseIterable {
        case booked, canceled
    }

    public let id: UUID
    public let organizationID: UUID
    /// The patient record booked.
    public let patientID: UUID
    /// The specialist (a staff member's user id).
    public let specialistID: UUID
    public let startsAt: Date
    public let endsAt: Date
    public let kind: Kind
    public let status: Status
    /// The fence of the hold it was booked with.
    public let fence: Int
    public let createdAt: Date
    public let updatedAt: Date
    /// When it was canceled; `nil` while booked.
    public let canceledAt: Date?
}

/// A slot: one specialist's time, starting on the clinic's slot grid and lasting one slot
/// length. Slots of a specialist never overlap, so "one booking per slot" is "one booking per
/// specialist at a time".
public struct AppointmentSlot: Sendable, Hashable {
    /// The specialist (a staff member's user id).
    public let specialistID: UUID
    /// The start, a whole multiple of the slot length since 1970-01-01T00:00:00Z.
    public let startsAt: Date

    /// A slot of `specialistID` starting at `startsAt`.
    public init(specialistID: UUID, startsAt: Date) {
        self.specialistID = specialistID
        self.startsAt = startsAt
    }

    /// The slot's key in `organization`, as holds and bookings name it: the clinic is part of
    /// it, so a key of one clinic never meets another's.
    public func key(in organization: UUID) -> String {
        "appt:\(organization.lowercasedString):\(specialistID.lowercasedString):\(Int(startsAt.timeIntervalSince1970))"
    }
}

/// A clinic's appointments, with the platform's rules: the library behind the Core API's
/// appointment routes.
///
/// Booking takes two steps, as a patient filling in the booking form does:
/// 1. ``hold(_:patient:as:)`` holds the slot for a while (``holdDuration``, 10 minutes by
///    default) in the ``SlotHolds`` store — Redis, falling back to the database reservation
///    when Redis is down (fail closed) — and hands back the hold (its token and fence).
/// 2. ``book(_:slot:patient:kind:as:requestID:)`` presents the hold: the store confirms it only
///    while it is live and is the one granted, and says when it lapses; the booking is written
///    before then (the transaction's deadline). The database has the last word: a slot has at
///    most one booking (`booked_slot`, unique per clinic) and a booking whose fence is not
///    greater than every earlier booking's of the slot is refused, so two patients never book
///    one slot, whatever the hold store did, Redis up or down.
///
/// Who may do what:
/// - staff (owners, admins, specialists, assistants) hold, book, cancel, read and list for any
///   patient of the clinic;
/// - a patient principal does all of that for its own record only (row-level security; another
///   patient's record or appointment is as unknown as another clinic's: ``TenancyError/Code/notFound``).
///
/// Booking and canceling write their audit rows (`appointment.book`, `appointment.cancel`) in
/// their transactions. A canceled appointment's slot can be held and booked again.
public struct Appointments: Sendable {
    /// How long a slot lasts, and the grid starts are on, unless told otherwise.
    public static let defaultSlotLength: Duration = .seconds(30 * 60)
    /// How long a hold lasts unless told otherwise.
    public static let defaultHoldDuration: Duration = .seconds(10 * 60)
    /// How far ahead a slot may be booked.
    public static let horizon: TimeInterval = 366 * 86_400
    /// How many upcoming appointments a patient may book for itself unless told otherwise.
    public static let defaultMaximumUpcomingPerPatient = 10

    let tenants: TenantDatabase
    let admin: AdminDatabase
    let holds: any SlotHolds
    /// The length of every slot, and the grid their starts are on.
    public let slotLength: Duration
    /// How long a hold lasts.
    public let holdDuration: Duration
    /// How many upcoming (booked, not yet started) appointments a patient principal may have
    /// when it books for itself: one patient account cannot take a clinic's calendar. Staff
    /// booking for a patient are not limited.
    public let maximumUpcomingPerPatient: Int

    /// The service over `tenants` (the app role), `admin` (to check a slot's specialist and
    /// whether it is booked, which a patient's own policies cannot see) and `holds`.
    /// `slotLength` is 5 minutes to 8 hours, in whole minutes; `holdDuration` 10 seconds to an hour.
    public init(
        tenants: TenantDatabase, admin: AdminDatabase, holds: any SlotHolds,
        slotLength: Duration = Self.defaultSlotLength, holdDuration: Duration = Self.defaultHoldDuration,
        maximumUpcomingPerPatient: Int = Self.defaultMaximumUpcomingPerPatient
    ) {
        precondition(slotLength >= .seconds(300) && slotLength <= .seconds(8 * 3600) && slotLength.components.seconds % 60 == 0, "slot length: 5 minutes to 8 hours, whole minutes")
        precondition(holdDuration >= .seconds(10) && holdDuration <= .seconds(3600), "hold duration: 10 seconds to an hour")
        self.tenants = tenants
        self.admin = admin
        self.holds = holds
        self.slotLength = slotLength
        self.holdDuration = holdDuration
        self.maximumUpcomingPerPatient = max(1, maximumUpcomingPerPatient)
    }

    /// Holds `slot` for `patient` (staff: any patient of the clinic; a patient: itself) and
    /// returns the hold to present to ``book(_:slot:patient:kind:as:requestID:)``.
    ///
    /// Throws ``AppointmentError`` `invalidField` for a slot off the grid, in the past or beyond
    /// the horizon, or a specialist who is not on the clinic's staff; `slotTaken` when it is
    /// booked, `slotHeld` when someone holds it; ``TenancyError/Code/notFound`` for a patient
    /// the principal cannot see.
    public func hold(_ slot: AppointmentSlot, patient: UUID, as context: TenantContext) async throws -> SlotHold {
        try validate(slot)
        try await requirePatient(patient, as: context)
        let key = slot.key(in: context.organizationID)
        // The specialist's membership and the slot's booking: a patient's policies show it
        // neither, so the platform looks, inside this clinic only.
        let (role, booked) = try await admin.withOrganization(context.organizationID, actor: .service("appointments")) { tx in
            let role = try await tx.first("SELECT role FROM memberships WHERE user_id = \(slot.specialistID)")?.decode("role", as: String.self)
            let booked = try await tx.first("SELECT 1 AS booked FROM appointments WHERE booked_slot = \(key)") != nil
            return (role, booked)
        }
        guard let role, let staff = TenantRole(rawValue: role), staff.isStaff else {
            throw AppointmentError(.invalidField, "specialist_id must be a staff member of this clinic")
        }
        guard !booked else { throw AppointmentError(.slotTaken, "the slot is booked") }
        guard let hold = try await holds.hold(slot: key, holder: patient.lowercasedString, ttl: holdDuration) else {
            throw AppointmentError(.slotHeld, "someone else holds the slot; try again when the hold lapses or pick another")
        }
        return hold
    }

    /// Books `slot` for `patient` with `hold` (its token, fence and store as ``hold(_:patient:as:)``
    /// returned them) and returns the appointment. The hold is used up either way it ends, so a
    /// failed booking can hold the slot again at once. Idempotent: the same hold presented again
    /// after its booking went through (a retry whose answer was lost) returns that booking.
    ///
    /// Throws ``AppointmentError`` `holdExpired` when the hold is not live or not the one
    /// granted, `holdSuperseded` when a later hold of the slot has been booked with, `slotTaken`
    /// when the slot is booked, `tooManyUpcoming` when a patient booking for itself has
    /// ``maximumUpcomingPerPatient`` upcoming appointments; ``TenancyError/Code/notFound`` for a
    /// patient the principal cannot see.
    public func book(
        _ hold: SlotHold, slot: AppointmentSlot, patient: UUID, kind: Appointment.Kind, as context: TenantContext, requestID: String? = nil
    ) async throws -> Appointment {
        try validate(slot)
        let key = slot.key(in: context.organizationID)
        // The hold must be for this slot: its key is what the store checks the token against.
        let presented = SlotHold(slot: key, holder: patient.lowercasedString, token: hold.token, fence: hold.fence, expiresAt: hold.expiresAt, store: hold.store)
        try await requirePatient(patient, as: context)
        guard let lapses = try await holds.confirm(presented) else {
            // A retry of a booking that went through (its answer lost): that booking, not a refusal.
            if let booked = try await booked(key, fence: hold.fence, patient: patient, as: context) { return booked }
            throw AppointmentError(.holdExpired, "the hold is not live or not the one granted: hold the slot again")
        }
        // Written before the hold lapses, or not at all: past it, someone else may hold the slot.
        let left = lapses.timeIntervalSinceNow - 0.5
        guard left > 0 else {
            _ = try? await holds.release(presented)
            throw AppointmentError(.holdExpired, "the hold lapses before the booking could be written: hold the slot again")
        }
        let id = UUIDv7.generate()
        let appointment: Appointment
        do {
            appointment = try await Database.withDeadline(.milliseconds(Int64(left * 1000))) {
                try await tenants.withTenant(context) { tx in
                    guard let row = try await tx.first("SELECT user_id FROM patients WHERE id = \(patient) AND deleted_at IS NULL") else {
                        throw Self.patientNotFound
                    }
                    let user = try row.decode("user_id", as: UUID?.self)
                    if context.role == .patient {
                        // Counted under a lock on the patient, so racing bookings cannot all pass.
                        try await tx.lockForTransaction("appointments.upcoming", patient.lowercasedString)
                        let upcoming = try await tx.first("""
                            SELECT count(*) AS n FROM appointments WHERE patient_id = \(patient) AND status = 'booked' AND starts_at > \(Date())
                            """)?.decode("n", as: Int.self) ?? 0
                        guard upcoming < maximumUpcomingPerPatient else {
                            throw AppointmentError(
                                .tooManyUpcoming, "a patient may book at most \(maximumUpcomingPerPatient) upcoming appointments; the clinic can book more"
                            )
                        }
                    }
                    let endsAt = slot.startsAt.addingTimeInterval(slotLength.secondsValue)
                    try await tx.execute("""
                        INSERT INTO appointments (id, organization_id, patient_id, patient_user_id, specialist_user_id, \
                        starts_at, ends_at, kind, status, slot, booked_slot, fence) \
                        VALUES (\(id), \(context.organizationID), \(patient), \(user), \(slot.specialistID), \
                        \(slot.startsAt), \(endsAt), \(kind.rawValue), 'booked', \(key), \(key), \(hold.fence))
                        """)
                    try await tx.audit(AuditEvent(
                        action: "appointment.book", resourceType: "appointment", resourceID: id, requestID: requestID,
                        metadata: ["kind": kind.rawValue, "fence": String(hold.fence)]
                    ))
                    guard let appointment = try await Self.fetch(id, in: tx) else { throw Self.notFound }
                    return appointment
                }
            }
        } catch {
            // Not booked (or, when the deadline met the COMMIT, perhaps booked): the hold is freed
            // either way, so the patient can hold the slot again at once; the booking's own
            // uniqueness keeps the slot if it did go through.
            _ = try? await holds.release(presented)
            switch error {
            case let error as DatabaseError where error.code == .uniqueViolation && error.constraint == "appointments_organization_id_booked_slot_key":
                throw AppointmentError(.slotTaken, "the slot is booked")
            case let error as DatabaseError where error.code == .checkViolation && error.constraint == "appointments_fence_order_check":
                throw AppointmentError(.holdSuperseded, "a later hold of the slot has been booked with: hold the slot again")
            case let error as DatabaseError where error.code == .timedOut || error.code == .queryCanceled:
                if let booked = try? await booked(key, fence: hold.fence, patient: patient, as: context) { return booked }
                throw AppointmentError(.holdExpired, "the hold lapsed before the booking was written: hold the slot again")
            default:
                throw error
            }
        }
        // The booking stands on its own now (its slot is unique): free the hold, so a
        // cancellation frees the slot at once. A failure here only leaves it to lapse.
        _ = try? await holds.release(presented)
        return appointment
    }

    /// The booking of `key` made with `fence` for `patient`, if one stands (a retry's answer).
    func booked(_ key: String, fence: Int, patient: UUID, as context: TenantContext) async throws -> Appointment? {
        try await tenants.withTenant(context) { tx in
            try await tx.first("""
                \(unsafeRaw: Self.select) WHERE booked_slot = \(key) AND fence = \(fence) AND patient_id = \(patient)
                """).map(Self.appointment)
        }
    }

    /// Cancels a booked appointment (staff, or the patient booked, before it starts) and returns
    /// it: its slot is free again. Throws ``AppointmentError`` `alreadyCanceled`,
    /// `alreadyStarted` (a patient, once the appointment has started), or
    /// ``TenancyError/Code/notFound`` for one the principal cannot see.
    public func cancel(_ id: UUID, as context: TenantContext, requestID: String? = nil) async throws -> Appointment {
        try await tenants.withTenant(context) { tx in
            guard let current = try await Self.fetch(id, in: tx) else { throw Self.notFound }
            guard current.status == .booked else { throw AppointmentError(.alreadyCanceled, "the appointment is already canceled") }
            // A patient cannot turn a visit that happened (or did not) into a cancellation.
            guard context.role != .patient || current.startsAt > Date() else {
                throw AppointmentError(.alreadyStarted, "the appointment has started; only the clinic can cancel it now")
            }
            let now = tx.dialect.now
            let changed = try await tx.execute("""
                UPDATE appointments SET status = 'canceled', booked_slot = NULL, canceled_at = \(now), updated_at = \(now) \
                WHERE id = \(id) AND status = 'booked'
                """)
            guard changed == 1 else { throw AppointmentError(.alreadyCanceled, "the appointment is already canceled") }
            try await tx.audit(AuditEvent(action: "appointment.cancel", resourceType: "appointment", resourceID: id, requestID: requestID))
            guard let canceled = try await Self.fetch(id, in: tx) else { throw Self.notFound }
            return canceled
        }
    }

    /// One appointment (a patient principal: only its own).
    public func get(_ id: UUID, as context: TenantContext) async throws -> Appointment {
        try await tenants.withTenant(context) { tx in
            guard let appointment = try await Self.fetch(id, in: tx) else { throw Self.notFound }
            return appointment
        }
    }

    /// The clinic's appointments starting on the UTC day that `day` falls in (a patient
    /// principal: its own), booked and canceled, by start; only `specialist`'s when given.
    public func day(_ day: Date, specialist: UUID? = nil, as context: TenantContext) async throws -> [Appointment] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let start = calendar.startOfDay(for: day)
        let end = start.addingTimeInterval(86_400)
        let only: SQLQuery = specialist.map { " AND specialist_user_id = \($0)" } ?? ""
        return try await tenants.withTenant(context) { tx in
            try await tx.query("""
                \(unsafeRaw: Self.select) WHERE starts_at >= \(start) AND starts_at < \(end)\(only) ORDER BY starts_at, id
                """).map(Self.appointment)
        }
    }

    /// Throws unless `slot` starts on the grid, in the future and within the horizon.
    func validate(_ slot: AppointmentSlot) throws(AppointmentError) {
        let seconds = slot.startsAt.timeIntervalSince1970
        let grid = Double(slotLength.components.seconds)
        guard seconds.rounded() == seconds, seconds.truncatingRemainder(dividingBy: grid) == 0 else {
            throw AppointmentError(.invalidField, "starts_at must be on the clinic's \(Int(grid / 60))-minute slot grid (UTC)")
        }
        let now = Date().timeIntervalSince1970
        guard seconds > now else { throw AppointmentError(.invalidField, "starts_at must be in the future") }
        guard seconds <= now + Self.horizon else { throw AppointmentError(.invalidField, "starts_at must be within a year") }
    }

    /// Throws unless the principal may act for `patient`: staff for any of the clinic's, a
    /// patient for its own record (its policies show it no other).
    func requirePatient(_ patient: UUID, as context: TenantContext) async throws {
        let visible = try await tenants.withTenant(context) { tx in
            try await tx.first("SELECT 1 AS found FROM patients WHERE id = \(patient) AND deleted_at IS NULL") != nil
        }
        guard visible else { throw Self.patientNotFound }
    }

    static let notFound = TenancyError(.notFound, "no such appointment in this clinic")
    static let patientNotFound = TenancyError(.notFound, "no such patient in this clinic")

    static let select = """
        SELECT id, organization_id, patient_id, specialist_user_id, starts_at, ends_at, kind, status, fence, \
        created_at, updated_at, canceled_at FROM appointments
        """

    static func fetch(_ id: UUID, in tx: borrowing TenantTransaction) async throws -> Appointment? {
        try await tx.first("\(unsafeRaw: select) WHERE id = \(id)").map(appointment)
    }

    static func appointment(_ row: SQLRow) throws -> Appointment {
        Appointment(
            id: try row.decode("id", as: UUID.self),
            organizationID: try row.decode("organization_id", as: UUID.self),
            patientID: try row.decode("patient_id", as: UUID.self),
            specialistID: try row.decode("specialist_user_id", as: UUID.self),
            startsAt: try row.decode("starts_at", as: Date.self),
            endsAt: try row.decode("ends_at", as: Date.self),
            kind: try Appointment.Kind(rawValue: row.decode("kind", as: String.self)) ?? .inPerson,
            status: try Appointment.Status(rawValue: row.decode("status", as: String.self)) ?? .canceled,
            fence: try row.decode("fence", as: Int.self),
            createdAt: try row.decode("created_at", as: Date.self),
            updatedAt: try row.decode("updated_at", as: Date.self),
            canceledAt: try row.decode("canceled_at", as: Date?.self)
        )
    }
}
