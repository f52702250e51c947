public import RestartixKit
import Foundation
public import Logging

/// One bootstrap seed: the platform default row a capability gets on a fresh environment.
public struct ProviderSeed: Sendable, Hashable {
    /// The capability.
    public var capability: ProviderCapability
    /// The provider kind.
    public var kind: ProviderKind
    /// Non-secret settings.
    public var config: [String: String]
    /// Secrets (sealed on insert).
    public var secrets: ProviderSecrets

    /// A seed.
    public init(capability: ProviderCapability, kind: ProviderKind, config: [String: String], secrets: ProviderSecrets) {
        self.capability = capability
        self.kind = kind
        self.config = config
        self.secrets = secrets
    }

    /// The seeds the environment gives, one per capability whose gate variable is set (an
    /// empty gate skips it):
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
    /// capability is seeded. Both empty is not an error: it means "use the default credential
    /// chain" (a task role), and the row stores no keys. One without the other is. Temporary
    /// keys (`AWS_SESSION_TOKEN` set) are not stored either: they expire. `AWS_REGION` falls
    /// back to `AWS_DEFAULT_REGION`, then `eu-central-1`. Values are trimmed of whitespace and
    /// line breaks.
    public static func fromEnvironment(_ environment: [String: String]) throws(ProviderError) -> [ProviderSeed] {
        func value(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
            return text
        }
        func settings(_ pairs: [(String, String?)]) -> [String: String] {
            var out: [String: String] = [:]
            for (name, text) in pairs { if let text { out[name] = text } }
            return out
        }
        let region = value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? "eu-central-1"
        // Read only when an AWS capability is seeded. Temporary keys (with AWS_SESSION_TOKEN)
        // expire within hours and are never stored: such a row uses the default chain.
        func awsKeys() throws(ProviderError) -> ProviderSecrets {
            switch (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY")) {
            case (_?, _?) where value("AWS_SESSION_TOKEN") != nil: return ProviderSecrets()
            case (let id?, let secret?): return ProviderSecrets(["access_key_id": id, "secret_access_key": secret])
            case (nil, nil): return ProviderSecrets()
            default: throw ProviderError(.invalidArgument, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all")
            }
        }
        var seeds: [ProviderSeed] = []
        if let from = value("SES_FROM_ADDRESS") {
            seeds.append(ProviderSeed(
                capability: .email, kind: .ses,
                config: settings([("from_address", from), ("configuration_set", value("SES_CONFIGURATION_SET")), ("endpoint_url", value("SES_ENDPOINT_URL")), ("region", region)]),
                secrets: try awsKeys()
            ))
        }
        if let bucket = value("AWS_BUCKET_NAME") {
            var pathStyle: String?
            if let text = value("AWS_S3_USE_PATH_STYLE") {
                switch text.lowercased() {
                case "true", "1", "yes", "on": pathStyle = "true"
                case "false", "0", "no", "off": pathStyle = "false"
                default: throw ProviderError(.invalidArgument, "AWS_S3_USE_PATH_STYLE must be true or false")
                }
            }
            seeds.append(ProviderSeed(
                capability: .objectstore, kind: .s3,
                config: settings([("bucket", bucket), ("endpoint_url", value("AWS_S3_ENDPOINT_URL")), ("use_path_style", pathStyle), ("region", region)]),
                secrets: try awsKeys()
            ))
        }
        if let key = value("CLERK_SECRET_KEY") {
            seeds.append(ProviderSeed(
                capability: .auth, kind: .clerk, config: settings([("api_url", value("CLERK_API_URL") ?? "https://api.clerk.com")]),
                secrets: ProviderSecrets(["secret_key": key])
            ))
        }
        if let key = value("DAILY_API_KEY") {
            seeds.append(ProviderSeed(
                capability: .video, kind: .daily, config: settings([("api_url", value("DAILY_API_URL") ?? "https://api.daily.co/v1")]),
                secrets: ProviderSecrets(["api_key": key])
            ))
        }
        if let key = value("ANTHROPIC_API_KEY") {
            seeds.append(ProviderSeed(
                capability: .ai, kind: .anthropic, config: settings([("api_url", value("ANTHROPIC_API_URL") ?? "https://api.anthropic.com")]),
                secrets: ProviderSecrets(["api_key": key])
            ))
        }
        for seed in seeds { try ProviderValidation.check(kind: seed.kind, config: seed.config, secrets: seed.secrets) }
        return seeds
    }
}

extension ProviderRegistry {
    /// Seeds the platform default row of every capability the environment configures
    /// (``ProviderSeed/fromEnvironment(_:)``), `INSERT ... ON CONFLICT DO NOTHING`: once a row
    /// exists the environment is no longer read for it, so a rotated row is never overwritten.
    /// The Core API calls this at every boot. Returns the capabilities it inserted.
    ///
    /// Emergency re-seed: delete the row (`DELETE FROM platform_service_providers WHERE
    /// capability = '...' AND organization_id IS NULL`) and restart with the variables set.
    @discardableResult
    public func bootstrapProviderDefaults(environment: [String: String], logger: Logger) async throws -> [ProviderCapability] {
        var inserted: [ProviderCapability] = []
        for seed in try ProviderSeed.fromEnvironment(environment) {
            if try await insertIfAbsent(seed.capability, kind: seed.kind, config: seed.config, secrets: seed.secrets) {
                inserted.append(seed.capability)
                logger.notice("Seeded the platform provider from the environment", metadata: [
                    "provider.capability": "\(seed.capability)", "provider.kind": "\(seed.kind)",
                ])
            }
        }
        return inserted
    }
}
