@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// The patient routes on the embedded default and on Postgres through PgBouncer with Redis:
/// every operation and role, each bad input, another clinic's ids, with the database's own rows
/// as the ground truth (sealed at rest, audited with field names only, nothing written by a
/// refusal). Each test makes two clinics of its own (an owner, a specialist and a patient in
/// one, an owner in the other), so the Postgres runs share the services' database safely.
/// Serialized: each Postgres case boots a whole Core API (pools, the tenancy boot check), and
/// seven at once on two cores slowed the fault drills running beside them past their bounds.
@Suite("Core API patients", .serialized, .timeLimit(.minutes(3)))
struct PatientRouteTests {
    /// The support target's backends: the Core API runs on the embedded SQLite file or on
    /// Postgres with Redis (through PgBouncer, as deployed; directly works too).
    typealias Backend = TestBackend

    /// SQLite always; Postgres through PgBouncer where the services run (under CI they must).
    static var backends: [Backend] { RequiredServices.shouldRun("DATABASE_URL", "DATABASE_APP_URL", "REDIS_URL") ? [.sqlite, .pgbouncer] : [.sqlite] }

    struct Fixture: Sendable {
        let tokens: [String: String]
        let users: [String: UUID]
        let clinic: UUID
        let otherClinic: UUID
        let admin: AdminDatabase
        /// The secret the API signs telemetry session tokens with.
        var sessionSecret: String? = nil
        /// The development issuer's secret (tokens for more people).
        var devSecret = ""
        /// The API's app-role database (for the library's services beside the API's).
        var appDatabase: DatabaseConfiguration? = nil
        /// The API's platform (admin-role) database and keyring: provider rows the API can open.
        var platformDatabase: DatabaseConfiguration? = nil
        var keyring: Keyring? = nil

        func auth(_ who: String) -> HTTPFields { [.authorization: "Bearer \(tokens[who]!)", .contentType: "application/json"] }

        /// Runs `sql` on the admin role (no row-level security): what is really in the tables.
        func rows(_ sql: SQLQuery) async throws -> [SQLRow] {
            try await admin.unscoped(reason: "test: the ground truth", actor: .system("tests")) { tx in try await tx.query(sql) }
        }

        func count(_ sql: SQLQuery) async throws -> Int {
            try await rows(sql)[0].decode("n", as: Int.self)
        }

        /// The two clinics' audit rows.
        func audited() async throws -> Int {
            try await count("SELECT count(*) AS n FROM audit_log WHERE organization_id IN (\(clinic), \(otherClinic))")
        }

        /// The clinic's patients, deleted or not.
        func patients() async throws -> Int {
            try await count("SELECT count(*) AS n FROM patients WHERE organization_id IN (\(clinic), \(otherClinic))")
        }

