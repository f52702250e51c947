public import Foundation
public import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// Where AWS requests go and who signs them: the typed value every client of this module is
/// built from. The library reads no environment: the executables' configuration layer builds
/// one from `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL_<SERVICE>` and the rest, as
/// the AWS SDKs name them (Documentation/Configuration.md); an integrator builds one in code.
///
/// ```swift
/// let aws = AWSConfiguration(
///     region: "eu-central-1",
///     credentials: .static(AWSCredentials(accessKeyID: "AKIA...", secretAccessKey: secret)),
///     endpoints: [.kms: URL(string: "http://127.0.0.1:5000")!]
/// )
/// let kms = try await KMSClient(aws)
/// ```
public struct AWSConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// The region (`eu-central-1`).
    public var region: String
    /// Where credentials come from.
    public var credentials: AWSCredentialSource
    /// Endpoint overrides per service (a VPC endpoint, moto in tests).
    public var endpoints: [AWSService: URL]
    /// The endpoint of every service without its own override (`AWS_ENDPOINT_URL`).
    public var defaultEndpoint: URL?

    /// A configuration; public AWS endpoints unless overridden.
    public init(region: String, credentials: AWSCredentialSource, endpoints: [AWSService: URL] = [:], defaultEndpoint: URL? = nil) {
        self.region = region
        self.credentials = credentials
        self.endpoints = endpoints
        self.defaultEndpoint = defaultEndpoint
    }

    /// The endpoint override for `service`: its own, else ``defaultEndpoint``; `nil` for AWS's
    /// public endpoint.
    public func endpoint(for service: AWSService) -> URL? { endpoints[service] ?? defaultEndpoint }

    /// Region, credential source and endpoints (without any user or password in them); never a
    /// secret.
    public var description: String {
        func shown(_ url: URL) -> String {
            guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "<endpoint>" }
            components.user = nil
            components.password = nil
            return components.string ?? "<endpoint>"
        }
        var overrides = endpoints.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\(shown($0.value))" }
        if let defaultEndpoint { overrides.append("default=\(shown(defaultEndpoint))") }
        return "AWSConfiguration(region: \(region), credentials: \(credentials)\(overrides.isEmpty ? "" : ", endpoints: \(overrides.joined(separator: " "))"))"
    }
}

extension AWSConfiguration: CustomReflectable {
    /// `dump()` and debuggers see the description only: the credentials hold a secret key.
    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .struct) }
}

/// The AWS services this module calls, by the names the SDKs use for their endpoint variables
/// (`AWS_ENDPOINT_URL_<name>`).
public struct AWSService: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The endpoint-variable suffix: `SECRETS_MANAGER`, `KMS`, `S3`, `SESV2`.
    public let rawValue: String
    /// A service by its endpoint-variable suffix.
    public init(rawValue: String) { self.rawValue = rawValue }

    /// AWS Secrets Manager.
    public static let secretsManager = AWSService(rawValue: "SECRETS_MANAGER")
    /// AWS KMS.
    public static let kms = AWSService(rawValue: "KMS")
    /// Amazon S3.
    public static let s3 = AWSService(rawValue: "S3")
    /// Amazon SES (API v2).
    public static let sesv2 = AWSService(rawValue: "SESV2")

    public var description: String { rawValue }
}

/// Where the credentials that sign requests come from. Prints, dumps and reflects the access key
/// id or the endpoint only.
public enum AWSCredentialSource: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// Fixed keys (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`).
    case `static`(AWSCredentials)
    /// The container credential endpoint of an ECS task role or EKS pod identity: temporary
    /// keys fetched when needed.
    case container(AWSContainerCredentials)

    /// The credentials to sign with now: the static keys, or the container endpoint's answer
    /// (temporary keys with their session token, meant for boot-time work; they expire within
    /// hours).
    public func resolve(httpClient: HTTPClient = .shared) async throws(AWSError) -> AWSCredentials {
        switch self {
        case .static(let credentials): credentials
        case .container(let endpoint): try await endpoint.fetch(httpClient: httpClient)
        }
    }

    /// The access key id, or the endpoint; never a secret.
    public var description: String {
        switch self {
        case .static(let credentials): "static(\(credentials.accessKeyID))"
        case .container(let endpoint): "container(\(endpoint))"
        }
    }

    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .enum) }
}

