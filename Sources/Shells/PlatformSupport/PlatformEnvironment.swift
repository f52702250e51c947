import Foundation
public import RestartixAWS
public import RestartixCrypto
public import RestartixKit
public import RestartixPlatform
public import RestartixProviders
public import ServiceSupport

/// The keyring as the executables configure it: where the document comes from and the
/// `BACKUP_ENCRYPTION_KEY` variable, if set.
public struct KeyringConfiguration: Sendable, CustomStringConvertible, CustomReflectable {
    /// The source.
    public var source: KeyringSource
    /// `BACKUP_ENCRYPTION_KEY` (base64), when set.
    public var backupKey: String?

    /// Loads the keyring (``KeyringSource/load(backupKey:)``).
    public func load() async throws -> Keyring { try await source.load(backupKey: backupKey) }

    /// The source; never a key.
    public var description: String { "KeyringConfiguration(\(source)\(backupKey == nil ? "" : ", backup key set"))" }

    /// `dump()` sees the description only.
    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .struct) }
}

// What the executables that serve the platform's data read besides the shared keys: the
// keyring and the provider seeds. Apart from ServiceSupport because their types live in
// RestartixPlatform and RestartixProviders, which the Telemetry API must not link.
extension ServiceEnvironment {
    /// The keyring the variables name: `ENCRYPTION_KEYS_SECRET_ID` (Secrets Manager), else
    /// `ENCRYPTION_KEYS_FILE`, else `ENCRYPTION_KEYS_KMS` (a KMS keyring document), else
    /// `ENCRYPTION_KEYS`; nil when none is set. The AWS sources take ``aws(for:)``.
    public func keyring() throws(ConfigurationError) -> KeyringConfiguration? {
        let source: KeyringSource
        if let secret = string("ENCRYPTION_KEYS_SECRET_ID") {
            source = .secretsManager(secretID: secret, aws: try aws(for: "ENCRYPTION_KEYS_SECRET_ID"))
        } else if let path = string("ENCRYPTION_KEYS_FILE") {
            source = .file(path: path)
        } else if let document = string("ENCRYPTION_KEYS_KMS") {
            source = .kms(.document(document, name: "ENCRYPTION_KEYS_KMS"), aws: try aws(for: "ENCRYPTION_KEYS_KMS"))
        } else if let document = string("ENCRYPTION_KEYS") {
            source = .document(document)
        } else {
            return nil
        }
        return KeyringConfiguration(source: source, backupKey: string("BACKUP_ENCRYPTION_KEY"))
    }

    /// The Cat A providers' platform defaults, one per capability whose gate variable is set:
    ///
    /// | capability | kind | gate | also read |
    /// |---|---|---|---|
    /// | email | ses | `SES_FROM_ADDRESS` | `SES_CONFIGURATION_SET`, `SES_ENDPOINT_URL`, `AWS_REGION`, AWS keys |
    /// | objectstore | s3 | `AWS_BUCKET_NAME` | `AWS_S3_ENDPOINT_URL`, `AWS_S3_USE_PATH_STYLE`, `AWS_REGION`, AWS keys |
    /// | auth | clerk | `CLERK_SECRET_KEY` | `CLERK_API_URL` |
    /// | video | daily | `DAILY_API_KEY` | `DAILY_API_URL` |
    /// | ai | anthropic | `ANTHROPIC_API_KEY` | `ANTHROPIC_API_URL` |
    ///
    /// AWS keys are `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, read only when an AWS
    /// capability is seeded. Both unset is not an error: the row stores no keys and uses the
    /// default chain (a task role). One without the other is. Temporary keys
    /// (`AWS_SESSION_TOKEN` set) are not stored either: they expire. `AWS_REGION` falls back to
    /// `AWS_DEFAULT_REGION`, then `eu-central-1`. Each seed is validated
    /// (``ProviderSeed/validate()``).
    public func providerSeeds() throws -> [ProviderSeed] {
        func settings(_ pairs: [(String, String?)]) -> [String: String] {
            var out: [String: String] = [:]
            for (name, text) in pairs { if let text { out[name] = text } }
            return out
        }
        let region = string("AWS_REGION") ?? string("AWS_DEFAULT_REGION") ?? "eu-central-1"
        // Read only when an AWS capability is seeded. Temporary keys (with AWS_SESSION_TOKEN)
        // expire within hours and are never stored: such a row uses the default chain.
        func awsKeys() throws(ConfigurationError) -> ProviderSecrets {
            switch (string("AWS_ACCESS_KEY_ID"), string("AWS_SECRET_ACCESS_KEY")) {
            case (_?, _?) where string("AWS_SESSION_TOKEN") != nil: return ProviderSecrets()
            case (let id?, let secret?): return ProviderSecrets(["access_key_id": id, "secret_access_key": secret])
            case (nil, nil): return ProviderSecrets()
            default: throw ConfigurationError(.invalidValue, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all")
            }
        }
        var seeds: [ProviderSeed] = []
        if let from = string("SES_FROM_ADDRESS") {
            seeds.append(ProviderSeed(
                capability: .email, kind: .ses,
                config: settings([("from_address", from), ("configuration_set", string("SES_CONFIGURATION_SET")), ("endpoint_url", string("SES_ENDPOINT_URL")), ("region", region)]),
                secrets: try awsKeys()
            ))
        }
        if let bucket = string("AWS_BUCKET_NAME") {
            var pathStyle: String?
            if let text = string("AWS_S3_USE_PATH_STYLE") {
                switch text.lowercased() {
                case "true", "1", "yes", "on": pathStyle = "true"
                case "false", "0", "no", "off": pathStyle = "false"
                default: throw ConfigurationError(.invalidValue, "AWS_S3_USE_PATH_STYLE must be true or false")
                }
            }
            seeds.append(ProviderSeed(
                capability: .objectstore, kind: .s3,
                config: settings([("bucket", bucket), ("endpoint_url", string("AWS_S3_ENDPOINT_URL")), ("use_path_style", pathStyle), ("region", region)]),
                secrets: try awsKeys()
            ))
        }
        if let key = string("CLERK_SECRET_KEY") {
            seeds.append(ProviderSeed(
                capability: .auth, kind: .clerk, config: settings([("api_url", string("CLERK_API_URL") ?? "https://api.clerk.com")]),
                secrets: ProviderSecrets(["secret_key": key])
            ))
        }
        if let key = string("DAILY_API_KEY") {
            seeds.append(ProviderSeed(
                capability: .video, kind: .daily, config: settings([("api_url", string("DAILY_API_URL") ?? "https://api.daily.co/v1")]),
                secrets: ProviderSecrets(["api_key": key])
            ))
        }
        if let key = string("ANTHROPIC_API_KEY") {
            seeds.append(ProviderSeed(
                capability: .ai, kind: .anthropic, config: settings([("api_url", string("ANTHROPIC_API_URL") ?? "https://api.anthropic.com")]),
                secrets: ProviderSecrets(["api_key": key])
            ))
        }
        for seed in seeds { try seed.validate() }
        return seeds
    }
}
