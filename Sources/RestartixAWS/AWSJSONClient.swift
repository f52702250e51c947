public import RestartixKit
public import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1

/// A failed AWS call. Descriptions carry the HTTP status and AWS's error type and message,
/// never a request or response body (those hold secrets and plaintext keys).
public struct AWSError: RestartixError, Equatable {
    /// What went wrong.
    public enum Kind: Sendable, Equatable {
        /// AWS answered with an error (`ResourceNotFoundException`, `AccessDeniedException`...).
        case service(type: String, status: Int)
        /// The endpoint could not be reached or timed out.
        case unreachable
        /// The answer was not the JSON the action returns.
        case malformedResponse
        /// The client is misconfigured (no credentials, a bad endpoint URL).
        case configuration
    }

    /// The kind of failure.
    public let kind: Kind
    /// A short explanation that is safe to log.
    public let detail: String
    /// AWS's own message for a service error. It can name accounts, roles and resources
    /// (`User: arn:aws:sts::...:assumed-role/... is not authorized`), so it is kept apart: it is
    /// not part of ``safeDetail`` or ``description``; log it only where that is acceptable.
    public let serverMessage: String?

    /// Creates an error.
    public init(_ kind: Kind, _ detail: String, serverMessage: String? = nil) {
        self.kind = kind
        self.detail = detail
        self.serverMessage = serverMessage
    }

    public static let domain = "aws"

    /// `service`, `unreachable`, `malformedResponse` or `configuration`.
    public var codeName: String {
        switch kind {
        case .service: "service"
        case .unreachable: "unreachable"
        case .malformedResponse: "malformedResponse"
        case .configuration: "configuration"
        }
    }

    /// The detail, with AWS's error type and HTTP status for a service error.
    public var safeDetail: String {
        if case .service(let type, let status) = kind { return "\(type) (HTTP \(status)): \(detail)" }
        return detail
    }

    /// 502 for a dependency that answered wrongly (an AWS error, a malformed answer), 503 when
    /// it cannot be reached, 500 for a misconfiguration.
    public var httpStatus: Int {
        switch kind {
        case .service, .malformedResponse: 502
        case .unreachable: 503
        case .configuration: 500
        }
    }

    /// Unreachable, throttled (`ThrottlingException`, HTTP 429) or an AWS server error (5xx).
    public var isTransient: Bool {
        switch kind {
        case .unreachable: true
        case .service(let type, let status): status >= 500 || status == 429 || type.contains("Throttl")
        case .malformedResponse, .configuration: false
        }
    }

    public var description: String { restartixDescription }
}

/// Calls one AWS service's JSON protocol (`POST /`, `X-Amz-Target`, `application/x-amz-json-1.1`)
/// over async-http-client, signed with ``AWSSigner``. The endpoint is overridable (moto in
/// tests, VPC endpoints in production).
public struct AWSJSONClient: Sendable {
    /// The endpoint, e.g. `https://kms.eu-central-1.amazonaws.com`.
    public let endpoint: URL
    /// The credentials every call is signed with (fetched again before they expire).
    public let credentials: AWSCredentialProvider
    /// The region.
    public let region: String
    /// The service's signing name (`secretsmanager`, `kms`).
    public let service: String
    /// A signer with the keys held now; calls ask ``credentials`` for theirs.
    public var signer: AWSSigner { AWSSigner(credentials: credentials.current, region: region, service: service) }
    let targetPrefix: String
    let httpClient: HTTPClient
    let timeout: Duration

    /// A client with fixed keys.
    public init(
        service: String, targetPrefix: String, region: String, credentials: AWSCredentials, endpoint: String? = nil,
        httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        try self.init(
            service: service, targetPrefix: targetPrefix, region: region, credentials: AWSCredentialProvider(credentials), endpoint: endpoint,
            httpClient: httpClient, timeout: timeout
        )
    }

