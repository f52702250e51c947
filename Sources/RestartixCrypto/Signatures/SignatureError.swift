public import RestartixKit

/// A webhook that did not verify, a service-account token without the scope asked for, a
/// secret or claims the kit cannot sign with. (A token that cannot be used at all is a
/// ``TokenError``, the kit's one set of token codes.) Descriptions name the failed check, never
/// the token, the body or a secret.
public struct SignatureError: RestartixError, Equatable {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// No configured secret produces the webhook's signature (wrong secret, changed body).
        public static let invalidSignature = Code(name: "invalidSignature")
        /// Claims to sign are out of range (a lifetime, a name with spaces): the caller's
        /// mistake, raised when issuing, never when verifying.
        public static let invalidClaims = Code(name: "invalidClaims")
        /// A service-account token lacks the required scope (HTTP 403).
        public static let insufficientScope = Code(name: "insufficientScope")
        /// A webhook lacks its id, timestamp or signature header.
        public static let missingHeader = Code(name: "missingHeader")
        /// A webhook header is malformed (timestamp not a number, no `v1,` signature).
        public static let malformedHeader = Code(name: "malformedHeader")
        /// A webhook's timestamp is outside the tolerance (replayed or clock-skewed).
        public static let timestampOutOfTolerance = Code(name: "timestampOutOfTolerance")
        /// A secret is unusable (too short, not base64). Raised at construction.
        public static let invalidSecret = Code(name: "invalidSecret")

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

    /// 403 for a missing scope, 500 for a bad secret (configuration) or claims the caller could
    /// not issue, 401 otherwise.
    public var httpStatus: Int {
        switch code {
        case .insufficientScope: 403
        case .invalidSecret, .invalidClaims: 500
        default: 401
        }
    }

    public static let domain = "signature"
    public var codeName: String { code.name }
    public var safeDetail: String { detail }

    public var description: String { restartixDescription }
}
