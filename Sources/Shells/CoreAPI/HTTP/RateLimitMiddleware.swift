import Foundation
import Hummingbird
import HTTPTypes
import RestartixKit
import RestartixRedis
import RestartixTenancy
import ServiceSupport

/// The Core API's rates, per route group: what one user may do, and what one client address
/// may send before its token is even read (a flood of guessed tokens; generous, since a
/// clinic's whole staff may share one office address).
struct RateLimitPolicy: Sendable {
    /// `RATE_LIMIT_USER_PER_MINUTE`: a signed-in user's requests to `/v1`, per minute (bursts
    /// of a fifth of that). Default 600.
    var perUser = RateLimit(600, per: .seconds(60), burst: 120)
    /// `RATE_LIMIT_ADDRESS_PER_MINUTE`: one client address's requests, per minute (bursts of a
    /// fifth). Default 1200.
    var perAddress = RateLimit(1200, per: .seconds(60), burst: 240)
    /// The prefix of the limiter's Redis keys (`<prefix><group>:<principal>`): deployments that
    /// share one Redis keep apart with their own.
    var keyPrefix = "ratelimit:"

    /// `limit` per minute with bursts of a fifth of it (at least 1).
    static func perMinute(_ limit: Int) -> RateLimit {
        RateLimit(limit, per: .seconds(60), burst: max(1, limit / 5))
    }
}

/// Over the rate: 429 with `Retry-After` and the `RateLimit-*` headers.
struct RateLimited: RestartixError, ProblemHeaders {
    static let domain = "request"
    let decision: RateLimitDecision

    var codeName: String { "rateLimited" }
    var safeDetail: String { "too many requests; retry after the time in Retry-After" }
    var httpStatus: Int { 429 }
    var isTransient: Bool { true }
    var description: String { restartixDescription }
    var problemHeaders: HTTPFields { decision.httpFields }
}

extension RateLimitDecision {
    /// The decision's `RateLimit-*` and `Retry-After` headers (none when the check failed open).
    var httpFields: HTTPFields {
        var fields = HTTPFields()
        for header in headers {
            // The four names made once, not parsed and checked again on every answer.
            guard let name = Self.fieldNames[header.name] ?? HTTPField.Name(header.name) else { continue }
            fields.append(HTTPField(name: name, value: header.value))
        }
        return fields
    }

    private static let fieldNames: [String: HTTPField.Name] = Dictionary(
        uniqueKeysWithValues: ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"].compactMap { name in
            HTTPField.Name(name).map { (name, $0) }
        }
    )
}

/// Counts each request against its client address's rate in one route group (GCRA: the Redis
/// limiter shared by every instance when `REDIS_URL` is set, the in-process one otherwise):
/// over the rate, 429 with `Retry-After`; within it, the answer carries `RateLimit-Limit`,
/// `RateLimit-Remaining` and `RateLimit-Reset`. When the limiter cannot be asked (Redis
/// down) the request goes ahead without those headers and `restartix_ratelimit_fail_open_total`
/// counts it. (The signed-in `/v1` group counts the address and the user together in
/// ``TenantAuthMiddleware``.)
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext

    let limiter: any RateLimiter
    /// The route group's name in the limiter's keys.
    let group: String
    let rate: RateLimit

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        let decision = await limiter.check(principal: context.rateLimitAddress, endpoint: group, rate: rate)
        guard decision.allowed else { throw RateLimited(decision: decision) }
        return decision.adding(to: try await next(request, context))
    }
}

extension CoreRequestContext {
    /// The principal a client address's rate is counted against.
    var rateLimitAddress: String {
        "address:" + (clientAddress.map(TrustedProxies.rateLimitKey) ?? "unknown")
    }
}

extension RateLimitDecision {
    /// `response` with the decision's headers, where a limit counted closer to the route has
    /// not set them already.
    func adding(to response: Response) -> Response {
        var response = response
        for field in httpFields where response.headers[field.name] == nil { response.headers.append(field) }
        return response
    }
}
