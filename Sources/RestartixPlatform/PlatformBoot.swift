public import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Logging
public import RestartixCrypto
public import RestartixKit
public import RestartixProviders
public import RestartixTenancy

/// The platform's boot sequence, the same for every executable that serves the platform's
/// data: what must hold before a request is served. The Core API runs it before it listens;
/// nothing in it is HTTP.
public enum PlatformBoot {
    /// What ``prepare(_:logger:)`` works on.
    public struct Databases {
        /// The platform's own pool on the admin role (migrations on the embedded default,
        /// provider seeds).
        public var platform: Database
        /// The app role's tenant database.
        public var tenants: TenantDatabase
        /// The admin role's database, when the service has one (its boot check runs too).
        public var admin: AdminDatabase?

        public init(platform: Database, tenants: TenantDatabase, admin: AdminDatabase? = nil) {
            self.platform = platform
            self.tenants = tenants
            self.admin = admin
        }
    }

    /// What to do besides the checks.
    public struct Options: Sendable {
        /// Apply the platform's migrations first (the embedded default: nobody else runs them).
        public var applyMigrations: Bool
        /// The keyring: checked against every sealed value (a key disabled while values still
        /// need it stops boot), and used to seal the provider seeds.
        public var keyring: Keyring?
        /// The Cat A providers' platform defaults (built by the executable from
        /// `SES_FROM_ADDRESS`, ...): seeded when absent, never over a row that exists.
        public var providerSeeds: [ProviderSeed]

        public init(applyMigrations: Bool, keyring: Keyring? = nil, providerSeeds: [ProviderSeed] = []) {
            self.applyMigrations = applyMigrations
            self.keyring = keyring
            self.providerSeeds = providerSeeds
        }
    }

    /// Runs the boot sequence: migrations (when asked), the keyring check (when a keyring and an
    /// admin database are given) and the provider seeds (when a keyring is), then the tenancy boot check for
    /// the app role and the admin role. Throws, after one critical log line naming the
    /// problem, when the keyring cannot open every sealed value, a seed is invalid or the
    /// database would not keep clinics apart: the caller must not serve.
    public static func prepare(_ databases: Databases, options: Options, logger: Logger) async throws {
        if options.applyMigrations {
            try await Migrator(platformSchemaOn: databases.platform, logger: logger).migrate()
        }
        if let keyring = options.keyring {
            // The check reads every clinic's sealed values: it needs the admin role.
            if let admin = databases.admin {
                do {
                    if let usage = try await KeyringUsage.verifyBeforeServing(admin, keyring: keyring) {
                        logger.info("Keyring lists disabled keys; no sealed value needs them", metadata: ["values": "\(usage.totals.values.reduce(0, +))"])
                    }
                } catch let error as EncryptionError {
                    logger.critical("Refusing to start: the keyring cannot open every sealed value", metadata: ["problem": "\(error)"])
                    throw error
                }
            }
            do {
                try await ProviderRegistry(database: databases.platform, cipher: ColumnCipher(keyring: keyring, logger: logger))
                    .bootstrapProviderDefaults(options.providerSeeds, logger: logger)
            } catch let error as ProviderError {
                logger.critical("Refusing to start: a provider seed is invalid", metadata: ["problem": "\(error)"])
                throw error
            }
        }
        do {
            try await databases.tenants.verifyIsolation()
            try await databases.admin?.verifyIsolation()
        } catch let error as TenancyError {
            logger.critical("Refusing to start: tenant isolation is not enforced", metadata: ["problems": "\(error.problems)"])
            throw error
        }
    }

    /// The keyring of the embedded default when none is configured: generated once into
    /// `keyring.json` (mode 0600) in `directory`, so sealed values survive restarts, then read
    /// from there. Errors name the file, never key bytes.
    public static func localKeyring(in directory: URL, logger: Logger) async throws -> Keyring {
        let path = directory.appendingPathComponent("keyring.json").path
        switch LocalSecrets.publishPrivateFileOnce(named: "keyring.json", in: directory, contents: { Data(Keyring.generate().document.utf8) }) {
        case .created:
            logger.notice("Generated a local keyring for the embedded default; set ENCRYPTION_KEYS in any shared environment", metadata: ["keyring.path": "\(path)"])
        case .existed:
            break
        case .failed:
            throw EncryptionError(.keyringUnavailable, "could not write the local keyring \(path)")
        }
        return try await KeyringSource.file(path: path).load()
    }
}
