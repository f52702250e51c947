@testable import CoreAPI
import Crypto
import _CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixAWS
import RestartixKit
import RestartixPlatform
import RestartixTestSupport
import ServiceSupport
import SwiftASN1
import Synchronization
import Testing
import X509

/// `POST /v1/webhooks/ses`: SNS messages verified as AWS documents (certificate from an SNS host
/// only, RSA signature over the canonical string, our topic only), subscriptions confirmed, and
/// permanently bounced and complaining addresses put on the suppression list once.
@Suite("SES webhooks through SNS", .timeLimit(.minutes(3)))
struct SESWebhookTests {
    static let topic = "arn:aws:sns:eu-central-1:123456789012:restartix-ses-events"
    static let certificateURL = "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"

    /// An SNS signing identity made here: an RSA key and its self-signed certificate.
    struct Signer: Sendable {
        let key: _RSA.Signing.PrivateKey
        let pem: String

        init() throws {
            key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            let name = try DistinguishedName { CommonName("sns.amazonaws.com") }
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
                notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(3600),
                issuer: name, subject: name, signatureAlgorithm: .sha256WithRSAEncryption, extensions: Certificate.Extensions {},
                issuerPrivateKey: Certificate.PrivateKey(key)
            )
            pem = try certificate.serializeAsPEM().pemString
        }

