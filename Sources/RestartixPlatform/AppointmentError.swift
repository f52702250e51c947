public import RestartixKit

/// An appointment request refused: a slot that is not one, a slot someone else holds or has
/// booked, a hold that lapsed or was superseded, a booking already canceled. Details name the
/// field and the rule, never a patient's data.
public typealias AppointmentError = DomainError<AppointmentErrorDomain>

/// The `appointment` error domain.
public enum AppointmentErrorDomain: ErrorDomain {
    public static let name = "appointment"

    /// 400 for input that breaks a rule; 409 for a slot or hold in another state than the
    /// request needs.
    public static func httpStatus(for code: ErrorCode<AppointmentErrorDomain>) -> Int {
        code == .invalidField ? 400 : 409
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
}
