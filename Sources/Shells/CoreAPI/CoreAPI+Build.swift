import Foundation
import Hummingbird
import Logging
import RestartixAWS
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixRedis
import RestartixProviders
import RestartixTenancy
import PlatformSupport
import Prometheus
import ServiceSupport

/// Builds the Core API: the database services, migrations on the embedded default, the tenancy
/// boot check, and routes.
/// `metrics`: the registry `/metrics` renders (``MetricsBootstrap/bootstrap()`` in `main`;
/// tests pass their own or none, since the metrics system takes one bootstrap per process).
/// `logHandler`: where the service's log lines go (the process's bootstrap by default; tests
/// capture them).
func buildApplication(
    configuration: CoreAPIConfiguration, metrics: PrometheusCollectorRegistry? = nil, logHandler: (any LogHandler)? = nil
) async throws -> some ApplicationProtocol {
    let logger = {
        var logger = logHandler.map { handler in Logger(label: "restartix.core-api") { _ in handler } } ?? Logger(label: "restartix.core-api")
        logger.logLevel = configuration.logLevel
        return logger
    }()

    if let path = configuration.database.sqliteFilePath {
        try SQLiteConfiguration.preparePrivateDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }
    // The keyring is loaded once, before anything else: a missing or malformed one stops boot.
    let keyring = try await loadKeyring(configuration: configuration, logger: logger)
    // The platform's own work on the admin role; its pool gauges say role="platform", apart
    // from the AdminDatabase's role="admin" pool.
    let database = Database(configuration: { var c = configuration.database; c.metricsRole = "platform"; return c }(), logger: logger)
    let tenants = TenantDatabase(configuration: configuration.appDatabase, tables: PlatformSchema.tenantTables, logger: logger)
    let admin = AdminDatabase(configuration: configuration.database, logger: logger)
    let resolver = try await makePrincipalResolver(configuration: configuration, admin: admin, logger: logger)
    // Cat A providers: the cached resolver, listening on Redis for other instances' rotations
    // when REDIS_URL is set.
    let redis = try configuration.redis.map { try RedisClient(configuration: $0, logger: logger) }
    let providers = ProviderResolver(
        registry: ProviderRegistry(database: database, cipher: ColumnCipher(keyring: keyring, logger: logger)), redis: redis, logger: logger
    )

    let uploads = try await openUploads(configuration: configuration)
    let readiness = Readiness(tenants: tenants, admin: admin)
    let sessionTokens = try localSessionTokens(configuration: configuration)
    // One limiter for every instance through Redis; this process's own without it.
    let limiter: any RateLimiter = redis.map { RedisRateLimiter(redis: $0, prefix: configuration.rateLimits.keyPrefix, logger: logger) } ?? InProcessRateLimiter()
    var followupOptions = AppointmentFollowups.Options()
    followupOptions.defaultAWSCredentials = configuration.awsCredentials
    let platform = PlatformServices(
        admin: admin, tenants: tenants, platform: database, keyring: keyring, providers: providers,
        cache: redis.map { Aside(redis: $0, logger: logger) } ?? Aside(logger: logger),
        suffixes: configuration.subdomainSuffixes, clerkWebhooks: configuration.clerkWebhookVerifier,
        sesWebhooks: configuration.sesTopics.isEmpty ? nil : SNSVerifier(topics: configuration.sesTopics, fetch: configuration.snsFetch),
        serviceAccounts: try localServiceAccounts(configuration: configuration), sessionTokens: sessionTokens,
        debounce: redis.map { RedisActivityDebounce(redis: $0, logger: logger) } ?? InProcessActivityDebounce(),
        activityInterval: configuration.activityInterval,
        holds: redis.map { RedisSlotHolds(redis: $0, database: database, logger: logger) }, followupOptions: followupOptions,
        files: Files(tenants: tenants, store: uploads.store, serverSideEncryption: configuration.uploadsEncryption), localUploads: uploads.local, logger: logger
    )
    let router = makeRouter(
        database: database, readiness: readiness, resolver: resolver, metrics: metrics, platform: platform,
        edge: configuration.edge, limiter: limiter, rateLimits: configuration.rateLimits
    )

    var app = Application(
        router: router,
        // Each connection's task on its event loop: no thread hand-off to read a request or to
        // write its response (see EventLoopBoundChannel).
        server: .http1OnEventLoop(),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "restartix-core-api"),
        // Shut down in reverse after the server has drained: the follow-up worker (finishing
        // what it has queued) and the provider resolver (which listens on Redis) before the
        // pools, Redis last.
        services: (redis.map { [$0] } ?? []) + [database, tenants, admin, providers, platform.followupWorker],
        logger: logger
    )
    if configuration.host != "127.0.0.1", configuration.host != "localhost", configuration.edge.trustedProxies.cidrs.isEmpty {
        // Behind a load balancer every connection comes from the balancer: without its ranges
        // the per-address rate limit is one budget for every client, and audit rows name it.
        logger.warning("TRUSTED_PROXY_CIDRS is not set: each request's client is its TCP peer; behind a load balancer set it to the balancer's ranges")
    }
    app.beforeServerStarts {
        try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, admin: admin, keyring: keyring, logger: logger)
        // Boot just ran the same isolation checks and passed (it stops otherwise): the first
        // probe answers from that result instead of waiting for a run of its own.
        await readiness.record([])
    }
    return app
}

