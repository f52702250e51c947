import Foundation
import Hummingbird
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// `POST /v1/appointments/holds`' body: the slot and the patient it is held for.
struct NewHoldRequest: Decodable, Sendable {
    let patient_id: String
    let specialist_id: String
    let starts_at: String
}

/// The hold as the client brings it back to book: what the store checks.
struct HoldReference: Codable, Sendable, Equatable {
    let token: String
    let fence: Int
    let store: String
}

/// `POST /v1/appointments`' body: the hold, the slot and patient it was granted for, the kind.
struct NewAppointmentRequest: Decodable, Sendable {
    let hold: HoldReference
    let patient_id: String
    let specialist_id: String
    let starts_at: String
    let kind: String
}

/// A granted hold: present `hold` with the same patient, specialist and start to book.
struct HoldBody: ResponseCodable, Equatable {
    let hold: HoldReference
    let patient_id: String
    let specialist_id: String
    let starts_at: String
    let ends_at: String
    let expires_at: String
}

/// An appointment as the API shows it.
struct AppointmentBody: ResponseCodable, Equatable {
    let id: String
    let organization_id: String
    let patient_id: String
    let specialist_id: String
    let starts_at: String
    let ends_at: String
    let kind: String
    let status: String
    let created_at: String
    let updated_at: String
    let canceled_at: String?

    init(_ appointment: Appointment) {
        id = appointment.id.lowercasedString
        organization_id = appointment.organizationID.lowercasedString
        patient_id = appointment.patientID.lowercasedString
        specialist_id = appointment.specialistID.lowercasedString
        starts_at = APITime.string(appointment.startsAt)
        ends_at = APITime.string(appointment.endsAt)
        kind = appointment.kind.rawValue
        status = appointment.status.rawValue
        created_at = APITime.string(appointment.createdAt)
        updated_at = APITime.string(appointment.updatedAt)
        canceled_at = appointment.canceledAt.map(APITime.string)
    }
}

/// `GET /v1/appointments/{id}/video`'s answer: where and how the principal joins the call.
struct VideoAccessBody: ResponseCodable, Equatable {
    let room_url: String
    /// The principal's own meeting token (a bearer secret: the answer is never cached or logged).
    let token: String
    let is_owner: Bool
    let not_before: String
    let expires_at: String

    init(_ access: VideoAccess) {
        room_url = access.roomURL
        token = access.token
        is_owner = access.isOwner
        not_before = APITime.string(access.notBefore)
        expires_at = APITime.string(access.expiresAt)
    }
}

/// One follow-up of a booking as staff see it.
struct FollowupBody: ResponseCodable, Equatable {
    let kind: String
    let state: String
    let attempts: Int
    let next_attempt_at: String?
    let last_error: String?
    let updated_at: String

    init(_ followup: AppointmentFollowup) {
        kind = followup.kind.rawValue
        state = followup.state.rawValue
        attempts = followup.attempts
        next_attempt_at = followup.state == .pending ? APITime.string(followup.nextAttemptAt) : nil
        last_error = followup.lastError
        updated_at = APITime.string(followup.updatedAt)
    }
}

/// `GET /v1/appointments/{id}/followups`' answer.
struct FollowupListBody: ResponseCodable, Equatable {
    let followups: [FollowupBody]
}

/// `GET /v1/appointments`' answer: a day's appointments by start.
struct AppointmentDayBody: ResponseCodable, Equatable {
    let date: String
    let appointments: [AppointmentBody]
}

