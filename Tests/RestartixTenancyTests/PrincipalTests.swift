import Crypto
import Foundation
import JWTKit
import RestartixKit
import RestartixTenancy
import Testing

/// Claims as a test wants them, each optional so a token can lack any of them.
struct TestClaims: JWTPayload {
    struct Organization: Codable, Sendable {
        var id: String?
        var rol: String?
    }

    var iss: String? = "https://clerk.restartix.test"
    var sub: String? = "user_2abc"
    var sid: String? = "sess_1"
    var azp: String? = "https://app.restartix.test"
    var exp: Double? = Date().timeIntervalSince1970 + 60
    var nbf: Double? = Date().timeIntervalSince1970 - 5
    var iat: Double? = Date().timeIntervalSince1970 - 5
    var v: Int? = 2
    var sts: String? = "active"
    var o: Organization? = Organization(id: "org_2xyz", rol: "admin")
    var org_id: String?
    var org_role: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Clerk session tokens, service-account tokens and the local development issuer: every bad
/// input refused with the check it failed, before any database work.
@Suite("Principals", .timeLimit(.minutes(3)))
struct PrincipalTests {
    static let issuer = "https://clerk.restartix.test"

    struct Setup {
        let server: JWKSServer
        let key: TestRSAKey
        let verifier: ClerkSessionVerifier
    }

    static func setup(
        minimumRefreshInterval: Duration = .seconds(30),
        keySetLifetime: Duration = .seconds(3600),
        maximumKeyAge: Duration = .seconds(86_400)
    ) async throws -> Setup {
        let server = try await JWKSServer.start()
        let key = try await TestRSAKey.make(kid: "ins_key_1")
        server.serve(jwks(key))
        let verifier = try ClerkSessionVerifier(configuration: ClerkConfiguration(
            issuer: issuer, jwksURL: server.url, authorizedParties: ["https://app.restartix.test"],
            minimumRefreshInterval: minimumRefreshInterval, keySetLifetime: keySetLifetime, maximumKeyAge: maximumKeyAge
        ))
        return Setup(server: server, key: key, verifier: verifier)
    }

    static func unsigned(header: String, claims: TestClaims, signature: String) throws -> String {
        let payload = try JSONEncoder().encode(claims)
        return "\(base64URL(Data(header.utf8))).\(base64URL(payload)).\(signature)"
    }

    @Test("a good v2 and v1 token verify; claims are read")
    func goodTokens() async throws {
        let setup = try await Self.setup()
        defer { setup.server.stop() }
        let session = try await setup.verifier.verify(try await setup.key.sign(TestClaims()))
        #expect(session.userID == "user_2abc")
        #expect(session.organizationID == "org_2xyz")
        #expect(session.organizationRole == "admin")
        var v1 = TestClaims()
        v1.o = nil
        v1.v = nil
        v1.org_id = "org_v1"
        v1.org_role = "org:specialist"
        let old = try await setup.verifier.verify(try await setup.key.sign(v1))
        #expect(old.organizationID == "org_v1")
        #expect(old.organizationRole == "specialist")
        // Inside the leeway (5 s) an expired token still passes; beyond it, not.
        var skewed = TestClaims()
        skewed.exp = Date().timeIntervalSince1970 - 2
        _ = try await setup.verifier.verify(try await setup.key.sign(skewed))
        #expect(setup.server.fetches == 1, "the key set is fetched once and cached")
    }