/// The configured keyring; on the embedded default with none configured, the platform's local
/// keyring beside the SQLite file (``PlatformBoot/localKeyring(in:logger:)``).
func loadKeyring(configuration: CoreAPIConfiguration, logger: Logger) async throws -> Keyring {
    if let keyring = configuration.keyring {
        return try await keyring.load()
    }
    let directory = URL(fileURLWithPath: configuration.database.sqliteFilePath ?? CoreAPIConfiguration.defaultSQLitePath).deletingLastPathComponent()
    return try await PlatformBoot.localKeyring(in: directory, logger: logger)
}

/// The uploads store: the bucket `UPLOADS_S3_BUCKET` names, or the directory
/// `UPLOADS_DIRECTORY`, whose presigned URLs (under `PUBLIC_BASE_URL`, by default this
/// server's address, `/v1/objects`) this server signs with a key made at start and serves itself.
func openUploads(configuration: CoreAPIConfiguration) async throws -> (store: any ObjectStore, local: LocalObjectStore?) {
    if let bucket = configuration.uploadsBucket {
        let (store, _) = try await configuration.service.objectStore(what: "uploads", bucket: bucket, directory: configuration.uploadsDirectory)
        return (store, nil)
    }
    let host = ["0.0.0.0", "::", ""].contains(configuration.host) ? "127.0.0.1" : configuration.host
    let base = configuration.publicBaseURL ?? URL(string: "http://\(host):\(configuration.port)")!
    let local = try LocalObjectStore(
        directory: URL(fileURLWithPath: configuration.uploadsDirectory),
        presigning: .random(baseURL: base.appendingPathComponent("v1/objects"))
    )
    return (local, local)
}

/// The configured session-token secret; on the embedded default in development and test without
/// one, a local secret beside the SQLite file (``PlatformBoot/localTelemetrySessionSecret(in:)``),
/// which the Telemetry API on the same machine reads too; otherwise none (the route answers 503).
func localSessionTokens(configuration: CoreAPIConfiguration) throws -> SessionTokens? {
    if let tokens = configuration.sessionTokens { return tokens }
    guard configuration.isEmbeddedDefault, configuration.environment == .development || configuration.environment == .test else { return nil }
    let directory = URL(fileURLWithPath: configuration.database.sqliteFilePath ?? CoreAPIConfiguration.defaultSQLitePath).deletingLastPathComponent()
    return try SessionTokens(secrets: [try PlatformBoot.localTelemetrySessionSecret(in: directory)])
}

