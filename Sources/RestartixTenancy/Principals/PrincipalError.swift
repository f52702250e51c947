/// Why a bearer token or a principal was refused. Descriptions name the check that failed,
/// never the token, a claim's value or a secret, so they are safe to log and to return.
public struct PrincipalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// Not a compact JWS: wrong segment count, bad base64url or JSON, missing `kid`, too long.
        public static let malformedToken = Code(name: "malformedToken")
        /// The header names an algorithm this verifier does not accept (`none`, `HS256` where
        /// RS256 is expected, and so on).
        public static let unsupportedAlgorithm = Code(name: "unsupportedAlgorithm")
        /// The signature does not verify with the key the header names.
        public static let invalidSignature = Code(name: "invalidSignature")
        /// The header names a key id that the issuer's key set does not hold, even after a refresh.
        public static let unknownKey = Code(name: "unknownKey")
        /// The issuer's key set could not be fetched (HTTP 503: the token may be fine).
        public static let keysUnavailable = Code(name: "keysUnavailable")
        /// `exp` is past (beyond the leeway).
        public static let expired = Code(name: "expired")
        /// `nbf` is in the future (beyond the leeway).
        public static let notYetValid = Code(name: "notYetValid")
        /// `iss` is not the configured issuer.
        public static let wrongIssuer = Code(name: "wrongIssuer")
        /// `azp` is not in the allow-list of authorized parties.
        public static let unauthorizedParty = Code(name: "unauthorizedParty")
        /// A required claim is absent or malformed (`sub`, `exp`, the organization claim...).
        public static let missingClaim = Code(name: "missingClaim")
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

    public var description: String { "\(code): \(detail)" }
}
