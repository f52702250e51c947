public import RestartixKit

/// An appointment request refused: a slot that is not one, a slot someone else holds or has
/// booked, a hold that lapsed or was superseded, a booking already canceled. Details name the
/// field and the rule, never a patient's data.
public typealias AppointmentError = DomainError<AppointmentErrorDomain>

/// The `appointment` error domain.
public enum AppointmentErrorDomain: ErrorDomain {
    public static let name = "appointment"

    /// 400 for input that breaks a rule; 409 for a slot, hold or appointment in another state
    /// than the request needs; 503 for a video room not made yet.
    public static func httpStatus(for code: ErrorCode<AppointmentErrorDomain>) -> Int {
        switch code {
        case .invalidField: 400
        case .videoRoomPending: 503
        default: 409
        }
    }

    /// A video room that could not be made yet may be made on the next try.
    public static func isTransient(_ code: ErrorCode<AppointmentErrorDomain>) -> Bool {
        code == .videoRoomPending
    }
}

extension ErrorCode where Domain == AppointmentErrorDomain {
    /// A field breaks its rule: a start off the slot grid or in the past, a specialist who is
    /// not on the clinic's staff, an unknown kind (the detail names which and the rule).
    public static var invalidField: Self { Self("invalidField") }
    /// Someone else holds the slot now; it may free up when their hold lapses.
    public static var slotHeld: Self { Self("slotHeld") }
    /// The slot is booked.
    public static var slotTaken: Self { Self("slotTaken") }
    /// The hold presented is not live (it lapsed, was released or was already used) or is not
    /// the one granted: hold the slot again.
    public static var holdExpired: Self { Self("holdExpired") }
    /// A later hold of the slot has been booked with: this one's fence is stale.
    public static var holdSuperseded: Self { Self("holdSuperseded") }
    /// The appointment is already canceled.
    public static var alreadyCanceled: Self { Self("alreadyCanceled") }
    /// The appointment has started: a patient can no longer cancel it (the clinic can).
    public static var alreadyStarted: Self { Self("alreadyStarted") }
    /// The patient has as many upcoming appointments as it may book for itself
    /// (``Appointments/maximumUpcomingPerPatient``).
    public static var tooManyUpcoming: Self { Self("tooManyUpcoming") }
    /// The appointment is in person: it has no video room.
    public static var notVideo: Self { Self("notVideo") }
    /// The appointment is over: its room is closed.
    public static var appointmentOver: Self { Self("appointmentOver") }
    /// The video room is not made yet (the video provider was unavailable): try again shortly.
    public static var videoRoomPending: Self { Self("videoRoomPending") }
}
