public import RestartixKit

/// Why a well-formed token's principal was refused by this deployment: a key the issuer's set
/// does not hold, a key set that cannot be fetched, an authorized party or a session status it
/// does not accept, a missing membership claim, a verifier misconfigured. (A token that cannot
/// be used at all, malformed, badly signed, expired, from another issuer, is a ``TokenError``:
/// the kit's one set of token codes.) Descriptions name the check that failed, never the
/// token, a claim's value or a secret, so they are safe to log and to return.
public typealias PrincipalError = DomainError<PrincipalErrorDomain>

/// The `principal` error domain: its codes' HTTP statuses and transience.
public enum PrincipalErrorDomain: ErrorDomain {
    public static let name = "principal"

    /// The HTTP status a service should answer with: 403 for a token that is fine but not
    /// allowed (wrong party, no membership), 503 when the issuer's keys cannot be fetched, 500
    /// for a misconfiguration, 401 otherwise.
    public static func httpStatus(for code: ErrorCode<PrincipalErrorDomain>) -> Int {
        switch code {
        case .unauthorizedParty, .missingMembership: 403
        case .keysUnavailable: 503
        case .invalidConfiguration: 500
        default: 401
        }
    }

    /// The issuer's keys could not be fetched: the same token may pass in a moment.
    public static func isTransient(_ code: ErrorCode<PrincipalErrorDomain>) -> Bool { code == .keysUnavailable }
}

extension ErrorCode where Domain == PrincipalErrorDomain {
    /// The header names a key id that the issuer's key set does not hold, even after a refresh.
    public static var unknownKey: Self { Self("unknownKey") }
    /// The issuer's key set could not be fetched (HTTP 503: the token may be fine).
    public static var keysUnavailable: Self { Self("keysUnavailable") }
    /// `azp` is not in the allow-list of authorized parties.
    public static var unauthorizedParty: Self { Self("unauthorizedParty") }
    /// The token names an organization but no membership role in it.
    public static var missingMembership: Self { Self("missingMembership") }
    /// The Clerk session is not active (for example `sts` is `pending`).
    public static var sessionNotActive: Self { Self("sessionNotActive") }
    /// The verifier is misconfigured: a short secret, a non-HTTPS key-set URL, or the local
    /// development issuer in production. Raised at construction, never per request.
    public static var invalidConfiguration: Self { Self("invalidConfiguration") }
}
