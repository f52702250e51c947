public import Foundation
import RestartixKit
import RestartixProviders
public import RestartixTenancy

extension Appointments {
    /// The follow-ups of `appointment` (``AppointmentFollowups``), by kind: staff only
    /// (``TenancyError/Code/roleNotAllowed`` for a patient, whose policies show it none);
    /// ``TenancyError/Code/notFound`` for an appointment of another clinic.
    public func followups(of appointment: UUID, as context: TenantContext) async throws -> [AppointmentFollowup] {
        try Patients.require(context, staff: true, to: "read an appointment's follow-ups")
        return try await tenants.withTenant(context) { tx in
            guard try await Self.fetch(appointment, in: tx) != nil else { throw Self.notFound }
            return try await tx.query("""
                SELECT id, organization_id, appointment_id, kind, state, attempts, next_attempt_at, last_error, result, updated_at \
                FROM appointment_followups WHERE appointment_id = \(appointment) ORDER BY kind
                """).map(AppointmentFollowups.followup)
        }
    }

    /// How `context`'s principal joins video appointment `appointment` (a patient: its own;
    /// staff: any of the clinic's, with owner rights): the room's URL and a meeting token of its
    /// own, valid from `followups`' ``AppointmentFollowups/Options/roomOpensBefore`` the start
    /// to ``AppointmentFollowups/Options/roomClosesAfter`` the end. A room not made yet (the
    /// video provider was down at booking) is tried now. Audited (`appointment.video_join`).
    ///
    /// Throws ``TenancyError/Code/notFound`` for an appointment the principal cannot see;
    /// ``AppointmentError`` `notVideo` (in person), `alreadyCanceled`, `appointmentOver`, or
    /// `videoRoomPending` (503, transient) when the room still cannot be made; a
    /// ``ProviderError`` when Daily refuses the token or is down.
    public func videoAccess(
        to appointment: UUID, as context: TenantContext, followups: AppointmentFollowups, requestID: String? = nil
    ) async throws -> VideoAccess {
        let found = try await tenants.withTenant(context) { tx in
            guard let found = try await Self.fetch(appointment, in: tx) else { throw Self.notFound }
            if found.kind == .video, found.status == .booked {
                try await tx.audit(AuditEvent(action: "appointment.video_join", resourceType: "appointment", resourceID: appointment, requestID: requestID))
            }
            return found
        }
        guard found.kind == .video else { throw AppointmentError(.notVideo, "the appointment is in person: it has no video room") }
        guard found.status == .booked else { throw AppointmentError(.alreadyCanceled, "the appointment is canceled") }
        let (opens, closes) = followups.roomHours(of: found)
        guard closes > Date() else { throw AppointmentError(.appointmentOver, "the appointment is over: its room is closed") }
        var room = try await followups.roomURL(of: found)
        if room == nil {
            await followups.run(appointment: found.id, organization: found.organizationID, now: Date(), only: .videoRoom, force: true)
            room = try await followups.roomURL(of: found)
        }
        guard let room else {
            throw AppointmentError(.videoRoomPending, "the video room is not ready yet (the video provider is unavailable); try again shortly")
        }
        let isOwner = context.role.isStaff
        let token = try await followups.daily(for: found.organizationID).meetingToken(
            room: AppointmentFollowups.roomName(found.id), userID: context.userID.lowercasedString, isOwner: isOwner, notBefore: opens, expiresAt: closes
        )
        return VideoAccess(roomURL: room, token: token, isOwner: isOwner, notBefore: opens, expiresAt: closes)
    }
}
