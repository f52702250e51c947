public import RestartixKit
public import AsyncHTTPClient
public import Foundation
import JWTKit
public import Logging
import NIOCore
import NIOHTTP1

/// Where Clerk session tokens come from and what they must say.
public struct ClerkConfiguration: Sendable {
    /// The instance's Frontend API URL, compared byte for byte with `iss`
    /// (`https://clerk.example.com`, or `https://example.clerk.accounts.dev` in development).
    public var issuer: String
    /// The JSON Web Key Set; by default `{issuer}/.well-known/jwks.json`. Must be `https://`
    /// (plain `http://` only to a loopback address, for tests and local proxies).
    public var jwksURL: String
    /// The `azp` allow-list: the origins of your frontends. A token whose `azp` is not listed is
    /// refused; a token without `azp` (Clerk omits it when the request had no Origin) passes
    /// unless ``requireAuthorizedParty`` is set. Empty: no check (not recommended).
    public var authorizedParties: Set<String>
    /// Refuse tokens without `azp`.
    public var requireAuthorizedParty: Bool
    /// Clock skew tolerated on `exp` and `nbf`.
    public var leeway: Duration
    /// At most one key-set fetch per this interval for tokens naming an unknown `kid`, so a
    /// flood of forged key ids cannot turn into a flood of requests to Clerk.
    public var minimumRefreshInterval: Duration
    /// Keys are re-fetched after this long; if that fetch fails, the keys held keep working...
    public var keySetLifetime: Duration
    /// ...until they are this old: then, with every refresh failing, tokens are refused
    /// (`keysUnavailable`) rather than trusting keys Clerk may have revoked since.
    public var maximumKeyAge: Duration
    /// Timeout of one key-set fetch.
    public var fetchTimeout: Duration

    /// A configuration with the defaults: 5 s leeway, one refresh per 30 s on unknown key ids,
    /// keys re-fetched hourly and trusted for at most a day without a successful fetch, 5 s
    /// fetch timeout.
    public init(
        issuer: String,
        jwksURL: String? = nil,
        authorizedParties: Set<String> = [],
        requireAuthorizedParty: Bool = false,
        leeway: Duration = .seconds(5),
        minimumRefreshInterval: Duration = .seconds(30),
        keySetLifetime: Duration = .seconds(3600),
        maximumKeyAge: Duration = .seconds(86_400),
        fetchTimeout: Duration = .seconds(5)
    ) {
        let trimmed = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.issuer = issuer
        self.jwksURL = jwksURL ?? "\(trimmed)/.well-known/jwks.json"
        self.authorizedParties = authorizedParties
        self.requireAuthorizedParty = requireAuthorizedParty
        self.leeway = leeway
        self.minimumRefreshInterval = minimumRefreshInterval
        self.keySetLifetime = keySetLifetime
        self.maximumKeyAge = maximumKeyAge
        self.fetchTimeout = fetchTimeout
    }

    func validated() throws(PrincipalError) -> ClerkConfiguration {
        guard let issuerURL = URL(string: issuer), issuerURL.scheme == "https" || Self.isLoopbackHTTP(issuerURL) else {
            throw PrincipalError(.invalidConfiguration, "the Clerk issuer must be an https:// URL")
        }
        guard let url = URL(string: jwksURL), url.scheme == "https" || Self.isLoopbackHTTP(url) else {
            throw PrincipalError(.invalidConfiguration, "the JWKS URL must be https:// (http:// only to a loopback address)")
        }
        guard leeway >= .zero, leeway <= .seconds(300) else {
            throw PrincipalError(.invalidConfiguration, "the leeway must be between 0 and 300 seconds")
        }
        guard maximumKeyAge >= keySetLifetime else {
            throw PrincipalError(.invalidConfiguration, "the maximum key age must be at least the key-set lifetime")
        }
        return self
    }

    static func isLoopbackHTTP(_ url: URL) -> Bool {
        url.scheme == "http" && ["127.0.0.1", "::1", "[::1]", "localhost"].contains(url.host ?? "")
    }
}

/// A verified Clerk session token: who signed in, and the organization it is acting in.
public struct ClerkSession: Sendable, Hashable {
    /// The Clerk user id (`sub`, `user_...`).
    public let userID: String
    /// The Clerk session id (`sid`), when present.
    public let sessionID: String?
    /// The active organization (`o.id` in v2 tokens, `org_id` in v1), if any.
    public let organizationID: String?
    /// The user's role in that organization as Clerk states it (`o.rol`, or `org_role` without
    /// its `org:` prefix). The platform's own membership decides; this only says one exists.
    public let organizationRole: String?
    /// The authorized party (`azp`), when present.
    public let authorizedParty: String?
    /// When the token expires.
    public let expiresAt: Date
}