/// Appointments (the library's ``Appointments``: every rule is there): hold a slot, book it
/// with the hold, cancel, read one, list a day. A patient principal does this for its own
/// record only; another clinic's (or patient's) appointment is a 404 like one that never existed.
///
/// A booking's follow-ups (its confirmation e-mail, a video appointment's room) are the
/// database's, written with it; `worker` tries them once the booking's answer is on its way, and
/// `restartix-jobs appointment-followups` retries what a provider's outage left.
func addAppointmentRoutes(
    to group: RouterGroup<CoreRequestContext>, appointments: Appointments, followups: AppointmentFollowups, worker: AppointmentFollowupWorker
) {
    group.post("appointments/holds") { request, context -> EditedResponse<HoldBody> in
        let tenant = try context.requireTenant()
        let body = try await request.decode(as: NewHoldRequest.self, context: context)
        let slot = AppointmentSlot(specialistID: try uuid(body.specialist_id, field: "specialist_id"), startsAt: try APITime.parse(body.starts_at, field: "starts_at"))
        let patient = try uuid(body.patient_id, field: "patient_id")
        let hold = try await appointments.hold(slot, patient: patient, as: tenant)
        return EditedResponse(status: .created, response: HoldBody(
            hold: HoldReference(token: hold.token, fence: hold.fence, store: hold.store.rawValue),
            patient_id: patient.lowercasedString, specialist_id: slot.specialistID.lowercasedString,
            starts_at: APITime.string(slot.startsAt), ends_at: APITime.string(slot.startsAt.addingTimeInterval(appointments.slotLength.secondsValue)),
            expires_at: APITime.string(hold.expiresAt)
        ))
    }
    group.post("appointments") { request, context -> EditedResponse<AppointmentBody> in
        let tenant = try context.requireTenant()
        let body = try await request.decode(as: NewAppointmentRequest.self, context: context)
        let slot = AppointmentSlot(specialistID: try uuid(body.specialist_id, field: "specialist_id"), startsAt: try APITime.parse(body.starts_at, field: "starts_at"))
        let patient = try uuid(body.patient_id, field: "patient_id")
        guard let kind = Appointment.Kind(rawValue: body.kind) else {
            throw RequestError(.invalidField, "kind must be in_person or video")
        }
        guard let store = SlotHold.Store(rawValue: body.hold.store) else {
            throw RequestError(.invalidField, "hold.store must be the store the hold names")
        }
        guard (1...200).contains(body.hold.token.utf8.count) else { throw RequestError(.invalidField, "hold.token must be the hold's token") }
        // The slot key and expiry are the library's to fill in: the store checks token and fence.
        let hold = SlotHold(slot: "", holder: "", token: body.hold.token, fence: body.hold.fence, expiresAt: Date(), store: store)
        let appointment = try await appointments.book(hold, slot: slot, patient: patient, kind: kind, as: tenant, requestID: context.requestID)
        worker.enqueue(appointment: appointment.id, organization: tenant.organizationID)
        var headers = HTTPFields()
        headers[.location] = "/v1/appointments/\(appointment.id.lowercasedString)"
        return EditedResponse(status: .created, headers: headers, response: AppointmentBody(appointment))
    }
    group.get("appointments") { request, context -> AppointmentDayBody in
        let tenant = try context.requireTenant()
        guard let text = request.uri.queryParameters["date"] else { throw RequestError(.invalidField, "date is required (YYYY-MM-DD, a UTC day)") }
        let day = try APITime.day(String(text), field: "date")
        let specialist = try request.uri.queryParameters["specialist_id"].map { try uuid(String($0), field: "specialist_id") }
        let list = try await appointments.day(day, specialist: specialist, as: tenant)
        return AppointmentDayBody(date: String(text), appointments: list.map(AppointmentBody.init))
    }
    group.get("appointments/{id}") { _, context -> AppointmentBody in
        let tenant = try context.requireTenant()
        return AppointmentBody(try await appointments.get(try uuid(context.parameters.get("id"), field: "id"), as: tenant))
    }
    group.get("appointments/{id}/video") { _, context -> VideoAccessBody in
        let tenant = try context.requireTenant()
        let id = try uuid(context.parameters.get("id"), field: "id")
        return VideoAccessBody(try await appointments.videoAccess(to: id, as: tenant, followups: followups, requestID: context.requestID))
    }
    group.get("appointments/{id}/followups") { _, context -> FollowupListBody in
        let tenant = try context.requireTenant()
        let id = try uuid(context.parameters.get("id"), field: "id")
        return FollowupListBody(followups: try await appointments.followups(of: id, as: tenant).map(FollowupBody.init))
    }
    group.post("appointments/{id}/cancel") { _, context -> AppointmentBody in
        let tenant = try context.requireTenant()
        let id = try uuid(context.parameters.get("id"), field: "id")
        return AppointmentBody(try await appointments.cancel(id, as: tenant, requestID: context.requestID))
    }
}

extension APITime {
    /// An RFC 3339 date-time with an offset (`2026-12-07T09:30:00Z`, fractional seconds
    /// allowed), or 400 naming the field.
    static func parse(_ text: String, field: String) throws -> Date {
        guard let date = RFC3339.date(text) else {
            throw RequestError(.invalidField, "\(field) must be an RFC 3339 date-time with an offset, e.g. 2026-12-07T09:30:00Z")
        }
        return date
    }

    /// A calendar day `YYYY-MM-DD` (its UTC midnight), or 400 naming the field.
    static func day(_ text: String, field: String) throws -> Date {
        let style = Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day().dateSeparator(.dash)
        guard text.utf8.count == 10, let date = try? style.parse(text) else {
            throw RequestError(.invalidField, "\(field) must be a day, YYYY-MM-DD")
        }
        return date
    }
}
