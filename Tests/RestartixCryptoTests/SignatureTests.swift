import Crypto
import Foundation
import RestartixCrypto
import RestartixKit
import Testing

@Suite("Signed tokens and webhooks")
struct SignatureTests {
    static let current = String(repeating: "c", count: 40)
    static let previous = String(repeating: "p", count: 40)

    /// The identifier (`token.expired`, `signature.insufficientScope`) of the kit error `body`
    /// ends in, or nil.
    func code(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as any RestartixError { return error.identifier } catch { return nil }
    }

    @Test("session tokens: claims round trip; rotation; wrong secret, expiry, audience, tampering refused")
    func sessionTokens() throws {
        let tokens = try SessionTokens(secrets: [Self.current, Self.previous])
        let session = UUID(), organization = UUID(), patient = UUID()
        let token = try tokens.issue(session: session, organization: organization, patient: patient, lifetime: .seconds(600))
        let verified = try tokens.verify(token)
        #expect(verified.sessionID == session && verified.organizationID == organization && verified.patientID == patient)
        // A token made under the previous secret still verifies during rotation; after it, not.
        let legacy = try SessionTokens(secrets: [Self.previous]).issue(session: session, organization: organization, patient: patient)
        #expect(try tokens.verify(legacy).sessionID == session)
        #expect(code { _ = try SessionTokens(secrets: [Self.current]).verify(legacy) } == "token.invalidSignature")
        let later = try SessionTokens(secrets: [Self.current], clock: { Date().addingTimeInterval(700) })
        #expect(code { _ = try later.verify(token) } == "token.expired")
        let earlier = try SessionTokens(secrets: [Self.current], clock: { Date().addingTimeInterval(-60) })
        #expect(code { _ = try earlier.verify(token) } == "token.notYetValid")
        // A service-account token signed with the same secret is not a session token.
        let service = try ServiceAccountTokens(secrets: [Self.current]).issue(service: "jobs", audience: "restartix-telemetry-api", scopes: [], lifetime: .seconds(60))
        #expect(code { _ = try tokens.verify(service) } == "token.wrongIssuer")
        var parts = token.split(separator: ".").map(String.init)
        parts[1] = String(parts[1].dropLast()) + (parts[1].hasSuffix("A") ? "B" : "A")
        #expect(code { _ = try tokens.verify(parts.joined(separator: ".")) } == "token.invalidSignature")
        let none = "eyJhbGciOiJub25lIn0.\(token.split(separator: ".")[1])."
        #expect(code { _ = try tokens.verify(none) } == "token.malformedToken")
        let noneSigned = "eyJhbGciOiJub25lIn0.\(token.split(separator: ".")[1]).c2ln"
        #expect(code { _ = try tokens.verify(noneSigned) } == "token.unsupportedAlgorithm")
        #expect(code { _ = try tokens.verify("x.y") } == "token.malformedToken")
        #expect(code { _ = try SessionTokens(secrets: ["short"]) } == "signature.invalidSecret")
    }