/// The configured service-account secret; on the embedded default in development and test
/// without one, a local secret beside the SQLite file
/// (``PlatformBoot/localServiceAccountSecret(in:)``), with which the Telemetry API on the same
/// machine signs its calls; otherwise none (the internal routes answer 503).
func localServiceAccounts(configuration: CoreAPIConfiguration) throws -> ServiceAccountTokens? {
    if let tokens = configuration.serviceAccounts { return tokens }
    guard configuration.isEmbeddedDefault, configuration.environment == .development || configuration.environment == .test else { return nil }
    let directory = URL(fileURLWithPath: configuration.database.sqliteFilePath ?? CoreAPIConfiguration.defaultSQLitePath).deletingLastPathComponent()
    return try ServiceAccountTokens(secrets: [try PlatformBoot.localServiceAccountSecret(in: directory)])
}

/// Clerk when configured; otherwise the local development issuer, which
/// ``LocalDevIssuer/init(environment:secret:clock:)`` refuses outside development and test.
func makePrincipalResolver(configuration: CoreAPIConfiguration, admin: AdminDatabase, logger: Logger) async throws -> PrincipalResolver {
    if let clerk = configuration.clerk {
        return PrincipalResolver(
            issuer: .clerk(try ClerkSessionVerifier(configuration: clerk, logger: logger)), admin: admin, membershipCacheTTL: configuration.principalCacheTTL
        )
    }
    // On the embedded default the secret persists beside the SQLite file, so the tokens
    // `restartix-jobs dev-token` mints stay valid across restarts.
    var secret = configuration.devTokenSecret
    if secret == nil, configuration.isEmbeddedDefault, configuration.environment == .development || configuration.environment == .test {
        secret = try PlatformBoot.localDevTokenSecret(in: URL(fileURLWithPath: configuration.database.sqliteFilePath ?? CoreAPIConfiguration.defaultSQLitePath).deletingLastPathComponent())
    }
    let dev = try await LocalDevIssuer(environment: configuration.environment, secret: secret)
    logger.notice("No CLERK_ISSUER: accepting local development tokens only (development and test environments)")
    return PrincipalResolver(issuer: .localDevelopment(dev), admin: admin, membershipCacheTTL: configuration.principalCacheTTL)
}

