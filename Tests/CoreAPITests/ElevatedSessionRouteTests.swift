@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// Break-glass and impersonation sessions and the audit log through the API, on the embedded
/// default with the demo clinics: every role, bad input, another clinic's ids.
@Suite("Core API elevated sessions and audit log", .timeLimit(.minutes(3)))
struct ElevatedSessionRouteTests {
    struct Fixture: Sendable {
        let directory: TemporaryDirectory
        let tokens: [String: String]
        let admin: AdminDatabase

        func auth(_ who: String) -> HTTPFields { [.authorization: "Bearer \(tokens[who]!)", .contentType: "application/json"] }

        /// Rows of `table` (an elevated-session table) still open, counted on the admin role.
        func openSessions(_ table: String) async throws -> Int {
            try await admin.unscoped(reason: "test: count open sessions", actor: .system("tests")) { tx in
                try #require(try await tx.first("SELECT count(*) AS n FROM \(unsafeRaw: table) WHERE closed_at IS NULL")).decode("n", as: Int.self)
            }
        }
    }

    func withAPI(_ body: @escaping @Sendable (any TestClientProtocol, Fixture) async throws -> Void) async throws {
        let (app, directory, tokens, configuration) = try await DemoAPI.make("core-sessions")
        defer { directory.remove() }
        let admin = AdminDatabase(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await admin.shutdown() } }
        let fixture = Fixture(directory: directory, tokens: tokens, admin: admin)
        try await app.test(.router) { client in
            try await body(client, fixture)
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(type, from: Data(String(buffer: response.body).utf8))
    }

    static func json(_ object: [String: Any]) -> ByteBuffer {
        ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
    }

    @Test("break-glass: opened by the owner with a reason, listed, closed once; each step audited with its actor")
    func breakGlassLifecycle() async throws {
        try await withAPI { client, fixture in
            let reason = "Patient collapsed in the waiting room; need records"
            let opened = try await client.execute(
                uri: "/v1/break-glass-sessions", method: .post, headers: fixture.auth("demo-owner"),
                body: Self.json(["reason": reason, "duration_seconds": 600])
            ) { response -> ElevatedSessionBody? in
                #expect(response.status == .created)
                return Self.decode(ElevatedSessionBody.self, response)
            }
            let session = try #require(opened)
            #expect(session.kind == "break_glass" && session.organization_id == DemoData.demoClinic.lowercasedString)
            #expect(session.user_id == DemoData.person("demo-owner")!.userID.lowercasedString && session.reason == reason)
            let expires = try #require(ISO8601DateFormatter.withFractions.date(from: session.expires_at))
            #expect(abs(expires.timeIntervalSinceNow - 600) < 30)

            let listed = try await client.execute(uri: "/v1/elevated-sessions", method: .get, headers: fixture.auth("demo-owner")) {
                Self.decode(ElevatedSessionList.self, $0)
            }
            #expect(listed?.sessions.map(\.id) == [session.id] && listed?.sessions.first?.opened_at != nil)

            try await client.execute(uri: "/v1/break-glass-sessions/\(session.id)", method: .delete, headers: fixture.auth("demo-owner")) { response in
                #expect(response.status == .ok && Self.decode(SessionClosed.self, response) == SessionClosed(closed: true))
            }
            try await client.execute(uri: "/v1/break-glass-sessions/\(session.id)", method: .delete, headers: fixture.auth("demo-owner")) { response in
                #expect(response.status == .ok && Self.decode(SessionClosed.self, response) == SessionClosed(closed: false), "closing twice changes nothing")
            }
            let after = try await client.execute(uri: "/v1/elevated-sessions", method: .get, headers: fixture.auth("demo-owner")) {
                Self.decode(ElevatedSessionList.self, $0)
            }
            #expect(after?.sessions.isEmpty == true)

            let log = try await client.execute(uri: "/v1/audit-log", method: .get, headers: fixture.auth("demo-owner")) { response -> AuditLogPageBody? in
                #expect(response.status == .ok)
                return Self.decode(AuditLogPageBody.self, response)
            }
            let actions = (log?.entries ?? []).filter { $0.resource_id == session.id }.map(\.action)
            #expect(actions == ["break_glass.close", "break_glass.open"], "newest first: \(log?.entries.map(\.action) ?? [])")
            #expect(log?.entries.first { $0.action == "break_glass.open" }?.actor_user_id == session.user_id)
            let text = try await client.execute(uri: "/v1/audit-log", method: .get, headers: fixture.auth("demo-owner")) { String(buffer: $0.body) }
            #expect(!text.contains(reason), "the audit log shows ids and kinds, never the free-text reason")
        }
    }