    /// A compact HS256 JWT made here, independently of the kit, for claims the kit would never issue.
    static func jwt(_ claims: [String: Any], secret: String) throws -> String {
        func base64url(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let input = base64url(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + base64url(try JSONSerialization.data(withJSONObject: claims))
        let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return input + "." + base64url(Data(mac))
    }

    @Test("session tokens: another audience, issuer or a missing claim is refused, even under the right secret")
    func sessionTokenClaims() throws {
        let tokens = try SessionTokens(secrets: [Self.current])
        let now = Date().timeIntervalSince1970.rounded(.down)
        let good: [String: Any] = [
            "iss": SessionTokens.issuer, "aud": SessionTokens.audience, "sid": UUID().uuidString.lowercased(),
            "org": UUID().uuidString.lowercased(), "pat": UUID().uuidString.lowercased(), "iat": now, "nbf": now, "exp": now + 60,
        ]
        #expect(try tokens.verify(Self.jwt(good, secret: Self.current)).expiresAt == Date(timeIntervalSince1970: now + 60), "the independent token verifies")
        #expect(code { _ = try tokens.verify(Self.jwt(good.merging(["aud": "restartix-core-api"]) { $1 }, secret: Self.current)) } == "token.wrongAudience")
        #expect(code { _ = try tokens.verify(Self.jwt(good.merging(["iss": "someone-else"]) { $1 }, secret: Self.current)) } == "token.wrongIssuer")
        #expect(code { _ = try tokens.verify(Self.jwt(good.filter { $0.key != "exp" }, secret: Self.current)) } == "token.missingClaim")
        #expect(code { _ = try tokens.verify(Self.jwt(good.filter { $0.key != "pat" }, secret: Self.current)) } == "token.missingClaim")
        #expect(code { _ = try tokens.verify(Self.jwt(good.merging(["exp": now - 10]) { $1 }, secret: Self.current)) } == "token.expired")
    }

    @Test("token secrets: the first signs, every one verifies (rotation); none, or a short one, refused without showing it")
    func tokenSecretRotation() throws {
        let tokens = try SessionTokens(secrets: [Self.current, Self.previous])
        let legacy = try SessionTokens(secrets: [Self.previous]).issue(session: UUID(), organization: UUID(), patient: UUID())
        #expect(throws: Never.self) { try tokens.verify(legacy) }
        #expect(code { _ = try SessionTokens(secrets: [Self.current]).verify(legacy) } == "token.invalidSignature")
        #expect(#expect(throws: SignatureError.self) { try SessionTokens(secrets: []) }?.identifier == "signature.invalidSecret")
        let short = #expect(throws: SignatureError.self) { try ServiceAccountTokens(secrets: [Self.current, "tiny-secret"]) }
        #expect(short?.identifier == "signature.invalidSecret")
        #expect(short?.description.contains("tiny-secret") == false)
        let service = try ServiceAccountTokens(secrets: [Self.current])
        #expect(try service.verify(try service.issue(service: "telemetry-api", audience: "core-api", scopes: [], lifetime: .seconds(60)), audience: "core-api").service == "telemetry-api")
    }

    @Test("service-account tokens: audience, scope, rotation, HS256 only")
    func serviceAccounts() throws {
        let tokens = try ServiceAccountTokens(secrets: [Self.current, Self.previous])
        let token = try tokens.issue(service: "telemetry-api", audience: "core-api", scopes: ["aggregates:write"], lifetime: .seconds(60))
        #expect(try tokens.verify(token, audience: "core-api", requiring: "aggregates:write").service == "telemetry-api")
        let legacy = try ServiceAccountTokens(secrets: [Self.previous]).issue(service: "jobs", audience: "core-api", scopes: [], lifetime: .seconds(60))
        #expect(try tokens.verify(legacy, audience: "core-api").service == "jobs")
        #expect(code { _ = try tokens.verify(token, audience: "telemetry-api") } == "token.wrongAudience")
        #expect(code { _ = try tokens.verify(token, audience: "core-api", requiring: "admin") } == "signature.insufficientScope")
        #expect(code { _ = try ServiceAccountTokens(secrets: [String(repeating: "x", count: 40)]).verify(token, audience: "core-api") } == "token.invalidSignature")
        let expired = try ServiceAccountTokens(secrets: [Self.current], clock: { Date().addingTimeInterval(120) })
        #expect(code { _ = try expired.verify(token, audience: "core-api") } == "token.expired")
        let session = try SessionTokens(secrets: [Self.current]).issue(session: UUID(), organization: UUID(), patient: UUID())
        #expect(code { _ = try tokens.verify(session, audience: "core-api") } == "token.wrongIssuer")
    }

    @Test("webhooks: Svix's published example verifies")
    func svixVector() throws {
        // From Svix's documentation: secret, message id, timestamp, body and signature.
        let verifier = try WebhookVerifier(secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], clock: { Date(timeIntervalSince1970: 1_614_265_330) })
        let headers = [
            "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "svix-timestamp": "1614265330",
            "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ]
        let delivery = try verifier.verify(body: Data(#"{"test": 2432232314}"#.utf8)) { headers[$0.lowercased()] }
        #expect(delivery.id == "msg_p5jXN8AQM9LWM0D4loKWxJek")
        #expect(verifier.signature(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Data(#"{"test": 2432232314}"#.utf8))
            == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test("webhooks: several signatures, webhook-* names, and every bad delivery refused")
    func webhookNegatives() throws {
        let secret = "whsec_" + Data((0..<24).map { UInt8($0) }).base64EncodedString()
        let other = "whsec_" + Data(repeating: 7, count: 24).base64EncodedString()
        let now = Date()
        let verifier = try WebhookVerifier(secrets: [secret], clock: { now })
        let body = Data(#"{"type":"user.created","data":{"id":"user_1"}}"#.utf8)
        let ts = Int64(now.timeIntervalSince1970)
        let good = verifier.signature(id: "msg_1", timestamp: ts, body: body)
        let wrong = try WebhookVerifier(secrets: [other]).signature(id: "msg_1", timestamp: ts, body: body)
        func verify(_ headers: [String: String], _ payload: Data = body) -> String? {
            code { _ = try verifier.verify(body: payload) { headers[$0.lowercased()] } }
        }
        let base = ["svix-id": "msg_1", "svix-timestamp": "\(ts)"]
        #expect(verify(base.merging(["svix-signature": "\(wrong) v1a,xyz \(good)"]) { $1 }) == nil, "any matching v1 entry")
        #expect(verify(["webhook-id": "msg_1", "webhook-timestamp": "\(ts)", "webhook-signature": good]) == nil)
        #expect(verify(["svix-id": "msg_1", "webhook-timestamp": "\(ts)", "webhook-signature": good]) == "signature.missingHeader", "one spelling for all three")
        #expect(verify(base.merging(["svix-id": String(repeating: "m", count: 256), "svix-signature": good]) { $1 }) == "signature.malformedHeader", "id too long")
        #expect(verify(base.merging(["svix-signature": wrong]) { $1 }) == "signature.invalidSignature", "wrong secret")
        #expect(verify(base.merging(["svix-signature": good]) { $1 }, body + Data(" ".utf8)) == "signature.invalidSignature", "tampered body")
        #expect(verify(["svix-id": "msg_2", "svix-timestamp": "\(ts)", "svix-signature": good]) == "signature.invalidSignature", "another id")
        #expect(verify(base) == "signature.missingHeader")
        #expect(verify(["svix-timestamp": "\(ts)", "svix-signature": good]) == "signature.missingHeader")
        #expect(verify(base.merging(["svix-timestamp": "soon", "svix-signature": good]) { $1 }) == "signature.malformedHeader")
        #expect(verify(base.merging(["svix-signature": "v2,abc"]) { $1 }) == "signature.malformedHeader")
        for offset in [-301, 301] {
            let stale = ts + Int64(offset)
            let signed = verifier.signature(id: "msg_1", timestamp: stale, body: body)
            #expect(verify(["svix-id": "msg_1", "svix-timestamp": "\(stale)", "svix-signature": signed]) == "signature.timestampOutOfTolerance", "\(offset)")
        }
        #expect(code { _ = try WebhookVerifier(secrets: ["whsec_***"]) } == "signature.invalidSecret")
    }
}