/// The Core API's routes behind the shared edge (ServiceSupport, ``addServiceEdge(to:options:)``:
/// request ids, the client's address, problem+json errors, one access log line per request,
/// maintenance mode, the request timeout, 405 with `Allow`, request counts and latency by
/// route template and status). Every audit row a request writes carries its id and client
/// address. `/v1` routes are rate limited per client address, need a bearer token, then are
/// rate limited per user; their answers are `no-store`.
func makeRouter(
    database: Database, readiness: Readiness?, resolver: PrincipalResolver, metrics: PrometheusCollectorRegistry?, platform: PlatformServices,
    edge: EdgeOptions = EdgeOptions(), limiter: any RateLimiter = InProcessRateLimiter(), rateLimits: RateLimitPolicy = RateLimitPolicy()
) -> Router<CoreRequestContext> {
    let router = Router(context: CoreRequestContext.self, options: .autoGenerateHeadEndpoints)
    let routes = addServiceEdge(to: router, options: edge)
    router.add(middleware: AuditOriginMiddleware())
    addHealthRoutes(to: router, database: database, readiness: readiness)
    if let metrics { addMetricsRoute(to: router, registry: metrics, access: edge.metricsAccess, trustedProxies: edge.trustedProxies) }
    router.get("openapi.json") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
    }
    let unauthenticated = router.group("v1/public")
        .add(middleware: RateLimitMiddleware(limiter: limiter, group: "public", rate: rateLimits.perAddress))
    addPublicRoutes(to: unauthenticated, directory: platform.directory)
    let webhooks = router.group("v1/webhooks")
        .add(middleware: RateLimitMiddleware(limiter: limiter, group: "webhooks", rate: rateLimits.perAddress))
    addWebhookRoutes(
        to: webhooks, clerk: platform.clerkWebhooks, admin: platform.admin, ses: platform.sesWebhooks, suppressions: platform.suppressions,
        membershipsChanged: { resolver.invalidateMemberships() }
    )
    let v1 = router.group("v1")
        .add(middleware: NoStoreMiddleware())
        .add(middleware: TenantAuthMiddleware(
            resolver: resolver, limits: .init(limiter: limiter, perAddress: rateLimits.perAddress, perUser: rateLimits.perUser)
        ))
        .add(middleware: ActivityMiddleware(activity: platform.activity))
    addPrincipalRoutes(to: v1)
    addElevatedSessionRoutes(to: v1, sessions: platform.sessions)
    addAuditLogRoutes(to: v1, auditLog: platform.auditLog)
    addUsageRoutes(to: v1, tenants: platform.tenants)
    addPatientRoutes(to: v1, patients: platform.patients, membershipsChanged: { resolver.invalidateMemberships() })
    addAppointmentRoutes(to: v1, appointments: platform.appointments, followups: platform.followups, worker: platform.followupWorker)
    addTelemetryRoutes(to: v1, sessions: platform.telemetrySessions, metrics: TelemetryMetrics(tenants: platform.tenants))
    if let files = platform.files { addFileRoutes(to: v1, files: files) }
    if let local = platform.localUploads { addLocalObjectRoutes(to: router, store: local) }
    let admin = router.group("v1/admin")
        .add(middleware: NoStoreMiddleware())
        .add(middleware: RateLimitMiddleware(limiter: limiter, group: "address", rate: rateLimits.perAddress))
        .add(middleware: PlatformAdminAuthMiddleware(resolver: resolver))
    addAdminProviderRoutes(to: admin, providers: platform.providers, admin: platform.admin)
    let internalRoutes = router.group("internal/v1")
        .add(middleware: RateLimitMiddleware(limiter: limiter, group: "address", rate: rateLimits.perAddress))
        .add(middleware: ServiceAccountAuthMiddleware(tokens: platform.serviceAccounts))
    addInternalRoutes(to: internalRoutes, aggregates: platform.telemetryAggregates)
    finishServiceEdge(router, slot: routes)
    return router
}

/// The library services the routes stand on: every business rule is theirs; the routes map
/// HTTP to them.
struct PlatformServices: Sendable {
    let admin: AdminDatabase
    let tenants: TenantDatabase
    let sessions: ElevatedSessions
    let auditLog: AuditLog
    let directory: OrganizationDirectory
    /// Verifies Clerk's webhook deliveries; `nil` when `CLERK_WEBHOOK_SECRET` is not set.
    let clerkWebhooks: WebhookVerifier?
    /// Verifies SES's notifications through SNS; `nil` when `SES_SNS_TOPIC_ARNS` is not set.
    let sesWebhooks: SNSVerifier?
    /// The e-mail suppression list.
    let suppressions: EmailSuppressions
    /// The Cat A providers' cached resolver (rotations invalidate every instance through it).
    let providers: ProviderResolver
    /// Each user's last activity.
    let activity: UserActivity
    /// The clinics' patients (sealed personal data under the keyring).
    let patients: Patients
    /// Slot holds and bookings.
    let appointments: Appointments
    /// What bookings owe after they commit (confirmation e-mails, video rooms), and video access.
    let followups: AppointmentFollowups
    /// Tries each new booking's follow-ups in the background (a service of the application).
    let followupWorker: AppointmentFollowupWorker
    /// Finished telemetry sessions' aggregates, from the Telemetry API.
    let telemetryAggregates: TelemetryAggregates
    /// Starts patients' telemetry sessions; `nil` when no session-token secret is configured.
    let telemetrySessions: TelemetrySessions?
    /// Verifies the `/internal` routes' service-account tokens; `nil` when
    /// `TELEMETRY_INTERNAL_SVC_ACCT_TOKEN` is not set.
    let serviceAccounts: ServiceAccountTokens?
    /// Uploads and downloads through presigned URLs; `nil` in tests that build no store.
    let files: Files?
    /// The local uploads store whose presigned URLs the Core API serves (`nil` with a bucket).
    let localUploads: LocalObjectStore?

