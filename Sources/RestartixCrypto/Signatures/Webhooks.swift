public import RestartixKit
import Crypto
public import Foundation

/// Verifies webhooks signed with the Svix scheme, as Clerk sends them (`CLERK_WEBHOOK_SECRET`).
///
/// Headers `svix-id`, `svix-timestamp`, `svix-signature` (or the `webhook-*` names of the
/// Standard Webhooks spelling); signed content `{id}.{timestamp}.{body}`; signature
/// `v1,<base64 HMAC-SHA256>` keyed by the base64 secret after its `whsec_` prefix; the
/// signature header may list several space-separated signatures (Svix sends one per active
/// secret during a rotation) and any `v1` match is enough; timestamps within ±5 minutes.
public struct WebhookVerifier: Sendable {
    /// A verified delivery: its id (for idempotency) and timestamp.
    public struct Delivery: Sendable, Hashable {
        /// `svix-id`: the same across retries of one message.
        public let id: String
        /// `svix-timestamp`.
        public let timestamp: Date
    }

    private let keys: [SymmetricKey]
    /// How far the timestamp may be from now, either way.
    public let tolerance: Duration
    private let clock: @Sendable () -> Date

    /// Verifies with `secrets` (`whsec_...`; several during a rotation).
    public init(secrets: [String], tolerance: Duration = .seconds(300), clock: @escaping @Sendable () -> Date = { Date() }) throws(SignatureError) {
        var keys: [SymmetricKey] = []
        for secret in secrets {
            let base64 = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
            guard let bytes = Data(base64Encoded: base64), bytes.count >= 16 else {
                throw SignatureError(.invalidSecret, "a webhook secret is whsec_ followed by base64 of at least 16 bytes")
            }
            keys.append(SymmetricKey(data: bytes))
        }
        guard !keys.isEmpty else { throw SignatureError(.invalidSecret, "no webhook secret is configured") }
        self.keys = keys
        self.tolerance = tolerance
        self.clock = clock
    }

    /// Verifies a delivery; `header` looks a header up by name, case-insensitively.
    public func verify(body: some DataProtocol, header: (String) -> String?) throws(SignatureError) -> Delivery {
        // One spelling for all three headers, as Svix's libraries read them: svix-* when all
        // three are there, else webhook-*.
        let spelling = ["id", "timestamp", "signature"].allSatisfy({ header("svix-\($0)")?.isEmpty == false }) ? "svix" : "webhook"
        func value(_ name: String) -> String? { header("\(spelling)-\(name)").flatMap { $0.isEmpty ? nil : $0 } }
        guard let id = value("id") else { throw SignatureError(.missingHeader, "the svix-id header is missing") }
        guard id.utf8.count <= 255 else { throw SignatureError(.malformedHeader, "the svix-id header is longer than 255 bytes") }
        guard let timestampText = value("timestamp") else { throw SignatureError(.missingHeader, "the svix-timestamp header is missing") }
        guard let signatures = value("signature") else { throw SignatureError(.missingHeader, "the svix-signature header is missing") }
        guard let seconds = Int64(timestampText.trimmingCharacters(in: .whitespaces)) else {
            throw SignatureError(.malformedHeader, "the svix-timestamp header is not a number of seconds")
        }
        let skew = abs(clock().timeIntervalSince1970 - Double(seconds))
        guard skew <= Double(tolerance.components.seconds) else {
            throw SignatureError(.timestampOutOfTolerance, "the webhook timestamp is more than \(tolerance.components.seconds) seconds from now")
        }
        let candidates = signatures.split(separator: " ").compactMap { entry -> Data? in
            let parts = entry.split(separator: ",", maxSplits: 1)
            guard parts.count == 2, parts[0] == "v1" else { return nil }
            return Data(base64Encoded: String(parts[1]))
        }
        guard !candidates.isEmpty else { throw SignatureError(.malformedHeader, "the svix-signature header has no v1 signature") }
        // The timestamp as a number, as Svix's libraries sign it (they re-format what they parsed).
        var content = Data("\(id).\(seconds).".utf8)
        content.append(contentsOf: body)
        // isValidAuthenticationCode compares in constant time.
        let valid = keys.contains { key in
            candidates.contains { HMAC<SHA256>.isValidAuthenticationCode($0, authenticating: content, using: key) }
        }
        guard valid else { throw SignatureError(.invalidSignature, "no webhook signature matches the body") }
        return Delivery(id: id, timestamp: Date(timeIntervalSince1970: Double(seconds)))
    }

    /// The `svix-signature` value for a delivery, under the first secret (tests, outgoing webhooks).
    public func signature(id: String, timestamp: Int64, body: some DataProtocol) -> String {
        var content = Data("\(id).\(timestamp).".utf8)
        content.append(contentsOf: body)
        return "v1," + Data(HMAC<SHA256>.authenticationCode(for: content, using: keys[0])).base64EncodedString()
    }
}
