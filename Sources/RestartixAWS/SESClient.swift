public import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1
import RestartixKit

/// Amazon SES over its v2 REST API (`email.<region>.amazonaws.com`, signing name `ses`):
/// `SendEmail` (simple content: subject, text and HTML bodies), the account-level suppression
/// list, and `CreateEmailIdentity` for tooling and tests. Signed with ``AWSSigner``; moto in tests.
///
/// Errors are ``AWSError``: `.service(type:status:)` with SES's error type (`MessageRejected`,
/// `AccountSuspendedException`, `TooManyRequestsException`...), never a body or an address.
public struct SESClient: Sendable {
    /// The credentials every call is signed with (fetched again before they expire).
    public let credentials: AWSCredentialProvider
    /// The region.
    public let region: String
    /// A signer with the keys held now (region, `ses`); calls ask ``credentials`` for theirs.
    public var signer: AWSSigner { AWSSigner(credentials: credentials.current, region: region, service: "ses") }
    /// The endpoint, e.g. `https://email.eu-central-1.amazonaws.com`.
    public let endpoint: URL
    let httpClient: HTTPClient
    let timeout: Duration

    /// A client with fixed keys.
    public init(
        region: String, credentials: AWSCredentials, endpoint: String? = nil, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        try self.init(region: region, credentials: AWSCredentialProvider(credentials), endpoint: endpoint, httpClient: httpClient, timeout: timeout)
    }

    /// A client; `endpoint` replaces `https://email.<region>.amazonaws.com`.
    public init(
        region: String, credentials: AWSCredentialProvider, endpoint: String? = nil, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        let text = endpoint ?? "https://email.\(region).amazonaws.com"
        guard let url = URL(string: text.hasSuffix("/") ? String(text.dropLast()) : text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw AWSError(.configuration, "the SES endpoint is not an http(s) URL")
        }
        self.endpoint = url
        self.credentials = credentials
        self.region = region
        self.httpClient = httpClient
        self.timeout = timeout
    }

