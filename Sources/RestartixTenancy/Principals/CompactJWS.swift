import Foundation

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
        guard let headerData = Self.base64URLDecode(parts[0]),
            let payload = Self.base64URLDecode(parts[1]),
            Self.base64URLDecode(parts[2]) != nil
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

    /// Decodes unpadded base64url (RFC 7515 §2); `nil` for any other alphabet or padding.
    static func base64URLDecode(_ text: Substring) -> Data? {
        guard text.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F }) else {
            return nil
        }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        switch base64.count % 4 {
        case 0: break
        case 2: base64 += "=="
        case 3: base64 += "="
        default: return nil
        }
        return Data(base64Encoded: base64)
    }
}

/// `exp` and `nbf` checks with a leeway, against an injectable clock.
enum TimeClaims {
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
        if let notBefore {
            guard notBefore.isFinite, now + slack >= notBefore else {
                throw PrincipalError(.notYetValid, "the token is not valid yet (nbf)")
            }
        }
    }
}
