public import RestartixAWS
public import Foundation
public import RestartixKit

/// A provider row's settings and secrets as the service it names needs them: the typed view of
/// a ``ProviderRecord`` (``ProviderRecord/settings()``). The row was validated when written,
/// so a known kind always decodes; ``other(kind:config:secrets:)`` carries any other kind as
/// stored.
public enum ProviderSettings: Sendable, Hashable {
    /// Amazon SES.
    case ses(SESSettings)
    /// Amazon S3 or a compatible store.
    case s3(S3Settings)
    /// Clerk's Backend API.
    case clerk(APIKeySettings)
    /// Daily's REST API.
    case daily(APIKeySettings)
    /// Anthropic's API.
    case anthropic(APIKeySettings)
    /// A kind the kit has no type for.
    case other(kind: ProviderKind, config: [String: String], secrets: ProviderSecrets)
}

/// What an SES client needs.
public struct SESSettings: Sendable, Hashable {
    /// The verified sender.
    public var fromAddress: String
    /// The configuration set to send with, if any.
    public var configurationSet: String?
    /// The region (`eu-central-1`).
    public var region: String
    /// An endpoint other than AWS's (LocalStack, moto), if any.
    public var endpoint: URL?
    /// Static keys; nil means the default credential chain (a task role).
    public var credentials: AWSCredentials?
}

/// What an S3 client needs.
public struct S3Settings: Sendable, Hashable {
    /// The bucket.
    public var bucket: String
    /// The region.
    public var region: String
    /// An endpoint other than AWS's, if any.
    public var endpoint: URL?
    /// Path-style addressing (`endpoint/bucket/key`) rather than virtual-hosted
    /// (`bucket.endpoint/key`): when the row says so, by default on a custom endpoint, and
    /// always for a bucket name with a dot (its virtual host would not match AWS's certificate).
    public var usePathStyle: Bool
    /// Static keys; nil means the default credential chain.
    public var credentials: AWSCredentials?
}

/// An HTTP API called with one secret key.
public struct APIKeySettings: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The API's base URL.
    public var baseURL: URL
    /// The key (Clerk's `secret_key`, Daily's and Anthropic's `api_key`). Never printed.
    public var apiKey: String

    /// Settings for an API at `baseURL` with `apiKey` (normally read from a provider row:
    /// ``ProviderRecord/settings()``).
    public init(baseURL: URL, apiKey: String) {
        self.baseURL = baseURL
        self.apiKey = apiKey
    }

    public var description: String { "APIKeySettings(\(baseURL.absoluteString), key: <redacted>)" }
    public var debugDescription: String { description }
    /// `dump()` and debuggers see the base URL only.
    public var customMirror: Mirror { Mirror(self, children: ["baseURL": baseURL], displayStyle: .struct) }
}

extension ProviderRecord {
    /// The typed settings for this row's kind; `invalidArgument` if a row of a known kind lacks
    /// what it needs (written around the registry's validation).
    public func settings() throws(ProviderError) -> ProviderSettings {
        func url(_ name: String, default fallback: String? = nil) throws(ProviderError) -> URL? {
            guard let text = setting(name) ?? fallback else { return nil }
            guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
                throw ProviderError(.invalidArgument, "the \(capability) provider's \(name) is not an http(s) URL")
            }
            return url
        }
        func required(_ value: String?, _ what: String) throws(ProviderError) -> String {
            guard let value else { throw ProviderError(.invalidArgument, "the \(capability) provider (\(kind)) has no \(what)") }
            return value
        }
        var aws: AWSCredentials? {
            guard let id = secrets["access_key_id"], let secret = secrets["secret_access_key"] else { return nil }
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: secrets["session_token"])
        }
        switch kind {
        case .ses:
            return .ses(SESSettings(
                fromAddress: try required(setting("from_address"), "from_address"), configurationSet: setting("configuration_set"),
                region: setting("region") ?? "us-east-1", endpoint: try url("endpoint_url"), credentials: aws
            ))
        case .s3:
            let bucket = try required(setting("bucket"), "bucket")
            let endpoint = try url("endpoint_url")
            let pathStyle = setting("use_path_style").map { $0 == "true" } ?? (endpoint != nil) || bucket.contains(".")
            return .s3(S3Settings(bucket: bucket, region: setting("region") ?? "us-east-1", endpoint: endpoint, usePathStyle: pathStyle, credentials: aws))
        case .clerk:
            return .clerk(APIKeySettings(baseURL: try url("api_url", default: "https://api.clerk.com")!, apiKey: try required(secrets["secret_key"], "secret_key")))
        case .daily:
            return .daily(APIKeySettings(baseURL: try url("api_url", default: "https://api.daily.co/v1")!, apiKey: try required(secrets["api_key"], "api_key")))
        case .anthropic:
            return .anthropic(APIKeySettings(baseURL: try url("api_url", default: "https://api.anthropic.com")!, apiKey: try required(secrets["api_key"], "api_key")))
        default:
            return .other(kind: kind, config: config, secrets: secrets)
        }
    }
}