    /// The services over `admin` and `tenants` (and `platform`, the admin role's plain
    /// database, for the suppression list under `keyring`); `cache` holds the directory's
    /// answers (Redis when configured), `suffixes` the platform's subdomain suffixes.
    init(
        admin: AdminDatabase, tenants: TenantDatabase, platform: Database, keyring: Keyring, providers: ProviderResolver, cache: Aside,
        suffixes: [String], clerkWebhooks: WebhookVerifier? = nil, sesWebhooks: SNSVerifier? = nil, serviceAccounts: ServiceAccountTokens? = nil,
        sessionTokens: SessionTokens? = nil, debounce: any ActivityDebounce = InProcessActivityDebounce(), activityInterval: Duration = .seconds(60),
        holds: (any SlotHolds)? = nil, followupOptions: AppointmentFollowups.Options = AppointmentFollowups.Options(),
        files: Files? = nil, localUploads: LocalObjectStore? = nil, logger: Logger = Logger(label: "restartix.core-api")
    ) {
        self.files = files
        self.localUploads = localUploads
        self.admin = admin
        self.providers = providers
        activity = UserActivity(database: platform, debounce: debounce, interval: activityInterval, logger: logger)
        self.tenants = tenants
        self.clerkWebhooks = clerkWebhooks
        self.sesWebhooks = sesWebhooks
        self.serviceAccounts = serviceAccounts
        suppressions = EmailSuppressions(database: platform, keyring: keyring)
        sessions = ElevatedSessions(admin: admin)
        auditLog = AuditLog(tenants: tenants)
        let cipher = ColumnCipher(keyring: keyring, logger: logger)
        patients = Patients(tenants: tenants, cipher: cipher)
        // Without Redis the database reservation holds slots: shared by every instance.
        appointments = Appointments(tenants: tenants, admin: admin, holds: holds ?? DatabaseSlotHolds(database: platform))
        followups = AppointmentFollowups(
            admin: admin, providers: providers, suppressions: suppressions, cipher: cipher, options: followupOptions, logger: logger
        )
        followupWorker = AppointmentFollowupWorker(followups: followups)
        telemetryAggregates = TelemetryAggregates(tenants: tenants, admin: admin)
        telemetrySessions = sessionTokens.map { TelemetrySessions(tenants: tenants, tokens: $0, cipher: cipher) }
        directory = OrganizationDirectory(admin: admin, cache: cache, suffixes: suffixes)
    }
}

/// `GET /v1/me`'s answer (ids in the platform's lower-case form).
struct Me: ResponseCodable, Equatable {
    let organization_id: String
    let user_id: String
    let role: String

    init(organization: UUID, user: UUID, role: String) {
        organization_id = organization.lowercasedString
        user_id = user.lowercasedString
        self.role = role
    }
}

/// `GET /v1/me`: the tenant context the bearer token resolved to (the authentication
/// middleware answers 401/403/503 before this runs).
func addPrincipalRoutes(to group: RouterGroup<CoreRequestContext>) {
    group.get("me") { _, context -> Me in
        guard let tenant = context.tenant else { throw RequestError(.missingToken, "send Authorization: Bearer <token>") }
        return Me(organization: tenant.organizationID, user: tenant.userID, role: tenant.role.rawValue)
    }
}

