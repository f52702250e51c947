/// Every configuration key the executables read, in one list: Documentation/Configuration.md
/// is generated from it (`ServiceKeys.markdown`; the support tests fail when the page is stale),
/// and ``ServiceEnvironment`` marks the secret ones for swift-configuration.
public enum ServiceKeys {
    static let api: Set<Executable> = [.coreAPI, .telemetryAPI]
    static let all3: Set<Executable> = Set(Executable.allCases)

    /// The HS256 secret of telemetry session tokens (``ServiceEnvironment/tokenSecrets(_:)``).
    public static let sessionTokenSecret = "TELEMETRY_SESSION_TOKEN_SECRET"
    /// The HS256 secret of service-account tokens (``ServiceEnvironment/tokenSecrets(_:)``).
    public static let serviceAccountSecret = "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN"

    /// The keys, grouped as the page shows them.
    public static let all: [ServiceKey] = [
        // Process
        ServiceKey("APP_ENV", "development, test, staging or production; decides what is refused (development tokens outside development and test) and the default log format", default: "development", all3),
        ServiceKey("HOST", "listen address; a container behind a load balancer sets 0.0.0.0", default: "127.0.0.1", api),
        ServiceKey("PORT", "listen port", default: "8080 (Core API), 8081 (Telemetry API)", api),
        ServiceKey("CORS_ALLOWED_ORIGINS", "comma-separated origins (https://app.example.com) whose browsers may call the API; others get no CORS headers", default: "none", api),
        ServiceKey("TRUSTED_PROXY_CIDRS", "comma-separated CIDR ranges (10.0.0.0/8, 2001:db8::/32) of the load balancers and CDN whose CF-Connecting-IP and X-Forwarded-For name the client; list only proxies that overwrite them", default: "none: the connection's peer is the client", api),
        ServiceKey("REQUEST_TIMEOUT_SECONDS", "the longest a request may take (1 to 300); then 503 service.timedOut, and its database calls are canceled", default: "30", api),
        ServiceKey("MAINTENANCE_MODE", "on or off: on answers 503 service.maintenance with Retry-After on every route but /health", default: "off", api),
        ServiceKey("MAINTENANCE_RETRY_AFTER_SECONDS", "the Retry-After of maintenance mode (1 to 86400)", default: "300", api),
        ServiceKey("RATE_LIMIT_USER_PER_MINUTE", "a signed-in user's requests per minute to /v1 (bursts of a fifth); over it, 429 with Retry-After. Shared by every instance through REDIS_URL, per process without it", default: "600", [.coreAPI]),
        ServiceKey("PRINCIPAL_CACHE_SECONDS", "how long (0 to 60 seconds) a signed-in user's membership is reused without asking the database again, and the token that resolved to it without verifying it again (never past its exp): a membership removed, a role lowered or a clinic suspended elsewhere takes effect within it (on this instance at once, for Clerk's events); 0 asks every time", default: "5", [.coreAPI]),
        ServiceKey("RATE_LIMIT_ADDRESS_PER_MINUTE", "one client address's requests per minute (bursts of a fifth); on `/v1` counted with the user's once the token is read", default: "1200", [.coreAPI]),
        ServiceKey("TENANT_SUBDOMAIN_SUFFIXES", "comma-separated platform suffixes under which {slug}.<suffix> names a clinic (GET /v1/public/organizations/resolve)", default: "clinic.restartix.pro, portal.restartix.pro in staging and production; clinic.localhost, portal.localhost elsewhere", [.coreAPI]),
        ServiceKey("SHUTDOWN_GRACE_SECONDS", "after SIGTERM, how long requests in flight may take to finish (1 to 600) before they are canceled and the pools closed", default: "25", api),
        ServiceKey("METRICS_TOKEN", "bearer token (32+ printable characters) a Prometheus scraper presents to GET /metrics from anywhere; unset, /metrics answers only this machine's loopback in development and test (refusing requests a proxy forwarded: 403 metrics.notLoopback) and nobody in staging and production (403 metrics.notConfigured)", default: "unset", secret: true, api),
        ServiceKey("LOG_LEVEL", "trace, debug, info, notice, warning, error or critical; anything else refuses to start", default: "info", all3),
        ServiceKey("LOG_FORMAT", "json (one object a line on standard error: timestamp, level, label, message, metadata, source) or text", default: "json in staging and production, text otherwise", all3),
        // Databases
        ServiceKey("DATABASE_URL", "the platform database, admin role, through PgBouncer", default: "unset: the embedded SQLite file", secret: true, [.coreAPI, .jobs]),
        ServiceKey("DATABASE_APP_URL", "the tenant database, restricted app role, through PgBouncer; required with DATABASE_URL", default: "the embedded SQLite file", secret: true, [.coreAPI]),
        ServiceKey("DATABASE_DIRECT_URL", "owner role, direct to Postgres (migrations, partition roll); never through PgBouncer", default: "unset: the embedded SQLite file", secret: true, [.jobs]),
        ServiceKey("RESTARTIX_SQLITE_PATH", "the embedded SQLite file (the Telemetry API reads the local secrets beside it on the embedded default)", default: ".restartix/restartix.sqlite", all3),
        ServiceKey("DB_POOL_MAX", "most connections of the admin (and owner) pool", default: "10", [.coreAPI, .jobs]),
        ServiceKey("DB_APP_POOL_MAX", "most connections of the app role's pool", default: "10", [.coreAPI]),
        ServiceKey("REDIS_URL", "redis:// or rediss:// with user, password and db; provider invalidations between instances", default: "unset: in-process services", secret: true, [.coreAPI]),
        // Identity
        ServiceKey("CLERK_ISSUER", "the Clerk Frontend API URL (iss); required in staging and production", default: "unset: local development tokens (development and test only)", [.coreAPI]),
        ServiceKey("CLERK_JWKS_URL", "the Clerk key set", default: "{CLERK_ISSUER}/.well-known/jwks.json", [.coreAPI]),
        ServiceKey("CLERK_AUTHORIZED_PARTIES", "comma-separated azp allow-list (frontend origins); required in staging and production", default: "none", [.coreAPI]),
        ServiceKey("CLERK_WEBHOOK_SECRET", "the Svix signing secret of Clerk's webhook endpoint (whsec_...; two, space-separated, during a rotation); POST /v1/webhooks/clerk", default: "unset: deliveries are refused with 503", secret: true, [.coreAPI]),
        ServiceKey("SES_SNS_TOPIC_ARNS", "comma-separated SNS topic ARNs whose SES bounce and complaint notifications POST /v1/webhooks/ses accepts", default: "unset: deliveries are refused with 503", [.coreAPI]),
        ServiceKey("RESTARTIX_DEV_TOKEN_SECRET", "the local development issuer's secret (32+ bytes)", default: "embedded default: generated once into dev-token-secret beside the SQLite file; otherwise random per process", secret: true, [.coreAPI, .jobs]),
        ServiceKey("RESTARTIX_DEMO_DATA", "on or off: the demo clinics (Demo Clinic, Other Clinic) and their people on the embedded default in development", default: "on (embedded default in development only)", [.coreAPI]),
        // Keys
        ServiceKey("ENCRYPTION_KEYS", "the column-encryption keyring document (JSON)", default: "embedded default: a generated local keyring; otherwise required", secret: true, [.coreAPI, .jobs]),
        ServiceKey("ENCRYPTION_KEYS_FILE", "a file holding the keyring document", default: "unset", [.coreAPI, .jobs]),
        ServiceKey("ENCRYPTION_KEYS_SECRET_ID", "a Secrets Manager secret holding the keyring document", default: "unset", [.coreAPI, .jobs]),
        ServiceKey("ENCRYPTION_KEYS_KMS", "a KMS-enveloped keyring document", default: "unset", secret: true, [.coreAPI, .jobs]),
        ServiceKey("BACKUP_ENCRYPTION_KEY", "the dump envelope key (base64, 32 bytes)", default: "unset", secret: true, [.coreAPI, .jobs]),
        ServiceKey("BACKUP_BUCKET", "the S3 bucket (with Object Lock) of `restartix-jobs backup` and `restore`; the AWS_* variables reach it", default: "unset: BACKUP_DIRECTORY", [.jobs]),
        ServiceKey("AUDIT_ARCHIVE_BUCKET", "the S3 bucket of `restartix-jobs audit-archive` and `audit-restore`", default: "unset: AUDIT_ARCHIVE_DIRECTORY", [.jobs]),
        ServiceKey("AUDIT_ARCHIVE_DIRECTORY", "the local directory of audit archives when no bucket is set", default: ".restartix/audit-archive", [.jobs]),
        ServiceKey("PATH", "where `restartix-jobs backup` and `restore` look for pg_dump and pg_restore (also passed to them, with LANG, LC_ALL, TZ and HOME)", default: "the process's", [.jobs]),
        ServiceKey("BACKUP_DIRECTORY", "the local directory of backups when no bucket is set", default: ".restartix/backups", [.jobs]),
        ServiceKey("TELEMETRY_SESSION_TOKEN_SECRET", "HS256 secret of telemetry session tokens (32+ bytes): the Core API signs them for patients, the Telemetry API verifies them (unset: on the embedded default in development and test a local secret beside the SQLite file, elsewhere the Core API answers 503 on POST /v1/telemetry/session-tokens and the Telemetry API refuses to start); _PREVIOUS during a rotation", default: "unset", secret: true, api),
        ServiceKey("TELEMETRY_SESSION_TOKEN_SECRET_PREVIOUS", "the previous session-token secret, accepted during a rotation", default: "unset", secret: true, api),
        ServiceKey("TELEMETRY_INTERNAL_SVC_ACCT_TOKEN", "HS256 secret of service-account tokens (32+ bytes): the Core API verifies them on /internal routes, the Telemetry API and `restartix-jobs service-token` sign (unset: on the embedded default in development and test a local secret beside the SQLite file, shared by both APIs; elsewhere the Core API answers 503 there and the Telemetry API refuses to start)", default: "unset", secret: true, all3),
        ServiceKey("TELEMETRY_INTERNAL_SVC_ACCT_TOKEN_PREVIOUS", "the previous service-account secret, accepted during a rotation", default: "unset", secret: true, all3),
        // Uploads (Core API)
        ServiceKey("UPLOADS_S3_BUCKET", "the uploads bucket: files at {org_id}/{surface}/{file_id}, reached through presigned URLs (PUT 5 minutes, GET 15); the AWS_* variables reach it", default: "unset: UPLOADS_DIRECTORY, served by the Core API itself", [.coreAPI]),
        ServiceKey("UPLOADS_DIRECTORY", "the local uploads store when no bucket is set", default: "uploads beside the SQLite file (.restartix/uploads)", [.coreAPI]),
        ServiceKey("UPLOADS_S3_SSE", "server-side encryption of uploads, signed into every upload URL: none, AES256 or aws:kms", default: "none (the bucket's default encryption applies)", [.coreAPI]),
        ServiceKey("UPLOADS_S3_KMS_KEY_ID", "the KMS key of UPLOADS_S3_SSE=aws:kms", default: "the bucket's default KMS key", [.coreAPI]),
        ServiceKey("PUBLIC_BASE_URL", "the Core API as browsers reach it: the local uploads store's presigned URLs point at it", default: "http://<HOST>:<PORT>", [.coreAPI]),
        // Telemetry API
        ServiceKey("CORE_API_URL", "where the Telemetry API posts finished sessions' aggregates (the Core API's base URL; private network)", default: "http://127.0.0.1:8080", [.telemetryAPI]),
        ServiceKey("TELEMETRY_S3_BUCKET", "the telemetry bucket: replay blobs at {org_id}/{session_id}.bin.gz, aggregates waiting for the Core API under pending/ (and refused ones under failed/); the AWS_* variables reach it", default: "unset: TELEMETRY_DIRECTORY", [.telemetryAPI]),
        ServiceKey("TELEMETRY_DIRECTORY", "the local directory of replay blobs and pending aggregates when no bucket is set", default: "telemetry beside the SQLite file (.restartix/telemetry)", [.telemetryAPI]),
        ServiceKey("TELEMETRY_SPOOL_DIRECTORY", "where open sessions' acknowledged batches are kept until they finish (a local disk; a persistent volume keeps them across a replaced container)", default: "telemetry-spool beside the SQLite file (.restartix/telemetry-spool)", [.telemetryAPI]),
        ServiceKey("TELEMETRY_S3_SSE", "server-side encryption of what the Telemetry API writes to its bucket: none, AES256 or aws:kms", default: "none (the bucket's default encryption applies)", [.telemetryAPI]),
        ServiceKey("TELEMETRY_S3_KMS_KEY_ID", "the KMS key of TELEMETRY_S3_SSE=aws:kms", default: "the bucket's default KMS key", [.telemetryAPI]),
        ServiceKey("TELEMETRY_IDLE_TIMEOUT_SECONDS", "a session without a batch for this long (1 to 86400) is finished", default: "600", [.telemetryAPI]),
        ServiceKey("TELEMETRY_MAX_OPEN_SESSIONS", "open sessions per instance; past it, starts get 503 with Retry-After", default: "1000", [.telemetryAPI]),
        ServiceKey(
            "TELEMETRY_MAX_OPEN_SESSIONS_PER_PATIENT", "open sessions of one patient per instance; past it, starts get 429 ingest.patientSessionLimit",
            default: "3", [.telemetryAPI]
        ),
        ServiceKey("TELEMETRY_MAX_CONCURRENT_BATCHES", "batches being decoded and stored at once per instance; past it, 503 with Retry-After", default: "64", [.telemetryAPI]),
        ServiceKey("TELEMETRY_MAX_INDEXED_BATCHES", "batches of open sessions indexed in memory per instance (about 64 bytes each); past it, 503 with Retry-After until sessions finish", default: "2000000", [.telemetryAPI]),
        ServiceKey("TELEMETRY_MAX_SESSION_FRAMES", "frames per session, 1 to 450000 (a session holds them all in memory while it finishes: 536 bytes each; its replay blob holds at most 256 MiB); past it, 413", default: "108000 (an hour at 30 fps)", [.telemetryAPI]),
        ServiceKey("TELEMETRY_MAX_CONCURRENT_FINISHES", "sessions finishing at once per instance (1 to 64)", default: "2", [.telemetryAPI]),
        // AWS
        ServiceKey("AWS_REGION", "the AWS region (AWS_DEFAULT_REGION as a fallback)", default: "unset (provider seeds: eu-central-1)", all3),
        ServiceKey("AWS_DEFAULT_REGION", "the region when AWS_REGION is unset", default: "unset", all3),
        ServiceKey("AWS_ACCESS_KEY_ID", "static AWS credentials (else the container credential endpoint)", default: "unset", secret: true, all3),
        ServiceKey("AWS_SECRET_ACCESS_KEY", "static AWS credentials", default: "unset", secret: true, all3),
        ServiceKey("AWS_SESSION_TOKEN", "temporary AWS credentials' token", default: "unset", secret: true, all3),
        ServiceKey("AWS_ENDPOINT_URL", "an endpoint for every AWS service (moto in tests, VPC endpoints)", default: "AWS's", all3),
        ServiceKey("AWS_ENDPOINT_URL_SECRETS_MANAGER", "the Secrets Manager endpoint", default: "AWS_ENDPOINT_URL, else AWS's", [.coreAPI, .jobs]),
        ServiceKey("AWS_ENDPOINT_URL_KMS", "the KMS endpoint", default: "AWS_ENDPOINT_URL, else AWS's", [.coreAPI, .jobs]),
        ServiceKey("AWS_ENDPOINT_URL_S3", "the S3 endpoint", default: "AWS_ENDPOINT_URL, else AWS's", all3),
        ServiceKey("AWS_ENDPOINT_URL_SESV2", "the SES (API v2) endpoint", default: "AWS_ENDPOINT_URL, else AWS's", [.coreAPI, .jobs]),
        ServiceKey("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "ECS task-role credentials", default: "unset", all3),
        ServiceKey("AWS_CONTAINER_CREDENTIALS_FULL_URI", "EKS pod-identity credentials", default: "unset", all3),
        ServiceKey("AWS_CONTAINER_AUTHORIZATION_TOKEN", "the token for AWS_CONTAINER_CREDENTIALS_FULL_URI", default: "unset", secret: true, all3),
        ServiceKey("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "a file holding that token", default: "unset", all3),
        // Provider seeds (platform defaults on a fresh environment; `restartix-jobs provider-reseed`)
        ServiceKey("SES_FROM_ADDRESS", "seeds the email provider (SES) with this sender", default: "unset: no seed", [.coreAPI, .jobs]),
        ServiceKey("SES_CONFIGURATION_SET", "the SES configuration set of the seed", default: "unset", [.coreAPI, .jobs]),
        ServiceKey("SES_ENDPOINT_URL", "the SES endpoint of the seed", default: "AWS's", [.coreAPI, .jobs]),
        ServiceKey("AWS_BUCKET_NAME", "seeds the object-store provider (S3) with this bucket", default: "unset: no seed", [.coreAPI, .jobs]),
        ServiceKey("AWS_S3_ENDPOINT_URL", "the S3 endpoint of the seed", default: "AWS's", [.coreAPI, .jobs]),
        ServiceKey("AWS_S3_USE_PATH_STYLE", "path-style S3 addressing for the seed (true/false)", default: "false", [.coreAPI, .jobs]),
        ServiceKey("CLERK_SECRET_KEY", "seeds the auth provider (Clerk's backend API)", default: "unset: no seed", secret: true, [.coreAPI, .jobs]),
        ServiceKey("CLERK_API_URL", "Clerk's backend API URL for the seed", default: "https://api.clerk.com", [.coreAPI, .jobs]),
        ServiceKey("DAILY_API_KEY", "seeds the video provider (Daily)", default: "unset: no seed", secret: true, [.coreAPI, .jobs]),
        ServiceKey("DAILY_API_URL", "Daily's API URL for the seed", default: "https://api.daily.co/v1", [.coreAPI, .jobs]),
        ServiceKey("ANTHROPIC_API_KEY", "seeds the AI provider (Anthropic)", default: "unset: no seed", secret: true, [.coreAPI, .jobs]),
        ServiceKey("ANTHROPIC_API_URL", "Anthropic's API URL for the seed", default: "https://api.anthropic.com", [.coreAPI, .jobs]),
    ]

    /// The names of the secret keys.
    public static let secretNames: Set<String> = Set(all.filter(\.isSecret).map(\.name))

    /// The table Documentation/Configuration.md carries, generated from ``all``.
    public static var markdown: String {
        var lines = [
            "| key | what it sets | default | secret | read by |",
            "|---|---|---|---|---|",
        ]
        for key in all {
            let readers = key.usedBy.sorted().map(\.rawValue).joined(separator: ", ")
            lines.append("| `\(key.name)` | \(key.meaning) | \(key.defaultValue) | \(key.isSecret ? "yes" : "") | \(readers) |")
        }
        return lines.joined(separator: "\n")
    }
}
