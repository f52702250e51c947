import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixRedis
import RestartixTenancy

/// The Core API's configuration, read from the environment by the shell only.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `HOST`, `PORT` | listen address | `127.0.0.1`, `8080` |
/// | `DATABASE_URL` | the platform database, admin role (`postgres://` through PgBouncer in production) | unset: embedded SQLite |
/// | `DATABASE_APP_URL` | the tenant database, restricted app role (required with `DATABASE_URL`) | the embedded SQLite file |
/// | `RESTARTIX_SQLITE_PATH` | the embedded SQLite file | `.restartix/restartix.sqlite` |
/// | `LOG_LEVEL` | swift-log level | `info` |
/// | `APP_ENV` | development, test, staging or production | `development` |
/// | `CLERK_ISSUER` | the Clerk instance's Frontend API URL (`iss`); required in staging and production, and with `DATABASE_URL` unless `APP_ENV` says development or test | unset: local development issuer |
/// | `CLERK_JWKS_URL` | the Clerk key set | `{CLERK_ISSUER}/.well-known/jwks.json` |
/// | `CLERK_AUTHORIZED_PARTIES` | comma-separated `azp` allow-list (frontend origins); required in staging and production | none |
/// | `RESTARTIX_DEV_TOKEN_SECRET` | secret of the local development issuer (32+ bytes) | random per process |
/// | `ENCRYPTION_KEYS` (or `_SECRET_ID`, `_FILE`, `_KMS`) | the column-encryption keyring, loaded at boot | embedded default: a generated local keyring file beside the SQLite file; otherwise required |
struct CoreAPIConfiguration: Sendable {
    var host = "127.0.0.1"
    var port = 8080
    var database: DatabaseConfiguration
    /// The tenant-scoped app database (`TenantDatabase`): the restricted app role on Postgres,
    /// app connections on the same SQLite file on the embedded default.
    var appDatabase: DatabaseConfiguration
    /// True when no database was configured and the embedded SQLite default is in use.
    var isEmbeddedDefault: Bool
    var logLevel: Logger.Level = .info
    /// `APP_ENV`.
    var environment: DeploymentEnvironment = .development
    /// Clerk session tokens, when `CLERK_ISSUER` is set; otherwise the local development issuer
    /// (refused in production).
    var clerk: ClerkConfiguration?
    var devTokenSecret: String?
    /// Where the keyring comes from; `nil` on the embedded default with none configured (a
    /// local keyring file is generated beside the SQLite file).
    var keyringSource: KeyringSource?
    /// Redis (`REDIS_URL`): carries provider invalidations between instances. Optional: without
    /// it, other instances pick up a rotation within the resolver's TTL.
    var redis: RedisConfiguration?

    static let defaultSQLitePath = ".restartix/restartix.sqlite"
    /// The admin role's statement timeout in the Core API (the app role's is
    /// `TenantSessionSettings.statementTimeout`, 5 s).
    static let adminStatementTimeout: Duration = .seconds(15)

    init(database: DatabaseConfiguration, appDatabase: DatabaseConfiguration? = nil, isEmbeddedDefault: Bool) {
        self.database = database
        self.appDatabase = appDatabase ?? database
        self.isEmbeddedDefault = isEmbeddedDefault
    }

    init(environment: [String: String]) throws {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            database = try DatabaseConfiguration(url: url)
            // The admin role serves web requests too (memberships, elevated sessions).
            database.statementTimeout = Self.adminStatementTimeout
            guard let appURL = environment["DATABASE_APP_URL"], !appURL.isEmpty else {
                throw ConfigurationError("DATABASE_APP_URL must be set with DATABASE_URL: tenant data is served through the restricted app role")
            }
            appDatabase = try DatabaseConfiguration(url: appURL)
            isEmbeddedDefault = false
        } else {
            database = DatabaseConfiguration(sqlitePath: environment["RESTARTIX_SQLITE_PATH"] ?? Self.defaultSQLitePath)
            appDatabase = database
            isEmbeddedDefault = true
        }
        if let host = environment["HOST"], !host.isEmpty { self.host = host }
        if let text = environment["PORT"] {
            guard let port = Int(text), (0...65535).contains(port) else {
                throw ConfigurationError("PORT must be a number from 0 to 65535")
            }
            self.port = port
        }
        self.environment = try DeploymentEnvironment(appEnv: environment["APP_ENV"])
        if let issuer = environment["CLERK_ISSUER"], !issuer.isEmpty {
            let parties = (environment["CLERK_AUTHORIZED_PARTIES"] ?? "").split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            if self.environment == .production || self.environment == .staging, parties.isEmpty {
                throw ConfigurationError("CLERK_AUTHORIZED_PARTIES must list the frontend origins in \(self.environment.rawValue): tokens are checked against it (azp)")
            }
            clerk = ClerkConfiguration(
                issuer: issuer,
                jwksURL: environment["CLERK_JWKS_URL"].flatMap { $0.isEmpty ? nil : $0 },
                authorizedParties: Set(parties)
            )
        } else if self.environment == .production || self.environment == .staging {
            throw ConfigurationError("CLERK_ISSUER must be set in \(self.environment.rawValue): the local development issuer is refused there")
        } else if !isEmbeddedDefault, environment["APP_ENV"]?.isEmpty ?? true {
            // A real database with neither Clerk nor an explicit environment is a deployment
            // that forgot its configuration, not a laptop: do not fall back to development tokens.
            throw ConfigurationError("set CLERK_ISSUER, or APP_ENV=development to accept local development tokens against DATABASE_URL")
        }
        devTokenSecret = environment["RESTARTIX_DEV_TOKEN_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        let keyringVariables = ["ENCRYPTION_KEYS", "ENCRYPTION_KEYS_SECRET_ID", "ENCRYPTION_KEYS_FILE", "ENCRYPTION_KEYS_KMS"]
        if keyringVariables.contains(where: { !(environment[$0] ?? "").isEmpty }) {
            keyringSource = KeyringSource.configured(in: environment)
        } else if !isEmbeddedDefault || self.environment == .production || self.environment == .staging {
            throw ConfigurationError("ENCRYPTION_KEYS (or ENCRYPTION_KEYS_SECRET_ID, _FILE, _KMS) must be set with DATABASE_URL, and in staging and production: patient data is sealed with it")
        }
        if let url = environment["REDIS_URL"], !url.isEmpty {
            do { redis = try RedisConfiguration(url: url) } catch { throw ConfigurationError("REDIS_URL: \(error.detail)") }
        }
        if let text = environment["LOG_LEVEL"] {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ConfigurationError("LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = level
        }
    }
}

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum ProcessEnvironment {
    static var current: [String: String] { ProcessInfo.processInfo.environment }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
}
