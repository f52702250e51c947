public import Foundation
import AsyncHTTPClient
import Crypto
import NIOCore
import NIOHTTP1
import _CryptoExtras
public import RestartixKit
import SwiftASN1
import Synchronization
import X509

/// An Amazon SNS message delivered to an HTTPS endpoint (the SES notification topics post
/// bounces and complaints this way). Field names are SNS's own.
public struct SNSMessage: Decodable, Sendable, Hashable {
    public let `Type`: String
    public let MessageId: String
    public let TopicArn: String
    public let Subject: String?
    public let Message: String
    public let Timestamp: String
    public let SignatureVersion: String
    public let Signature: String
    public let SigningCertURL: String
    public let SubscribeURL: String?
    public let Token: String?

    /// The string SNS signs: the message's fields, `Key\nValue\n` each, in SNS's order for
    /// its type.
    var canonical: String? {
        var fields: [(String, String?)]
        switch self.Type {
        case "Notification":
            fields = [("Message", Message), ("MessageId", MessageId), ("Subject", Subject), ("Timestamp", Timestamp), ("TopicArn", TopicArn), ("Type", self.Type)]
        case "SubscriptionConfirmation", "UnsubscribeConfirmation":
            guard SubscribeURL != nil, Token != nil else { return nil }
            fields = [("Message", Message), ("MessageId", MessageId), ("SubscribeURL", SubscribeURL), ("Timestamp", Timestamp), ("Token", Token),
                      ("TopicArn", TopicArn), ("Type", self.Type)]
        default:
            return nil
        }
        return fields.compactMap { key, value in value.map { "\(key)\n\($0)\n" } }.joined()
    }
}

/// Why an SNS delivery was refused. Details name the rule, never a value from the message.
public typealias SNSError = DomainError<SNSErrorDomain>

/// The `sns` error domain.
public enum SNSErrorDomain: ErrorDomain {
    public static let name = "sns"

    public static func httpStatus(for code: ErrorCode<SNSErrorDomain>) -> Int {
        switch code {
        case .untrustedCertificate, .invalidSignature: 401
        case .topicNotAllowed: 403
        case .confirmationFailed: 502
        default: 400
        }
    }

    public static func isTransient(_ code: ErrorCode<SNSErrorDomain>) -> Bool { code == .confirmationFailed }
}

extension ErrorCode where Domain == SNSErrorDomain {
    /// Not an SNS message of a known type, or a field out of shape (400).
    public static var invalidMessage: Self { Self("invalidMessage") }
    /// The signing certificate's URL is not an SNS host over HTTPS, or it could not be
    /// fetched or read (401).
    public static var untrustedCertificate: Self { Self("untrustedCertificate") }
    /// The signature does not match the message under that certificate (401).
    public static var invalidSignature: Self { Self("invalidSignature") }
    /// The message is from a topic this deployment does not subscribe to (403).
    public static var topicNotAllowed: Self { Self("topicNotAllowed") }
    /// The subscription could not be confirmed with SNS (502: SNS retries the confirmation).
    public static var confirmationFailed: Self { Self("confirmationFailed") }
}

/// Verifies SNS HTTPS deliveries as AWS documents it: the signing certificate is fetched only
/// from the topic's regional SNS host (`sns.<region>.amazonaws.com`, HTTPS, a `.pem` path) and
/// cached, the
/// signature (`SignatureVersion` 1: SHA1withRSA; 2: SHA256withRSA) checked over the canonical
/// string, and the topic must be one of `topics` (a valid SNS signature proves only that SNS
/// sent it, not that it is our topic). Subscription confirmations are confirmed by a GET of
/// their `SubscribeURL`, which must be an SNS host too.
public final class SNSVerifier: Sendable {
    /// Fetches a URL (the certificate, the subscription confirmation): status and body.
    public typealias Fetch = @Sendable (URL) async throws -> (status: Int, body: Data)

    /// The topics accepted.
    public let topics: Set<String>
    private let fetch: Fetch
    private let certificates = Mutex<[String: _RSA.Signing.PublicKey]>([:])