/// Before serving: the platform's boot sequence (``PlatformBoot/prepare(_:options:logger:)``:
/// migrations on the embedded default, the keyring check and provider seeds, the tenancy boot
/// checks), then one line saying when the embedded default is in use.
func prepareDatabases(
    configuration: CoreAPIConfiguration,
    database: Database,
    tenants: TenantDatabase,
    admin: AdminDatabase? = nil,
    keyring: Keyring? = nil,
    logger: Logger
) async throws {
    try await PlatformBoot.prepare(
        PlatformBoot.Databases(platform: database, tenants: tenants, admin: admin),
        options: PlatformBoot.Options(applyMigrations: configuration.isEmbeddedDefault, keyring: keyring, providerSeeds: configuration.providerSeeds),
        logger: logger
    )
    if configuration.isEmbeddedDefault {
        logger.notice(
            "Running on the embedded default: SQLite file, migrations applied; set DATABASE_URL and DATABASE_APP_URL for Postgres",
            metadata: ["db.path": "\(configuration.database.sqliteFilePath ?? ":memory:")"]
        )
        if configuration.demoData, let admin {
            if try await DemoData.seed(admin, environment: configuration.environment) {
                logger.notice("Created the demo clinics (Demo Clinic, Other Clinic); mint a token with: swift run restartix-jobs dev-token --as demo-owner (or \(DemoData.people.dropFirst().map(\.handle).joined(separator: ", ")))")
            }
        }
    }
}

/// How long `/ready` may take: under a second, so a probe with a one-second timeout always gets
/// an answer, "unavailable" when the database does not answer in time.
let readinessDeadline: Duration = .milliseconds(900)

/// `GET /health`: the process is up. `GET /ready`: the database answers and still keeps clinics
/// apart: the tenancy boot check (RLS, policies and grants as the migrations set them, no
/// TEMPORARY, no role defaults, ...) for the app and admin roles, cached for a few seconds.
/// The body says only "ready" or "unavailable"; the problems go to the log (they name tables,
/// roles and settings, never data).
func addHealthRoutes(to router: Router<CoreRequestContext>, database: Database, readiness: Readiness? = nil) {
    router.get("health") { _, _ -> HealthStatus in
        HealthStatus(status: "ok")
    }
    router.get("ready") { _, context -> EditedResponse<HealthStatus> in
        let deadline = ContinuousClock.now + readinessDeadline
        do {
            // A probe needs an answer in time, not a hanging request: a database that does not
            // answer within the deadline is "not ready".
            try await Database.withDeadline(readinessDeadline) {
                try await database.read { conn in _ = try await conn.query("SELECT 1") }
            }
            if let readiness {
                guard let problems = await readiness.problems(waitingUntil: deadline) else {
                    context.logger.warning("Not ready: the tenant isolation check has not completed yet")
                    return .unavailable
                }
                guard problems.isEmpty else {
                    context.logger.warning("Not ready: tenant isolation is not enforced", metadata: ["problems": "\(problems)"])
                    return .unavailable
                }
            }
            return EditedResponse(status: .ok, response: HealthStatus(status: "ready"))
        } catch {
            context.logger.warning("Readiness check failed", metadata: ["error": "\(error)"])
            return .unavailable
        }
    }
}

extension Readiness {
    /// The tenancy checks behind the Core API's `/ready`: the boot check of the app role, and
    /// of the admin role when there is one. They read the catalogs, hence the cache.
    init(tenants: TenantDatabase, admin: AdminDatabase?, interval: Duration = .seconds(5)) {
        @Sendable func isolation(_ verify: @escaping @Sendable () async throws -> Void) -> @Sendable () async -> [String] {
            {
                do {
                    try await verify()
                    return []
                } catch let error as TenancyError {
                    return error.problems.isEmpty ? [error.detail] : error.problems
                } catch {
                    return ["the isolation check could not run: \(error)"]
                }
            }
        }
        var checks = [isolation { try await tenants.verifyIsolation() }]
        if let admin { checks.append(isolation { try await admin.verifyIsolation() }) }
        self.init(checks: checks, interval: interval)
    }
}

/// `/health` and `/ready`'s answer.
struct HealthStatus: ResponseCodable, Equatable {
    let status: String
}

extension EditedResponse where Generator == HealthStatus {
    static var unavailable: Self { EditedResponse(status: .serviceUnavailable, response: HealthStatus(status: "unavailable")) }
}
