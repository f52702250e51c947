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

    /// Refuses a seed whose settings or secrets the registry would refuse (names, sizes, the
    /// kind's required settings), before anything is written.
    public func validate() throws(ProviderError) {
        try ProviderValidation.check(kind: kind, config: config, secrets: secrets)
    }
}

extension ProviderRegistry {
    /// Seeds the platform default row of each capability in `seeds` (the executables build
    /// them from `SES_FROM_ADDRESS`, `CLERK_SECRET_KEY` and the rest: Documentation/Configuration.md),
    /// `INSERT ... ON CONFLICT DO NOTHING`: once a row exists its seed is no longer used, so a
    /// rotated row is never overwritten. Every seed is validated before any is written. The
    /// Core API calls this at every boot. Returns the capabilities it inserted.
    ///
    /// Emergency re-seed: ``rotate(_:organization:kind:config:secrets:expectedVersion:actor:admin:)``
    /// with the seed's settings replaces the row in one audited step (`restartix-jobs
    /// provider-reseed`); or delete the row and restart with the variables set.
    @discardableResult
    public func bootstrapProviderDefaults(_ seeds: [ProviderSeed], logger: Logger) async throws -> [ProviderCapability] {
        for seed in seeds { try seed.validate() }
        var inserted: [ProviderCapability] = []
        for seed in seeds {
            if try await insertIfAbsent(seed.capability, kind: seed.kind, config: seed.config, secrets: seed.secrets) {
                inserted.append(seed.capability)
                logger.notice("Seeded the platform provider from its configuration", metadata: [
                    "provider.capability": "\(seed.capability)", "provider.kind": "\(seed.kind)",
                ])
            }
        }
        return inserted
    }
}
