import Foundation
import RestartixKit

/// The parts of a compact JWS (`header.payload.signature`), split and decoded without trusting
/// anything in them: this runs before any key is chosen, so it only checks the shape.
struct CompactJWS {
    /// The header's fields this kit reads.
    struct Header: Decodable {
        let alg: String?
        let kid: String?
        let typ: String?
        let crit: [String]?
    }

    /// Tokens longer than this are refused unparsed (Clerk's are about 1 KiB).
    static let maximumLength = 16 * 1024

    let header: Header
    let payload: Data

    init(_ token: String) throws(PrincipalError) {
        guard !token.isEmpty, token.utf8.count <= Self.maximumLength else {
            throw PrincipalError(.malformedToken, "the token is empty or longer than \(Self.maximumLength) bytes")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else {
            throw PrincipalError(.malformedToken, "a token has three non-empty dot-separated parts")
        }
        guard let headerData = Base64URL.decode(parts[0]),
            let payload = Base64URL.decode(parts[1]),
            Base64URL.decode(parts[2]) != nil
        else {
            throw PrincipalError(.malformedToken, "a token part is not base64url")
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: headerData) else {
            throw PrincipalError(.malformedToken, "the token header is not a JSON object of strings")
        }
        // RFC 7515 §4.1.11: an unknown critical extension must be refused.
        if let crit = header.crit, !crit.isEmpty {
            throw PrincipalError(.malformedToken, "the token header lists critical extensions this verifier does not know")
        }
        self.header = header
        self.payload = payload
    }
}

/// `exp` and `nbf` checks with a leeway, against an injectable clock.
enum TimeClaims {
    /// The longest a token may still be valid for: an `exp` further out (`1e300`, a year) is
    /// no session token of ours or Clerk's, whatever its signature.
    static let maximumLifetime: Double = 86_400

    static func check(expiresAt: Double?, notBefore: Double?, now: Date, leeway: Duration, requireExpiry: Bool = true) throws(PrincipalError) {
        let slack = Double(leeway.components.seconds) + Double(leeway.components.attoseconds) / 1e18
        let now = now.timeIntervalSince1970
        guard let expiresAt, expiresAt.isFinite else {
            if requireExpiry { throw PrincipalError(.missingClaim, "the token has no numeric exp claim") }
            return
        }
        guard now < expiresAt + slack else {
            throw PrincipalError(.expired, "the token has expired")
        }
        guard expiresAt <= now + maximumLifetime + slack else {
            throw PrincipalError(.malformedToken, "the token's exp is more than a day away")
        }
        if let notBefore {
            guard notBefore.isFinite, now + slack >= notBefore else {
                throw PrincipalError(.notYetValid, "the token is not valid yet (nbf)")
            }
        }
    }
}
