import Crypto
import Foundation
import RestartixKit

/// Compact HS256 JWTs (RFC 7519) with swift-crypto: one signing secret, any number of
/// verifying secrets (rotation), constant-time signature checks, the header's algorithm pinned.
struct HS256 {
    /// Tokens longer than this are refused unparsed.
    static let maximumLength = 8 * 1024
    static let header = Base64URL.encode(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    let keys: [SymmetricKey]

    /// Secrets as given (UTF-8 bytes), at least 32 bytes each; the first signs.
    init(secrets: [String]) throws(SignatureError) {
        guard !secrets.isEmpty, secrets.allSatisfy({ $0.utf8.count >= 32 }) else {
            throw SignatureError(.invalidSecret, "token secrets must be at least 32 bytes each, and there must be one")
        }
        keys = secrets.map { SymmetricKey(data: Data($0.utf8)) }
    }

    /// The secrets in `variable` and, during a rotation, `variable_PREVIOUS`; an error names the
    /// variable, never its value.
    static func secrets(_ variable: String, in environment: [String: String]) throws(SignatureError) -> [String] {
        guard let current = environment[variable], !current.isEmpty else { throw SignatureError(.invalidSecret, "\(variable) is not set") }
        var secrets = [current]
        if let previous = environment[variable + "_PREVIOUS"], !previous.isEmpty { secrets.append(previous) }
        for (name, secret) in zip([variable, variable + "_PREVIOUS"], secrets) where secret.utf8.count < 32 {
            throw SignatureError(.invalidSecret, "\(name) is \(secret.utf8.count) bytes; token secrets are at least 32")
        }
        return secrets
    }

    func sign(_ claims: some Encodable) throws(SignatureError) -> String {
        let payload: Data
        do { payload = try JSONEncoder().encode(claims) } catch {
            throw SignatureError(.missingClaim, "the claims could not be encoded")
        }
        let input = "\(Self.header).\(Base64URL.encode(payload))"
        let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: keys[0])
        return "\(input).\(Base64URL.encode(Data(mac)))"
    }

    /// The payload of a token one of the keys signed.
    func verify(_ token: String) throws(SignatureError) -> Data {
        guard token.utf8.count <= Self.maximumLength else { throw SignatureError(.malformedToken, "the token is too long") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Base64URL.decode(parts[0]), let payload = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else {
            throw SignatureError(.malformedToken, "a token is three base64url parts")
        }
        struct Header: Decodable {
            let alg: String?
            let crit: [String]?
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: headerData) else {
            throw SignatureError(.malformedToken, "the token header is not JSON")
        }
        guard header.alg == "HS256" else { throw SignatureError(.unsupportedAlgorithm, "tokens are HS256; the header names another algorithm") }
        guard header.crit?.isEmpty ?? true else { throw SignatureError(.malformedToken, "the token header lists critical extensions") }
        let input = Data(parts[0].utf8 + [UInt8(ascii: ".")] + parts[1].utf8)
        // isValidAuthenticationCode compares in constant time.
        guard keys.contains(where: { HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: $0) }) else {
            throw SignatureError(.invalidSignature, "the token signature does not verify")
        }
        return payload
    }

    /// `exp` (required), `nbf` and `iat` against `now` with `leeway`.
    static func checkTimes(exp: Double?, nbf: Double?, iat: Double?, now: Date, leeway: Duration) throws(SignatureError) {
        let slack = Double(leeway.components.seconds)
        let now = now.timeIntervalSince1970
        guard let exp, exp.isFinite else { throw SignatureError(.missingClaim, "the token has no exp") }
        guard now < exp + slack else { throw SignatureError(.expired, "the token has expired") }
        for value in [nbf, iat].compactMap({ $0 }) where !(value.isFinite && value <= now + slack) {
            throw SignatureError(.notYetValid, "the token is not valid yet")
        }
    }
}
