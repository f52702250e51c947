public import RestartixAWS
public import AsyncHTTPClient
public import Foundation
public import Logging
import NIOCore
import NIOHTTP1
public import RestartixKit

/// `check-providers`: probes every row of `platform_service_providers` with a check of its
/// kind and records the outcome with hysteresis: a failure makes the provider `degraded`,
/// ``Options/failuresToDown`` failures in a row make it `down`, one success makes it `active`
/// again. `last_error` gets a sentence the checker writes (a status code, "unreachable"),
/// never a response body or a credential.
///
/// | kind | check |
/// |---|---|
/// | s3 | `HEAD /{bucket}`, SigV4 (path style, or virtual-hosted on AWS) |
/// | ses | `GetSendQuota` (Query API), SigV4 |
/// | clerk | `GET {api_url}/v1/jwks` with the secret key |
/// | daily | `GET {api_url}/rooms?limit=1` with the API key |
/// | anthropic | `GET {api_url}/v1/models?limit=1` with the API key |
///
/// Endpoints come from the row's `endpoint_url` / `api_url` settings (moto and local servers in
/// tests). AWS rows without keys use ``Options/defaultAWSCredentials`` (the task role's).
public struct ProviderHealthCheck: Sendable {
    /// How checks run.
    public struct Options: Sendable {
        /// Each probe's time limit. Default 5 seconds.
        public var timeout: Duration = .seconds(5)
        /// Failures in a row before a provider is `down`. Default 3.
        public var failuresToDown = 3
        /// The credentials of AWS rows that store no keys (the default chain: static keys or
        /// the task role's container endpoint). None by default (such rows fail their check):
        /// the library reads no environment; the executable passes what it configured.
        public var defaultAWSCredentials: AWSCredentialSource?
        /// Probes in flight at once. Default 8.
        public var concurrency = 8

        /// The defaults.
        public init() {}
    }

    /// One row's outcome.
    public struct Outcome: Sendable, Hashable {
        /// The row.
        public var id: UUID
        /// Its capability.
        public var capability: String
        /// Its clinic, nil for the platform default.
        public var organizationID: UUID?
        /// Its kind.
        public var kind: String
        /// nil when the probe passed; otherwise what failed (safe to log).
        public var failure: String?
        /// The status recorded.
        public var status: ProviderStatus
        /// Failures in a row, after this check.
        public var consecutiveFailures: Int
        /// Nothing was recorded: no check exists for the kind, or another run recorded a later
        /// check (or the row was rotated) while this one probed.
        public var skipped: Bool
    }

    /// The registry whose rows are checked and updated.
    public let registry: ProviderRegistry
    /// The options.
    public let options: Options
    private let httpClient: HTTPClient
    private let logger: Logger

    /// A checker.
    public init(registry: ProviderRegistry, options: Options = Options(), httpClient: HTTPClient = .shared, logger: Logger) {
        self.registry = registry
        self.options = options
        self.httpClient = httpClient
        self.logger = logger
    }

    /// Probes every row (concurrently), or only those of `capabilities`, and records each
    /// outcome. Throws only for its own failures (the database), never for a provider's.
    public func run(capabilities: Set<ProviderCapability>? = nil) async throws -> [Outcome] {
        let started = Date()
        let names = capabilities.map { Set($0.map(\.name)) }
        let rows = try await registry.allRows().filter { names?.contains($0.capability) ?? true }
        // At most `concurrency` probes at once, so a queue at one host does not eat the others'
        // time limits.
        let probes = await withTaskGroup(of: (Int, String?, Bool).self) { group in
            var results = [(String?, Bool)](repeating: (nil, true), count: rows.count)
            var next = 0
            func add() {
                guard next < rows.count else { return }
                let index = next, row = rows[index]
                next += 1
                group.addTask {
                    switch row.record {
                    case .failure(let error): return (index, "the row cannot be used: \(error.code)", false)
                    case .success(let record):
                        guard let check = self.probe(for: record) else { return (index, nil, true) }
                        return (index, await check(), false)
                    }
                }
            }
            for _ in 0..<max(1, options.concurrency) { add() }
            for await (index, failure, skipped) in group {
                results[index] = (failure, skipped)
                add()
            }
            return results
        }
        var outcomes: [Outcome] = []
        for (row, (failure, skipped)) in zip(rows, probes) {
            var outcome = Outcome(
                id: row.id, capability: row.capability, organizationID: row.organizationID, kind: row.kind,
                failure: failure.map { Self.scrub($0, row) }, status: row.status, consecutiveFailures: row.consecutiveFailures, skipped: skipped
            )
            if !skipped {
                // Recorded only if no other run recorded a later check and the row was not
                // rotated meanwhile; otherwise this run's result is dropped (skipped).
                if let (status, failures) = try await registry.recordCheck(
                    id: row.id, failure: outcome.failure, failuresToDown: options.failuresToDown, version: row.version, checkedBefore: started
                ) {
                    (outcome.status, outcome.consecutiveFailures) = (status, failures)
                } else {
                    outcome.skipped = true
                }
            }
            outcomes.append(outcome)
        }
        return outcomes
    }

