import Foundation
import Hummingbird
import HTTPTypes
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// A webhook's answer: what became of the delivery.
struct WebhookReceipt: ResponseCodable, Equatable {
    /// `applied`, `duplicate` (this delivery id was applied before) or `ignored` (a type this
    /// service does not handle).
    let status: String
}

/// No webhook secret is configured for this provider: 503 (the provider retries, and succeeds
/// once the secret is set).
struct WebhookNotConfigured: RestartixError {
    static let domain = "webhook"
    var codeName: String { "notConfigured" }
    var safeDetail: String { "this deployment has no CLERK_WEBHOOK_SECRET; deliveries are refused until it is set" }
    var httpStatus: Int { 503 }
    var isTransient: Bool { true }
    var description: String { restartixDescription }
}

/// `POST /v1/webhooks/clerk`: Clerk's user, organization and membership events, verified with
/// the Svix scheme (``WebhookVerifier``: the signature over id, timestamp and the exact body
/// bytes, timestamps within 5 minutes) before anything is parsed, then applied exactly once per
/// delivery id (``ClerkSync``). A forged, stale or unsigned delivery is 401 and writes nothing;
/// a replay answers `duplicate` and writes nothing.
func addWebhookRoutes(to group: RouterGroup<CoreRequestContext>, clerk: WebhookVerifier?, admin: AdminDatabase) {
    group.post("clerk") { request, context -> WebhookReceipt in
        guard let clerk else { throw WebhookNotConfigured() }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let bytes = Data(body.readableBytesView)
        let delivery = try clerk.verify(body: bytes) { name in
            HTTPField.Name(name).flatMap { request.headers[$0] }
        }
        switch try await ClerkSync.apply(bytes, deliveryID: delivery.id, admin: admin) {
        case .applied: return WebhookReceipt(status: "applied")
        case .duplicate: return WebhookReceipt(status: "duplicate")
        case .ignored: return WebhookReceipt(status: "ignored")
        }
    }
}