/// Verifies Clerk session JWTs: RS256 only, keys from the instance's JWKS (cached, re-fetched on
/// an unknown `kid` at most once per ``ClerkConfiguration/minimumRefreshInterval``), `iss`,
/// `azp` allow-list, `exp`/`nbf` with a small leeway, active session.
///
/// Verification does no database work; ``PrincipalResolver`` maps a verified session to a
/// ``TenantContext`` afterwards.
public final class ClerkSessionVerifier: Sendable {
    private let configuration: ClerkConfiguration
    private let keys: JWKSCache
    private let clock: @Sendable () -> Date

    /// Fetches key sets for every verifier that brings no client: no redirects. Lives as long as
    /// the process (it is never shut down, like `HTTPClient.shared`).
    static let keySetClient = HTTPClient(
        eventLoopGroup: HTTPClient.defaultEventLoopGroup,
        configuration: HTTPClient.Configuration(redirectConfiguration: .disallow)
    )

    /// Creates a verifier; throws ``PrincipalError/Code/invalidConfiguration`` for a non-HTTPS
    /// issuer or key-set URL. Keys are fetched on first use.
    ///
    /// With no `httpClient` the kit uses one process-wide client that follows no redirects, so
    /// the `https://` rule cannot be undone by a redirect to `http://`; pass your own only if it
    /// is configured the same way.
    public init(
        configuration: ClerkConfiguration,
        httpClient: HTTPClient? = nil,
        logger: Logger = Logger(label: "restartix.principals"),
        clock: @escaping @Sendable () -> Date = { Date() }
    ) throws(PrincipalError) {
        self.configuration = try configuration.validated()
        self.keys = JWKSCache(configuration: self.configuration, httpClient: httpClient ?? Self.keySetClient, logger: logger)
        self.clock = clock
    }

    /// Verifies `token` (the bearer value, without `Bearer `). A token that cannot be used
    /// throws ``TokenError`` (shape, algorithm, signature, issuer, times, claims, the kit's one
    /// set of token codes); a fine token this deployment does not accept throws
    /// ``PrincipalError`` (unknown key, keys unavailable, authorized party, inactive session).
    public func verify(_ token: String) async throws -> ClerkSession {
        let jws = try CompactJWS(token)
        try jws.requireAlgorithm("RS256")
        guard let kid = jws.header.kid, !kid.isEmpty, kid.count <= 256 else {
            throw TokenError(.malformedToken, "the token header has no key id (kid)")
        }
        let collection = try await keys.keys(for: kid)
        let claims: ClerkClaims
        do {
            claims = try await collection.verify(token, as: ClerkClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenError(.invalidSignature, "the token signature does not verify")
        } catch {
            throw TokenError(.malformedToken, "the token claims are not a Clerk session token")
        }
        return try check(claims)
    }

    private func check(_ claims: ClerkClaims) throws -> ClerkSession {
        guard claims.iss == configuration.issuer else {
            throw TokenError(.wrongIssuer, "the token was issued by another issuer")
        }
        // Clerk's `iat` is its own clock's; `nbf` already bounds the start, so `iat` is not held
        // to ours (a few seconds of skew would refuse fresh sessions).
        try TokenTimes.check(expiresAt: claims.exp, notBefore: claims.nbf, now: clock(), leeway: configuration.leeway)
        if let azp = claims.azp {
            guard configuration.authorizedParties.isEmpty || configuration.authorizedParties.contains(azp) else {
                throw PrincipalError(.unauthorizedParty, "the token's authorized party (azp) is not allowed")
            }
        } else if configuration.requireAuthorizedParty {
            throw PrincipalError(.unauthorizedParty, "the token has no authorized party (azp)")
        }
        guard let subject = claims.sub, !subject.isEmpty, subject.count <= 255 else {
            throw TokenError(.missingClaim, "the token has no subject (sub)")
        }
        if let status = claims.sts, status != "active" {
            throw PrincipalError(.sessionNotActive, "the Clerk session is not active")
        }
        let organization = claims.o?.id ?? claims.org_id
        var role = claims.o?.rol ?? claims.org_role
        if let value = role, value.hasPrefix("org:") { role = String(value.dropFirst(4)) }
        if let organization, organization.isEmpty || organization.count > 255 {
            throw TokenError(.missingClaim, "the token's organization claim is empty or too long")
        }
        return ClerkSession(
            userID: subject,
            sessionID: claims.sid,
            organizationID: organization,
            organizationRole: role.flatMap { $0.isEmpty ? nil : $0 },
            authorizedParty: claims.azp,
            expiresAt: Date(timeIntervalSince1970: claims.exp ?? 0)
        )
    }
}

/// The claims of a Clerk session token, v1 and v2 (`o` object, `sts`).
struct ClerkClaims: JWTPayload {
    struct Organization: Codable, Sendable {
        let id: String?
        let rol: String?
        let slg: String?
    }

    let iss: String?
    let sub: String?
    let sid: String?
    let azp: String?
    let exp: Double?
    let nbf: Double?
    let iat: Double?
    let v: Int?
    let sts: String?
    let o: Organization?
    let org_id: String?
    let org_role: String?