    /// A failure text with any secret value of the row cut out (the checker writes its own
    /// texts, so this is a second line of defence).
    static func scrub(_ text: String, _ row: ProviderRegistry.Row) -> String {
        var out = text
        if case .success(let record) = row.record {
            for value in record.secrets.values.values where value.count >= 4 { out = out.replacingOccurrences(of: value, with: "<redacted>") }
        }
        return String(out.prefix(500))
    }

    /// The probe for a record's kind, nil for kinds without one.
    func probe(for record: ProviderRecord) -> (@Sendable () async -> String?)? {
        let settings: ProviderSettings
        do { settings = try record.settings() } catch { return { "the row's settings are unusable: \(error.detail)" } }
        switch settings {
        case .s3(let s3): return { await self.s3(s3) }
        case .ses(let ses): return { await self.ses(ses) }
        case .clerk(let api):
            return { await self.http(api, path: "/v1/jwks", headers: [("authorization", "Bearer \(api.apiKey)")]) }
        case .daily(let api):
            return { await self.http(api, path: "/rooms?limit=1", headers: [("authorization", "Bearer \(api.apiKey)")]) }
        case .anthropic(let api):
            return { await self.http(api, path: "/v1/models?limit=1", headers: [("x-api-key", api.apiKey), ("anthropic-version", "2023-06-01")]) }
        case .other: return nil
        }
    }

    /// An authenticated GET: 2xx passes.
    func http(_ api: APIKeySettings, path: String, headers: [(String, String)]) async -> String? {
        let root = api.baseURL.absoluteString.trimmingSuffix("/")
        var request = HTTPClientRequest(url: root + path)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return await send(request, host: api.baseURL.host ?? "the endpoint")
    }

