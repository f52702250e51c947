public import Foundation
import JWTKit
public import RestartixKit

/// The claims a local development token asserts: the kit's own ids, no Clerk.
public struct LocalDevPrincipal: Sendable, Hashable {
    /// The clinic (`organizations.id`).
    public let organizationID: UUID
    /// The user (`users.id`).
    public let userID: UUID
    /// When the token expires (`exp`).
    public let expiresAt: Date
}

/// A token issuer for the embedded default and local development, so services can be run and
/// tested without a Clerk instance: HS256 tokens naming a `users.id` and an `organizations.id`
/// directly, signed with a secret that exists only in this process (or one you share with the
/// tool that mints tokens, `RESTARTIX_DEV_TOKEN_SECRET` in the Core API, which then mints
/// them with ``issue(user:organization:lifetime:)``). ``PrincipalResolver`` still requires a
/// membership.
///
/// It can be built only in development and test: staging and production use Clerk.
public struct LocalDevIssuer: Sendable {
    /// The `iss` of local development tokens; never accepted by ``ClerkSessionVerifier``.
    public static let issuer = "restartix-local-dev"

    private let keys: JWTKeyCollection
    private let clock: @Sendable () -> Date

    /// Creates the issuer; throws ``PrincipalError/Code/invalidConfiguration`` in staging or
    /// production, or for a secret shorter than 32 bytes. With no secret a random one is made.
    public init(environment: DeploymentEnvironment, secret: String? = nil, clock: @escaping @Sendable () -> Date = { Date() }) async throws(PrincipalError) {
        guard environment == .development || environment == .test else {
            throw PrincipalError(.invalidConfiguration, "the local development issuer is refused in \(environment.rawValue); configure Clerk")
        }
        let key: Data
        if let secret {
            guard secret.utf8.count >= 32 else {
                throw PrincipalError(.invalidConfiguration, "the local development secret must be at least 32 bytes")
            }
            key = Data(secret.utf8)
        } else {
            key = Data((0..<32).map { _ in UInt8.random(in: .min ... .max) })
        }
        self.keys = await JWTKeyCollection().add(hmac: HMACKey(from: key), digestAlgorithm: .sha256)
        self.clock = clock
    }

    /// A token for `user` in `organization`, valid for `lifetime` (at most a day).
    public func issue(user: UUID, organization: UUID, lifetime: Duration = .seconds(3600)) async throws(PrincipalError) -> String {
        guard lifetime > .zero, lifetime <= .seconds(86_400) else {
            throw PrincipalError(.invalidConfiguration, "a local development token lives between 1 second and 1 day")
        }
        let now = clock().timeIntervalSince1970.rounded(.down)
        let claims = LocalDevClaims(
            iss: Self.issuer, sub: user.lowercasedString, org: organization.lowercasedString,
            iat: now, exp: now + Double(lifetime.components.seconds)
        )
        do {
            return try await keys.sign(claims, header: ["typ": "JWT"])
        } catch {
            throw PrincipalError(.invalidConfiguration, "the token could not be signed")
        }
    }

    /// Verifies a token this issuer made; a token that cannot be used throws ``TokenError``.
    public func verify(_ token: String) async throws(TokenError) -> LocalDevPrincipal {
        let jws = try CompactJWS(token)
        try jws.requireAlgorithm("HS256")
        let claims: LocalDevClaims
        do {
            claims = try await keys.verify(token, as: LocalDevClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenError(.invalidSignature, "the token signature does not verify")
        } catch {
            // A signed token whose claims do not decode (a string exp, a number sub...).
            throw TokenError(.malformedToken, "the token claims are malformed (iss, sub and org are strings; iat and exp numbers)")
        }
        guard claims.iss == Self.issuer else { throw TokenError(.wrongIssuer, "the token was issued by another issuer") }
        try TokenTimes.check(expiresAt: claims.exp, notBefore: nil, issuedAt: claims.iat, now: clock(), leeway: .seconds(5))
        guard let user = claims.sub.flatMap(UUID.init(uuidString:)) else {
            throw TokenError(.missingClaim, "the token's subject is not a user id")
        }
        guard let organization = claims.org.flatMap(UUID.init(uuidString:)) else {
            throw TokenError(.missingClaim, "the token names no organization")
        }
        return LocalDevPrincipal(organizationID: organization, userID: user, expiresAt: Date(timeIntervalSince1970: claims.exp ?? 0))
    }
}

struct LocalDevClaims: JWTPayload {
    let iss: String?
    let sub: String?
    let org: String?
    let iat: Double?
    let exp: Double?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