    @Test("audit rows carry the request's id and the client's address: X-Forwarded-For from a trusted proxy, else the peer; answers are no-store")
    func auditOrigin() async throws {
        for trusted in [true, false] {
            let (app, directory, tokens, _) = try await DemoAPI.make("core-audit-origin") { configuration in
                if trusted { configuration.edge.trustedProxies = try! TrustedProxies(cidrs: ["127.0.0.0/8", "::1"]) }
            }
            defer { directory.remove() }
            try await app.test(.live) { client in
                var headers: HTTPFields = [.authorization: "Bearer \(tokens["demo-owner"]!)", .contentType: "application/json"]
                headers[.requestID] = "origin-\(trusted)"
                headers[.xForwardedFor] = "203.0.113.50, 198.51.100.4"
                let opened = try await client.execute(
                    uri: "/v1/break-glass-sessions", method: .post, headers: headers,
                    body: Self.json(["reason": "Checking the audit trail's origin", "duration_seconds": 600])
                ) { response -> ElevatedSessionBody? in
                    #expect(response.status == .created)
                    #expect(response.headers[.cacheControl] == "no-store", "a clinic's data is not cached")
                    return Self.decode(ElevatedSessionBody.self, response)
                }
                let session = try #require(opened)
                let log = try await client.execute(uri: "/v1/audit-log", method: .get, headers: [.authorization: "Bearer \(tokens["demo-owner"]!)"]) {
                    Self.decode(AuditLogPageBody.self, $0)
                }
                let row = try #require(log?.entries.first { $0.action == "break_glass.open" && $0.resource_id == session.id })
                #expect(row.request_id == "origin-\(trusted)")
                // Trusted: the rightmost address that is not a proxy. Untrusted: the header is
                // the client's own say, and the peer is the client.
                let expected: Set<String> = trusted ? ["198.51.100.4"] : ["127.0.0.1", "::1"]
                #expect(row.client_address.map(expected.contains) == true, "\(trusted): \(String(describing: row.client_address))")
            }
        }
    }