        /// Two new clinics and their people, with a development token each.
        static func make(admin: AdminDatabase, secret: String, sessionSecret: String? = nil, appDatabase: DatabaseConfiguration? = nil) async throws -> Fixture {
            let clinic = UUIDv7.generate()
            let other = UUIDv7.generate()
            let people: [(String, UUID, TenantRole)] = [
                ("owner", clinic, .owner), ("specialist", clinic, .specialist), ("patient", clinic, .patient), ("other-owner", other, .owner),
            ]
            var users: [String: UUID] = [:]
            try await admin.unscoped(reason: "test: two clinics of its own", actor: .system("tests")) { tx in
                for id in [clinic, other] {
                    try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(id), \("t-" + id.lowercasedString), \("Test Clinic"))")
                }
                for (handle, organization, role) in people {
                    let user = UUIDv7.generate()
                    users[handle] = user
                    try await tx.execute("INSERT INTO users (id, display_name) VALUES (\(user), \(handle))")
                    try await tx.execute("""
                        INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(organization), \(user), \(role.rawValue))
                        """)
                }
            }
            let issuer = try await LocalDevIssuer(environment: .development, secret: secret)
            var tokens: [String: String] = [:]
            for (handle, organization, _) in people { tokens[handle] = try await issuer.issue(user: users[handle]!, organization: organization) }
            return Fixture(
                tokens: tokens, users: users, clinic: clinic, otherClinic: other, admin: admin, sessionSecret: sessionSecret, devSecret: secret, appDatabase: appDatabase
            )
        }
    }

    func withAPI(
        _ backend: Backend, logHandler: (any LogHandler)? = nil, configure: @escaping (inout CoreAPIConfiguration) -> Void = { _ in }, _ body: @escaping @Sendable (any TestClientProtocol, Fixture) async throws -> Void
    ) async throws {
        switch backend {
        case .sqlite:
            let (app, directory, _, configuration) = try await DemoAPI.make("core-patients", logHandler: logHandler) {
                if logHandler != nil { $0.logLevel = .trace }
                configure(&$0)
            }
            defer { directory.remove() }
            let admin = AdminDatabase(configuration: configuration.database, logger: Logger(label: "test"))
            defer { Task { await admin.shutdown() } }
            // The embedded default's own session secret, beside the SQLite file.
            let sessionSecret = configuration.isEmbeddedDefault
                ? try PlatformBoot.localTelemetrySessionSecret(in: URL(fileURLWithPath: try #require(configuration.database.sqliteFilePath)).deletingLastPathComponent())
                : nil
            let keyring = try await loadKeyring(configuration: configuration, logger: Logger(label: "test"))
            try await app.test(.router) { client in
                var fixture = try await Fixture.make(
                    admin: admin, secret: try #require(configuration.devTokenSecret), sessionSecret: sessionSecret, appDatabase: configuration.appDatabase
                )
                fixture.platformDatabase = configuration.database
                fixture.keyring = keyring
                try await body(client, fixture)
            }
        case .postgresDirect, .pgbouncer:
            var environment: [String: String] = [:]
            for name in ["REDIS_URL", "ENCRYPTION_KEYS", "RESTARTIX_DEV_TOKEN_SECRET", "TELEMETRY_SESSION_TOKEN_SECRET"] {
                environment[name] = try RequiredServices.require(name)
            }
            environment["DATABASE_URL"] = try backend.require(.admin)
            environment["DATABASE_APP_URL"] = try backend.require(.app)
            environment["APP_ENV"] = "test"
            environment["PORT"] = "0"
            environment["LOG_LEVEL"] = logHandler == nil ? "critical" : "trace"
            environment["RATE_LIMIT_USER_PER_MINUTE"] = "1000000"
            environment["RATE_LIMIT_ADDRESS_PER_MINUTE"] = "1000000"
            let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
            let owner = try Database(url: try backend.require(.owner), logger: logger)
            _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
            await owner.shutdown()
            var configuration = try CoreAPIConfiguration(environment: environment)
            configure(&configuration)
            let app = try await buildApplication(configuration: configuration, logHandler: logHandler)
            let admin = AdminDatabase(configuration: configuration.database, logger: logger)
            defer { Task { await admin.shutdown() } }
            let secret = try #require(environment["RESTARTIX_DEV_TOKEN_SECRET"])
            let sessionSecret = configuration.sessionTokens == nil ? nil : environment["TELEMETRY_SESSION_TOKEN_SECRET"]
            let appDatabase = configuration.appDatabase
            let keyring = try await loadKeyring(configuration: configuration, logger: logger)
            try await app.test(.router) { [configuration] client in
                var fixture = try await Fixture.make(admin: admin, secret: secret, sessionSecret: sessionSecret, appDatabase: appDatabase)
                fixture.platformDatabase = configuration.database
                fixture.keyring = keyring
                try await body(client, fixture)
            }
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(type, from: Data(String(buffer: response.body).utf8))
    }

    static func json(_ object: [String: Any]) -> ByteBuffer {
        ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
    }

    nonisolated(unsafe) static let ana: [String: Any] = ["name": "Ana Popescu", "date_of_birth": "1987-03-14", "email": "ana.popescu@example.com", "phone": "+40 721 000 111"]

    /// Creates a patient as `who` and returns it.
    static func create(_ client: some TestClientProtocol, _ fixture: Fixture, as who: String = "owner", _ body: [String: Any] = ana) async throws -> PatientBody {
        let made = try await client.execute(uri: "/v1/patients", method: .post, headers: fixture.auth(who), body: json(body)) { response -> PatientBody? in
            #expect(response.status == .created, "\(String(buffer: response.body))")
            return decode(PatientBody.self, response)
        }
        return try #require(made)
    }

    /// The demo-shaped record of the fixture's patient member, linked to its account.
    static func createOwn(_ client: some TestClientProtocol, _ fixture: Fixture) async throws -> PatientBody {
        var own = ana
        own["user_id"] = fixture.users["patient"]!.lowercasedString
        return try await create(client, fixture, own)
    }

    @Test("the owner creates a patient (sealed at rest), reads, finds, changes and deletes it; each change audited with field names only", arguments: PatientRouteTests.backends)
    func lifecycle(backend: Backend) async throws {
        let buffer = JSONLogHandler.LineBuffer()
        try await withAPI(backend, logHandler: JSONLogHandler(label: "restartix.core-api", sink: .memory(buffer), metadataProvider: nil)) { client, fixture in
                        var body = Self.ana
            body["user_id"] = fixture.users["patient"]!.lowercasedString
            let created = try await client.execute(uri: "/v1/patients", method: .post, headers: fixture.auth("owner"), body: Self.json(body)) { response -> PatientBody? in
                #expect(response.status == .created)
                let made = Self.decode(PatientBody.self, response)
                #expect(response.headers[.location] == "/v1/patients/\(made?.id ?? "")")
                return made
            }
            let patient = try #require(created)
            #expect(patient.name == "Ana Popescu" && patient.date_of_birth == "1987-03-14" && patient.email == "ana.popescu@example.com")
            #expect(patient.phone == "+40 721 000 111" && patient.user_id == fixture.users["patient"]!.lowercasedString)
            #expect(patient.organization_id == fixture.clinic.lowercasedString)

            // At rest: sealed values and a blind index, no plaintext anywhere in the row.
            let stored = try await fixture.rows("SELECT name, email, phone, date_of_birth, email_index FROM patients WHERE id = \(UUID(uuidString: patient.id)!)")
            #expect(stored.count == 1)
            for column in ["name", "email", "phone", "date_of_birth", "email_index"] {
                let bytes = try #require(try stored[0].decode(column, as: Data?.self), "\(column)")
                for plain in ["Ana Popescu", "ana.popescu@example.com", "+40 721 000 111", "1987-03-14"] {
                    #expect(bytes.range(of: Data(plain.utf8)) == nil, "\(column) holds plaintext")
                }
            }

            try await client.execute(uri: "/v1/patients/\(patient.id)", method: .get, headers: fixture.auth("specialist")) { response in
                #expect(response.status == .ok && Self.decode(PatientBody.self, response) == patient)
            }
            // Found by e-mail, written another way (case, spaces): the blind index normalizes.
            try await client.execute(uri: "/v1/patients/search", method: .post, headers: fixture.auth("specialist"), body: Self.json(["email": "Ana.Popescu@Example.com"])) { response in
                #expect(response.status == .ok && Self.decode(PatientSearchBody.self, response)?.patients.map(\.id) == [patient.id])
            }
            try await client.execute(uri: "/v1/patients/search", method: .post, headers: fixture.auth("specialist"), body: Self.json(["email": "jane.doe@example.com"])) { response in
                #expect(response.status == .ok && Self.decode(PatientSearchBody.self, response)?.patients.isEmpty == true)
            }

            // A change: phone cleared, e-mail set; the name stays.
            let changed = try await client.execute(
                uri: "/v1/patients/\(patient.id)", method: .patch, headers: fixture.auth("specialist"),
                body: Self.json(["phone": NSNull(), "email": "ana.p@example.com"])
            ) { response -> PatientBody? in
                #expect(response.status == .ok)
                return Self.decode(PatientBody.self, response)
            }
            #expect(changed?.phone == nil && changed?.email == "ana.p@example.com" && changed?.name == "Ana Popescu" && changed?.date_of_birth == "1987-03-14")
            #expect((changed?.updated_at ?? "") >= patient.updated_at)
            // A change that changes nothing writes nothing.
            let audited = try await fixture.count("SELECT count(*) AS n FROM audit_log WHERE resource_id = \(UUID(uuidString: patient.id)!)")
            try await client.execute(uri: "/v1/patients/\(patient.id)", method: .patch, headers: fixture.auth("specialist"), body: Self.json(["email": "ana.p@example.com"])) { response in
                #expect(response.status == .ok)
            }
            #expect(try await fixture.count("SELECT count(*) AS n FROM audit_log WHERE resource_id = \(UUID(uuidString: patient.id)!)") == audited)

            // Only owners and admins delete.
            try await client.execute(uri: "/v1/patients/\(patient.id)", method: .delete, headers: fixture.auth("specialist")) { response in
                #expect(response.status == .forbidden && Self.decode(Problem.self, response)?.code == "tenancy.roleNotAllowed")
            }
            try await client.execute(uri: "/v1/patients/\(patient.id)", method: .delete, headers: fixture.auth("owner")) { response in
                #expect(response.status == .noContent)
            }
            for (method, body) in [(HTTPRequest.Method.get, nil), (.patch, Self.json(["name": "Jane Doe"])), (.delete, nil)] as [(HTTPRequest.Method, ByteBuffer?)] {
                try await client.execute(uri: "/v1/patients/\(patient.id)", method: method, headers: fixture.auth("owner"), body: body) { response in
                    #expect(response.status == .notFound, "\(method) of a deleted patient")
                }
            }
            try await client.execute(uri: "/v1/patients", method: .get, headers: fixture.auth("owner")) { response in
                #expect(Self.decode(PatientPageBody.self, response)?.patients.isEmpty == true)
            }
            // The sealed row stays, marked deleted.
            #expect(try await fixture.count("SELECT count(*) AS n FROM patients WHERE id = \(UUID(uuidString: patient.id)!) AND deleted_at IS NOT NULL") == 1)

            // The audit trail: who did what, with field names, never values.
            let trail = try await fixture.rows("""
                SELECT action, actor_user_id, request_id, CAST(metadata AS TEXT) AS metadata FROM audit_log \
                WHERE resource_id = \(UUID(uuidString: patient.id)!) ORDER BY created_at, id
                """)
            #expect(try trail.map { try $0.decode("action", as: String.self) } == ["patient.create", "patient.update", "patient.delete"])
            let owner = fixture.users["owner"]!
            let specialist = fixture.users["specialist"]!
            #expect(try trail.map { try $0.decode("actor_user_id", as: UUID.self) } == [owner, specialist, owner])
            #expect(try trail.allSatisfy { try $0.decode("request_id", as: String?.self)?.isEmpty == false })
            let metadata = try trail.map { try $0.decode("metadata", as: String.self) }
            #expect(metadata[0].contains("date_of_birth,email,phone") && metadata[1].contains("email,phone"), "\(metadata)")
            for text in metadata { #expect(!text.contains("Ana") && !text.contains("example.com") && !text.contains("1987")) }
        }
        // Every line the service logged at trace level: no patient data.
        let lines = buffer.lines.joined(separator: "\n")
        #expect(!buffer.lines.isEmpty)
        for plain in ["Ana Popescu", "ana.popescu@example.com", "ana.p@example.com", "+40 721 000 111", "1987-03-14", "Jane Doe"] {
            #expect(!lines.contains(plain), "a log line holds patient data")
        }
    }

    @Test("a patient sees and changes only its own record; staff-only actions are 403, other patients 404", arguments: PatientRouteTests.backends)
    func patientSelf(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let mine = try await Self.createOwn(client, fixture)
            let other = try await Self.create(client, fixture, ["name": "Jane Doe", "email": "jane.doe@example.com"])
            try await client.execute(uri: "/v1/patients", method: .get, headers: fixture.auth("patient")) { response in
                #expect(response.status == .ok && Self.decode(PatientPageBody.self, response)?.patients.map(\.id) == [mine.id])
            }
            try await client.execute(uri: "/v1/patients/\(mine.id)", method: .get, headers: fixture.auth("patient")) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/patients/\(other.id)", method: .get, headers: fixture.auth("patient")) { response in
                #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound")
            }
            try await client.execute(uri: "/v1/patients/\(mine.id)", method: .patch, headers: fixture.auth("patient"), body: Self.json(["phone": "+40 722 000 222"])) { response in
                #expect(response.status == .ok && Self.decode(PatientBody.self, response)?.phone == "+40 722 000 222")
            }
            try await client.execute(uri: "/v1/patients/\(other.id)", method: .patch, headers: fixture.auth("patient"), body: Self.json(["phone": "+40 722 000 222"])) { response in
                #expect(response.status == .notFound)
            }
            for (uri, method, body) in [
                ("/v1/patients", HTTPRequest.Method.post, Self.json(["name": "Someone Else"])),
                ("/v1/patients/search", .post, Self.json(["email": "jane.doe@example.com"])),
                ("/v1/patients/\(mine.id)", .delete, nil),
            ] as [(String, HTTPRequest.Method, ByteBuffer?)] {
                try await client.execute(uri: uri, method: method, headers: fixture.auth("patient"), body: body) { response in
                    #expect(response.status == .forbidden && Self.decode(Problem.self, response)?.code == "tenancy.roleNotAllowed", "\(method) \(uri)")
                }
            }
            #expect(try await fixture.count("SELECT count(*) AS n FROM patients WHERE organization_id = \(fixture.clinic) AND deleted_at IS NULL") == 2)
            let otherPhone = try await fixture.rows("SELECT phone FROM patients WHERE id = \(UUID(uuidString: other.id)!)")[0].decode("phone", as: Data?.self)
            #expect(otherPhone == nil, "the other patient's record is untouched")
        }
    }

    @Test("another clinic's patient: 404 on every route, absent from lists and searches, and unchanged in the database", arguments: PatientRouteTests.backends)
    func crossClinic(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let patient = try await Self.create(client, fixture)
            let id = UUID(uuidString: patient.id)!
            let before = try await fixture.rows("SELECT name, email, phone, updated_at, deleted_at FROM patients WHERE id = \(id)")
            let auditBefore = try await fixture.audited()
            for (method, body) in [(HTTPRequest.Method.get, nil), (.patch, Self.json(["name": "Jane Doe"])), (.delete, nil)] as [(HTTPRequest.Method, ByteBuffer?)] {
                try await client.execute(uri: "/v1/patients/\(patient.id)", method: method, headers: fixture.auth("other-owner"), body: body) { response in
                    #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound", "\(method)")
                    #expect(!String(buffer: response.body).contains("Ana"))
                }
            }
            try await client.execute(uri: "/v1/patients", method: .get, headers: fixture.auth("other-owner")) { response in
                #expect(response.status == .ok && Self.decode(PatientPageBody.self, response)?.patients.isEmpty == true)
            }
            try await client.execute(uri: "/v1/patients/search", method: .post, headers: fixture.auth("other-owner"), body: Self.json(["email": "ana.popescu@example.com"])) { response in
                #expect(response.status == .ok && Self.decode(PatientSearchBody.self, response)?.patients.isEmpty == true)
            }
            // Linking another clinic's member is refused like linking no one.
            try await client.execute(
                uri: "/v1/patients", method: .post, headers: fixture.auth("other-owner"),
                body: Self.json(["name": "Jane Doe", "user_id": fixture.users["patient"]!.lowercasedString])
            ) { response in
                #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.code == "patient.notAPatientMember")
            }
            let after = try await fixture.rows("SELECT name, email, phone, updated_at, deleted_at FROM patients WHERE id = \(id)")
            for column in ["name", "email", "phone"] {
                #expect(try before[0].decode(column, as: Data?.self) == after[0].decode(column, as: Data?.self), "\(column)")
            }
            #expect(try before[0].decode("updated_at", as: Date.self) == after[0].decode("updated_at", as: Date.self))
            #expect(try after[0].decode("deleted_at", as: Date?.self) == nil)
            #expect(try await fixture.audited() == auditBefore, "nothing audited: nothing happened")
            #expect(try await fixture.count("SELECT count(*) AS n FROM patients WHERE organization_id = \(fixture.otherClinic)") == 0)
        }
    }

    @Test("bad input: each field's rule named, never its value; no token 401; a linked account twice 409; nothing written", arguments: PatientRouteTests.backends)
    func badInput(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let patient = try await Self.create(client, fixture)
            let countBefore = try await fixture.patients()
            let auditBefore = try await fixture.audited()
            let cases: [(String, String, String)] = [
                (#"{"email":"ana.popescu@example.com"}"#, "name is required", "request.invalidField"),
                (#"{"name":""}"#, "name must be", "patient.invalidField"),
                (#"{"name":"   "}"#, "name must be", "patient.invalidField"),
                (#"{"name":"\#(String(repeating: "x", count: 201))"}"#, "name must be", "patient.invalidField"),
                (#"{"name":"Ana\u0007Popescu"}"#, "name must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","date_of_birth":"1987-02-30"}"#, "date_of_birth must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","date_of_birth":"2999-01-01"}"#, "date_of_birth must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","date_of_birth":"87-3-14"}"#, "date_of_birth must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","email":"not-an-email"}"#, "email must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","email":"ana popescu@example.com"}"#, "email must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","phone":"call me"}"#, "phone must be", "patient.invalidField"),
                (#"{"name":"Ana Popescu","user_id":"hunter2"}"#, "user_id must be a UUID", "request.invalidField"),
                (#"{"name":null}"#, "name must not be null", "request.invalidField"),
                (#"{"name":"Ana Popescu","email":null}"#, "email must not be null", "request.invalidField"),
                (#"{"name":42}"#, "name must be a string", "request.invalidField"),
                (#"["Ana Popescu"]"#, "the body must be", "request.invalidField"),
                ("Ana Popescu", "the body is not JSON", "request.invalidField"),
            ]
            for (body, detail, code) in cases {
                try await client.execute(uri: "/v1/patients", method: .post, headers: fixture.auth("owner"), body: ByteBuffer(string: body)) { response in
                    let problem = Self.decode(Problem.self, response)
                    #expect(response.status == .badRequest && problem?.code == code, "\(body): \(String(buffer: response.body))")
                    #expect(problem?.detail.hasPrefix(detail) == true, "\(body): \(problem?.detail ?? "")")
                    for value in ["Ana", "hunter2", "not-an-email", "call me", "1987-02-30", "2999"] {
                        #expect(problem?.detail.contains(value) != true, "\(body) echoed a value")
                    }
                }
            }
            for (uri, detail) in [
                ("/v1/patients/hunter2", "id must be a UUID"), ("/v1/patients?limit=0", "limit must be"), ("/v1/patients?limit=101", "limit must be"),
                ("/v1/patients?limit=ten", "limit must be"), ("/v1/patients?after=hunter2", "after must be"),
            ] {
                try await client.execute(uri: uri, method: .get, headers: fixture.auth("owner")) { response in
                    #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.detail.hasPrefix(detail) == true, "\(uri)")
                }
            }
            for (body, detail) in [(#"{"name":null}"#, "name must not be null"), (#"{"date_of_birth":"tomorrow"}"#, "date_of_birth must be"), (#"{"email":"nope"}"#, "email must be")] {
                try await client.execute(uri: "/v1/patients/\(patient.id)", method: .patch, headers: fixture.auth("owner"), body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.detail.hasPrefix(detail) == true, "\(body)")
                }
            }
            try await client.execute(uri: "/v1/patients/search", method: .post, headers: fixture.auth("owner"), body: Self.json(["email": "not-an-email"])) { response in
                #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.code == "patient.invalidField")
            }
            // A staff member's account is no patient's; a patient's account links to one record.
            try await client.execute(
                uri: "/v1/patients", method: .post, headers: fixture.auth("owner"),
                body: Self.json(["name": "Jane Doe", "user_id": fixture.users["specialist"]!.lowercasedString])
            ) { response in
                #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.code == "patient.notAPatientMember")
            }
            let linked = ["name": "Jane Doe", "user_id": fixture.users["patient"]!.lowercasedString]
            _ = try await Self.create(client, fixture, linked)
            try await client.execute(uri: "/v1/patients", method: .post, headers: fixture.auth("owner"), body: Self.json(linked)) { response in
                #expect(response.status == .conflict && Self.decode(Problem.self, response)?.code == "patient.alreadyLinked")
            }
            for (uri, method) in [("/v1/patients", HTTPRequest.Method.get), ("/v1/patients/\(patient.id)", .get), ("/v1/patients", .post)] {
                try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"], body: Self.json(Self.ana)) { response in
                    #expect(response.status == .unauthorized, "\(method) \(uri)")
                }
            }
            // One patient more (the linked one), one audit row more; no refusal wrote anything.
            #expect(try await fixture.patients() == countBefore + 1)
            #expect(try await fixture.audited() == auditBefore + 1)
            let stored = try await fixture.rows("SELECT updated_at FROM patients WHERE id = \(UUID(uuidString: patient.id)!)")
            #expect(try stored[0].decode("updated_at", as: Date.self) <= Date())
        }
    }

    @Test("one account, twenty requests at once to link it: one record, every other request 409", arguments: PatientRouteTests.backends)
    func linkRace(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            let body = Self.json(["name": "Jane Doe", "user_id": fixture.users["patient"]!.lowercasedString])
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await client.execute(uri: "/v1/patients", method: .post, headers: fixture.auth("owner"), body: body) { $0.status }
                    }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .created }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0 == .conflict }.count == 19, "\(statuses)")
            #expect(try await fixture.count("SELECT count(*) AS n FROM patients WHERE user_id = \(fixture.users["patient"]!)") == 1)
        }
    }

    @Test("keyset pages: every patient once, in creation order, however the pages fall", arguments: PatientRouteTests.backends)
    func pages(backend: Backend) async throws {
        try await withAPI(backend) { client, fixture in
            var made: [String] = []
            for index in 0..<7 { made.append(try await Self.create(client, fixture, ["name": "Patient \(index)"]).id) }
            for limit in [1, 3, 7, 50] {
                var seen: [String] = []
                var after: String?
                var pages = 0
                repeat {
                    let uri = "/v1/patients?limit=\(limit)" + (after.map { "&after=\($0)" } ?? "")
                    let page = try await client.execute(uri: uri, method: .get, headers: fixture.auth("specialist")) { Self.decode(PatientPageBody.self, $0) }
                    let got = try #require(page)
                    #expect(got.patients.count <= limit)
                    seen += got.patients.map(\.id)
                    after = got.next
                    pages += 1
                } while after != nil && pages < 20
                #expect(seen == made, "limit \(limit)")
                #expect(pages == max(1, (7 + limit - 1) / limit), "limit \(limit): no empty last page")
            }
        }
    }
}
