import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import PlatformSupport
import RestartixAWS
import RestartixPlatform
import RestartixProviders
import RestartixRedis
import RestartixTenancy
import ServiceSupport

/// The Core API's configuration, read from the environment through the executables' one
/// configuration layer (``ServiceEnvironment``, swift-configuration). Every key, its default
/// and whether it is a secret: Documentation/Configuration.md (generated from ``ServiceKeys``).
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
    /// `LOG_FORMAT`: JSON lines in staging and production by default, text otherwise.
    var logFormat: LogFormat = .text
    /// `APP_ENV`.
    var environment: DeploymentEnvironment = .development
    /// Clerk session tokens, when `CLERK_ISSUER` is set; otherwise the local development issuer
    /// (refused in production).
    var clerk: ClerkConfiguration?
    var devTokenSecret: String?
    /// Where the keyring comes from; `nil` on the embedded default with none configured (a
    /// local keyring file is generated beside the SQLite file).
    var keyring: KeyringConfiguration?
    /// The Cat A providers' platform defaults (`SES_FROM_ADDRESS`, `CLERK_SECRET_KEY`, ...),
    /// seeded at boot when absent.
    var providerSeeds: [ProviderSeed] = []
    /// Redis (`REDIS_URL`): carries provider invalidations between instances. Optional: without
    /// it, other instances pick up a rotation within the resolver's TTL.
    var redis: RedisConfiguration?
    /// The demo clinics on the embedded default in development (`RESTARTIX_DEMO_DATA`, on by
    /// default there; never anywhere else).
    var demoData = false
    /// The edge: CORS origins, trusted proxies, request timeout, maintenance mode.
    var edge = EdgeOptions()
    /// The rates per user and per client address.
    var rateLimits = RateLimitPolicy()
    /// `SHUTDOWN_GRACE_SECONDS`: how SIGTERM drains the service.
    var drain = DrainPolicy()
    /// `TENANT_SUBDOMAIN_SUFFIXES`: the platform's subdomain suffixes (`{slug}.<suffix>` names a
    /// clinic).
    var subdomainSuffixes = ["clinic.localhost", "portal.localhost"]
    /// `CLERK_WEBHOOK_SECRET`: verifies `POST /v1/webhooks/clerk` (nil: deliveries get 503).
    var clerkWebhookVerifier: WebhookVerifier?
    /// `SES_SNS_TOPIC_ARNS`: the SNS topics whose SES notifications `POST /v1/webhooks/ses`
    /// accepts (none: deliveries get 503).
    var sesTopics: Set<String> = []
    /// How SNS certificates and confirmations are fetched (`nil`: AsyncHTTPClient over the
    /// network); tests serve them locally.
    var snsFetch: SNSVerifier.Fetch?
    /// `TELEMETRY_INTERNAL_SVC_ACCT_TOKEN` (and `_PREVIOUS` during a rotation): verifies the
    /// service-account tokens of the `/internal` routes (nil: they answer 503).
    var serviceAccounts: ServiceAccountTokens?
    /// `TELEMETRY_SESSION_TOKEN_SECRET` (and `_PREVIOUS` during a rotation): signs the
    /// telemetry session tokens patients get. Unset: on the embedded default in development
    /// and test, a local secret beside the SQLite file; elsewhere the route answers 503.
    var sessionTokens: SessionTokens?
    /// The most often one user's last activity is written (60 s).
    var activityInterval: Duration = .seconds(60)
    /// How long a resolved membership is reused (`PRINCIPAL_CACHE_SECONDS`; zero: never).
    var principalCacheTTL: Duration = .seconds(5)
    /// The AWS credentials of SES provider rows that store no keys (`AWS_ACCESS_KEY_ID`... or
    /// the task role's container endpoint); nil when none are configured.
    var awsCredentials: AWSCredentialSource?

    /// `UPLOADS_S3_BUCKET`: the uploads bucket (the `AWS_*` variables reach it); unset, the
    /// directory `UPLOADS_DIRECTORY`, whose presigned URLs the Core API serves itself
    /// (`/v1/objects/...`).
    var uploadsBucket: String?
    /// `UPLOADS_DIRECTORY`: beside the SQLite file by default.
    var uploadsDirectory: String
    /// `UPLOADS_S3_SSE`: how S3 encrypts uploads (signed into every upload URL).
    var uploadsEncryption: ServerSideEncryption?
    /// `PUBLIC_BASE_URL`: the Core API as browsers reach it; the local uploads' URLs point at
    /// it (default `http://<HOST>:<PORT>`).
    var publicBaseURL: URL?
    /// The environment the configuration was read from (the uploads bucket's `AWS_*`).
    var service = ServiceEnvironment([:])

    static let defaultSQLitePath = ServiceEnvironment.defaultSQLitePath
    /// The admin role's statement timeout in the Core API (the app role's is
    /// `TenantSessionSettings.statementTimeout`, 5 s).
    static let adminStatementTimeout: Duration = .seconds(15)

    init(database: DatabaseConfiguration, appDatabase: DatabaseConfiguration? = nil, isEmbeddedDefault: Bool) {
        self.database = database
        self.appDatabase = appDatabase ?? database
        self.isEmbeddedDefault = isEmbeddedDefault
        uploadsDirectory = URL(fileURLWithPath: database.sqliteFilePath ?? Self.defaultSQLitePath).deletingLastPathComponent().appendingPathComponent("uploads").path
    }

    /// The configuration in `environment` (tests pass a dictionary; `main` the process's).
    init(environment: [String: String]) throws {
        try self.init(ServiceEnvironment(environment))
    }

    init(_ service: ServiceEnvironment) throws {
        if let url = service.string("DATABASE_URL") {
            database = try DatabaseConfiguration(url: url)
            // The admin role serves web requests too (memberships, elevated sessions).
            database.statementTimeout = Self.adminStatementTimeout
            guard let appURL = service.string("DATABASE_APP_URL") else {
                throw ConfigurationError(.missing, "DATABASE_APP_URL must be set with DATABASE_URL: tenant data is served through the restricted app role")
            }
            appDatabase = try DatabaseConfiguration(url: appURL)
            isEmbeddedDefault = false
        } else {
            database = DatabaseConfiguration(sqlitePath: service.sqlitePath())
            appDatabase = database
            isEmbeddedDefault = true
        }
        try service.applyPoolSize("DB_POOL_MAX", to: &database)
        try service.applyPoolSize(isEmbeddedDefault ? "DB_POOL_MAX" : "DB_APP_POOL_MAX", to: &appDatabase)
        (host, port) = try service.listenAddress(defaultPort: 8080)
        self.environment = try service.deployment()
        if let issuer = service.string("CLERK_ISSUER") {
            let parties = (service.string("CLERK_AUTHORIZED_PARTIES") ?? "").split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            if self.environment == .production || self.environment == .staging, parties.isEmpty {
                throw ConfigurationError(.missing, "CLERK_AUTHORIZED_PARTIES must list the frontend origins in \(self.environment.rawValue): tokens are checked against it (azp)")
            }
            clerk = ClerkConfiguration(issuer: issuer, jwksURL: service.string("CLERK_JWKS_URL"), authorizedParties: Set(parties))
        } else if self.environment == .production || self.environment == .staging {
            throw ConfigurationError(.missing, "CLERK_ISSUER must be set in \(self.environment.rawValue): the local development issuer is refused there")
        } else if !isEmbeddedDefault, service.string("APP_ENV") == nil {
            // A real database with neither Clerk nor an explicit environment is a deployment
            // that forgot its configuration, not a laptop: do not fall back to development tokens.
            throw ConfigurationError(.missing, "set CLERK_ISSUER, or APP_ENV=development to accept local development tokens against DATABASE_URL")
        }
        devTokenSecret = service.string("RESTARTIX_DEV_TOKEN_SECRET")
        keyring = try service.keyring()
        if keyring == nil, !isEmbeddedDefault || self.environment == .production || self.environment == .staging {
            throw ConfigurationError(.missing, "ENCRYPTION_KEYS (or ENCRYPTION_KEYS_SECRET_ID, _FILE, _KMS) must be set with DATABASE_URL, and in staging and production: patient data is sealed with it")
        }
        providerSeeds = try service.providerSeeds()
        awsCredentials = try service.awsCredentials()
        self.service = service
        uploadsBucket = service.string("UPLOADS_S3_BUCKET")
        uploadsDirectory = service.string("UPLOADS_DIRECTORY")
            ?? URL(fileURLWithPath: database.sqliteFilePath ?? service.sqlitePath()).deletingLastPathComponent().appendingPathComponent("uploads").path
        uploadsEncryption = try service.serverSideEncryption("UPLOADS_S3_SSE", kmsKey: "UPLOADS_S3_KMS_KEY_ID")
        publicBaseURL = try service.baseURL("PUBLIC_BASE_URL")
        edge = try service.edgeOptions()
        drain = try service.drainPolicy()
        if let text = service.string("SES_SNS_TOPIC_ARNS") {
            let topics = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard topics.allSatisfy({ $0.hasPrefix("arn:aws") && $0.split(separator: ":", omittingEmptySubsequences: false).count == 6 && $0.utf8.count <= 256 }) else {
                throw ConfigurationError(.invalidValue, "SES_SNS_TOPIC_ARNS lists SNS topic ARNs (arn:aws:sns:<region>:<account>:<topic>)")
            }
            sesTopics = Set(topics)
        }
        if let secrets = service.string("CLERK_WEBHOOK_SECRET") {
            do {
                clerkWebhookVerifier = try WebhookVerifier(secrets: secrets.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init))
            } catch {
                throw ConfigurationError(.invalidValue, "CLERK_WEBHOOK_SECRET must be whsec_ followed by base64 (several, space-separated, during a rotation)")
            }
        }
        // The secrets' lengths are checked with their names (ServiceEnvironment.tokenSecrets).
        if let secrets = try service.tokenSecrets(ServiceKeys.sessionTokenSecret) { sessionTokens = try SessionTokens(secrets: secrets) }
        if let secrets = try service.tokenSecrets(ServiceKeys.serviceAccountSecret) { serviceAccounts = try ServiceAccountTokens(secrets: secrets) }
        if let text = service.string("TENANT_SUBDOMAIN_SUFFIXES") {
            subdomainSuffixes = []
            for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
                do { subdomainSuffixes.append(try OrganizationDirectory.normalize(item)) } catch {
                    throw ConfigurationError(.invalidValue, "TENANT_SUBDOMAIN_SUFFIXES lists host names such as clinic.restartix.pro")
                }
            }
        } else if self.environment == .production || self.environment == .staging {
            subdomainSuffixes = ["clinic.restartix.pro", "portal.restartix.pro"]
        }
        if let limit = try service.int("RATE_LIMIT_USER_PER_MINUTE", in: 1...1_000_000) { rateLimits.perUser = RateLimitPolicy.perMinute(limit) }
        if let seconds = try service.int("PRINCIPAL_CACHE_SECONDS", in: 0...60) { principalCacheTTL = .seconds(seconds) }
        if let limit = try service.int("RATE_LIMIT_ADDRESS_PER_MINUTE", in: 1...1_000_000) { rateLimits.perAddress = RateLimitPolicy.perMinute(limit) }
        if let url = service.string("REDIS_URL") {
            do { redis = try RedisConfiguration(url: url) } catch {
                throw ConfigurationError(.invalidValue, "REDIS_URL: \(error.detail)")
            }
        }
        logLevel = try service.logLevel()
        logFormat = try service.logFormat(for: self.environment)
        switch service.string("RESTARTIX_DEMO_DATA")?.lowercased() {
        case nil, "on", "true", "1": demoData = isEmbeddedDefault && self.environment == .development
        case "off", "false", "0": demoData = false
        default: throw ConfigurationError(.invalidValue, "RESTARTIX_DEMO_DATA must be on or off")
        }
    }
}

