import Foundation
import Hummingbird
import Logging
import RestartixCrypto
import RestartixKit
import ServiceSupport

/// The audience of the service-account tokens the Core API accepts on its `/internal` routes.
let coreAPIServiceAudience = "restartix-core-api"

/// Verifies `Authorization: Bearer <service-account token>` on the `/internal` routes
/// (``ServiceAccountTokens``, Cat F: HS256 under `TELEMETRY_INTERNAL_SVC_ACCT_TOKEN`, audience
/// `restartix-core-api`): 401 without a usable token, 503 `service.notConfigured` when this
/// deployment has no secret. Routes that need a scope check ``ServicePrincipal/scopes`` (403
/// `signature.insufficientScope` without it). A user's session token is not a service-account
/// token and is refused here, as a service-account token is on `/v1`.
struct ServiceAccountAuthMiddleware: RouterMiddleware {
    typealias Context = CoreRequestContext
    /// `nil`: no secret configured; every call is refused with 503.
    let tokens: ServiceAccountTokens?

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        // No token is 401 whether or not this deployment verifies any: a caller without one
        // learns nothing of the configuration, and cannot make the service log errors at will.
        let token = try bearerToken(request)
        guard let tokens else { throw SecretNotConfigured(variable: ServiceKeys.serviceAccountSecret, refused: "internal routes are refused") }
        var context = context
        let caller = try tokens.verify(token, audience: coreAPIServiceAudience)
        context.service = caller
        context.principal.record(["service": .string(caller.service)])
        return try await next(request, context)
    }
}

/// This deployment lacks a secret a route needs (`TELEMETRY_INTERNAL_SVC_ACCT_TOKEN` for the
/// internal routes, `TELEMETRY_SESSION_TOKEN_SECRET` for telemetry sessions): 503, since the
/// caller's request may well be right and the server is not. Names the variable, never a value.
struct SecretNotConfigured: RestartixError {
    static let domain = "service"
    /// The environment variable that is not set.
    let variable: String
    /// What is refused until it is.
    let refused: String
    var codeName: String { "notConfigured" }
    var safeDetail: String { "this deployment has no \(variable); \(refused) until it is set" }
    var httpStatus: Int { 503 }
    var isTransient: Bool { true }
    var description: String { restartixDescription }
}
