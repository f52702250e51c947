public import RestartixKit

/// Why a well-formed token's principal was refused by this deployment: a key the issuer's set
/// does not hold, a key set that cannot be fetched, an authorized party or a session status it
/// does not accept, a missing membership claim, a verifier misconfigured. (A token that cannot
/// be used at all, malformed, badly signed, expired, from another issuer, is a ``TokenError``:
/// the kit's one set of token codes.) Descriptions name the check that failed, never the
/// token, a claim's value or a secret, so they are safe to log and to return.
public struct PrincipalError: RestartixError, Equatable {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The header names a key id that the issuer's key set does not hold, even after a refresh.
        public static let unknownKey = Code(name: "unknownKey")
        /// The issuer's key set could not be fetched (HTTP 503: the token may be fine).
        public static let keysUnavailable = Code(name: "keysUnavailable")
        /// `azp` is not in the allow-list of authorized parties.
        public static let unauthorizedParty = Code(name: "unauthorizedParty")
        /// The token names an organization but no membership role in it.
        public static let missingMembership = Code(name: "missingMembership")
        /// The Clerk session is not active (for example `sts` is `pending`).
        public static let sessionNotActive = Code(name: "sessionNotActive")
        /// The verifier is misconfigured: a short secret, a non-HTTPS key-set URL, or the local
        /// development issuer in production. Raised at construction, never per request.
        public static let invalidConfiguration = Code(name: "invalidConfiguration")

        public var description: String { name }
    }

    /// The kind of failure.
    public let code: Code
    /// A short explanation that is safe to log and to show.
    public let detail: String

    /// Creates an error.
    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    /// The HTTP status a service should answer with: 401 for an unusable token, 403 for a
    /// token that is fine but not allowed (wrong party, no membership), 503 when the issuer's keys cannot be fetched, 500 for
    /// a misconfiguration.
    public var httpStatus: Int {
        switch code {
        case .unauthorizedParty, .missingMembership: 403
        case .keysUnavailable: 503
        case .invalidConfiguration: 500
        default: 401
        }
    }

    public static let domain = "principal"
    public var codeName: String { code.name }
    public var safeDetail: String { detail }
    /// The issuer's keys could not be fetched: the same token may pass in a moment.
    public var isTransient: Bool { code == .keysUnavailable }

    public var description: String { restartixDescription }
}
