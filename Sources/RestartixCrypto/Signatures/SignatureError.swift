public import RestartixKit

/// A webhook that did not verify, a service-account token without the scope asked for, a
/// secret or claims the kit cannot sign with. (A token that cannot be used at all is a
/// ``TokenError``, the kit's one set of token codes.) Descriptions name the failed check, never
/// the token, the body or a secret.
public typealias SignatureError = DomainError<SignatureErrorDomain>

/// The `signature` error domain: its codes' HTTP statuses.
public enum SignatureErrorDomain: ErrorDomain {
    public static let name = "signature"

    /// 403 for a missing scope, 500 for a bad secret (configuration) or claims the caller could
    /// not issue, 401 otherwise.
    public static func httpStatus(for code: ErrorCode<SignatureErrorDomain>) -> Int {
        switch code {
        case .insufficientScope: 403
        case .invalidSecret, .invalidClaims: 500
        default: 401
        }
    }
}

extension ErrorCode where Domain == SignatureErrorDomain {
    /// No configured secret produces the webhook's signature (wrong secret, changed body).
    public static var invalidSignature: Self { Self("invalidSignature") }
    /// Claims to sign are out of range (a lifetime, a name with spaces): the caller's
    /// mistake, raised when issuing, never when verifying.
    public static var invalidClaims: Self { Self("invalidClaims") }
    /// A service-account token lacks the required scope (HTTP 403).
    public static var insufficientScope: Self { Self("insufficientScope") }
    /// A webhook lacks its id, timestamp or signature header.
    public static var missingHeader: Self { Self("missingHeader") }
    /// A webhook header is malformed (timestamp not a number, no `v1,` signature).
    public static var malformedHeader: Self { Self("malformedHeader") }
    /// A webhook's timestamp is outside the tolerance (replayed or clock-skewed).
    public static var timestampOutOfTolerance: Self { Self("timestampOutOfTolerance") }
    /// A secret is unusable (too short, not base64). Raised at construction.
    public static var invalidSecret: Self { Self("invalidSecret") }
}