    /// A client for `service` (its signing name) whose actions are `targetPrefix.Action`.
    public init(
        service: String,
        targetPrefix: String,
        region: String,
        credentials: AWSCredentialProvider,
        endpoint: String? = nil,
        httpClient: HTTPClient = .shared,
        timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        let text = endpoint ?? "https://\(service).\(region).amazonaws.com"
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw AWSError(.configuration, "the \(service) endpoint is not an http(s) URL")
        }
        self.endpoint = url
        self.credentials = credentials
        self.region = region
        self.service = service
        self.targetPrefix = targetPrefix
        self.httpClient = httpClient
        self.timeout = timeout
    }

    /// The Host header for `url`: brackets around an IPv6 address, the port only when it is not
    /// the scheme's default.
    public static func hostHeader(_ url: URL) -> String {
        var host = url.host ?? ""
        if host.contains(":") { host = "[\(host)]" }
        if let port = url.port, !(url.scheme == "https" && port == 443), !(url.scheme == "http" && port == 80) { host += ":\(port)" }
        return host
    }

    /// Calls `action` with `request` and decodes the answer.
    public func call<Request: Encodable, Response: Decodable>(
        _ action: String, _ request: Request, as _: Response.Type = Response.self
    ) async throws(AWSError) -> Response {
        let body: Data
        do { body = try JSONEncoder().encode(request) } catch {
            throw AWSError(.configuration, "the \(action) request could not be encoded")
        }
        let host = Self.hostHeader(endpoint)
        let headers = [
            ("host", host),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "\(targetPrefix).\(action)"),
        ]
        let signer = AWSSigner(credentials: try await credentials.credentials(), region: region, service: service)
        let signed = signer.sign(method: "POST", path: endpoint.path.isEmpty ? "/" : endpoint.path, headers: headers, body: body)
        var http = HTTPClientRequest(url: endpoint.absoluteString)
        http.method = .POST
        // The Host sent is the Host signed (async-http-client keeps one it is given).
        for (name, value) in headers + signed { http.headers.add(name: name, value: value) }
        http.body = .bytes(ByteBuffer(bytes: body))
        let status: Int
        let answer: ByteBuffer
        do {
            let response = try await httpClient.execute(http, timeout: TimeAmount(timeout))
            status = Int(response.status.code)
            answer = try await response.body.collect(upTo: 4 << 20)
        } catch {
            throw AWSError(.unreachable, "\(action) to \(endpoint.host ?? "the endpoint") failed: \(type(of: error))")
        }
        let data = Data(answer.readableBytesView)
        guard (200..<300).contains(status) else { throw AWSFailureBody.error(action, status: status, body: data) }
        do { return try JSONDecoder().decode(Response.self, from: data) } catch {
            throw AWSError(.malformedResponse, "\(action) answered JSON of another shape")
        }
    }
}

/// The error body of the JSON and REST-JSON protocols.
struct AWSFailureBody: Decodable {
    let __type: String?
    let message: String?
    let Message: String?

    /// The error a refused call throws: the type from `typeHeader` (REST-JSON's
    /// `x-amzn-ErrorType`, `Type:url`) or the body's `__type` (`prefix#Type`); the server's
    /// message, which can quote what was sent, kept apart from the description.
    static func error(_ action: String, status: Int, body: Data, typeHeader: String? = nil) -> AWSError {
        let failure = try? JSONDecoder().decode(AWSFailureBody.self, from: body)
        let named = typeHeader.map { String($0.split(separator: ":").first ?? "") } ?? failure?.__type
        let type = named.map { $0.split(separator: "#").last.map(String.init) ?? $0 } ?? "HTTP\(status)"
        let message = (failure?.message ?? failure?.Message).map { String($0.prefix(500)) }
        return AWSError(.service(type: type, status: status), "\(action) was refused", serverMessage: message)
    }
}

/// AWS Secrets Manager: `GetSecretValue`.
public struct SecretsManagerClient: Sendable {
    let client: AWSJSONClient

    /// A client with fixed keys.
    public init(
        region: String, credentials: AWSCredentials, endpoint: String? = nil, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        try self.init(region: region, credentials: AWSCredentialProvider(credentials), endpoint: endpoint, httpClient: httpClient, timeout: timeout)
    }

    /// A client; `endpoint` defaults to the region's public endpoint; `timeout` bounds each call.
    public init(
        region: String, credentials: AWSCredentialProvider, endpoint: String? = nil, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        client = try AWSJSONClient(
            service: "secretsmanager", targetPrefix: "secretsmanager", region: region, credentials: credentials,
            endpoint: endpoint, httpClient: httpClient, timeout: timeout
        )
    }

    /// A secret's value: its string, or its binary value.
    public enum SecretValue: Sendable {
        case string(String)
        case binary(Data)
    }

