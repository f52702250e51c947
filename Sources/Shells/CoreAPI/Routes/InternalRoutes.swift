import Foundation
import Hummingbird
import RestartixCrypto
import RestartixKit
import ServiceSupport

/// What `GET /internal/v1/whoami` answers: the calling service as its token says.
struct ServiceWhoAmI: ResponseCodable, Equatable {
    /// The calling service (the token's `sub`).
    let service: String
    /// The scopes the token grants, sorted.
    let scopes: [String]
    /// When the token expires (RFC 3339, UTC).
    let expires_at: String
}

/// The `/internal/v1` routes, for the platform's own services with a service-account token
/// (``ServiceAccountAuthMiddleware``). `GET /internal/v1/whoami` answers who the token says is
/// calling: a deploy check that the Telemetry API's secret and the Core API's agree (it needs no
/// scope). The clinical issue's telemetry aggregates endpoint joins it here.
func addInternalRoutes(to group: RouterGroup<CoreRequestContext>) {
    group.get("whoami") { _, context -> ServiceWhoAmI in
        guard let service = context.service else { throw RequestError(.missingToken, "send Authorization: Bearer <service-account token>") }
        return ServiceWhoAmI(service: service.service, scopes: service.scopes.sorted(), expires_at: APITime.string(service.expiresAt))
    }
}