        /// A signed SNS message: `fields` plus its Signature, SigningCertURL and SignatureVersion.
        func message(_ fields: [String: String], version: String = "1", certificateURL: String = SESWebhookTests.certificateURL) throws -> [String: String] {
            let order = fields["Type"] == "Notification"
                ? ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
                : ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
            let canonical = order.compactMap { key in fields[key].map { "\(key)\n\($0)\n" } }.joined()
            let data = Data(canonical.utf8)
            let signature = version == "1"
                ? try key.signature(for: Insecure.SHA1.hash(data: data), padding: .insecurePKCS1v1_5)
                : try key.signature(for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5)
            return fields.merging([
                "Signature": signature.rawRepresentation.base64EncodedString(), "SigningCertURL": certificateURL, "SignatureVersion": version,
            ]) { $1 }
        }
    }

    /// What the fake network was asked for.
    final class Fetches: Sendable {
        let urls = Mutex<[String]>([])
        var all: [String] { urls.withLock { $0 } }
    }

    static func notification(_ ses: [String: Any], id: String = "sns-" + UUIDv7.generate().lowercasedString) throws -> [String: String] {
        let message = String(decoding: try JSONSerialization.data(withJSONObject: ses), as: UTF8.self)
        return ["Type": "Notification", "MessageId": id, "TopicArn": topic, "Message": message, "Timestamp": "2026-12-05T10:00:00.000Z"]
    }

    static func bounce(_ addresses: [String], type: String = "Permanent") -> [String: Any] {
        ["notificationType": "Bounce", "bounce": ["bounceType": type, "bounceSubType": "General",
                                                 "bouncedRecipients": addresses.map { ["emailAddress": $0, "status": "5.1.1"] }],
         "mail": ["source": "clinic@restartix.example", "destination": addresses]]
    }

    func withAPI(
        configured: Bool = true, _ body: @escaping @Sendable (any TestClientProtocol, Signer, Fetches, EmailSuppressions) async throws -> Void
    ) async throws {
        let signer = try Signer()
        let fetches = Fetches()
        let (app, directory, _, configuration) = try await DemoAPI.make("core-ses") { configuration in
            if configured { configuration.sesTopics = [Self.topic] }
            configuration.snsFetch = { url in
                fetches.urls.withLock { $0.append(url.absoluteString) }
                if url.absoluteString == Self.certificateURL { return (200, Data(signer.pem.utf8)) }
                return (200, Data("<ConfirmSubscriptionResponse/>".utf8))
            }
        }
        defer { directory.remove() }
        // The app's own keyring (the embedded default's, beside the SQLite file): the same indexes.
        let keyring = try await PlatformBoot.localKeyring(in: directory.url.appendingPathComponent("data"), logger: Logger(label: "test"))
        let database = Database(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await database.shutdown() } }
        let suppressions = EmailSuppressions(database: database, keyring: keyring)
        try await app.test(.router) { client in try await body(client, signer, fetches, suppressions) }
    }

    static func post(_ client: some TestClientProtocol, _ message: [String: String]) async throws -> (HTTPResponse.Status, String) {
        let body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: message))
        return try await client.execute(uri: "/v1/webhooks/ses", method: .post, headers: [.contentType: "text/plain; charset=UTF-8"], body: body) {
            ($0.status, String(buffer: $0.body))
        }
    }

    @Test("a permanent bounce and a complaint suppress their addresses once; a transient bounce does not; SignatureVersion 1 and 2")
    func suppressions() async throws {
        try await withAPI { client, signer, fetches, list in
            let bounce = try signer.message(Self.notification(Self.bounce(["Gone.Away@Example.com", "nobody@example.org"])))
            var (status, body) = try await Self.post(client, bounce)
            #expect(status == .ok && body.contains(#""status":"applied""#), "\(body)")
            #expect(try await list.reason(for: "gone.away@example.com") == .bounce)
            #expect(try await list.reason(for: "nobody@example.org") == .bounce)
            #expect(try await list.reason(for: "someone.else@example.com") == nil)
            (status, body) = try await Self.post(client, bounce)
            #expect(status == .ok && body.contains(#""status":"duplicate""#), "a redelivery writes nothing")

            let complaint = try signer.message(Self.notification([
                "eventType": "Complaint", "complaint": ["complaintFeedbackType": "abuse", "complainedRecipients": [["emailAddress": "angry@example.com"]]],
            ]), version: "2")
            (status, body) = try await Self.post(client, complaint)
            #expect(status == .ok && body.contains("applied"))
            #expect(try await list.reason(for: "angry@example.com") == .complaint)

            let transient = try signer.message(Self.notification(Self.bounce(["full.mailbox@example.com"], type: "Transient")))
            (status, body) = try await Self.post(client, transient)
            #expect(status == .ok && body.contains("ignored"))
            #expect(try await list.reason(for: "full.mailbox@example.com") == nil)
            #expect(fetches.all == [Self.certificateURL], "the certificate is fetched once, then cached")
        }
    }

    @Test("forged, altered, off-topic and off-host messages are refused before anything is written; the certificate is fetched only from an SNS host")
    func refusals() async throws {
        try await withAPI { client, signer, fetches, list in
            let genuine = try signer.message(Self.notification(Self.bounce(["victim@example.com"])))
            var altered = genuine
            altered["Message"] = String(decoding: try JSONSerialization.data(withJSONObject: Self.bounce(["someone.else@example.com"])), as: UTF8.self)
            var forged = genuine
            forged["Signature"] = Data(repeating: 7, count: 256).base64EncodedString()
            let otherKey = try Signer()
            let wrongKey = try otherKey.message(Self.notification(Self.bounce(["victim@example.com"])))
            var offTopic = try signer.message(Self.notification(Self.bounce(["victim@example.com"])).merging(["TopicArn": "arn:aws:sns:eu-central-1:999999999999:theirs"]) { $1 })
            offTopic["TopicArn"] = "arn:aws:sns:eu-central-1:999999999999:theirs"
            var cases: [(String, [String: String], HTTPResponse.Status)] = [
                ("altered message", altered, .unauthorized), ("forged signature", forged, .unauthorized),
                ("another key", wrongKey, .unauthorized), ("another topic", offTopic, .forbidden),
            ]
            for url in ["http://sns.eu-central-1.amazonaws.com/cert.pem", "https://sns.eu-central-1.amazonaws.com.evil.example/cert.pem",
                        "https://evil.example/sns.eu-central-1.amazonaws.com/cert.pem", "https://sns.amazonaws.com/cert.pem",
                        "https://sns.eu-central-1.amazonaws.com/cert.txt", "https://user@sns.eu-central-1.amazonaws.com/cert.pem",
                        "https://sns.eu-central-1.amazonaws.com:8443/cert.pem", "https://sns.s3.amazonaws.com/cert.pem",
                        "https://sns.us-east-1.amazonaws.com/cert.pem",
                        // Only SNS's own certificate names, with nothing after them to vary.
                        "https://sns.eu-central-1.amazonaws.com/cert.pem",
                        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem#again",
                        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem?v=2",
                        "https://sns.eu-central-1.amazonaws.com/x/SimpleNotificationService-0123456789abcdef.pem",
                        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-../x.pem"] {
                cases.append(("certificate at \(url)", try signer.message(Self.notification(Self.bounce(["victim@example.com"])), certificateURL: url), .unauthorized))
            }
            cases.append(("not JSON", ["Type": "Notification"], .badRequest))
            cases.append(("another type", try signer.message(["Type": "Telegram", "MessageId": "x", "TopicArn": Self.topic, "Message": "{}", "Timestamp": "t"]), .badRequest))
            for (name, message, expected) in cases {
                let (status, body) = try await Self.post(client, message)
                #expect(status == expected, "\(name): \(body)")
                #expect(!body.contains("victim") && !body.contains("evil"), "\(name): never echoed")
            }
            #expect(try await list.reason(for: "victim@example.com") == nil)
            #expect(try await list.reason(for: "someone.else@example.com") == nil)
            #expect(fetches.all.allSatisfy { $0 == Self.certificateURL }, "nothing fetched off SNS: \(fetches.all)")
            // The genuine message still applies.
            #expect(try await Self.post(client, genuine).0 == .ok)
            #expect(try await list.reason(for: "victim@example.com") == .bounce)
        }
    }

    @Test("a subscription confirmation is confirmed with SNS, only at an SNS URL")
    func subscription() async throws {
        try await withAPI { client, signer, fetches, _ in
            let subscribe = "https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=\(Self.topic)&Token=abc"
            let confirmation = try signer.message([
                "Type": "SubscriptionConfirmation", "MessageId": "sub-1", "TopicArn": Self.topic, "Token": "abc",
                "Message": "You have chosen to subscribe to the topic.", "SubscribeURL": subscribe, "Timestamp": "2026-12-05T10:00:00.000Z",
            ])
            let (status, body) = try await Self.post(client, confirmation)
            #expect(status == .ok && body.contains("confirmed"), "\(body)")
            #expect(fetches.all.contains(subscribe))
            let offHost = try signer.message([
                "Type": "SubscriptionConfirmation", "MessageId": "sub-2", "TopicArn": Self.topic, "Token": "abc",
                "Message": "You have chosen to subscribe to the topic.", "SubscribeURL": "https://evil.example/confirm", "Timestamp": "2026-12-05T10:00:00.000Z",
            ])
            #expect(try await Self.post(client, offHost).0 == .badRequest)
            #expect(!fetches.all.contains("https://evil.example/confirm"))
        }
    }

    @Test("without SES_SNS_TOPIC_ARNS every delivery is 503; bad ARNs refused at boot by key")
    func notConfigured() async throws {
        try await withAPI(configured: false) { client, signer, _, _ in
            let message = try signer.message(Self.notification(Self.bounce(["a@example.com"])))
            let status = try await Self.post(client, message).0
            #expect(status == .serviceUnavailable)
        }
        let error = #expect(throws: ConfigurationError.self) {
            try CoreAPIConfiguration(environment: ["APP_ENV": "development", "SES_SNS_TOPIC_ARNS": "not-an-arn"])
        }
        #expect(error?.description.contains("SES_SNS_TOPIC_ARNS") == true)
        #expect(try CoreAPIConfiguration(environment: ["APP_ENV": "development", "SES_SNS_TOPIC_ARNS": Self.topic]).sesTopics == [Self.topic])
    }
}
