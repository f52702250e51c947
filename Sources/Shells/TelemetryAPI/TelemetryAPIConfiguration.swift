import Foundation
import Logging
import RestartixCrypto
import RestartixKit
import RestartixTelemetryIngest
import ServiceSupport

/// The Telemetry API's configuration, read once through the executables' configuration layer
/// (``ServiceEnvironment``). Every key: Documentation/Configuration.md.
struct TelemetryAPIConfiguration: Sendable {
    var host = "127.0.0.1"
    var port = 8081
    var environment: DeploymentEnvironment = .development
    var logLevel: Logger.Level = .info
    var logFormat: LogFormat = .text
    var edge = EdgeOptions()
    var drain = DrainPolicy()
    /// `TELEMETRY_SESSION_TOKEN_SECRET` (+ `_PREVIOUS`): verifies the patients' session tokens.
    var sessionTokens: SessionTokens
    /// `TELEMETRY_INTERNAL_SVC_ACCT_TOKEN` (+ `_PREVIOUS`): signs the calls to the Core API.
    var serviceAccounts: ServiceAccountTokens
    /// `CORE_API_URL`: where the aggregates go.
    var coreAPIURL = URL(string: "http://127.0.0.1:8080")!
    /// `TELEMETRY_S3_BUCKET`: the telemetry bucket (replay blobs, pending aggregates); unset, the
    /// local directory `TELEMETRY_DIRECTORY`.
    var bucket: String?
    var directory = ".restartix/telemetry"
    /// `TELEMETRY_SPOOL_DIRECTORY`: open sessions' acknowledged batches.
    var spoolDirectory = ".restartix/telemetry-spool"
    /// The engine's limits (`TELEMETRY_*`).
    var ingest = TelemetryIngest.Configuration()
    /// What `Retry-After` says on a 503 for too many sessions or batches at once.
    var retryAfter: Duration = .seconds(2)
    /// The environment the configuration was read from: the telemetry bucket's `AWS_*`
    /// variables are read from it when the store is opened.
    var service = ServiceEnvironment([:])

    /// A configuration for tests: the secrets given, everything else at its default.
    init(sessionTokens: SessionTokens, serviceAccounts: ServiceAccountTokens) {
        self.sessionTokens = sessionTokens
        self.serviceAccounts = serviceAccounts
    }

    /// The configuration in `environment` (tests pass a dictionary; `main` the process's).
    init(environment: [String: String]) throws {
        try self.init(ServiceEnvironment(environment))
    }

    init(_ service: ServiceEnvironment) throws {
        self.service = service
        environment = try service.deployment()
        (host, port) = try service.listenAddress(defaultPort: 8081)
        edge = try service.edgeOptions()
        drain = try service.drainPolicy()
        logLevel = try service.logLevel()
        logFormat = try service.logFormat(for: environment)
        // Outside development and test the secrets must be set; there, the ones the Core API
        // generated beside the embedded SQLite file are used (both services on one machine).
        let local = environment == .development || environment == .test
        let secrets = URL(fileURLWithPath: service.sqlitePath()).deletingLastPathComponent()
        // The secrets' lengths are checked with their names (ServiceEnvironment.tokenSecrets).
        if let current = try service.tokenSecrets(ServiceKeys.sessionTokenSecret) {
            sessionTokens = try SessionTokens(secrets: current)
        } else if local {
            sessionTokens = try SessionTokens(secrets: [try LocalSecrets.secret(named: LocalSecrets.telemetrySessionSecret, what: "telemetry session secret", in: secrets)])
        } else {
            throw ConfigurationError(.missing, "\(ServiceKeys.sessionTokenSecret) must be set in \(environment.rawValue): it verifies the patients' session tokens")
        }
        if let current = try service.tokenSecrets(ServiceKeys.serviceAccountSecret) {
            serviceAccounts = try ServiceAccountTokens(secrets: current)
        } else if local {
            serviceAccounts = try ServiceAccountTokens(secrets: [try LocalSecrets.secret(named: LocalSecrets.serviceAccountSecret, what: "service-account secret", in: secrets)])
        } else {
            throw ConfigurationError(.missing, "\(ServiceKeys.serviceAccountSecret) must be set in \(environment.rawValue): it signs the calls to the Core API")
        }
        if let url = try service.baseURL("CORE_API_URL") { coreAPIURL = url }
        bucket = service.string("TELEMETRY_S3_BUCKET")
        // Beside the embedded default's SQLite file unless set (.restartix/ by default).
        directory = service.string("TELEMETRY_DIRECTORY") ?? secrets.appendingPathComponent("telemetry").path
        spoolDirectory = service.string("TELEMETRY_SPOOL_DIRECTORY") ?? secrets.appendingPathComponent("telemetry-spool").path
        if let seconds = try service.int("TELEMETRY_IDLE_TIMEOUT_SECONDS", in: 1...86_400) { ingest.idleTimeout = .seconds(seconds) }
        if let count = try service.int("TELEMETRY_MAX_OPEN_SESSIONS", in: 1...1_000_000) { ingest.maximumOpenSessions = count }
        if let count = try service.int("TELEMETRY_MAX_OPEN_SESSIONS_PER_PATIENT", in: 1...1_000) { ingest.maximumOpenSessionsPerPatient = count }
        if let count = try service.int("TELEMETRY_MAX_CONCURRENT_BATCHES", in: 1...10_000) { ingest.maximumConcurrentBatches = count }
        if let count = try service.int("TELEMETRY_MAX_INDEXED_BATCHES", in: 1...100_000_000) { ingest.maximumIndexedBatches = count }
        // At most what one replay blob holds (ReplayBlob.defaultMaximumSize: about 500,000 frames).
        if let count = try service.int("TELEMETRY_MAX_SESSION_FRAMES", in: 1...450_000) { ingest.maximumFramesPerSession = count }
        if let count = try service.int("TELEMETRY_MAX_CONCURRENT_FINISHES", in: 1...64) { ingest.maximumConcurrentFinishes = count }
        ingest.serverSideEncryption = try service.serverSideEncryption("TELEMETRY_S3_SSE", kmsKey: "TELEMETRY_S3_KMS_KEY_ID")
    }
}
