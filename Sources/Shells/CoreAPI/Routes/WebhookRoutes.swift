import Foundation
import Hummingbird
import HTTPTypes
import Logging
import RestartixAWS
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// A webhook's answer: what became of the delivery.
struct WebhookReceipt: ResponseCodable, Equatable {
    /// `applied`, `duplicate` (this delivery id was applied before), `stale` (older than an
    /// event already applied to the same thing) or `ignored` (a type this service does not
    /// handle).
    let status: String
}

/// This provider's webhook is not configured: 503 (the provider retries, and succeeds once the
/// setting is there).
struct WebhookNotConfigured: RestartixError {
    static let domain = "webhook"
    /// The configuration key that is missing.
    let setting: String
    var codeName: String { "notConfigured" }
    var safeDetail: String { "this deployment has no \(setting); deliveries are refused until it is set" }
    var httpStatus: Int { 503 }
    var isTransient: Bool { true }
    var description: String { restartixDescription }
}

/// `POST /v1/webhooks/clerk`: Clerk's user, organization and membership events, verified with
/// the Svix scheme (``WebhookVerifier``: the signature over id, timestamp and the exact body
/// bytes, timestamps within 5 minutes) before anything is parsed, then applied exactly once per
/// delivery id (``ClerkSync``). A forged, stale or unsigned delivery is 401 and writes nothing;
/// a replay answers `duplicate` and writes nothing.
///
/// `POST /v1/webhooks/ses`: SES's bounce and complaint notifications through SNS
/// (``SNSVerifier``: the certificate only from an SNS host, the signature, the topic one of
/// `SES_SNS_TOPIC_ARNS`); a subscription confirmation is confirmed with SNS; a notification puts
/// permanently bounced and complaining addresses on the suppression list
/// (``EmailSuppressions``) exactly once per SNS message id.
func addWebhookRoutes(
    to group: RouterGroup<CoreRequestContext>, clerk: WebhookVerifier?, admin: AdminDatabase, ses: SNSVerifier?, suppressions: EmailSuppressions,
    membershipsChanged: @escaping @Sendable () -> Void = {}
) {
    group.post("clerk") { request, context -> WebhookReceipt in
        guard let clerk else { throw WebhookNotConfigured(setting: "CLERK_WEBHOOK_SECRET") }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let bytes = Data(body.readableBytesView)
        let delivery = try clerk.verify(body: bytes) { name in
            HTTPField.Name(name).flatMap { request.headers[$0] }
        }
        switch try await ClerkSync.apply(bytes, deliveryID: delivery.id, admin: admin) {
        case .applied:
            // Users, clinics or memberships changed: the memberships this instance keeps are
            // asked again (other instances within PRINCIPAL_CACHE_SECONDS).
            membershipsChanged()
            return WebhookReceipt(status: "applied")
        case .duplicate: return WebhookReceipt(status: "duplicate")
        case .ignored: return WebhookReceipt(status: "ignored")
        case .stale: return WebhookReceipt(status: "stale")
        }
    }
    group.post("ses") { request, context -> WebhookReceipt in
        guard let ses else { throw WebhookNotConfigured(setting: "SES_SNS_TOPIC_ARNS") }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let message = try await ses.verify(Data(body.readableBytesView))
        switch message.Type {
        case "SubscriptionConfirmation":
            try await ses.confirm(message)
            context.logger.notice("Confirmed the SNS subscription of an accepted SES topic")
            return WebhookReceipt(status: "confirmed")
        case "Notification":
            switch try await suppressions.apply(sesNotification: message.Message, messageID: message.MessageId) {
            case .suppressed: return WebhookReceipt(status: "applied")
            case .ignored: return WebhookReceipt(status: "ignored")
            case .duplicate: return WebhookReceipt(status: "duplicate")
            }
        default:
            return WebhookReceipt(status: "ignored")
        }
    }
}