    /// A client for `aws`'s region, credentials (fetched now and again before they expire:
    /// ``AWSCredentialProvider``) and SES endpoint.
    public init(_ aws: AWSConfiguration, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)) async throws(AWSError) {
        try self.init(
            region: aws.region, credentials: try await AWSCredentialProvider(aws.credentials, httpClient: httpClient),
            endpoint: aws.endpoint(for: .sesv2)?.absoluteString, httpClient: httpClient, timeout: timeout
        )
    }

    /// One message. Prints and dumps its counts only: addresses, subject and bodies are a
    /// patient's data.
    public struct Email: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
        /// The sender: a verified identity (`noreply@clinic.example`, or `"Clinic" <noreply@...>`).
        public var from: String
        /// Recipients (at most 50 across to, cc and bcc, as SES allows).
        public var to: [String]
        public var cc: [String] = []
        public var bcc: [String] = []
        public var replyTo: [String] = []
        /// The subject line.
        public var subject: String
        /// The plain-text body.
        public var text: String?
        /// The HTML body.
        public var html: String?
        /// The configuration set (event publishing, dedicated IPs).
        public var configurationSet: String?
        /// Message tags (`name` -> `value`), published with the configuration set's events.
        public var tags: [String: String] = [:]

        public var description: String {
            "Email(\(to.count + cc.count + bcc.count) recipients, text: \(text != nil), html: \(html != nil)\(configurationSet.map { ", configuration set \($0)" } ?? ""))"
        }

        public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .struct) }

        /// A message with at least one body.
        public init(from: String, to: [String], subject: String, text: String? = nil, html: String? = nil) {
            self.from = from
            self.to = to
            self.subject = subject
            self.text = text
            self.html = html
        }
    }

    /// Sends `email` and returns SES's message id. Refused before any request: no recipient,
    /// more than 50, no body, or a line break in the subject or an address (header injection).
    public func send(_ email: Email) async throws(AWSError) -> String {
        let recipients = email.to + email.cc + email.bcc
        guard !recipients.isEmpty, recipients.count <= 50 else {
            throw AWSError(.configuration, "an e-mail needs 1 to 50 recipients")
        }
        guard email.text != nil || email.html != nil else { throw AWSError(.configuration, "an e-mail needs a text or an HTML body") }
        let headerValues = [email.from, email.subject] + recipients + email.replyTo
        // By scalar: "\r\n" is one Character, equal to neither "\r" nor "\n".
        guard !headerValues.contains(where: { $0.unicodeScalars.contains { $0 == "\r" || $0 == "\n" } }) else {
            throw AWSError(.configuration, "a sender, recipient or subject holds a line break")
        }
        struct Content: Encodable { let Data: String; let Charset = "UTF-8" }
        struct Body: Encodable { let Text: Content?; let Html: Content? }
        struct Simple: Encodable { let Subject: Content; let Body: Body }
        struct EmailContent: Encodable { let Simple: Simple }
        struct Destination: Encodable { let ToAddresses: [String]; let CcAddresses: [String]?; let BccAddresses: [String]? }
        struct Tag: Encodable { let Name: String; let Value: String }
        struct Request: Encodable {
            let FromEmailAddress: String
            let Destination: Destination
            let ReplyToAddresses: [String]?
            let Content: EmailContent
            let ConfigurationSetName: String?
            let EmailTags: [Tag]?
        }
        struct Response: Decodable { let MessageId: String }
        let request = Request(
            FromEmailAddress: email.from,
            Destination: Destination(ToAddresses: email.to, CcAddresses: email.cc.isEmpty ? nil : email.cc, BccAddresses: email.bcc.isEmpty ? nil : email.bcc),
            ReplyToAddresses: email.replyTo.isEmpty ? nil : email.replyTo,
            Content: EmailContent(Simple: Simple(
                Subject: Content(Data: email.subject),
                Body: Body(Text: email.text.map { Content(Data: $0) }, Html: email.html.map { Content(Data: $0) })
            )),
            ConfigurationSetName: email.configurationSet,
            EmailTags: email.tags.isEmpty ? nil : email.tags.sorted { $0.key < $1.key }.map { Tag(Name: $0.key, Value: $0.value) }
        )
        return try await call("SendEmail", "POST", ["v2", "email", "outbound-emails"], request, as: Response.self).MessageId
    }

    /// Why SES suppresses an address.
    public enum SuppressionReason: String, Sendable, Hashable, Decodable {
        case bounce = "BOUNCE"
        case complaint = "COMPLAINT"
    }

    /// The reason `address` is on the account's suppression list, or nil when it is not
    /// (`GetSuppressedDestination`; SES's `NotFoundException` is the answer "not suppressed").
    public func suppression(of address: String) async throws(AWSError) -> SuppressionReason? {
        struct Response: Decodable {
            struct Destination: Decodable { let Reason: SuppressionReason }
            let SuppressedDestination: Destination
        }
        do {
            return try await call(
                "GetSuppressedDestination", "GET", ["v2", "email", "suppression", "addresses", address], Optional<String>.none, as: Response.self
            ).SuppressedDestination.Reason
        } catch where error.kind == .service(type: "NotFoundException", status: 404) {
            return nil
        }
    }

    /// Adds `address` to the account's suppression list (`PutSuppressedDestination`).
    public func suppress(_ address: String, reason: SuppressionReason) async throws(AWSError) {
        struct Request: Encodable { let EmailAddress: String; let Reason: String }
        struct Empty: Decodable {}
        _ = try await call("PutSuppressedDestination", "PUT", ["v2", "email", "suppression", "addresses"], Request(EmailAddress: address, Reason: reason.rawValue), as: Empty.self)
    }

    /// Creates an e-mail identity (tooling and tests; on AWS it must then be verified).
    public func createEmailIdentity(_ identity: String) async throws(AWSError) {
        struct Request: Encodable { let EmailIdentity: String }
        struct Response: Decodable { let IdentityType: String? }
        _ = try await call("CreateEmailIdentity", "POST", ["v2", "email", "identities"], Request(EmailIdentity: identity), as: Response.self)
    }

    /// One REST-JSON call: `segments` are encoded here (an address's `@` and `+` included).
    func call<Request: Encodable, Response: Decodable>(
        _ action: String, _ method: String, _ segments: [String], _ request: Request?, as _: Response.Type
    ) async throws(AWSError) -> Response {
        // RFC 3986 unreserved, ASCII only (CharacterSet.alphanumerics would keep non-ASCII
        // letters of an internationalised address unencoded).
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        let path = segments.map { $0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0 }.joined(separator: "/")
        guard let url = URL(string: endpoint.absoluteString + "/" + path) else { throw AWSError(.configuration, "\(action): the request URL could not be formed") }
        var body = Data()
        if let request {
            do { body = try JSONEncoder().encode(request) } catch { throw AWSError(.configuration, "the \(action) request could not be encoded") }
        }
        let signer = AWSSigner(credentials: try await credentials.credentials(), region: region, service: "ses")
        let signed = signer.sign(method, url: url, headers: request == nil ? [] : [("content-type", "application/json")], payload: .bytes(body))
        var http = HTTPClientRequest(url: url.absoluteString)
        http.method = HTTPMethod(rawValue: method)
        for (name, value) in signed { http.headers.add(name: name, value: value) }
        if request != nil { http.body = .bytes(ByteBuffer(bytes: body)) }
        let status: Int
        let headers: HTTPHeaders
        let answer: ByteBuffer
        do {
            let response = try await httpClient.execute(http, timeout: TimeAmount(timeout))
            status = Int(response.status.code)
            headers = response.headers
            answer = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw AWSError(.unreachable, "\(action) to \(endpoint.host ?? "the endpoint") failed: \(type(of: error))")
        }
        let data = Data(answer.readableBytesView)
        guard (200..<300).contains(status) else {
            throw AWSFailureBody.error(action, status: status, body: data, typeHeader: headers.first(name: "x-amzn-ErrorType"))
        }
        if data.isEmpty, let empty = try? JSONDecoder().decode(Response.self, from: Data("{}".utf8)) { return empty }
        do { return try JSONDecoder().decode(Response.self, from: data) } catch {
            throw AWSError(.malformedResponse, "\(action) answered JSON of another shape")
        }
    }

}
