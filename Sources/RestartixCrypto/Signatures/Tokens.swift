public import Foundation
public import RestartixKit

/// Telemetry session tokens: the Core API issues one when a patient starts an exercise
/// session; the Telemetry API accepts frames and media events for that session only.
///
/// HS256 (`TELEMETRY_SESSION_TOKEN_SECRET`), claims `iss` restartix-core-api, `aud`
/// restartix-telemetry-api, `sid` (session), `org` (clinic), `pat` (patient), `iat`, `nbf`,
/// `exp`, `jti`. Rotation: `secrets: [new, old]` while old tokens may still be alive.
public struct SessionTokens: Sendable {
    /// What a verified token grants.
    public struct Session: Sendable, Hashable {
        /// The exercise session.
        public let sessionID: UUID
        /// The clinic.
        public let organizationID: UUID
        /// The patient.
        public let patientID: UUID
        /// When the token expires.
        public let expiresAt: Date

        /// What a token grants (as ``SessionTokens/verify(_:)`` returns it; a service that kept
        /// a session's claims, such as the Telemetry API's spool, makes them again).
        public init(sessionID: UUID, organizationID: UUID, patientID: UUID, expiresAt: Date) {
            self.sessionID = sessionID
            self.organizationID = organizationID
            self.patientID = patientID
            self.expiresAt = expiresAt
        }
    }

    /// The `iss` of session tokens.
    public static let issuer = "restartix-core-api"
    /// The `aud` of session tokens.
    public static let audience = "restartix-telemetry-api"

    private let hs256: HS256
    private let leeway: Duration
    private let clock: @Sendable () -> Date

    /// `secrets[0]` signs, every secret verifies; each at least 32 bytes.
    public init(secrets: [String], leeway: Duration = .seconds(5), clock: @escaping @Sendable () -> Date = { Date() }) throws(SignatureError) {
        hs256 = try HS256(secrets: secrets)
        self.leeway = leeway
        self.clock = clock
    }

    /// A token for one session, valid for `lifetime` (at most 24 hours).
    public func issue(session: UUID, organization: UUID, patient: UUID, lifetime: Duration = .seconds(4 * 3600)) throws(SignatureError) -> String {
        guard lifetime > .zero, lifetime <= .seconds(86_400) else {
            throw SignatureError(.invalidClaims, "a session token lives between 1 second and 24 hours")
        }
        let now = clock().timeIntervalSince1970.rounded(.down)
        return try hs256.sign(Claims(
            iss: Self.issuer, aud: Self.audience, sid: session.uuidString.lowercased(), org: organization.uuidString.lowercased(),
            pat: patient.uuidString.lowercased(), iat: now, nbf: now, exp: now + Double(lifetime.components.seconds),
            jti: UUID().uuidString.lowercased()
        ))
    }

    /// Verifies a token: signature (any configured secret), issuer, audience, times, claims;
    /// every failure is a ``TokenError``.
    public func verify(_ token: String) throws(TokenError) -> Session {
        let payload = try hs256.verify(token)
        guard let claims = try? JSONDecoder().decode(Claims.self, from: payload) else {
            throw TokenError(.malformedToken, "the token's claims are not a session token's")
        }
        guard claims.iss == Self.issuer else { throw TokenError(.wrongIssuer, "the token was issued by another issuer") }
        guard claims.aud == Self.audience else { throw TokenError(.wrongAudience, "the token is for another audience") }
        try TokenTimes.check(expiresAt: claims.exp, notBefore: claims.nbf, issuedAt: claims.iat, now: clock(), leeway: leeway)
        guard let session = claims.sid.flatMap(UUID.init(uuidString:)), let organization = claims.org.flatMap(UUID.init(uuidString:)),
            let patient = claims.pat.flatMap(UUID.init(uuidString:))
        else {
            throw TokenError(.missingClaim, "the token lacks a session, organization or patient id")
        }
        return Session(sessionID: session, organizationID: organization, patientID: patient, expiresAt: Date(timeIntervalSince1970: claims.exp ?? 0))
    }

