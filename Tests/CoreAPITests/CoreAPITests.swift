@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixPlatform
import RestartixRedis
import RestartixCrypto
import PlatformSupport
import RestartixKit
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import Prometheus
@testable import ServiceSupport
import Testing

@Suite("Core API", .timeLimit(.minutes(3)))
struct CoreAPITests {
    func embeddedConfiguration() -> (CoreAPIConfiguration, String) {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("restartix-core-\(UUID().uuidString)/restartix.sqlite").path
        var configuration = CoreAPIConfiguration(database: DatabaseConfiguration(sqlitePath: path), isEmbeddedDefault: true)
        configuration.port = 0
        configuration.logLevel = .warning
        return (configuration, path)
    }

    @Test("/metrics serves the registry in Prometheus text")
    func metrics() async throws {
        let (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "restartix_test_requests_total", labels: [("route", "/v1/me")]).increment(by: Int64(3))
        let app = try await buildApplication(configuration: configuration, metrics: registry)
        try await app.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let text = String(buffer: response.body)
                #expect(text.contains("# TYPE restartix_test_requests_total counter"), "\(text)")
                #expect(text.contains(#"restartix_test_requests_total{route="/v1/me"} 3"#), "\(text)")
            }
        }
        let without = try await buildApplication(configuration: configuration)
        try await without.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .notFound, "no registry, no route")
            }
        }
    }

    @Test("/metrics: loopback only without METRICS_TOKEN (a forwarded request refused), the token's bearer only with it; refusals show no figure")
    func metricsAccess() async throws {
        var (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "restartix_test_secret_total").increment()
        @Sendable func refused(_ response: TestResponse, _ status: HTTPResponse.Status, _ code: String) {
            #expect(response.status == status)
            let text = String(buffer: response.body)
            #expect(text.contains(code) && !text.contains("restartix_test_secret_total"), "\(text)")
        }
        // The default: this test's client is on loopback; a proxy's forwarding header says the
        // request came from elsewhere.
        let loopback = try await buildApplication(configuration: configuration, metrics: registry)
        try await loopback.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
            for header in ["X-Forwarded-For", "Forwarded", "CF-Connecting-IP", "X-Real-IP"] {
                try await client.execute(uri: "/metrics", method: .get, headers: [HTTPField.Name(header)!: "203.0.113.7"]) {
                    refused($0, .forbidden, "metrics.notLoopback")
                }
            }
        }
        let token = String(repeating: "t", count: 40)
        configuration.edge.metricsAccess = .bearer(token)
        let bearer = try await buildApplication(configuration: configuration, metrics: registry)
        try await bearer.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) {
                refused($0, .unauthorized, "metrics.tokenRequired")
                #expect($0.headers[.wwwAuthenticate] == "Bearer")
            }
            for wrong in [String(token.dropLast()), token + "t", "x"] {
                try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(wrong)"]) {
                    refused($0, .unauthorized, "metrics.tokenRequired")
                }
            }
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(token)", HTTPField.Name("X-Forwarded-For")!: "203.0.113.7"]) {
                #expect($0.status == .ok, "with the token, from anywhere")
                #expect(String(buffer: $0.body).contains("restartix_test_secret_total"))
            }
        }
    }

    @Test("loopback addresses: 127.0.0.0/8, ::1 and IPv4-mapped 127.x; nothing else")
    func loopbackAddresses() {
        for address in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] { #expect(MetricsAccess.isLoopback(address), "\(address)") }
        for address in ["10.0.0.1", "0.0.0.0", "::", "::2", "::ffff:10.0.0.1", "fe80::1", "128.0.0.1", "localhost", ""] {
            #expect(!MetricsAccess.isLoopback(address), "\(address)")
        }
    }

    @Test("the metrics check: a peer off loopback, no peer, a loopback peer the operator lists as a proxy, any forwarding header: refused; the token from anywhere; disabled refuses all")
    func metricsCheck() throws {
        let loopback = MetricsAccess.loopback
        #expect(loopback.check(peer: "127.0.0.1", headers: [:]) == nil)
        #expect(loopback.check(peer: "::1", headers: [:]) == nil)
        for peer in ["203.0.113.7", "10.0.0.5", "::ffff:10.0.0.5", "2001:db8::1"] {
            #expect(loopback.check(peer: peer, headers: [:])?.code == .notLoopback, "\(peer)")
        }
        #expect(loopback.check(peer: nil, headers: [:])?.code == .notLoopback, "no peer to read: refused")
        let proxies = try TrustedProxies(cidrs: ["127.0.0.1/32"])
        #expect(loopback.check(peer: "127.0.0.1", headers: [:], trustedProxies: proxies)?.code == .notLoopback)
        #expect(loopback.check(peer: "127.0.0.2", headers: [:], trustedProxies: proxies) == nil)
        for header in ["X-Forwarded-For", "Forwarded", "Via", "X-Forwarded-Host", "X-Forwarded-Proto", "True-Client-IP", "X-Client-IP", "X-Real-IP", "CF-Connecting-IP"] {
            #expect(loopback.check(peer: "127.0.0.1", headers: [HTTPField.Name(header)!: "x"])?.code == .notLoopback, "\(header)")
        }
        let token = String(repeating: "k", count: 32)
        let bearer = MetricsAccess.bearer(token)
        #expect(bearer.check(peer: "203.0.113.7", headers: [.authorization: "Bearer \(token)"]) == nil)
        #expect(bearer.check(peer: "127.0.0.1", headers: [:])?.code == .tokenRequired, "loopback is no substitute for the token")
        #expect(!String(reflecting: bearer).contains(token) && !"\(bearer)".contains(token))
        #expect(MetricsAccess.disabled.check(peer: "127.0.0.1", headers: [:])?.code == .notConfigured)
        #expect(MetricsRefused(.notConfigured).httpStatus == 403 && MetricsRefused(.tokenRequired).httpStatus == 401)
    }

    @Test("health and readiness on the embedded default, with migrations applied at start")
    func healthAndReady() async throws {
        let (configuration, path) = embeddedConfiguration()
        let app = try await buildApplication(configuration: configuration)
        try await app.test(.live) { client in
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == #"{"status":"ok"}"#)
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                #expect(response.headers[.requestID]?.isEmpty == false, "every answer carries its request id")
            }
            // The first isolation check runs in the background; on a machine busy with the rest
            // of the suite it can outlast a probe's deadline (CI-like load once took longer than
            // one probe): poll, as a load balancer would.
            var ready: (HTTPResponse.Status, String) = (.serviceUnavailable, "")
            for _ in 0..<100 where ready.0 != .ok {
                ready = try await client.execute(uri: "/ready", method: .get) { ($0.status, String(buffer: $0.body)) }
                if ready.0 != .ok { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(ready.0 == .ok)
            #expect(ready.1 == #"{"status":"ready"}"#)
            try await client.execute(uri: "/no-such-route", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
            }
        }
        // A local keyring was generated beside it, readable by its owner only.
        let keyringPath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("keyring.json").path
        let mode = try FileManager.default.attributesOfItem(atPath: keyringPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // The embedded file exists and holds the migrated schema.
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: .init(label: "test"))
        let applied = try await Migrator(platformSchemaOn: db, logger: .init(label: "test")).appliedChecksums()
        #expect(applied.keys.sorted() == MigrationSet.platform(for: .sqlite).migrations.map(\.version))
        await db.shutdown()
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    @Test("refuses to start on a database that does not keep clinics apart")
    func refusesUnsafeDatabase() async throws {
        let (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        try FileManager.default.createDirectory(
            at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true
        )
        // A migrated file whose policy view for patients was dropped and replaced by a table.
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: .init(label: "test"))
        _ = try await Migrator(platformSchemaOn: db, logger: .init(label: "test")).migrate()
        try await db.withConnection { try await $0.executeScript("DROP VIEW patients; CREATE TABLE patients (id TEXT)") }
        await db.shutdown()
        let database = Database(configuration: configuration.database, logger: .init(label: "test"))
        let tenants = TenantDatabase(configuration: configuration.appDatabase, tables: PlatformSchema.tenantTables, logger: .init(label: "test"))
        let error = await #expect(throws: TenancyError.self) {
            try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, logger: .init(label: "test"))
        }
        #expect(error?.problems.contains { $0.contains("patients") } == true)
        await database.shutdown()
        await tenants.shutdown()
    }

    @Test("readiness is 503 once the database stops keeping clinics apart, 200 again once repaired")
    func readyFollowsIsolation() async throws {
        let (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let owner = Database(configuration: configuration.database, logger: .init(label: "test"))
        _ = try await Migrator(platformSchemaOn: owner, logger: .init(label: "test")).migrate()
        let tenants = TenantDatabase(configuration: configuration.appDatabase, tables: PlatformSchema.tenantTables, logger: .init(label: "test"))
        let admin = AdminDatabase(configuration: configuration.database, logger: .init(label: "test"))
        let router = Router(context: CoreRequestContext.self)
        addHealthRoutes(to: router, database: owner, readiness: Readiness(tenants: tenants, admin: admin, interval: .zero))
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = Application(router: router, logger: logger)
        // The trigger that checks writes to patients, as a careless hand would drop it.
        let trigger = try await owner.query("SELECT sql FROM sqlite_master WHERE name = 'patients__update'").first?.decode("sql", as: String.self)
        // The check runs in the background and a probe waits for it under a second, so on a
        // busy machine a probe may still see the previous result: poll, as a prober would.
        @Sendable func eventually(_ client: some TestClientProtocol, _ status: HTTPResponse.Status) async throws -> String? {
            for _ in 0..<50 {
                let (seen, body) = try await client.execute(uri: "/ready", method: .get) { ($0.status, String(buffer: $0.body)) }
                if seen == status { return body }
                try await Task.sleep(for: .milliseconds(100))
            }
            return nil
        }
        try await app.test(.router) { client in
            let first = try await eventually(client, .ok)
            #expect(first != nil)
            try await owner.withConnection { try await $0.executeScript("DROP TRIGGER patients__update") }
            let broken = try await eventually(client, .serviceUnavailable)
            #expect(broken == #"{"status":"unavailable"}"#)
            try await owner.withConnection { try await $0.executeScript(try #require(trigger)) }
            let repaired = try await eventually(client, .ok)
            #expect(repaired != nil)
        }
        await tenants.shutdown()
        await admin.shutdown()
        await owner.shutdown()
    }

    /// An application with only the health routes, on a database at `databaseURL`.
    func healthRoutes(databaseURL: String) throws -> (some ApplicationProtocol, Database) {
        let database = Database(configuration: try DatabaseConfiguration(url: databaseURL), logger: Logger(label: "test"))
        let router = Router(context: CoreRequestContext.self)
        addHealthRoutes(to: router, database: database)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return (Application(router: router, logger: logger), database)
    }

    @Test("readiness is 503 when the database cannot be reached, and says nothing secret")
    func notReady() async throws {
        // The database went away after start (at start, the boot check refuses to serve).
        let (app, database) = try healthRoutes(databaseURL: "postgres://someone:topsecret-pw@127.0.0.1:1/db?connect_timeout=2")
        try await app.test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/ready", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = String(buffer: response.body)
                #expect(body == #"{"status":"unavailable"}"#)
                #expect(!body.contains("topsecret"))
            }
        }
        await database.shutdown()
    }

    @Test("readiness answers 503 within a second when the database accepts connections and never answers")
    func readyWithinASecond() async throws {
        // A listening socket nobody accepts on: the TCP handshake completes (the backlog), then
        // silence, as from a server that froze. libpq alone would wait for its connect_timeout.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 16) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        try #require(listening)
        let port = UInt16(bigEndian: address.sin_port)
        let (app, database) = try healthRoutes(databaseURL: "postgres://someone:pw@127.0.0.1:\(port)/db?connect_timeout=60")
        try await app.test(.router) { client in
            for _ in 0..<2 {
                let started = ContinuousClock.now
                try await client.execute(uri: "/ready", method: .get) { #expect($0.status == .serviceUnavailable) }
                let took = ContinuousClock.now - started
                // 900 ms by design. The margin is for the rest of this parallel test run, which
                // can keep both cooperative threads of a two-core machine busy for seconds (alone,
                // this takes 0.9 s; a loaded run once took 6.4 s). Without the deadline it takes
                // libpq's connect_timeout, 60 s: the bound still tells the two apart.
                #expect(took < .seconds(20), "took \(took)")
            }
        }
        await database.shutdown()
    }

    @Test("an unreachable database at start stops the boot, with no secret in the error")
    func unreachableAtStart() async throws {
        let unreachable = try DatabaseConfiguration(url: "postgres://someone:topsecret-pw@127.0.0.1:1/db?connect_timeout=2")
        let configuration = CoreAPIConfiguration(database: unreachable, isEmbeddedDefault: false)
        let database = Database(configuration: unreachable, logger: Logger(label: "test"))
        let tenants = TenantDatabase(configuration: unreachable, tables: PlatformSchema.tenantTables, logger: Logger(label: "test"))
        let error = await #expect(throws: DatabaseError.self) {
            try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, logger: Logger(label: "test"))
        }
        #expect(error?.code == .connectionFailed)
        #expect(error.map { !"\($0)".contains("topsecret") } == true)
        await database.shutdown()
        await tenants.shutdown()
    }

    @Test("configuration from the environment: defaults and clear errors")
    func environment() throws {
        let defaults = try CoreAPIConfiguration(environment: [:])
        #expect(defaults.isEmbeddedDefault)
        #expect(defaults.host == "127.0.0.1")
        #expect(defaults.port == 8080)
        #expect(defaults.database.sqliteFilePath == ".restartix/restartix.sqlite")

        let postgres = try CoreAPIConfiguration(environment: [
            "DATABASE_URL": "postgres://u:p@db:5432/x", "DATABASE_APP_URL": "postgres://app:p@db:5432/x",
            "PORT": "9000", "HOST": "0.0.0.0", "APP_ENV": "development", "ENCRYPTION_KEYS": Keyring.generate().document,
        ])
        #expect(!postgres.isEmbeddedDefault)
        #expect(postgres.database.dialect == .postgres)
        #expect(postgres.appDatabase.dialect == .postgres)
        #expect(postgres.port == 9000)
        // Postgres without the app role's URL: refused, rather than serving tenants as admin.
        let noApp = #expect(throws: ConfigurationError.self) {
            try CoreAPIConfiguration(environment: ["DATABASE_URL": "postgres://u:p@db:5432/x"])
        }
        #expect(noApp?.description.contains("DATABASE_APP_URL") == true)

        #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["PORT": "http"]) }
        #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["PORT": "70000"]) }
        #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["LOG_LEVEL": "loud"]) }
        let production = #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["APP_ENV": "production"]) }
        #expect(production?.description.contains("CLERK_ISSUER") == true, "no local development issuer in production")
        #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["APP_ENV": "staging"]) }
        let forgotten = #expect(throws: ConfigurationError.self, "a real database with neither Clerk nor APP_ENV") {
            try CoreAPIConfiguration(environment: ["DATABASE_URL": "postgres://u:p@db:5432/x", "DATABASE_APP_URL": "postgres://app:p@db:5432/x"])
        }
        #expect(forgotten?.description.contains("APP_ENV") == true)
        let noParties = #expect(throws: ConfigurationError.self) {
            try CoreAPIConfiguration(environment: ["APP_ENV": "production", "CLERK_ISSUER": "https://clerk.example.com"])
        }
        #expect(noParties?.description.contains("CLERK_AUTHORIZED_PARTIES") == true)
        #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["APP_ENV": "prod"]) }
        let noKeys = #expect(throws: ConfigurationError.self, "a real database needs the keyring") {
            try CoreAPIConfiguration(environment: [
                "DATABASE_URL": "postgres://u:p@db:5432/x", "DATABASE_APP_URL": "postgres://app:p@db:5432/x", "APP_ENV": "development",
            ])
        }
        #expect(noKeys?.description.contains("ENCRYPTION_KEYS") == true)
        let clerk = try CoreAPIConfiguration(environment: [
            "APP_ENV": "production", "CLERK_ISSUER": "https://clerk.example.com", "ENCRYPTION_KEYS": Keyring.generate().document,
            "CLERK_AUTHORIZED_PARTIES": "https://app.example.com, https://admin.example.com",
        ])
        #expect(clerk.clerk?.jwksURL == "https://clerk.example.com/.well-known/jwks.json")
        #expect(clerk.clerk?.authorizedParties == ["https://app.example.com", "https://admin.example.com"])
        let error = #expect(throws: DatabaseError.self) {
            try CoreAPIConfiguration(environment: ["DATABASE_URL": "mysql://u:hunter2@db/x"])
        }
        #expect(error?.code == .configuration)
        #expect(error.map { !$0.description.contains("hunter2") } == true)
    }

    @Test("GET /v1/me: a member's context; 401 for a bad token, 403 for a non-member, nothing secret")
    func me() async throws {
        var (configuration, sqlitePath) = embeddedConfiguration()
        let path = sqlitePath
        let secret = String(repeating: "d", count: 40)
        configuration.devTokenSecret = secret
        let app = try await buildApplication(configuration: configuration)
        let issuer = try await LocalDevIssuer(environment: .test, secret: secret)
        let org = UUIDv7.generate(), member = UUIDv7.generate(), outsider = UUIDv7.generate()
        try await app.test(.live) { client in
            // The server is up, so migrations ran: add a clinic, a member and an outsider.
            let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: .init(label: "test"))
            try await admin.unscoped(reason: "core api test fixture", actor: .system("core-api-tests")) { tx in
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), 'me-clinic', 'Me clinic')")
                try await tx.execute("INSERT INTO users (id) VALUES (\(member)), (\(outsider))")
                try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(org), \(member), 'assistant')")
            }
            await admin.shutdown()
            let good = try await issuer.issue(user: member, organization: org)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(good)"]) { response in
                #expect(response.status == .ok)
                #expect((try? JSONDecoder().decode(Me.self, from: Data(String(buffer: response.body).utf8))) == Me(organization: org, user: member, role: "assistant"))
            }
            for scheme in ["bearer", "BEARER", "bEaReR"] {
                try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "\(scheme) \(good)"]) { response in
                    #expect(response.status == .ok, "the scheme is case-insensitive (RFC 9110): \(scheme)")
                }
            }
            for header in ["Bearer", "Bearer ", "Basic \(good)", "Bearer\(good)", "Bearer\t\(good)", "Beaver \(good)"] {
                try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: header]) { response in
                    #expect(response.status == .unauthorized, "\(header.prefix(8))")
                    let problem = try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8))
                    #expect(problem?.code == "request.missingToken", "\(header.prefix(8))")
                }
            }
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer é\(good)"]) { response in
                #expect(response.status == .unauthorized, "a token that is not the token, cut at a byte boundary, is not accepted")
            }
            try await client.execute(uri: "/v1/me", method: .get, headers: [.requestID: "trace-42"]) { response in
                #expect(response.status == .unauthorized)
                let problem = try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8))
                #expect(problem?.code == "request.missingToken" && problem?.status == 401 && problem?.requestId == "trace-42")
                #expect(response.headers[.requestID] == "trace-42", "a sane client id is kept")
            }
            let forged = try await LocalDevIssuer(environment: .test).issue(user: member, organization: org)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(forged)"]) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect((try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8)))?.code == "token.invalidSignature")
                #expect(!String(buffer: response.body).contains(forged.prefix(30)))
            }
            let stranger = try await issuer.issue(user: outsider, organization: org)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(stranger)"]) { response in
                #expect(response.status == .forbidden)
                #expect((try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8)))?.code == "tenancy.notAMember")
            }
        }
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    @Test("the embedded default in development seeds the demo clinics once; a demo token resolves; RESTARTIX_DEMO_DATA=off and other environments have none")
    func demoClinics() async throws {
        let directory = try TemporaryDirectory("core-demo")
        defer { directory.remove() }
        var configuration = try CoreAPIConfiguration(environment: ["RESTARTIX_SQLITE_PATH": directory.path("data/restartix.sqlite")])
        #expect(configuration.demoData)
        configuration.port = 0
        configuration.logLevel = .critical
        let app = try await buildApplication(configuration: configuration)
        let secret = try PlatformBoot.localDevTokenSecret(in: URL(fileURLWithPath: directory.path("data")))
        let owner = try #require(DemoData.person("demo-owner")), other = try #require(DemoData.person("other-owner"))
        let issuer = try await LocalDevIssuer(environment: .development, secret: secret)
        try await app.test(.live) { client in
            for person in [owner, other] {
                let token = try await issuer.issue(user: person.userID, organization: person.organizationID)
                try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                    #expect(response.status == .ok)
                    let me = try? JSONDecoder().decode(Me.self, from: Data(String(buffer: response.body).utf8))
                    #expect(me == Me(organization: person.organizationID, user: person.userID, role: person.role?.rawValue ?? ""))
                }
            }
            // The platform operator is no clinic's member: /v1 refuses them, the admin routes serve them.
            let platformOperator = try #require(DemoData.person("platform-operator"))
            let operatorToken = try await issuer.issue(user: platformOperator.userID, organization: platformOperator.organizationID)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(operatorToken)"]) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/admin/platform-service-providers", method: .get, headers: [.authorization: "Bearer \(operatorToken)"]) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/admin/platform-service-providers", method: .get, headers: [.authorization: "Bearer \(try await issuer.issue(user: owner.userID, organization: owner.organizationID))"]) {
                #expect($0.status == .forbidden, "a clinic owner is no platform operator")
            }
            // A demo token for one clinic does not open the other.
            let crossed = try await issuer.issue(user: owner.userID, organization: other.organizationID)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(crossed)"]) { #expect($0.status == .forbidden) }
        }
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: directory.path("data/restartix.sqlite")), logger: .init(label: "test"))
        #expect(try await DemoData.seed(admin, environment: .development) == false, "a second seed creates nothing")
        await #expect(throws: ConfigurationError.self) { try await DemoData.seed(admin, environment: .production) }
        await admin.shutdown()
        #expect(try CoreAPIConfiguration(environment: ["RESTARTIX_SQLITE_PATH": directory.path("d2/x.sqlite"), "RESTARTIX_DEMO_DATA": "off"]).demoData == false)
        #expect(try CoreAPIConfiguration(environment: ["RESTARTIX_SQLITE_PATH": directory.path("d2/x.sqlite"), "APP_ENV": "test"]).demoData == false)
        #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: ["RESTARTIX_DEMO_DATA": "maybe"]) }
    }

    @Test("a keyring that disables a key some value still needs stops boot; once the values moved, it boots")
    func disabledKeyInUse() async throws {
        let (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        func keyring(_ first: String, second: String? = nil) throws -> Keyring {
            func key(_ byte: UInt8) -> String { Data(repeating: byte, count: 32).base64EncodedString() }
            let keys = [#"{"id":1,"status":"\#(first)","key":"\#(key(1))"}"#] + (second.map { [#"{"id":2,"status":"\#($0)","key":"\#(key(2))"}"#] } ?? [])
            return try Keyring(json: Data(#"{"keys":[\#(keys.joined(separator: ","))],"blind_index_key":"\#(key(9))"}"#.utf8))
        }
        let database = Database(configuration: configuration.database, logger: .init(label: "test"))
        let tenants = TenantDatabase(configuration: configuration.appDatabase, tables: PlatformSchema.tenantTables, logger: .init(label: "test"))
        let admin = AdminDatabase(configuration: configuration.database, logger: .init(label: "test"))
        try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, logger: .init(label: "test"))
        // One clinic, one patient sealed under key 1.
        let organization = UUIDv7.generate(), user = UUIDv7.generate()
        try await admin.unscoped(reason: "test: a clinic", actor: .system("test")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(organization), 'disabled-key-clinic', 'Clinic')")
            try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
            try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(organization), \(user), 'specialist')")
        }
        let store = PatientStore(cipher: ColumnCipher(keyring: try keyring("primary")))
        let context = TenantContext(organizationID: organization, userID: user, role: .specialist)
        _ = try await tenants.withTenant(context) { tx in try await store.insert(PatientPII(name: "Ana"), in: tx) }

        let tooEarly = try keyring("disabled", second: "primary")
        let error = await #expect(throws: EncryptionError.self) {
            try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, admin: admin, keyring: tooEarly, logger: .init(label: "test"))
        }
        #expect(error?.code == .keyDisabled)
        #expect(error?.detail.contains("key 1 is disabled") == true)
        // Rotate properly: decrypt-only, reencrypt, then disable.
        let rotating = try keyring("decrypt-only", second: "primary")
        #expect(try await Reencryptor(admin: admin, cipher: ColumnCipher(keyring: rotating)).run().remaining == 0)
        try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, admin: admin, keyring: tooEarly, logger: .init(label: "test"))
        await database.shutdown()
        await tenants.shutdown()
        await admin.shutdown()
    }

    @Test("CLERK_SECRET_KEY at boot against an empty database seeds the auth provider, sealed; a second boot leaves it; a bad seed stops boot")
    func bootSeedsProviders() async throws {
        let (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        let keyring = Keyring.generate().keyring
        let database = Database(configuration: configuration.database, logger: .init(label: "test"))
        let tenants = TenantDatabase(configuration: configuration.appDatabase, tables: PlatformSchema.tenantTables, logger: .init(label: "test"))
        let admin = AdminDatabase(configuration: configuration.database, logger: .init(label: "test"))
        func boot(_ environment: [String: String]) async throws {
            try await boot(seeds: try CoreAPIConfiguration(environment: environment).providerSeeds)
        }
        func boot(seeds: [ProviderSeed]) async throws {
            var configuration = configuration
            configuration.providerSeeds = seeds
            try await prepareDatabases(
                configuration: configuration, database: database, tenants: tenants, admin: admin, keyring: keyring, logger: .init(label: "test")
            )
        }
        try await boot(["CLERK_SECRET_KEY": "sk_test_seeded_at_boot"])
        let rows = try await database.query("SELECT provider_kind, credentials FROM platform_service_providers WHERE capability = 'auth' AND organization_id IS NULL")
        #expect(rows.count == 1)
        #expect(try rows.first?.decode("provider_kind", as: String.self) == "clerk")
        let sealed = try #require(try rows.first?.decode("credentials", as: Data?.self))
        #expect(sealed.range(of: Data("sk_test_seeded_at_boot".utf8)) == nil, "encrypted at rest")
        let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: keyring))
        #expect(try await registry.lookup(.auth, organization: nil)?.secrets["secret_key"] == "sk_test_seeded_at_boot")
        try await boot(["CLERK_SECRET_KEY": "sk_test_changed"])
        #expect(try await registry.lookup(.auth, organization: nil)?.secrets["secret_key"] == "sk_test_seeded_at_boot", "the row wins over the environment")
        // A half-configured seed is refused where the variables are read, naming keys, not values.
        let refused = await #expect(throws: ConfigurationError.self) { try await boot(["AWS_BUCKET_NAME": "files", "AWS_ACCESS_KEY_ID": "AKIAONLY"]) }
        #expect(refused?.code == .invalidValue && refused?.detail.contains("AKIAONLY") == false)
        // One the registry would refuse stops boot before anything is written.
        let invalid = await #expect(throws: ProviderError.self) {
            try await boot(seeds: [
                ProviderSeed(capability: .ai, kind: .anthropic, config: ["api_url": "https://api.anthropic.com"], secrets: ProviderSecrets(["api_key": "k"])),
                ProviderSeed(capability: .video, kind: .daily, config: ["Bad Name": "x"], secrets: ProviderSecrets(["api_key": "k"])),
            ])
        }
        #expect(invalid?.code == .invalidArgument)
        #expect(try await registry.lookup(.ai, organization: nil) == nil, "no seed of a refused set is written")
        await database.shutdown()
        await tenants.shutdown()
        await admin.shutdown()
    }

    @Test("with REDIS_URL the API starts and stops with the Redis client and the provider resolver running; an invalidation published by another instance does not disturb it")
    func liveWithRedis() async throws {
        guard RequiredServices.shouldRun("REDIS_URL") else { return }
        let url = try RequiredServices.require("REDIS_URL")
        var (configuration, path) = embeddedConfiguration()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        configuration.redis = try RedisConfiguration(url: url)
        let app = try await buildApplication(configuration: configuration)
        try await app.test(.live) { client in
            try await client.execute(uri: "/health", method: .get) { response in #expect(response.status == .ok) }
            // Another instance publishing an invalidation does not disturb it.
            let other = try RedisClient(url: url, logger: .init(label: "test"))
            _ = try await other.send("PUBLISH", "restartix:providers:invalidate", "email")
            other.shutdown()
            // Ready throughout. (A probe's check has 900 ms; on a machine busy with the rest of
            // the suite one may run over and answer 503, as a load balancer's probe would see
            // and retry: so do we, for a few seconds.)
            var status = HTTPResponse.Status.serviceUnavailable
            let deadline = ContinuousClock.now + .seconds(10)
            while status != .ok, ContinuousClock.now < deadline {
                status = try await client.execute(uri: "/ready", method: .get) { $0.status }
                if status != .ok { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(status == .ok)
        }
    }

    @Test("REDIS_URL: parsed when set (provider invalidations between instances), refused when malformed without echoing its password")
    func redisConfiguration() throws {
        let base = ["APP_ENV": "development"]
        #expect(try CoreAPIConfiguration(environment: base).redis == nil)
        let configured = try CoreAPIConfiguration(environment: base.merging(["REDIS_URL": "redis://:pw@127.0.0.1:6379/2"]) { $1 })
        #expect(configured.redis?.database == 2)
        let error = #expect(throws: ConfigurationError.self) {
            try CoreAPIConfiguration(environment: base.merging(["REDIS_URL": "http://user:hunter2-secret@127.0.0.1"]) { $1 })
        }
        #expect(error?.description.contains("REDIS_URL") == true && error?.description.contains("hunter2-secret") == false)
    }

    @Test("a malformed keyring stops boot, naming the problem and no key bytes")
    func badKeyring() async throws {
        var (configuration, _) = embeddedConfiguration()
        let key = Data(repeating: 0x42, count: 16).base64EncodedString()
        configuration.keyring = try ServiceEnvironment(["ENCRYPTION_KEYS": #"{"keys":[{"id":1,"status":"primary","key":"\#(key)"}],"blind_index_key":"\#(key)"}"#]).keyring()
        let error = await #expect(throws: EncryptionError.self) {
            _ = try await loadKeyring(configuration: configuration, logger: Logger(label: "test"))
        }
        #expect(error?.code == .invalidKeyring)
        #expect(error?.detail.contains("key 1 is 16 bytes") == true)
        #expect(error?.description.contains(key) == false)
    }
}