    @Test("impersonation: a specialist acts as a patient who has an account; a patient without one, or of another clinic, is refused")
    func impersonation() async throws {
        try await withAPI { client, fixture in
            let patient = UUIDv7.generate()
            let demoPatient = DemoData.person("demo-patient")!
            let stranger = UUIDv7.generate()
            try await fixture.admin.unscoped(reason: "test: patients", actor: .system("tests")) { tx in
                try await tx.execute("INSERT INTO patients (id, organization_id, user_id, name) VALUES (\(patient), \(DemoData.demoClinic), \(demoPatient.userID), \(Data([1])))")
                try await tx.execute("INSERT INTO patients (id, organization_id, name) VALUES (\(stranger), \(DemoData.otherClinic), \(Data([1])))")
            }
            let reason = "Helping the patient with their exercise plan"
            let opened = try await client.execute(
                uri: "/v1/impersonation-sessions", method: .post, headers: fixture.auth("demo-specialist"),
                body: Self.json(["reason": reason, "patient_id": patient.lowercasedString])
            ) { response -> ElevatedSessionBody? in
                #expect(response.status == .created)
                return Self.decode(ElevatedSessionBody.self, response)
            }
            #expect(opened?.kind == "impersonation" && opened?.patient_id == patient.lowercasedString)
            // Another clinic's patient is not there to act as.
            try await client.execute(
                uri: "/v1/impersonation-sessions", method: .post, headers: fixture.auth("demo-specialist"),
                body: Self.json(["reason": reason, "patient_id": stranger.lowercasedString])
            ) { response in
                #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound")
            }
            // Each malformed body is a 400 that names the field and the rule, and opens nothing.
            for (body, detail) in [
                (#"{"reason": "\#(reason)"}"#, "patient_id is required"),
                (#"{"reason": "\#(reason)", "patient_id": null}"#, "patient_id must not be null"),
                (#"{"reason": "\#(reason)", "patient_id": "not-a-uuid"}"#, "patient_id must be a UUID"),
                (#"{"reason": "\#(reason)", "patient_id": 7}"#, "patient_id must be a string"),
                (#"{"patient_id": "\#(patient.lowercasedString)"}"#, "reason is required"),
                (#"{"reason": "\#(reason)", "patient_id": "\#(patient.lowercasedString)", "duration_seconds": "long"}"#, "duration_seconds must be an integer"),
                (#"{"reason": "\#(reason)", "patient_id": "\#(patient.lowercasedString)", "duration_seconds": null}"#, "duration_seconds must not be null"),
                (#"["reason"]"#, "the body must be an object"),
                (#"{"reason": "#, "the body is not JSON"),
            ] {
                try await client.execute(
                    uri: "/v1/impersonation-sessions", method: .post, headers: fixture.auth("demo-specialist"), body: ByteBuffer(string: body)
                ) { response in
                    let problem = Self.decode(Problem.self, response)
                    #expect(response.status == .badRequest && problem?.code == "request.invalidField" && problem?.detail == detail, "\(body): \(String(buffer: response.body))")
                }
            }
            // The specialist lists its own; the owner sees every one.
            let mine = try await client.execute(uri: "/v1/elevated-sessions", method: .get, headers: fixture.auth("demo-specialist")) { Self.decode(ElevatedSessionList.self, $0) }
            #expect(mine?.sessions.count == 1)
            #expect(try await fixture.openSessions("patient_impersonation_sessions") == 1)
        }
    }

    @Test("refusals: no token 401, a patient 403, bad reasons, durations, ids and bodies 400 naming the field; nothing written")
    func refusals() async throws {
        try await withAPI { client, fixture in
            let good = "A reason long enough to be recorded"
            let cases: [(String, HTTPFields, ByteBuffer, HTTPResponse.Status, String)] = [
                ("no token", [.contentType: "application/json"], Self.json(["reason": good]), .unauthorized, "request.missingToken"),
                ("a patient", fixture.auth("demo-patient"), Self.json(["reason": good]), .forbidden, "tenancy.notAMember"),
                ("short reason", fixture.auth("demo-owner"), Self.json(["reason": "because"]), .badRequest, "tenancy.invalidReason"),
                ("a NUL in the reason", fixture.auth("demo-owner"), Self.json(["reason": "Patient \u{0}collapsed in the hall"]), .badRequest, "tenancy.invalidReason"),
                ("a reason of padding", fixture.auth("demo-owner"), Self.json(["reason": "   short    \n\t   "]), .badRequest, "tenancy.invalidReason"),
                ("a vertical tab around the reason", fixture.auth("demo-owner"), Self.json(["reason": "\u{0B}Patient collapsed in the hall"]), .badRequest, "tenancy.invalidReason"),
                ("a C1 control in the reason", fixture.auth("demo-owner"), Self.json(["reason": "Patient collapsed\u{85}in the hall"]), .badRequest, "tenancy.invalidReason"),
                ("2000 characters and padding", fixture.auth("demo-owner"), Self.json(["reason": String(repeating: "a", count: 2000) + "   "]), .badRequest, "tenancy.invalidReason"),
                ("too short", fixture.auth("demo-owner"), Self.json(["reason": good, "duration_seconds": 10]), .badRequest, "tenancy.invalidContext"),
                ("too long", fixture.auth("demo-owner"), Self.json(["reason": good, "duration_seconds": 86_400]), .badRequest, "tenancy.invalidContext"),
                ("patient on break-glass", fixture.auth("demo-owner"), Self.json(["reason": good, "patient_id": UUIDv7.generate().lowercasedString]), .badRequest, "request.invalidField"),
                ("not JSON", fixture.auth("demo-owner"), ByteBuffer(string: "reason=x"), .badRequest, "request.invalidField"),
                ("wrong type", fixture.auth("demo-owner"), Self.json(["reason": 42]), .badRequest, "request.invalidField"),
            ]
            for (name, headers, body, status, code) in cases {
                try await client.execute(uri: "/v1/break-glass-sessions", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == status, "\(name)")
                    #expect(Self.decode(Problem.self, response)?.code == code, "\(name): \(String(buffer: response.body))")
                }
            }
            // A body over 1 MiB is refused before it is read whole.
            let huge = ByteBuffer(string: #"{"reason":""# + String(repeating: "x", count: 2 << 20) + #""}"#)
            try await client.execute(uri: "/v1/break-glass-sessions", method: .post, headers: fixture.auth("demo-owner"), body: huge) { response in
                #expect(response.status == .contentTooLarge && Self.decode(Problem.self, response)?.code == "http.contentTooLarge")
            }
            #expect(try await fixture.openSessions("break_glass_sessions") == 0)
            // Ids in paths: malformed 400, unknown 404.
            try await client.execute(uri: "/v1/break-glass-sessions/not-a-uuid", method: .delete, headers: fixture.auth("demo-owner")) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v1/break-glass-sessions/\(UUIDv7.generate().lowercasedString)", method: .delete, headers: fixture.auth("demo-owner")) { response in
                #expect(response.status == .notFound && Self.decode(Problem.self, response)?.code == "tenancy.notFound")
            }
            // The audit log: owners and admins only; limit and cursor checked.
            for who in ["demo-specialist", "demo-patient"] {
                try await client.execute(uri: "/v1/audit-log", method: .get, headers: fixture.auth(who)) { response in
                    #expect(response.status == .forbidden && Self.decode(Problem.self, response)?.code == "tenancy.roleNotAllowed", "\(who)")
                }
            }
            try await client.execute(uri: "/v1/elevated-sessions", method: .get, headers: fixture.auth("demo-patient")) { #expect($0.status == .forbidden) }
            for query in ["limit=0", "limit=201", "limit=ten", "after=forged", "after=\(Base64URL.encode(Data("1|x".utf8)))"] {
                try await client.execute(uri: "/v1/audit-log?\(query)", method: .get, headers: fixture.auth("demo-owner")) { response in
                    #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.code == "request.invalidField", "\(query)")
                }
            }
        }
    }

    @Test("another clinic's session: 404 to close, absent from its lists and audit log, and still open")
    func crossClinic() async throws {
        try await withAPI { client, fixture in
            let opened = try await client.execute(
                uri: "/v1/break-glass-sessions", method: .post, headers: fixture.auth("demo-owner"),
                body: Self.json(["reason": "Emergency access for the on-call clinician"])
            ) { Self.decode(ElevatedSessionBody.self, $0) }
            let session = try #require(opened)
            try await client.execute(uri: "/v1/break-glass-sessions/\(session.id)", method: .delete, headers: fixture.auth("other-owner")) { response in
                #expect(response.status == .notFound, "never 403: another clinic's ids do not exist here")
            }
            try await client.execute(uri: "/v1/impersonation-sessions/\(session.id)", method: .delete, headers: fixture.auth("demo-owner")) {
                #expect($0.status == .notFound, "a break-glass id is not an impersonation session")
            }
            let theirs = try await client.execute(uri: "/v1/elevated-sessions", method: .get, headers: fixture.auth("other-owner")) { Self.decode(ElevatedSessionList.self, $0) }
            #expect(theirs?.sessions.isEmpty == true)
            let theirLog = try await client.execute(uri: "/v1/audit-log", method: .get, headers: fixture.auth("other-owner")) { Self.decode(AuditLogPageBody.self, $0) }
            #expect(theirLog?.entries.contains { $0.resource_id == session.id } == false)
            #expect(try await fixture.openSessions("break_glass_sessions") == 1)
        }
    }

    @Test("usage: this month's units per capability against its quota, for owners and admins only")
    func usage() async throws {
        try await withAPI { client, fixture in
            try await fixture.admin.withOrganization(DemoData.demoClinic, actor: .system("tests")) { tx in
                try await UsageMeter.setQuota(10, capability: .email, organization: DemoData.demoClinic, in: tx)
                try await UsageMeter.record(3, capability: .email, organization: DemoData.demoClinic, in: tx)
                try await UsageMeter.record(2, capability: .video, organization: DemoData.demoClinic, in: tx)
            }
            let body = try await client.execute(uri: "/v1/usage", method: .get, headers: fixture.auth("demo-owner")) { response -> UsageBody? in
                #expect(response.status == .ok)
                return Self.decode(UsageBody.self, response)
            }
            #expect(body?.capabilities == [
                CapabilityUsageBody(capability: "email", used: 3, limit: 10, remaining: 7),
                CapabilityUsageBody(capability: "video", used: 2, limit: nil, remaining: nil),
            ])
            #expect(body?.period_start.hasSuffix("-01T00:00:00.000Z") == true)
            let theirs = try await client.execute(uri: "/v1/usage", method: .get, headers: fixture.auth("other-owner")) { Self.decode(UsageBody.self, $0) }
            #expect(theirs?.capabilities.isEmpty == true)
            for who in ["demo-specialist", "demo-patient"] {
                try await client.execute(uri: "/v1/usage", method: .get, headers: fixture.auth(who)) { #expect($0.status == .forbidden, "\(who)") }
            }
        }
    }

    @Test("last activity: written on the first request of an interval only, and again after it; never for a refused token")
    func activity() async throws {
        let (app, directory, tokens, configuration) = try await DemoAPI.make("core-activity") { $0.activityInterval = .seconds(4) }
        defer { directory.remove() }
        let platform = Database(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await platform.shutdown() } }
        let owner = DemoData.person("demo-owner")!.userID
        @Sendable func last() async throws -> Date? {
            try await platform.query("SELECT last_activity_at FROM user_activity WHERE user_id = \(owner)").first?.decode("last_activity_at", as: Date.self)
        }
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer guessed"]) { #expect($0.status == .unauthorized) }
            #expect(try await platform.query("SELECT count(*) AS n FROM user_activity").first?.decode("n", as: Int.self) == 0)
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(tokens["demo-owner"]!)"]) { #expect($0.status == .ok) }
            let first = try #require(try await last())
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(tokens["demo-owner"]!)"]) { #expect($0.status == .ok) }
            #expect(try await last() == first, "debounced within the interval")
            // The interval is wide so that a loaded machine cannot let it lapse between the two
            // requests above (400 ms was a race).
            try await Task.sleep(for: .milliseconds(4_200))
            try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(tokens["demo-owner"]!)"]) { #expect($0.status == .ok) }
            #expect(try #require(try await last()) > first, "written again after the interval")
        }
    }

    @Test("the audit log in keyset pages: every row once, newest first, however the pages fall")
    func auditPages() async throws {
        try await withAPI { client, fixture in
            for index in 0..<7 {
                let opened = try await client.execute(
                    uri: "/v1/break-glass-sessions", method: .post, headers: fixture.auth("demo-owner"),
                    body: Self.json(["reason": "Audit page test number \(index)"])
                ) { Self.decode(ElevatedSessionBody.self, $0) }
                let id = try #require(opened?.id)
                try await client.execute(uri: "/v1/break-glass-sessions/\(id)", method: .delete, headers: fixture.auth("demo-owner")) { _ in }
            }
            let total = try await fixture.admin.unscoped(reason: "test: count", actor: .system("tests")) { tx in
                try #require(try await tx.first("SELECT count(*) AS n FROM audit_log WHERE organization_id = \(DemoData.demoClinic)")).decode("n", as: Int.self)
            }
            #expect(total >= 14)
            for limit in [1, 2, 3, 200] {
                var seen: [AuditEntryBody] = []
                var after: String?
                var pages = 0
                repeat {
                    let uri = "/v1/audit-log?limit=\(limit)" + (after.map { "&after=\($0)" } ?? "")
                    let page = try await client.execute(uri: uri, method: .get, headers: fixture.auth("demo-owner")) { Self.decode(AuditLogPageBody.self, $0) }
                    let entries = try #require(page).entries
                    #expect(entries.count <= limit)
                    seen += entries
                    after = page?.next
                    pages += 1
                } while after != nil && pages < 100
                #expect(seen.count == total, "limit \(limit)")
                #expect(Set(seen.map(\.id)).count == seen.count, "limit \(limit): a row twice")
                // Times shown to the millisecond: never increasing down the pages.
                let times = seen.map(\.created_at)
                #expect(zip(times, times.dropFirst()).allSatisfy { $0 >= $1 }, "limit \(limit): newest first")
            }
        }
    }
}

extension ISO8601DateFormatter {
    /// ISO 8601 with fractional seconds, as the API writes times.
    static var withFractions: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