    /// A verifier for `topics` (ARNs), fetching with `fetch` (AsyncHTTPClient's shared client
    /// by default, 10 s a request).
    public init(topics: Set<String>, fetch: Fetch? = nil) {
        self.topics = topics
        self.fetch = fetch ?? { url in
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = .GET
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 64 * 1024)
            return (Int(response.status.code), Data(body.readableBytesView))
        }
    }

    /// Whether `url` is the SNS endpoint of the region in `topicArn`: HTTPS, host exactly
    /// `sns.<region>.amazonaws.com` (`.amazonaws.com.cn` in the `aws-cn` partition), no user,
    /// no other port. Taking the region from the (allow-listed) topic leaves no room for other
    /// services' hosts that also fit `sns.<label>.amazonaws.com` (an S3 bucket named `sns`
    /// answers at `sns.s3.amazonaws.com`).
    public static func isSNSHost(_ url: URL, topicArn: String) -> Bool {
        let arn = topicArn.split(separator: ":", omittingEmptySubsequences: false)
        guard arn.count == 6, arn[0] == "arn", arn[2] == "sns", !arn[3].isEmpty,
            arn[3].allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
        else { return false }
        let domain: String
        switch arn[1] {
        case "aws": domain = "amazonaws.com"
        case "aws-cn": domain = "amazonaws.com.cn"
        case "aws-us-gov": domain = "amazonaws.com"
        default: return false
        }
        guard url.scheme == "https", url.user == nil, url.password == nil, url.port == nil || url.port == 443,
            let host = url.host?.lowercased()
        else { return false }
        return host == "sns.\(arn[3]).\(domain)"
    }

    /// The message in `body`, once its certificate, signature and topic check out.
    public func verify(_ body: Data) async throws(SNSError) -> SNSMessage {
        let message: SNSMessage
        do { message = try JSONDecoder().decode(SNSMessage.self, from: body) } catch {
            throw SNSError(.invalidMessage, "the body is not an SNS message")
        }
        guard let canonical = message.canonical else { throw SNSError(.invalidMessage, "the SNS message type is not one this endpoint takes") }
        guard topics.contains(message.TopicArn) else { throw SNSError(.topicNotAllowed, "the message is from a topic this deployment does not accept") }
        guard let certificateURL = URL(string: message.SigningCertURL), Self.isSNSHost(certificateURL, topicArn: message.TopicArn),
            Self.isCertificatePath(certificateURL)
        else {
            throw SNSError(.untrustedCertificate, "SigningCertURL is not the topic's regional SNS certificate over HTTPS")
        }
        guard let signature = Data(base64Encoded: message.Signature) else { throw SNSError(.invalidSignature, "the signature is not base64") }
        let key = try await publicKey(certificateURL)
        let data = Data(canonical.utf8)
        let rsa = _RSA.Signing.RSASignature(rawRepresentation: signature)
        let valid: Bool
        switch message.SignatureVersion {
        case "1": valid = key.isValidSignature(rsa, for: Insecure.SHA1.hash(data: data), padding: .insecurePKCS1v1_5)
        case "2": valid = key.isValidSignature(rsa, for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5)
        default: throw SNSError(.invalidSignature, "SignatureVersion must be 1 or 2")
        }
        guard valid else { throw SNSError(.invalidSignature, "the signature does not match the message") }
        return message
    }

    /// Confirms a verified `SubscriptionConfirmation` with SNS (a GET of its `SubscribeURL`).
    public func confirm(_ message: SNSMessage) async throws(SNSError) {
        guard message.Type == "SubscriptionConfirmation", let text = message.SubscribeURL, let url = URL(string: text),
            Self.isSNSHost(url, topicArn: message.TopicArn)
        else {
            throw SNSError(.invalidMessage, "SubscribeURL is not an SNS endpoint over HTTPS")
        }
        let status: Int
        do { status = try await fetch(url).status } catch {
            throw SNSError(.confirmationFailed, "SNS could not be reached to confirm the subscription")
        }
        guard (200..<300).contains(status) else { throw SNSError(.confirmationFailed, "SNS refused the subscription confirmation (HTTP \(status))") }
    }

    /// Whether `url` names a certificate as SNS publishes them: the path
    /// `/SimpleNotificationService-<hex>.pem`, and no query or fragment. Anything looser would
    /// let a caller vary the URL freely (a fragment, a query) and make this endpoint fetch a
    /// certificate for each variation before the signature is even checked; the cache below is
    /// bounded whatever names a caller tries.
    static func isCertificatePath(_ url: URL) -> Bool {
        guard url.query == nil, url.fragment == nil else { return false }
        let path = url.path
        let prefix = "/SimpleNotificationService-", suffix = ".pem"
        guard path.hasPrefix(prefix), path.hasSuffix(suffix), path.count > prefix.count + suffix.count else { return false }
        return path.dropFirst(prefix.count).dropLast(suffix.count).allSatisfy { $0.isASCII && $0.isHexDigit }
    }

    /// The most certificates kept: SNS signs with one at a time per region, and rotates rarely.
    static let maximumCachedCertificates = 16

    private func publicKey(_ url: URL) async throws(SNSError) -> _RSA.Signing.PublicKey {
        // Keyed by host and path, the whole of what names a certificate here.
        let name = "\(url.host ?? "")\(url.path)"
        if let cached = certificates.withLock({ $0[name] }) { return cached }
        let pem: String
        do {
            let (status, body) = try await fetch(url)
            guard status == 200, let text = String(data: body, encoding: .utf8) else { throw SNSError(.untrustedCertificate, "") }
            pem = text
        } catch {
            throw SNSError(.untrustedCertificate, "the signing certificate could not be fetched")
        }
        let key: _RSA.Signing.PublicKey
        do {
            let certificate = try Certificate(pemEncoded: pem)
            guard let rsa = _RSA.Signing.PublicKey(certificate.publicKey) else { throw SNSError(.untrustedCertificate, "") }
            key = rsa
        } catch {
            throw SNSError(.untrustedCertificate, "the signing certificate is not an RSA certificate in PEM")
        }
        certificates.withLock { cache in
            if cache.count >= Self.maximumCachedCertificates { cache.removeAll() }
            cache[name] = key
        }
        return key
    }
}