    @Test("bad tokens are refused with the check they fail")
    func badTokens() async throws {
        let setup = try await Self.setup()
        defer { setup.server.stop() }
        let now = Date().timeIntervalSince1970
        let good = try await setup.key.sign(TestClaims())
        let parts = good.split(separator: ".").map(String.init)
        var expired = TestClaims(); expired.exp = now - 60
        var future = TestClaims(); future.nbf = now + 60
        var noExpiry = TestClaims(); noExpiry.exp = nil
        var wrongIssuer = TestClaims(); wrongIssuer.iss = "https://evil.example"
        var wrongParty = TestClaims(); wrongParty.azp = "https://evil.example"
        var noSubject = TestClaims(); noSubject.sub = nil
        var pending = TestClaims(); pending.sts = "pending"
        let hmacWithPublicKey: String = try {
            let header = base64URL(Data(#"{"alg":"HS256","typ":"JWT","kid":"ins_key_1"}"#.utf8))
            let payload = base64URL(try JSONEncoder().encode(TestClaims()))
            let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(payload)".utf8), using: SymmetricKey(data: Data(setup.key.publicPEM.utf8)))
            return "\(header).\(payload).\(base64URL(Data(mac)))"
        }()
        let cases: [(String, String, String)] = [
            ("empty", "", "token.malformedToken"),
            ("two parts", "\(parts[0]).\(parts[1])", "token.malformedToken"),
            ("not base64url", "\(parts[0]).\(parts[1]).abc+/=", "token.malformedToken"),
            ("header not JSON", "bm90IGpzb24.\(parts[1]).\(parts[2])", "token.malformedToken"),
            ("alg none", try Self.unsigned(header: #"{"alg":"none","kid":"ins_key_1"}"#, claims: TestClaims(), signature: "c2ln"), "token.unsupportedAlgorithm"),
            ("alg none, empty signature", try Self.unsigned(header: #"{"alg":"none"}"#, claims: TestClaims(), signature: ""), "token.malformedToken"),
            ("HS256 keyed with the RSA public key", hmacWithPublicKey, "token.unsupportedAlgorithm"),
            ("RS512", try Self.unsigned(header: #"{"alg":"RS512","kid":"ins_key_1"}"#, claims: TestClaims(), signature: parts[2]), "token.unsupportedAlgorithm"),
            ("no kid", try Self.unsigned(header: #"{"alg":"RS256"}"#, claims: TestClaims(), signature: parts[2]), "token.malformedToken"),
            ("critical extension", try Self.unsigned(header: #"{"alg":"RS256","kid":"ins_key_1","crit":["exp"]}"#, claims: TestClaims(), signature: parts[2]), "token.malformedToken"),
            ("payload changed", "\(parts[0]).\(base64URL(try JSONEncoder().encode(wrongIssuer))).\(parts[2])", "token.invalidSignature"),
            ("expired", try await setup.key.sign(expired), "token.expired"),
            ("not yet valid", try await setup.key.sign(future), "token.notYetValid"),
            ("no exp", try await setup.key.sign(noExpiry), "token.missingClaim"),
            ("wrong issuer", try await setup.key.sign(wrongIssuer), "token.wrongIssuer"),
            ("azp not allowed", try await setup.key.sign(wrongParty), "principal.unauthorizedParty"),
            ("no subject", try await setup.key.sign(noSubject), "token.missingClaim"),
            ("pending session", try await setup.key.sign(pending), "principal.sessionNotActive"),
        ]
        for (name, token, code) in cases {
            let error = await refusal { _ = try await setup.verifier.verify(token) }
            #expect(error?.identifier == code, "\(name): \(String(describing: error))")
            #expect(!(error?.description.contains(token.prefix(20)) ?? false) || token.isEmpty, "\(name): the error quotes the token")
        }
    }

    @Test("an unknown kid triggers one refresh, rate limited; a rotated key is picked up")
    func unknownKid() async throws {
        // The interval is wide enough that the flood below stays inside it on a loaded machine
        // (with one second, CI once took longer than that for 20 refusals and fetched a third time).
        let interval = Duration.seconds(5)
        let setup = try await Self.setup(minimumRefreshInterval: interval)
        defer { setup.server.stop() }
        let stranger = try await TestRSAKey.make(kid: "ins_unknown")
        let forged = try await stranger.sign(TestClaims())
        _ = try await setup.verifier.verify(try await setup.key.sign(TestClaims()))
        #expect(setup.server.fetches == 1)
        try await Task.sleep(for: interval + .milliseconds(50))
        let first = await #expect(throws: PrincipalError.self) { try await setup.verifier.verify(forged) }
        #expect(first?.code == .unknownKey)
        #expect(setup.server.fetches == 2, "one refresh for the unknown kid")
        // A flood of unknown kids within the interval fetches nothing more.
        for _ in 0..<20 {
            await #expect(throws: PrincipalError.self) { try await setup.verifier.verify(forged) }
        }
        #expect(setup.server.fetches == 2)

        // Rotation: once the interval has passed, a new key is picked up on first sight.
        let rotating = try await Self.setup(minimumRefreshInterval: .zero)
        defer { rotating.server.stop() }
        _ = try await rotating.verifier.verify(try await rotating.key.sign(TestClaims()))
        let next = try await TestRSAKey.make(kid: "ins_key_2")
        rotating.server.serve(jwks(rotating.key, next))
        let session = try await rotating.verifier.verify(try await next.sign(TestClaims()))
        #expect(session.userID == "user_2abc")
        #expect(rotating.server.fetches == 2)
    }

    @Test("concurrent first requests share one key-set fetch and all verify")
    func coldStart() async throws {
        let setup = try await Self.setup()
        defer { setup.server.stop() }
        let token = try await setup.key.sign(TestClaims())
        try await withThrowingTaskGroup(of: ClerkSession.self) { group in
            for _ in 0..<32 { group.addTask { try await setup.verifier.verify(token) } }
            for try await session in group { #expect(session.userID == "user_2abc") }
        }
        #expect(setup.server.fetches == 1)
    }

    @Test("keys that cannot be refreshed stop being trusted after the maximum key age")
    func maximumKeyAge() async throws {
        // Wide margins: on a loaded 2-core machine the stale step below once took over 1.5 s.
        let setup = try await Self.setup(minimumRefreshInterval: .zero, keySetLifetime: .milliseconds(200), maximumKeyAge: .seconds(4))
        defer { setup.server.stop() }
        let token = try await setup.key.sign(TestClaims())
        _ = try await setup.verifier.verify(token)
        setup.server.fail(with: 503)
        try await Task.sleep(for: .milliseconds(300))
        _ = try await setup.verifier.verify(token)  // stale: refresh fails, the keys held still serve
        try await Task.sleep(for: .seconds(4))
        let error = await #expect(throws: PrincipalError.self) { try await setup.verifier.verify(token) }
        #expect(error?.code == .keysUnavailable)
    }

    @Test("an unreachable or failing key set is keysUnavailable (503), not a bad token")
    func keysUnavailable() async throws {
        let setup = try await Self.setup()
        setup.server.fail(with: 500)
        let error = await #expect(throws: PrincipalError.self) { try await setup.verifier.verify(try await setup.key.sign(TestClaims())) }
        #expect(error?.code == .keysUnavailable)
        #expect(error?.httpStatus == 503)
        // Within the refresh interval an outage is not retried on every request.
        for _ in 0..<10 {
            let again = await #expect(throws: PrincipalError.self) { try await setup.verifier.verify(try await setup.key.sign(TestClaims())) }
            #expect(again?.code == .keysUnavailable)
        }
        #expect(setup.server.fetches == 1, "one fetch during the outage")
        setup.server.stop()
        #expect(throws: PrincipalError.self) {
            try ClerkSessionVerifier(configuration: ClerkConfiguration(issuer: "http://clerk.example.com"))
        }
    }

    @Test("the local development issuer is refused in production")
    func localIssuer() async throws {
        let error = await #expect(throws: PrincipalError.self) { try await LocalDevIssuer(environment: .production) }
        #expect(error?.code == .invalidConfiguration)
        await #expect(throws: PrincipalError.self) { try await LocalDevIssuer(environment: .staging) }
        #expect(throws: ConfigurationError.self) { try DeploymentEnvironment(appEnv: "prod") }
        #expect(try DeploymentEnvironment(appEnv: nil) == .development)
        let dev = try await LocalDevIssuer(environment: .development)
        let other = try await LocalDevIssuer(environment: .development)
        let user = UUIDv7.generate(), organization = UUIDv7.generate()
        let token = try await dev.issue(user: user, organization: organization)
        let principal = try await dev.verify(token)
        #expect(principal.organizationID == organization && principal.userID == user)
        await #expect(throws: TokenError.self) { try await other.verify(token) }
    }

    /// Claims signed with the right key but shaped wrong: refused for what they are, not as a
    /// bad signature; an `exp` centuries away is no session token.
    @Test("local tokens: an exp beyond a day or not a number is malformed; a bad signature stays a bad signature")
    func localIssuerClaims() async throws {
        let secret = String(repeating: "s", count: 40)
        let dev = try await LocalDevIssuer(environment: .test, secret: secret)
        let signer = await JWTKeyCollection().add(hmac: HMACKey(from: Data(secret.utf8)), digestAlgorithm: .sha256)
        struct Claims: JWTPayload {
            let iss: String
            let sub: String
            let org: String
            let exp: ExpiryValue
            enum ExpiryValue: Codable {
                case number(Double)
                case text(String)
                func encode(to encoder: any Encoder) throws {
                    var container = encoder.singleValueContainer()
                    switch self {
                    case .number(let value): try container.encode(value)
                    case .text(let value): try container.encode(value)
                    }
                }
                init(from decoder: any Decoder) throws { self = .number(try decoder.singleValueContainer().decode(Double.self)) }
            }
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let user = UUIDv7.generate().lowercasedString, org = UUIDv7.generate().lowercasedString
        func token(_ exp: Claims.ExpiryValue) async throws -> String {
            try await signer.sign(Claims(iss: LocalDevIssuer.issuer, sub: user, org: org, exp: exp))
        }
        let now = Date().timeIntervalSince1970
        // Control: an hour ahead verifies.
        _ = try await dev.verify(try await token(.number(now + 3600)))
        for (exp, name) in [(Claims.ExpiryValue.number(1e300), "1e300"), (.number(now + 86_400 * 400), "a year"), (.text("soon"), "a string")] {
            let error = await #expect(throws: TokenError.self, "\(name)") { try await dev.verify(try await token(exp)) }
            #expect(error?.code == .malformedToken, "\(name)")
            #expect(error?.httpStatus == 401)
        }
        let other = try await LocalDevIssuer(environment: .test, secret: String(repeating: "t", count: 40))
        let forged = await #expect(throws: TokenError.self) { try await other.verify(try await token(.number(now + 60))) }
        #expect(forged?.code == .invalidSignature)
    }
}

/// The kit error a call ends in (any module's: the one error shape), or nil when it succeeds
/// or throws something else.
func refusal(_ body: () async throws -> Void) async -> (any RestartixError)? {
    do {
        try await body()
        return nil
    } catch let error as any RestartixError {
        return error
    } catch {
        return nil
    }
}
