import Foundation
import Hummingbird
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixRedis
import RestartixTenancy
import ServiceSupport

/// The Core API's request context: the request's id and, once the authentication middleware
/// has run, the tenant context its bearer token resolves to.
struct CoreRequestContext: IdentifiedRequestContext {
    var coreContext: CoreRequestContextStorage
    var requestID = ""
    /// The principal's tenant context (organization, user, role); nil on public routes.
    var tenant: TenantContext?
    /// On the admin routes: the platform administrator's user id.
    var platformAdmin: UUID?
    /// On the `/internal` routes: the calling service, as its service-account token says.
    var service: ServicePrincipal?

    let peerAddress: String?
    var clientAddress: String?

    init(source: Source) {
        coreContext = .init(source: source)
        peerAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Request bodies are JSON documents of a few kilobytes: 1 MiB is generous, and a larger
    /// one is refused with 413 before it is read whole.
    var maxUploadSize: Int { 1 << 20 }

    /// JSON bodies whose decoding failure names the field and the rule (400 `request.invalidField`).
    var requestDecoder: JSONBodyDecoder { JSONBodyDecoder() }

    /// JSON answers with sorted keys: the same document for the same answer, every time.
    var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    /// The principal's ids for the access log line (set with ``tenant``).
    let principal = RequestPrincipal()
}

/// Resolves `Authorization: Bearer <token>` to the principal's tenant context (Clerk or the
/// local development issuer, then the membership): 401 without a usable token (with
/// `WWW-Authenticate: Bearer`), 403 for a token without a membership, a non-member or an
/// inactive clinic, 503 when the issuer's keys cannot be fetched; bodies name the check,
/// never the token.
///
/// With `limits`, it is also the group's rate limiting, with one limiter call for a signed-in
/// request: the client address's rate and the user's, counted together (all or nothing; the
/// answer carries the user's `RateLimit-*` headers, a refusal the refusing limit's). A request
/// whose token does not resolve is counted against its address alone, and over that rate gets
/// 429 instead of its 401 or 403, so guessing tokens from one address stays limited. (The token
/// is read before the address's rate: a signature check costs less than the round trip the
/// two checks share.)
struct TenantAuthMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext
    let resolver: PrincipalResolver
    var limits: Limits?

    /// The rates the door counts.
    struct Limits: Sendable {
        let limiter: any RateLimiter
        let perAddress: RateLimit
        let perUser: RateLimit
    }

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let address = context.rateLimitAddress
        let tenant: TenantContext
        do {
            tenant = try await resolver.context(bearer: try bearerToken(request))
        } catch {
            if let limits {
                let decision = await limits.limiter.check(principal: address, endpoint: "address", rate: limits.perAddress)
                guard decision.allowed else { throw RateLimited(decision: decision) }
            }
            throw error
        }
        var decision: RateLimitDecision?
        if let limits {
            let decisions = await limits.limiter.check([
                RateCheck(principal: address, endpoint: "address", rate: limits.perAddress),
                RateCheck(principal: "user:" + tenant.userID.lowercasedString, endpoint: "v1", rate: limits.perUser),
            ])
            if let refused = decisions.first(where: { !$0.allowed }) { throw RateLimited(decision: refused) }
            decision = decisions.last
        }
        context.tenant = tenant
        context.principal.record([
            "organization_id": .string(tenant.organizationID.lowercasedString),
            "user_id": .string(tenant.userID.lowercasedString),
            "role": .string(tenant.role.rawValue),
        ])
        let response = try await next(request, context)
        return decision?.adding(to: response) ?? response
    }
}

/// Resolves `Authorization: Bearer <token>` to a platform administrator
/// (``PrincipalResolver/platformAdministrator(bearer:)``) for the `/v1/admin` routes: no clinic
/// membership needed; 401 without a usable token, 403 for anyone who is not one.
struct PlatformAdminAuthMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext
    let resolver: PrincipalResolver

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let user = try await resolver.platformAdministrator(bearer: try bearerToken(request))
        context.platformAdmin = user
        context.principal.record(["user_id": .string(user.lowercasedString), "role": "platform_admin"])
        return try await next(request, context)
    }
}

/// Records the signed-in user's last activity (``UserActivity``: at most once a minute per
/// user, debounced through Redis or in process); never fails the request.
struct ActivityMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext
    let activity: UserActivity

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        if let tenant = context.tenant { await activity.touch(tenant.userID) }
        return try await next(request, context)
    }
}

/// Gives every audit row a request writes its request id and client address
/// (``AuditOrigin/current``, RestartixTenancy), however deep in the library the row is written.
/// Inside the edge, which sets both.
struct AuditOriginMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        try await AuditOrigin.$current.withValue(AuditOrigin(requestID: context.requestID, clientAddress: context.clientAddress)) {
            try await next(request, context)
        }
    }
}

/// `Cache-Control: no-store` on every answer of an authenticated route that does not set its
/// own: they carry a clinic's data (a patient's, often), which no browser or shared cache
/// should keep.
struct NoStoreMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}
