import Crypto
import Foundation
import RestartixKit

/// Compact HS256 JWTs (RFC 7519) with swift-crypto: one signing secret, any number of
/// verifying secrets (rotation), constant-time signature checks, the header's algorithm pinned.
struct HS256 {
    static let header = Base64URL.encode(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    let keys: [SymmetricKey]

    /// Secrets as given (UTF-8 bytes), at least 32 bytes each; the first signs.
    init(secrets: [String]) throws(SignatureError) {
        guard !secrets.isEmpty, secrets.allSatisfy({ $0.utf8.count >= 32 }) else {
            throw SignatureError(.invalidSecret, "token secrets must be at least 32 bytes each, and there must be one")
        }
        keys = secrets.map { SymmetricKey(data: Data($0.utf8)) }
    }

    func sign(_ claims: some Encodable) throws(SignatureError) -> String {
        let payload: Data
        do { payload = try JSONEncoder().encode(claims) } catch {
            throw SignatureError(.invalidClaims, "the claims could not be encoded")
        }
        let input = "\(Self.header).\(Base64URL.encode(payload))"
        let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: keys[0])
        return "\(input).\(Base64URL.encode(Data(mac)))"
    }

    /// The payload of a token one of the keys signed (the kit's one parser, ``CompactJWS``).
    func verify(_ token: String) throws(TokenError) -> Data {
        let jws = try CompactJWS(token)
        try jws.requireAlgorithm("HS256")
        // isValidAuthenticationCode compares in constant time.
        guard keys.contains(where: { HMAC<SHA256>.isValidAuthenticationCode(jws.signature, authenticating: jws.signingInput, using: $0) }) else {
            throw TokenError(.invalidSignature, "the token signature does not verify")
        }
        return jws.payload
    }
}
