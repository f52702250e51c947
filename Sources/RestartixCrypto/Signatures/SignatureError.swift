/// A signed token or webhook that did not verify. Descriptions name the failed check, never
/// the token, the body or a secret.
public struct SignatureError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// A token is not `header.payload.signature` of base64url JSON, or is too long.
        public static let malformedToken = Code(name: "malformedToken")
        /// The token's header names an algorithm other than HS256.
        public static let unsupportedAlgorithm = Code(name: "unsupportedAlgorithm")
        /// No configured secret produces the signature (wrong secret, changed token or body).
        public static let invalidSignature = Code(name: "invalidSignature")
        /// `exp` is past (beyond the leeway).
        public static let expired = Code(name: "expired")
        /// `nbf` or `iat` is in the future (beyond the leeway).
        public static let notYetValid = Code(name: "notYetValid")
        /// `aud` is not the expected audience.
        public static let wrongAudience = Code(name: "wrongAudience")
        /// `iss` is not the expected issuer.
        public static let wrongIssuer = Code(name: "wrongIssuer")
        /// A required claim is missing or malformed.
        public static let missingClaim = Code(name: "missingClaim")
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

    /// 403 for a missing scope, 500 for a bad secret (configuration), 401 otherwise.
    public var httpStatus: Int {
        switch code {
        case .insufficientScope: 403
        case .invalidSecret: 500
        default: 401
        }
    }

    public var description: String { "\(code): \(detail)" }
}