    /// The value of `secretID` at `versionStage` (`AWSCURRENT` by default). On AWS the secret's
    /// KMS envelope is opened by the service; the task role needs `kms:Decrypt` on its key.
    public func getSecretValue(_ secretID: String, versionStage: String = "AWSCURRENT") async throws(AWSError) -> SecretValue {
        struct Request: Encodable {
            let SecretId: String
            let VersionStage: String
        }
        struct Response: Decodable {
            let SecretString: String?
            let SecretBinary: String?
        }
        let response = try await client.call("GetSecretValue", Request(SecretId: secretID, VersionStage: versionStage), as: Response.self)
        if let text = response.SecretString { return .string(text) }
        if let base64 = response.SecretBinary, let data = Data(base64Encoded: base64) { return .binary(data) }
        throw AWSError(.malformedResponse, "GetSecretValue returned neither SecretString nor SecretBinary")
    }

    /// Creates a secret (tests, bootstrap tooling).
    public func createSecret(name: String, value: String) async throws(AWSError) {
        struct Request: Encodable {
            let Name: String
            let SecretString: String
        }
        struct Response: Decodable { let ARN: String? }
        _ = try await client.call("CreateSecret", Request(Name: name, SecretString: value), as: Response.self)
    }
}

/// AWS KMS: `Decrypt`, and `Encrypt` / `CreateKey` for tooling and tests.
public struct KMSClient: Sendable {
    let client: AWSJSONClient

    /// A client with fixed keys.
    public init(
        region: String, credentials: AWSCredentials, endpoint: String? = nil, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        try self.init(region: region, credentials: AWSCredentialProvider(credentials), endpoint: endpoint, httpClient: httpClient, timeout: timeout)
    }

    /// A client; `endpoint` defaults to the region's public endpoint; `timeout` bounds each call.
    public init(
        region: String, credentials: AWSCredentialProvider, endpoint: String? = nil, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)
    ) throws(AWSError) {
        client = try AWSJSONClient(
            service: "kms", targetPrefix: "TrentService", region: region, credentials: credentials, endpoint: endpoint,
            httpClient: httpClient, timeout: timeout
        )
    }

    /// Decrypts a ciphertext blob (`kms:Decrypt`); `encryptionContext` must match the one used
    /// to encrypt.
    public func decrypt(_ blob: Data, keyID: String? = nil, encryptionContext: [String: String] = [:]) async throws(AWSError) -> Data {
        struct Request: Encodable {
            let CiphertextBlob: String
            let KeyId: String?
            let EncryptionContext: [String: String]?
        }
        struct Response: Decodable { let Plaintext: String }
        let response = try await client.call(
            "Decrypt",
            Request(CiphertextBlob: blob.base64EncodedString(), KeyId: keyID, EncryptionContext: encryptionContext.isEmpty ? nil : encryptionContext),
            as: Response.self
        )
        guard let plaintext = Data(base64Encoded: response.Plaintext) else {
            throw AWSError(.malformedResponse, "Decrypt returned a plaintext that is not base64")
        }
        return plaintext
    }

    /// Encrypts up to 4 KiB under `keyID` (wrapping a data key for the keyring document).
    public func encrypt(_ plaintext: Data, keyID: String, encryptionContext: [String: String] = [:]) async throws(AWSError) -> Data {
        struct Request: Encodable {
            let KeyId: String
            let Plaintext: String
            let EncryptionContext: [String: String]?
        }
        struct Response: Decodable { let CiphertextBlob: String }
        let response = try await client.call(
            "Encrypt",
            Request(KeyId: keyID, Plaintext: plaintext.base64EncodedString(), EncryptionContext: encryptionContext.isEmpty ? nil : encryptionContext),
            as: Response.self
        )
        guard let blob = Data(base64Encoded: response.CiphertextBlob) else {
            throw AWSError(.malformedResponse, "Encrypt returned a blob that is not base64")
        }
        return blob
    }

    /// Creates a symmetric key and returns its id (tests and tooling).
    public func createKey(description: String) async throws(AWSError) -> String {
        struct Request: Encodable { let Description: String }
        struct Response: Decodable {
            struct Metadata: Decodable { let KeyId: String }
            let KeyMetadata: Metadata
        }
        return try await client.call("CreateKey", Request(Description: description), as: Response.self).KeyMetadata.KeyId
    }
}
