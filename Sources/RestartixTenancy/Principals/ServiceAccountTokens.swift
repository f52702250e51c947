public import Foundation
import JWTKit
import RestartixKit

/// A verified service-account token (Cat F): which service is calling, for what.
public struct ServicePrincipal: Sendable, Hashable {
    /// The calling service (`sub`), e.g. `telemetry-api`.
    public let service: String
    /// The scopes granted (`scope`, space-separated in the token).
    public let scopes: Set<String>
    /// When the token expires.
    public let expiresAt: Date
}

/// HS256 service-account tokens between the platform's own services (Cat F): the Telemetry API
/// calling the Core API's internal endpoints, say. Audience and scope are checked on every
/// verification; secrets rotate by listing the new one first and the previous one after it.
///
/// ```swift
/// let tokens = try ServiceAccountTokens(secrets: [current, previous])
/// let token = try await tokens.issue(service: "telemetry-api", audience: "core-api",
///                                    scopes: ["telemetry:aggregates:write"], lifetime: .seconds(3600))
/// let caller = try await tokens.verify(token, audience: "core-api", requiring: "telemetry:aggregates:write")
/// ```
public struct ServiceAccountTokens: Sendable {
    /// The `iss` of every token.
    public static let issuer = "restartix"
    /// Secrets shorter than this (bytes) are refused: HS256 keys should be at least the hash size.
    public static let minimumSecretLength = 32

    private let signers: [JWTKeyCollection]
    private let leeway: Duration
    private let clock: @Sendable () -> Date

    /// Creates the token service. `secrets[0]` signs; every secret verifies (rotation: deploy
    /// `[new, old]`, wait out the longest token lifetime, then deploy `[new]`).
    public init(secrets: [String], leeway: Duration = .seconds(5), clock: @escaping @Sendable () -> Date = { Date() }) async throws(PrincipalError) {
        guard !secrets.isEmpty, secrets.allSatisfy({ $0.utf8.count >= Self.minimumSecretLength }) else {
            throw PrincipalError(.invalidConfiguration, "service-account secrets must be at least \(Self.minimumSecretLength) bytes each, and there must be one")
        }
        var signers: [JWTKeyCollection] = []
        for secret in secrets {
            signers.append(await JWTKeyCollection().add(hmac: HMACKey(from: Data(secret.utf8)), digestAlgorithm: .sha256))
        }
        self.signers = signers
        self.leeway = leeway
        self.clock = clock
    }

    /// Issues a token for `service`, valid for `audience` and `scopes`, for `lifetime` (at most 30 days).
    public func issue(service: String, audience: String, scopes: Set<String>, lifetime: Duration) async throws(PrincipalError) -> String {
        guard Self.isName(service), Self.isName(audience), scopes.allSatisfy(Self.isScope) else {
            throw PrincipalError(.invalidConfiguration, "service, audience and scopes must be short names without spaces")
        }
        guard lifetime > .zero, lifetime <= .seconds(30 * 86_400) else {
            throw PrincipalError(.invalidConfiguration, "a service-account token lives between 1 second and 30 days")
        }
        let now = clock().timeIntervalSince1970.rounded(.down)
        let claims = ServiceClaims(
            iss: Self.issuer, sub: service, aud: audience, scope: scopes.sorted().joined(separator: " "),
            iat: now, nbf: now, exp: now + Double(lifetime.components.seconds), jti: UUID().lowercasedString
        )
        do {
            return try await signers[0].sign(claims, header: ["typ": "JWT"])
        } catch {
            throw PrincipalError(.invalidConfiguration, "the token could not be signed")
        }
    }

    /// Verifies `token` for `audience`; when `scope` is given the token must grant it.
    public func verify(_ token: String, audience: String, requiring scope: String? = nil) async throws(PrincipalError) -> ServicePrincipal {
        let jws = try CompactJWS(token)
        guard jws.header.alg == "HS256" else {
            throw PrincipalError(.unsupportedAlgorithm, "service-account tokens are HS256; the header names another algorithm")
        }
        var verified: ServiceClaims?
        for signer in signers {
            // HMAC comparison in swift-crypto is constant-time.
            if let claims = try? await signer.verify(token, as: ServiceClaims.self) {
                verified = claims
                break
            }
        }
        guard let claims = verified else {
            throw PrincipalError(.invalidSignature, "the token signature does not verify")
        }
        guard claims.iss == Self.issuer else { throw PrincipalError(.wrongIssuer, "the token was issued by another issuer") }
        try TimeClaims.check(expiresAt: claims.exp, notBefore: claims.nbf, now: clock(), leeway: leeway)
        guard claims.aud == audience else { throw PrincipalError(.wrongAudience, "the token is for another audience") }
        guard let service = claims.sub, Self.isName(service) else {
            throw PrincipalError(.missingClaim, "the token has no service (sub)")
        }
        let scopes = Set((claims.scope ?? "").split(separator: " ").map(String.init))
        if let scope, !scopes.contains(scope) {
            throw PrincipalError(.insufficientScope, "the token does not grant the scope this endpoint requires")
        }
        return ServicePrincipal(service: service, scopes: scopes, expiresAt: Date(timeIntervalSince1970: claims.exp ?? 0))
    }

    static func isName(_ text: String) -> Bool {
        (1...100).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) }
    }

    static func isScope(_ text: String) -> Bool { isName(text) }
}

struct ServiceClaims: JWTPayload {
    let iss: String?
    let sub: String?
    let aud: String?
    let scope: String?
    let iat: Double?
    let nbf: Double?
    let exp: Double?
    let jti: String?

    /// Claims are checked by ``ServiceAccountTokens`` with its clock and leeway.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