    /// Sends a probe; the timeout covers the whole exchange, the body included (the client's
    /// own deadline ends with the response head). 2xx passes; a redirect is a failure (a probe
    /// must not carry a key to another host).
    func send(_ request: HTTPClientRequest, host: String) async -> String? {
        let client = httpClient, timeout = options.timeout
        let outcome: Result<Int, any Error> = await withTaskGroup(of: Result<Int, any Error>?.self) { group in
            group.addTask {
                do {
                    let response = try await client.execute(request, timeout: TimeAmount(timeout))
                    _ = try? await response.body.collect(upTo: 1 << 20)
                    return .success(Int(response.status.code))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(HTTPClientError.deadlineExceeded)
        }
        switch outcome {
        case .success(let status):
            return (200..<300).contains(status) ? nil : "HTTP \(status) from \(host)"
        case .failure(let error):
            return "\(host) unreachable (\(Self.reason(error)))"
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            if error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout { return "timeout" }
            // The short form: the full description can carry a header value (a key).
            return error.shortDescription
        }
        return "\(type(of: error))"
    }

    /// Static keys, or the default chain.
    func awsCredentials(_ keys: AWSCredentials?) async -> Result<AWSCredentials, AWSError> {
        if let keys { return .success(keys) }
        guard let source = options.defaultAWSCredentials else {
            return .failure(AWSError(.configuration, "the row stores no AWS keys and no default credentials are configured"))
        }
        do { return .success(try await source.resolve(httpClient: httpClient)) } catch { return .failure(error) }
    }

    /// `HEAD /{bucket}`.
    func s3(_ settings: S3Settings) async -> String? {
        let credentials: AWSCredentials
        switch await awsCredentials(settings.credentials) {
        case .success(let value): credentials = value
        case .failure(let error): return "no AWS credentials (\(error.kind))"
        }
        let endpoint = settings.endpoint?.absoluteString.trimmingSuffix("/")
        let url: URL?
        if settings.usePathStyle {
            url = URL(string: "\(endpoint ?? "https://s3.\(settings.region).amazonaws.com")/\(settings.bucket)")
        } else if let endpoint, var components = URLComponents(string: endpoint), let host = components.host {
            components.host = "\(settings.bucket).\(host)"
            components.path = "/"
            url = components.url
        } else {
            url = URL(string: "https://\(settings.bucket).s3.\(settings.region).amazonaws.com/")
        }
        guard let url else { return "the S3 endpoint is not a URL" }
        let host = AWSJSONClient.hostHeader(url)
        let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        let headers = [("host", host), ("x-amz-content-sha256", emptyHash)]
        let signer = AWSSigner(credentials: credentials, region: settings.region, service: "s3")
        let signed = signer.sign(method: "HEAD", path: url.path.isEmpty ? "/" : url.path, headers: headers, body: Data())
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .HEAD
        for (name, value) in headers + signed { request.headers.add(name: name, value: value) }
        switch await send(request, host: url.host ?? "S3") {
        case nil: return nil
        case let failure? where failure.hasPrefix("HTTP 404"): return "the bucket does not exist (HTTP 404 from \(url.host ?? "S3"))"
        case let failure? where failure.hasPrefix("HTTP 403"): return "access to the bucket is denied (HTTP 403 from \(url.host ?? "S3"))"
        case let failure?: return failure
        }
    }

    /// SES `GetSendQuota` (Query API, version 2010-12-01).
    func ses(_ settings: SESSettings) async -> String? {
        let credentials: AWSCredentials
        switch await awsCredentials(settings.credentials) {
        case .success(let value): credentials = value
        case .failure(let error): return "no AWS credentials (\(error.kind))"
        }
        let root = settings.endpoint?.absoluteString.trimmingSuffix("/") ?? "https://email.\(settings.region).amazonaws.com"
        guard let url = URL(string: root + "/") else { return "the SES endpoint is not a URL" }
        let body = Data("Action=GetSendQuota&Version=2010-12-01".utf8)
        let headers = [("host", AWSJSONClient.hostHeader(url)), ("content-type", "application/x-www-form-urlencoded; charset=utf-8")]
        let signer = AWSSigner(credentials: credentials, region: settings.region, service: "ses")
        let signed = signer.sign(method: "POST", path: url.path.isEmpty ? "/" : url.path, headers: headers, body: body)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        for (name, value) in headers + signed { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        return await send(request, host: url.host ?? "SES")
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var out = self
        while out.hasSuffix(suffix) { out.removeLast(suffix.count) }
        return out
    }
}

extension ProviderRegistry {
    /// A row as `check-providers` sees it: its identity and health, and the record or why it
    /// cannot be used (credentials that do not open, a row that does not decode).
    public struct Row: Sendable {
        public var id: UUID
        public var capability: String
        public var organizationID: UUID?
        public var kind: String
        public var status: ProviderStatus
        public var consecutiveFailures: Int
        public var version: Int
        public var record: Result<ProviderRecord, ProviderError>
    }

    /// Every row, each decoded on its own (one bad row does not hide the others).
    public func allRows() async throws -> [Row] {
        let rows = try await database.query(
            "SELECT \(Self.columns), consecutive_failures FROM platform_service_providers ORDER BY capability, organization_id"
        )
        return try rows.map { row in
            let record: Result<ProviderRecord, ProviderError>
            do { record = .success(try self.record(row)) } catch let error as ProviderError { record = .failure(error) } catch {
                record = .failure(ProviderError(.corruptRow, "a provider row does not decode"))
            }
            return Row(
                id: try row.decode("id", as: UUID.self),
                capability: try row.decode("capability", as: String.self),
                organizationID: try row.decode("organization_id", as: UUID?.self),
                kind: try row.decode("provider_kind", as: String.self),
                status: ProviderStatus(rawValue: try row.decode("status", as: String.self)) ?? .down,
                consecutiveFailures: try row.decode("consecutive_failures", as: Int.self),
                version: try row.decode("version", as: Int.self),
                record: record
            )
        }
    }

    /// Records one check atomically: a success resets the count and makes the row `active`; a
    /// failure counts up and makes it `degraded`, or `down` at `failuresToDown`. Written only
    /// while the row is still at `version` and was last checked before `checkedBefore` (the
    /// start of this run), so two overlapping runs count one failure, and a probe of rotated
    /// credentials is not recorded against the new ones. Returns the status and count written,
    /// nil when nothing was.
    public func recordCheck(id: UUID, failure: String?, failuresToDown: Int, version: Int, checkedBefore: Date) async throws -> (ProviderStatus, Int)? {
        let guardClause: SQLQuery = "WHERE id = \(id) AND version = \(version) AND (last_checked_at IS NULL OR last_checked_at < \(checkedBefore))"
        let rows: [SQLRow]
        if let failure {
            rows = try await database.query("""
                UPDATE platform_service_providers SET consecutive_failures = consecutive_failures + 1, \
                status = CASE WHEN consecutive_failures + 1 >= \(max(1, failuresToDown)) THEN 'down' ELSE 'degraded' END, \
                last_error = \(failure), last_checked_at = \(Date()) \(guardClause) RETURNING status, consecutive_failures
                """)
        } else {
            rows = try await database.query("""
                UPDATE platform_service_providers SET consecutive_failures = 0, status = 'active', last_error = NULL, \
                last_checked_at = \(Date()) \(guardClause) RETURNING status, consecutive_failures
                """)
        }
        guard let row = rows.first, let status = ProviderStatus(rawValue: try row.decode("status", as: String.self)) else { return nil }
        return (status, try row.decode("consecutive_failures", as: Int.self))
    }
}