/// The container credential endpoint, as the AWS SDKs read it: ECS task roles
/// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, served at 169.254.170.2) and EKS pod identity
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`). EC2 instance profiles (IMDS) are not read.
public struct AWSContainerCredentials: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// How the request to the endpoint is authorized.
    public enum Authorization: Sendable, Hashable {
        /// The token itself.
        case token(String)
        /// A file holding the token, read at each fetch (EKS rotates it).
        case tokenFile(path: String)
    }

    /// The endpoint.
    public let url: URL
    /// Its authorization, if any.
    public let authorization: Authorization?

    /// The ECS form: a path on the link-local credential address 169.254.170.2.
    public init(relativeURI: String) {
        let path = relativeURI.hasPrefix("/") ? relativeURI : "/" + relativeURI
        self.url = URL(string: "http://169.254.170.2" + path) ?? URL(string: "http://169.254.170.2/")!
        self.authorization = nil
    }

    /// The full-URI form. As the SDKs require, the URI must be https, or http to a loopback
    /// or the container credential address; anything else is refused (the request carries a
    /// token and returns keys).
    public init(fullURI: String, authorization: Authorization? = nil) throws(AWSError) {
        guard let url = URL(string: fullURI), let host = url.host,
            url.scheme == "https" || (url.scheme == "http" && ["127.0.0.1", "localhost", "::1", "169.254.170.2", "169.254.170.23", "fd00:ec2::23"].contains(host))
        else {
            throw AWSError(.configuration, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback or the container credential address")
        }
        self.url = url
        self.authorization = authorization
    }

    /// The endpoint and the kind of authorization; never the token.
    public var description: String {
        let how = switch authorization {
        case .token: ", token"
        case .tokenFile(let path): ", token file \(path)"
        case nil: ""
        }
        return "\(url.absoluteString)\(how)"
    }

    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .struct) }

    func fetch(httpClient: HTTPClient) async throws(AWSError) -> AWSCredentials {
        var request = HTTPClientRequest(url: url.absoluteString)
        switch authorization {
        case .token(let token): request.headers.add(name: "Authorization", value: token)
        case .tokenFile(let path):
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw AWSError(.configuration, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE cannot be read")
            }
            request.headers.add(name: "Authorization", value: String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        case nil: break
        }
        struct Answer: Decodable {
            let AccessKeyId: String
            let SecretAccessKey: String
            let Token: String?
            let Expiration: String?
        }
        let data: Data
        do {
            let response = try await httpClient.execute(request, timeout: .seconds(5))
            guard response.status == .ok else {
                throw AWSError(.service(type: "ContainerCredentials", status: Int(response.status.code)), "the container credential endpoint refused")
            }
            data = Data((try await response.body.collect(upTo: 64 * 1024)).readableBytesView)
        } catch let error as AWSError {
            throw error
        } catch {
            throw AWSError(.unreachable, "the container credential endpoint could not be reached")
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: data), !answer.AccessKeyId.isEmpty, !answer.SecretAccessKey.isEmpty else {
            throw AWSError(.malformedResponse, "the container credential endpoint answered JSON of another shape")
        }
        // ISO 8601 in UTC ("2026-12-06T15:04:05Z", fractional seconds in some answers). An
        // expiration that cannot be read counts as none: the keys are used until refused.
        let expiration = answer.Expiration.flatMap { text in
            (try? Date(text, strategy: .iso8601)) ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return AWSCredentials(accessKeyID: answer.AccessKeyId, secretAccessKey: answer.SecretAccessKey, sessionToken: answer.Token, expiration: expiration)
    }
}

extension SecretsManagerClient {
    /// A client for `aws`'s region, credentials (fetched now and again before they expire:
    /// ``AWSCredentialProvider``) and Secrets Manager endpoint.
    public init(_ aws: AWSConfiguration, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)) async throws(AWSError) {
        try self.init(
            region: aws.region, credentials: try await AWSCredentialProvider(aws.credentials, httpClient: httpClient),
            endpoint: aws.endpoint(for: .secretsManager)?.absoluteString, httpClient: httpClient, timeout: timeout
        )
    }
}

extension KMSClient {
    /// A client for `aws`'s region, credentials (fetched now and again before they expire:
    /// ``AWSCredentialProvider``) and KMS endpoint.
    public init(_ aws: AWSConfiguration, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(10)) async throws(AWSError) {
        try self.init(
            region: aws.region, credentials: try await AWSCredentialProvider(aws.credentials, httpClient: httpClient),
            endpoint: aws.endpoint(for: .kms)?.absoluteString, httpClient: httpClient, timeout: timeout
        )
    }
}

extension S3Client {
    /// A client for `bucket` with `aws`'s region, credentials (fetched now and again before
    /// they expire: ``AWSCredentialProvider``) and S3 endpoint.
    public init(
        bucket: String, _ aws: AWSConfiguration, usePathStyle: Bool = false, httpClient: HTTPClient = .shared, timeout: Duration = .seconds(30)
    ) async throws(AWSError) {
        try self.init(
            bucket: bucket, region: aws.region, credentials: try await AWSCredentialProvider(aws.credentials, httpClient: httpClient),
            endpoint: aws.endpoint(for: .s3)?.absoluteString, usePathStyle: usePathStyle, httpClient: httpClient, timeout: timeout
        )
    }
}