    struct Claims: Codable {
        let iss: String?
        let aud: String?
        let sid: String?
        let org: String?
        let pat: String?
        let iat: Double?
        let nbf: Double?
        let exp: Double?
        let jti: String?
    }
}

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
/// calling the Core API's internal endpoints, say (`TELEMETRY_INTERNAL_SVC_ACCT_TOKEN`).
/// Audience and scope are checked on every verification; secrets rotate by listing the new
/// one first and the previous one after it.
///
/// ```swift
/// let tokens = try ServiceAccountTokens(secrets: [current, previous])
/// let token = try tokens.issue(service: "telemetry-api", audience: "core-api",
///                              scopes: ["telemetry:aggregates:write"], lifetime: .seconds(3600))
/// let caller = try tokens.verify(token, audience: "core-api", requiring: "telemetry:aggregates:write")
/// ```
public struct ServiceAccountTokens: Sendable {
    /// The `iss` of every token.
    public static let issuer = "restartix"

    private let hs256: HS256
    private let leeway: Duration
    private let clock: @Sendable () -> Date

    /// `secrets[0]` signs; every secret verifies (rotation: deploy `[new, old]`, wait out the
    /// longest token lifetime, then deploy `[new]`). Each at least 32 bytes.
    public init(secrets: [String], leeway: Duration = .seconds(5), clock: @escaping @Sendable () -> Date = { Date() }) throws(SignatureError) {
        hs256 = try HS256(secrets: secrets)
        self.leeway = leeway
        self.clock = clock
    }

    /// Issues a token for `service`, valid for `audience` and `scopes`, for `lifetime` (at most
    /// 30 days: these tokens cannot be revoked one by one, only by rotating the secret).
    public func issue(service: String, audience: String, scopes: Set<String>, lifetime: Duration) throws(SignatureError) -> String {
        guard Self.isName(service), Self.isName(audience), scopes.allSatisfy(Self.isName) else {
            throw SignatureError(.invalidClaims, "service, audience and scopes must be short names without spaces")
        }
        guard lifetime > .zero, lifetime <= .seconds(30 * 86_400) else {
            throw SignatureError(.invalidClaims, "a service-account token lives between 1 second and 30 days")
        }
        let now = clock().timeIntervalSince1970.rounded(.down)
        return try hs256.sign(Claims(
            iss: Self.issuer, sub: service, aud: audience, scope: scopes.sorted().joined(separator: " "),
            iat: now, nbf: now, exp: now + Double(lifetime.components.seconds), jti: UUID().uuidString.lowercased()
        ))
    }

    /// Verifies `token` for `audience`; when `scope` is given the token must grant it. A token
    /// that cannot be used throws ``TokenError``; a valid one without the scope,
    /// ``SignatureError/Code/insufficientScope`` (403).
    public func verify(_ token: String, audience: String, requiring scope: String? = nil) throws -> ServicePrincipal {
        let payload = try hs256.verify(token)
        guard let claims = try? JSONDecoder().decode(Claims.self, from: payload) else {
            throw TokenError(.malformedToken, "the token's claims are not a service-account token's")
        }
        guard claims.iss == Self.issuer else { throw TokenError(.wrongIssuer, "the token was issued by another issuer") }
        try TokenTimes.check(
            expiresAt: claims.exp, notBefore: claims.nbf, issuedAt: claims.iat, now: clock(), leeway: leeway,
            maximumLifetime: .seconds(30 * 86_400)
        )
        guard claims.aud == audience else { throw TokenError(.wrongAudience, "the token is for another audience") }
        guard let service = claims.sub, Self.isName(service) else {
            throw TokenError(.missingClaim, "the token has no service (sub)")
        }
        let scopes = Set((claims.scope ?? "").split(separator: " ").map(String.init))
        if let scope, !scopes.contains(scope) {
            throw SignatureError(.insufficientScope, "the token does not grant the scope this endpoint requires")
        }
        return ServicePrincipal(service: service, scopes: scopes, expiresAt: Date(timeIntervalSince1970: claims.exp ?? 0))
    }

    static func isName(_ text: String) -> Bool {
        (1...100).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) }
    }

    struct Claims: Codable {
        let iss: String?
        let sub: String?
        let aud: String?
        let scope: String?
        let iat: Double?
        let nbf: Double?
        let exp: Double?
        let jti: String?
    }
}
