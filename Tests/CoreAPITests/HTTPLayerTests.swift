@testable import CoreAPI
import Foundation
import Hummingbird
import InMemoryLogging
import HummingbirdTesting
import Logging
import Prometheus
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixRedis
import RestartixTenancy
import RestartixTestSupport
@testable import ServiceSupport
import Testing

/// The Core API's HTTP layer: the contract, request ids, problem+json, 405, 413, logs.
@Suite("Core API HTTP layer", .timeLimit(.minutes(3)))
struct HTTPLayerTests {
    func application(logs: InMemoryLogHandler? = nil) async throws -> (some ApplicationProtocol, TemporaryDirectory) {
        let directory = try TemporaryDirectory("core-http")
        var configuration = CoreAPIConfiguration(database: DatabaseConfiguration(sqlitePath: directory.path("data/restartix.sqlite")), isEmbeddedDefault: true)
        configuration.port = 0
        configuration.demoData = true
        configuration.logLevel = logs == nil ? .critical : .info
        return (try await buildApplication(configuration: configuration, logHandler: logs), directory)
    }

    @Test("one access log line per request: id, method, route template, status, duration; never the path's ids, the query, a token or a body")
    func accessLog() async throws {
        let logs = InMemoryLogHandler()
        let (app, directory) = try await application(logs: logs)
        defer { directory.remove() }
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v1/me?email=ana%40example.com", method: .get, headers: [.authorization: "Bearer hunter2-token", .requestID: "req-7"],
                body: ByteBuffer(string: #"{"name":"Ana Popescu"}"#)
            ) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            let owner = try #require(DemoData.person("demo-owner"))
            let secret = try PlatformBoot.localDevTokenSecret(in: directory.url.appendingPathComponent("data"))
            let token = try await LocalDevIssuer(environment: .development, secret: secret).issue(user: owner.userID, organization: owner.organizationID)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(token)", .requestID: "req-8"]) { #expect($0.status == .ok) }
        }
        let lines = logs.entries.filter { $0.message.description == "Request" }
        #expect(lines.count == 3, "\(logs.entries.map(\.message))")
        let signedIn = try #require(lines.first { $0.metadata["request_id"] == "req-8" })
        #expect(signedIn.metadata["organization_id"] == "\(DemoData.demoClinic.lowercasedString)" && signedIn.metadata["role"] == "owner",
                "the principal's ids reach the line the edge writes: \(signedIn.metadata)")
        let me = try #require(lines.first { $0.metadata["request_id"] == "req-7" })
        #expect(me.metadata["http.route"] == "/v1/me" && me.metadata["http.status"] == "401" && me.metadata["http.method"] == "GET")
        // Milliseconds with one decimal, as "12.3".
        #expect(me.metadata["duration_ms"].map { "\($0)".wholeMatch(of: /[0-9]+\.[0-9]/) != nil } == true, "\(String(describing: me.metadata["duration_ms"]))")
        #expect([0, 0.04, 0.05, 12.34, 1234.56, 99.99].map(ServiceEdgeMiddleware<CoreRequestContext>.tenths) == ["0.0", "0.0", "0.1", "12.3", "1234.6", "100.0"])
        let everything = logs.entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(me.metadata["organization_id"] == nil, "no principal on a refused request")
        for secret in ["hunter2", "ana", "Popescu", "example.com"] {
            #expect(!everything.contains(secret), "a log line holds \(secret)")
        }
    }

    @Test("the OpenAPI document is served, and it and the router name the same operations")
    func contract() async throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        #expect(object["openapi"] as? String == "3.1.0")
        let documented = try OpenAPIContract.documentedOperations(OpenAPIDocument.json)
        let scratch = try TemporaryDirectory("core-contract")
        defer { scratch.remove() }
        let configuration = CoreAPIConfiguration(database: DatabaseConfiguration(sqlitePath: scratch.path("data/x.sqlite")), isEmbeddedDefault: true)
        let admin = AdminDatabase(configuration: configuration.database, logger: Logger(label: "test"))
        let resolver = try await makePrincipalResolver(configuration: configuration, admin: admin, logger: Logger(label: "test"))
        let database = Database(configuration: configuration.database, logger: Logger(label: "test"))
        let tenants = TenantDatabase(configuration: configuration.appDatabase, tables: PlatformSchema.tenantTables, logger: Logger(label: "test"))
        let keyring = Keyring.generate().keyring
        let uploads = try LocalObjectStore(
            directory: URL(fileURLWithPath: scratch.path("uploads")), presigning: .random(baseURL: URL(string: "http://127.0.0.1:8080/v1/objects")!)
        )
        let router = makeRouter(database: database, readiness: nil, resolver: resolver, metrics: .init(), platform: PlatformServices(
            admin: admin, tenants: tenants, platform: database, keyring: keyring,
            providers: ProviderResolver(registry: ProviderRegistry(database: database, cipher: ColumnCipher(keyring: keyring, logger: Logger(label: "test"))), logger: Logger(label: "test")),
            cache: Aside(logger: Logger(label: "test")), suffixes: [],
            files: Files(tenants: tenants, store: uploads), localUploads: uploads
        ))
        await tenants.shutdown()
        await admin.shutdown()
        await database.shutdown()
        let routed = OpenAPIContract.routedOperations(router)
        #expect(routed == documented, "routed but not documented: \(routed.subtracting(documented).sorted()); documented but not routed: \(documented.subtracting(routed).sorted())")

        let (app, directory) = try await application()
        defer { directory.remove() }
        try await app.test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == OpenAPIDocument.json)
            }
        }
    }

    @Test("request ids: a sane X-Request-Id is kept, anything else replaced by a fresh id")
    func requestIDs() async throws {
        #expect(ServiceEdgeMiddleware<CoreRequestContext>.requestID(from: "abc-123_x.y:z") == "abc-123_x.y:z")
        for bad in ["", "has space", "line\nbreak", String(repeating: "a", count: 129), "ünïcode", "quote\""] {
            let id = ServiceEdgeMiddleware<CoreRequestContext>.requestID(from: bad)
            #expect(id != bad && UUID(uuidString: id) != nil, "\(bad.debugDescription)")
        }
        let (app, directory) = try await application()
        defer { directory.remove() }
        try await app.test(.router) { client in
            let first = try await client.execute(uri: "/health", method: .get) { $0.headers[.requestID] }
            let second = try await client.execute(uri: "/health", method: .get) { $0.headers[.requestID] }
            #expect(first != nil && second != nil && first != second, "each request its own id")
        }
    }

    @Test("405 with Allow for a known path asked with another method; 404 problem+json for an unknown one")
    func methodNotAllowed() async throws {
        let (app, directory) = try await application()
        defer { directory.remove() }
        try await app.test(.router) { client in
            try await client.execute(uri: "/health", method: .post) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, HEAD")
                let problem = try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8))
                #expect(problem?.code == "http.methodNotAllowed" && problem?.status == 405 && problem?.requestId == response.headers[.requestID])
            }
            try await client.execute(uri: "/v1/me", method: .delete) { #expect($0.status == .methodNotAllowed) }
            try await client.execute(uri: "/health", method: .head) { #expect($0.status == .ok, "HEAD is served where Allow says so") }
            try await client.execute(uri: "/v1/me", method: .get) { response in
                #expect(response.status == .unauthorized && response.headers[.wwwAuthenticate] == "Bearer", "RFC 6750")
            }
            try await client.execute(uri: "/v1/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                let problem = try? JSONDecoder().decode(Problem.self, from: Data(String(buffer: response.body).utf8))
                #expect(problem?.code == "http.notFound" && problem?.type == "urn:restartix:problem:http.notFound")
            }
        }
    }

    @Test("problems: a kit error keeps its status and code, an unexpected error says nothing but 500")
    func problems() {
        let kit = Problem(for: TokenError(.expired, "the token expired"), requestId: "r1")
        #expect(kit.status == 401 && kit.code == "token.expired" && kit.detail == "the token expired" && kit.requestId == "r1")
        struct Leaky: Error, CustomStringConvertible { var description: String { "patient Ana Popescu, born 1987" } }
        let unexpected = Problem(for: Leaky(), requestId: nil)
        #expect(unexpected.status == 500 && unexpected.code == "internal.unexpected" && !unexpected.detail.contains("Ana"))
        let decoding = Problem(for: HTTPError(.badRequest, message: "Cannot initialize Role from invalid String value hunter2"), requestId: nil)
        #expect(decoding.status == 400 && !decoding.detail.contains("hunter2"), "Hummingbird's message can quote a value: never echoed")
        let tooLarge = Problem(for: HTTPError(.contentTooLarge), requestId: nil)
        #expect(tooLarge.status == 413 && tooLarge.code == "http.contentTooLarge", "\(tooLarge)")
        #expect(Problem.codeName(.methodNotAllowed) == "methodNotAllowed")
        #expect(Problem.codeName(HTTPResponse.Status(code: 413)) == "contentTooLarge", "a status made from its code alone")
        #expect(Problem(status: 401, code: "request.missingToken", detail: "x").title == "Unauthorized")
    }

    @Test("CORS: the configured origins get their headers and preflights; any other origin gets none; bad origins refused by key")
    func cors() async throws {
        let directory = try TemporaryDirectory("core-cors")
        defer { directory.remove() }
        var configuration = try CoreAPIConfiguration(environment: [
            "RESTARTIX_SQLITE_PATH": directory.path("data/restartix.sqlite"), "CORS_ALLOWED_ORIGINS": "https://app.clinic.example, http://localhost:5173",
        ])
        #expect(configuration.edge.corsOrigins == ["https://app.clinic.example", "http://localhost:5173"])
        configuration.port = 0
        configuration.logLevel = .critical
        let app = try await buildApplication(configuration: configuration)
        try await app.test(.router) { client in
            try await client.execute(uri: "/health", method: .get, headers: [.origin: "https://app.clinic.example"]) { response in
                #expect(response.headers[.accessControlAllowOrigin] == "https://app.clinic.example")
                #expect(response.headers[.vary]?.contains("Origin") == true)
            }
            try await client.execute(uri: "/v1/me", method: .get, headers: [.origin: "https://app.clinic.example"]) { response in
                #expect(response.status == .unauthorized && response.headers[.accessControlAllowOrigin] == "https://app.clinic.example", "errors too")
            }
            try await client.execute(uri: "/health", method: .get, headers: [.origin: "https://evil.example"]) { response in
                #expect(response.status == .ok && response.headers[.accessControlAllowOrigin] == nil)
            }
            try await client.execute(
                uri: "/v1/me", method: .options, headers: [.origin: "http://localhost:5173", .accessControlRequestMethod: "GET"]
            ) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.accessControlAllowHeaders]?.contains("Authorization") == true)
            }
        }
        for bad in ["*", "https://app.example.com/path", "ftp://x.example", "https://user:pw@x.example", "app.example.com"] {
            let error = #expect(throws: ConfigurationError.self, "\(bad)") { try CoreAPIConfiguration(environment: ["CORS_ALLOWED_ORIGINS": bad]) }
            #expect(error?.description.contains("CORS_ALLOWED_ORIGINS") == true)
        }
    }

    @Test("the route table matches paths with parameters and wildcards, and only whole paths")
    func routeTable() {
        let table = RouteTable([("/v1/patients/{id}", "GET"), ("/v1/patients/:id", "PATCH"), ("/v1/patients", "POST"), ("/files/**", "GET")])
        #expect(table.methods(for: "/v1/patients/123") == ["GET", "HEAD", "PATCH"])
        #expect(table.methods(for: "/v1/patients") == ["POST"])
        #expect(table.methods(for: "/v1/patients/123/notes").isEmpty)
        #expect(table.methods(for: "/files/a/b/c") == ["GET", "HEAD"])
        #expect(table.methods(for: "/").isEmpty)
        // A literal component wins over a capture, as in Hummingbird's router: the path's
        // methods are the literal route's only.
        let literal = RouteTable([("/v1/patients/{id}", "GET"), ("/v1/patients/{id}", "PATCH"), ("/v1/patients/search", "POST"), ("/v1/**", "DELETE")])
        #expect(literal.methods(for: "/v1/patients/search") == ["POST"])
        #expect(literal.methods(for: "/v1/patients/0193") == ["GET", "HEAD", "PATCH"])
        #expect(literal.methods(for: "/v1/other") == ["DELETE"])
    }

    @Test("a method the literal route does not take is 405 with its Allow, though a capture route beside it takes it")
    func literalBeforeCapture() async throws {
        let (app, directory, tokens, _) = try await DemoAPI.make("core-literal")
        defer { directory.remove() }
        try await app.test(.router) { client in
            for method in [HTTPRequest.Method.patch, .get, .delete] {
                try await client.execute(uri: "/v1/patients/search", method: method, headers: [.authorization: "Bearer \(tokens["demo-owner"]!)"]) { response in
                    #expect(response.status == .methodNotAllowed && response.headers[.allow] == "POST", "\(method)")
                }
            }
        }
    }
}
