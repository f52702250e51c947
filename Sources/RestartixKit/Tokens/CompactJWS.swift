public import Foundation

/// Why a signed token (a compact JWS, RFC 7515, carrying JWT claims, RFC 7519) was refused,
/// whichever verifier refused it: a Clerk session token, a local development token, a
/// telemetry session token or a service-account token. One set of codes, one parser
/// (``CompactJWS``) and one set of time rules (``TokenTimes``) for all of them.
///
/// Details name the check that failed, never the token, a claim's value or a secret. Every
/// code answers 401: the caller must present another token.
public typealias TokenError = DomainError<TokenErrorDomain>

/// The `token` error domain: its codes' HTTP statuses.
public enum TokenErrorDomain: ErrorDomain {
    public static let name = "token"

    /// 401: the token cannot be used; the caller must present another.
    public static func httpStatus(for code: ErrorCode<TokenErrorDomain>) -> Int { 401 }
}

extension ErrorCode where Domain == TokenErrorDomain {
    /// Not a compact JWS: wrong part count, bad base64url or JSON, an unknown critical
    /// header, too long; or claims that are not the expected token's.
    public static var malformedToken: Self { Self("malformedToken") }
    /// The header names an algorithm this verifier does not accept (`none`, `HS256` where
    /// RS256 is expected, and so on).
    public static var unsupportedAlgorithm: Self { Self("unsupportedAlgorithm") }
    /// The signature does not verify with the key (or any of the secrets) it should.
    public static var invalidSignature: Self { Self("invalidSignature") }
    /// `exp` is past, beyond the leeway.
    public static var expired: Self { Self("expired") }
    /// `nbf` or `iat` is in the future, beyond the leeway.
    public static var notYetValid: Self { Self("notYetValid") }
    /// `iss` is not the expected issuer.
    public static var wrongIssuer: Self { Self("wrongIssuer") }
    /// `aud` is not the expected audience.
    public static var wrongAudience: Self { Self("wrongAudience") }
    /// A required claim is absent or malformed (`sub`, `exp`, an organization or session id).
    public static var missingClaim: Self { Self("missingClaim") }
}

/// A compact JWS (`header.payload.signature`) split and decoded without trusting anything in
/// it: this runs before any key is chosen, so it checks the shape only. The verifier then
/// checks ``header``'s algorithm against the one it expects, the ``signature`` over
/// ``signingInput`` with its key, and the claims in ``payload``.
public struct CompactJWS: Sendable {
    /// The header fields the kit reads.
    public struct Header: Decodable, Sendable {
        /// The algorithm (`RS256`, `HS256`).
        public let alg: String?
        /// The key id.
        public let kid: String?
        /// The type (`JWT`).
        public let typ: String?
        /// Critical extensions; any is refused (RFC 7515 §4.1.11: the kit understands none).
        public let crit: [String]?
    }

    /// Tokens longer than this are refused unparsed (Clerk's are about 1 KiB, the kit's own
    /// under 1 KiB).
    public static let maximumLength = 16 * 1024

    /// The decoded header.
    public let header: Header
    /// The decoded payload (the claims' JSON).
    public let payload: Data
    /// The bytes the signature covers: the first two parts as sent, with the dot.
    public let signingInput: Data
    /// The decoded signature.
    public let signature: Data

    /// Splits and decodes `token`; throws ``TokenError/Code/malformedToken`` naming the problem.
    public init(_ token: String) throws(TokenError) {
        guard !token.isEmpty, token.utf8.count <= Self.maximumLength else {
            throw TokenError(.malformedToken, "the token is empty or longer than \(Self.maximumLength) bytes")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else {
            throw TokenError(.malformedToken, "a token has three non-empty dot-separated parts")
        }
        guard let headerData = Base64URL.decode(parts[0]), let payload = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else {
            throw TokenError(.malformedToken, "a token part is not base64url")
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: headerData) else {
            throw TokenError(.malformedToken, "the token header is not a JSON object of strings")
        }
        if let crit = header.crit, !crit.isEmpty {
            throw TokenError(.malformedToken, "the token header lists critical extensions this verifier does not know")
        }
        self.header = header
        self.payload = payload
        self.signingInput = Data(parts[0].utf8 + [UInt8(ascii: ".")] + parts[1].utf8)
        self.signature = signature
    }

    /// Throws ``TokenError/Code/unsupportedAlgorithm`` unless the header names `algorithm`.
    public func requireAlgorithm(_ algorithm: String) throws(TokenError) {
        guard header.alg == algorithm else {
            throw TokenError(.unsupportedAlgorithm, "these tokens are \(algorithm); the header names another algorithm")
        }
    }
}

/// The time claims' rules, the same for every token the kit verifies.
public enum TokenTimes {
    /// Checks `exp` (required unless `requireExpiry` is false), `nbf` and `iat` against `now`,
    /// each with `leeway` of clock skew allowed; and refuses an `exp` more than
    /// `maximumLifetime` away (a token that lives "forever", whatever its signature, is none
    /// the kit issues or accepts).
    public static func check(
        expiresAt: Double?,
        notBefore: Double?,
        issuedAt: Double? = nil,
        now: Date,
        leeway: Duration,
        maximumLifetime: Duration = .seconds(86_400),
        requireExpiry: Bool = true
    ) throws(TokenError) {
        let slack = leeway.secondsValue
        let now = now.timeIntervalSince1970
        if let expiresAt {
            guard expiresAt.isFinite else { throw TokenError(.missingClaim, "the token's exp is not a number") }
            guard now < expiresAt + slack else { throw TokenError(.expired, "the token has expired") }
            guard expiresAt <= now + maximumLifetime.secondsValue + slack else {
                throw TokenError(.malformedToken, "the token's exp is further away than such tokens live")
            }
        } else if requireExpiry {
            throw TokenError(.missingClaim, "the token has no numeric exp claim")
        }
        for value in [notBefore, issuedAt].compactMap({ $0 }) where !(value.isFinite && value <= now + slack) {
            throw TokenError(.notYetValid, "the token is not valid yet (nbf or iat)")
        }
    }
}