    /// Claims are checked by ``ClerkSessionVerifier`` with its clock and leeway.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The issuer's RSA keys by `kid`, fetched over HTTP(S) with single flight and a refresh budget.
actor JWKSCache {
    private let configuration: ClerkConfiguration
    private let httpClient: HTTPClient
    private let logger: Logger
    private var collection = JWTKeyCollection()
    private var kids: Set<String> = []
    private var fetchedAt: ContinuousClock.Instant?
    private var lastAttempt: ContinuousClock.Instant?
    private var inFlight: Task<Void, any Error>?

    init(configuration: ClerkConfiguration, httpClient: HTTPClient, logger: Logger) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    /// The key collection holding `kid`, fetching the key set when it is unknown (rate limited)
    /// or old (keeping the old keys if that fails).
    func keys(for kid: String) async throws(PrincipalError) -> JWTKeyCollection {
        // A fetch already under way (cold start, a rotation): wait for it, whatever its outcome,
        // before deciding anything from the keys held.
        if let inFlight { _ = try? await inFlight.value }
        let now = ContinuousClock.now
        // Every fetch, successful or not, counts against the interval: neither forged key ids
        // nor a Clerk outage can turn requests into a flood of key-set fetches.
        let mayFetch = lastAttempt.map { now - $0 >= configuration.minimumRefreshInterval } ?? true
        if kids.contains(kid), let fetchedAt {
            if now - fetchedAt > configuration.keySetLifetime, mayFetch {
                do { try await refresh() } catch {
                    logger.warning("JWKS refresh failed; keeping the keys held", metadata: ["error": "\(error)"])
                }
            }
            guard let current = self.fetchedAt, ContinuousClock.now - current <= configuration.maximumKeyAge else {
                throw PrincipalError(.keysUnavailable, "the key set could not be refreshed for longer than the maximum key age")
            }
            return collection
        }
        // An unknown key id fetches the set again (a rotation), unless it was fetched within
        // the interval: a set that fresh cannot hold a newer key.
        if mayFetch {
            try await refresh()
        } else if fetchedAt == nil {
            throw PrincipalError(.keysUnavailable, "the key set could not be fetched; retrying after the refresh interval")
        }
        guard kids.contains(kid) else {
            throw PrincipalError(.unknownKey, "the token's key id is not in the issuer's key set")
        }
        return collection
    }

    private func refresh() async throws(PrincipalError) {
        if let inFlight {
            do { try await inFlight.value } catch { throw (error as? PrincipalError) ?? PrincipalError(.keysUnavailable, "the key set could not be fetched") }
            return
        }
        let task = Task { try await self.fetch() }
        inFlight = task
        defer { inFlight = nil }
        do { try await task.value } catch { throw (error as? PrincipalError) ?? PrincipalError(.keysUnavailable, "the key set could not be fetched") }
    }

    private func fetch() async throws {
        lastAttempt = ContinuousClock.now
        var request = HTTPClientRequest(url: configuration.jwksURL)
        request.headers.add(name: "Accept", value: "application/json")
        let body: ByteBuffer
        do {
            let timeout = TimeAmount(configuration.fetchTimeout)
            let response = try await httpClient.execute(request, timeout: timeout)
            guard response.status == .ok else {
                logger.warning("JWKS fetch answered HTTP \(response.status.code)")
                throw PrincipalError(.keysUnavailable, "the key set endpoint answered HTTP \(response.status.code)")
            }
            body = try await response.body.collect(upTo: 1 << 20)
        } catch let error as PrincipalError {
            throw error
        } catch {
            logger.warning("JWKS fetch failed", metadata: ["error": "\(error)"])
            throw PrincipalError(.keysUnavailable, "the key set could not be fetched")
        }
        let (collection, kids) = try await Self.parse(Data(body.readableBytesView))
        self.collection = collection
        self.kids = kids
        self.fetchedAt = ContinuousClock.now
        logger.info("JWKS loaded", metadata: ["keys": "\(kids.count)"])
    }

    /// The usable keys of a key set: RSA, for signatures, RS256 or unspecified.
    static func parse(_ data: Data) async throws(PrincipalError) -> (JWTKeyCollection, Set<String>) {
        struct KeySet: Decodable {
            struct Key: Decodable {
                let kty: String?
                let kid: String?
                let use: String?
                let alg: String?
                let n: String?
                let e: String?
            }
            let keys: [Key]
        }
        guard let set = try? JSONDecoder().decode(KeySet.self, from: data) else {
            throw PrincipalError(.keysUnavailable, "the key set is not a JWKS document")
        }
        let collection = JWTKeyCollection()
        var kids: Set<String> = []
        for key in set.keys {
            guard key.kty == "RSA", let kid = key.kid, !kid.isEmpty, key.use == nil || key.use == "sig",
                key.alg == nil || key.alg == "RS256", let n = key.n, let e = key.e,
                let publicKey = try? Insecure.RSA.PublicKey(modulus: n, exponent: e)
            else { continue }
            await collection.add(rsa: publicKey, digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
            kids.insert(kid)
        }
        return (collection, kids)
    }
}
