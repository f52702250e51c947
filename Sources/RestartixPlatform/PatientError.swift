public import RestartixKit

/// A patient record refused: a field that breaks its rule, a user account that cannot be
/// linked. Details name the field and the rule, never the value (a patient's data is PHI).
public typealias PatientError = DomainError<PatientErrorDomain>

/// The `patient` error domain.
public enum PatientErrorDomain: ErrorDomain {
    public static let name = "patient"

    /// 400 for a field that breaks its rule; 409 for a user account that already has a
    /// patient record in the clinic.
    public static func httpStatus(for code: ErrorCode<PatientErrorDomain>) -> Int {
        switch code {
        case .alreadyLinked: 409
        default: 400
        }
    }
}

extension ErrorCode where Domain == PatientErrorDomain {
    /// A field of the personal data, a page size or a cursor breaks its rule (the detail names
    /// which and the rule).
    public static var invalidField: Self { Self("invalidField") }
    /// The user account given is not a patient member of the clinic.
    public static var notAPatientMember: Self { Self("notAPatientMember") }
    /// The user account already has a patient record in the clinic (one record per patient).
    public static var alreadyLinked: Self { Self("alreadyLinked") }
}
