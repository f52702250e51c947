public import Foundation
public import RestartixKit
public import RestartixCrypto

/// The platform's e-mail suppression list: addresses no e-mail goes to, kept as blind indexes
/// (HMAC-SHA256 under the keyring's blind-index key, on the normalized address), never in
/// clear. SES's bounce and complaint notifications add to it (``apply(sesNotification:messageID:)``,
/// `POST /v1/webhooks/ses`); the e-mail path asks ``reason(for:)`` before every send.
///
/// - A permanent bounce and a complaint suppress the address; a transient bounce (a full
///   mailbox) and a delivery do not.
/// - Exactly once per SNS message id: the id is recorded in `inbound_webhook_events` in the same
///   transaction as the addresses, so a redelivery writes nothing.
public struct EmailSuppressions: Sendable {
    /// Why an address is suppressed.
    public enum Reason: String, Sendable, Hashable {
        case bounce, complaint, manual
    }

    /// What one notification did.
    public enum Outcome: Sendable, Hashable {
        /// This many addresses were added (or their reason updated).
        case suppressed(Int)
        /// A delivery, a transient bounce or another type that suppresses nothing.
        case ignored
        /// This message id was applied before.
        case duplicate
    }

    private let database: Database
    private let index: BlindIndex

    /// The list in `database` (the platform's admin-role database), indexes under `keyring`.
    public init(database: Database, keyring: Keyring) {
        self.database = database
        self.index = BlindIndex(keyring: keyring)
    }

    func addressIndex(_ address: String) -> Data {
        index.index(BlindIndex.normalizedEmail(address), table: "email_suppressions", column: "address", organizationID: nil)
    }

    /// Why `address` is suppressed, or `nil` when mail may go to it.
    public func reason(for address: String) async throws -> Reason? {
        try await database.query("SELECT reason FROM email_suppressions WHERE address_index = \(addressIndex(address))")
            .first.flatMap { Reason(rawValue: try $0.decode("reason", as: String.self)) }
    }

    /// Suppresses `address` by hand (an operator, a user's request).
    public func add(_ address: String, reason: Reason = .manual, detail: String? = nil, source: String = "manual") async throws {
        try await database.transaction { tx in
            try await Self.upsert(addressIndex(address), reason: reason, detail: detail, source: source, tx)
        }
    }

    /// Applies one SES event notification (the `Message` of an SNS notification: JSON with
    /// `notificationType` or `eventType` of Bounce, Complaint or Delivery).
    /// - Throws: ``SESNotificationError`` for a message that is not an SES notification.
    public func apply(sesNotification message: String, messageID: String) async throws -> Outcome {
        let notification: SESNotification
        do { notification = try JSONDecoder().decode(SESNotification.self, from: Data(message.utf8)) } catch {
            throw SESNotificationError(.invalidNotification, "the SNS message is not an SES notification")
        }
        var suppress: [(Data, Reason, String?)] = []
        switch notification.kind {
        case "Bounce":
            guard let bounce = notification.bounce, bounce.bounceType == "Permanent" else { break }
            let detail = [bounce.bounceType, bounce.bounceSubType].compactMap { $0 }.joined(separator: "/").prefix(200)
            suppress = bounce.bouncedRecipients.map { (addressIndex($0.emailAddress), .bounce, String(detail)) }
        case "Complaint":
            guard let complaint = notification.complaint else { break }
            let detail = complaint.complaintFeedbackType.map { String($0.prefix(200)) }
            suppress = complaint.complainedRecipients.map { (addressIndex($0.emailAddress), .complaint, detail) }
        default:
            break
        }
        let rows = suppress
        return try await database.transaction { tx in
            guard try await WebhookEvents.record(provider: "ses", eventID: messageID, eventType: notification.kind, processed: true, in: tx) else {
                return .duplicate
            }
            guard !rows.isEmpty else { return .ignored }
            for (address, reason, detail) in rows {
                try await Self.upsert(address, reason: reason, detail: detail, source: "ses", tx)
            }
            return .suppressed(rows.count)
        }
    }

    /// Inserts the address, or updates its reason (a complaint outranks a bounce outranks a
    /// manual entry only in recency: the latest reason is kept).
    static func upsert(_ address: Data, reason: Reason, detail: String?, source: String, _ tx: borrowing Transaction) async throws {
        let changed = try await tx.execute("""
            UPDATE email_suppressions SET reason = \(reason.rawValue), detail = \(detail), source = \(source), updated_at = \(tx.dialect.now) \
            WHERE address_index = \(address)
            """)
        if changed == 0 {
            try await tx.execute("""
                INSERT INTO email_suppressions (address_index, reason, detail, source) VALUES (\(address), \(reason.rawValue), \(detail), \(source))
                """)
        }
    }

    /// The fields of SES's notification used here (SES sends many more).
    struct SESNotification: Decodable {
        struct Recipient: Decodable {
            let emailAddress: String
        }

        struct Bounce: Decodable {
            let bounceType: String?
            let bounceSubType: String?
            let bouncedRecipients: [Recipient]
        }

        struct Complaint: Decodable {
            let complaintFeedbackType: String?
            let complainedRecipients: [Recipient]
        }

        let notificationType: String?
        let eventType: String?
        let bounce: Bounce?
        let complaint: Complaint?

        /// `notificationType` (identity notifications) or `eventType` (configuration-set events).
        var kind: String { notificationType ?? eventType ?? "" }
    }
}

/// An SNS message that is not an SES notification (HTTP 400). Names the rule, never a value.
public typealias SESNotificationError = DomainError<SESNotificationErrorDomain>

/// The `ses` error domain.
public enum SESNotificationErrorDomain: ErrorDomain {
    public static let name = "ses"

    public static func httpStatus(for code: ErrorCode<SESNotificationErrorDomain>) -> Int { 400 }
}

extension ErrorCode where Domain == SESNotificationErrorDomain {
    /// An SNS message that is not an SES notification (400).
    public static var invalidNotification: Self { Self("invalidNotification") }
}
