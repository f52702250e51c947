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

/// `POST /v1/webhooks/clerk`: Svix-verified, exactly once, users, organizations and memberships
/// kept in step with Clerk in any order; forged, stale, replayed and malformed deliveries
/// refused or deduplicated, with nothing written twice.
@Suite("Clerk webhooks", .timeLimit(.minutes(3)))
struct ClerkWebhookTests {
    static let secret = "whsec_" + Data((0..<32).map { UInt8($0 * 7 % 251) }).base64EncodedString()

    struct Fixture: Sendable {
        let admin: AdminDatabase
        let signer: WebhookVerifier

        /// A signed delivery of `event` (`id`: the svix-id; `age`: how old its timestamp is).
        func delivery(_ event: [String: Any], id: String = "msg_" + UUIDv7.generate().lowercasedString, age: TimeInterval = 0, signature: String? = nil) -> (HTTPFields, ByteBuffer) {
            let body = try! JSONSerialization.data(withJSONObject: event)
            let timestamp = Int64(Date().timeIntervalSince1970 - age)
            let headers: HTTPFields = [
                .contentType: "application/json", HTTPField.Name("svix-id")!: id, HTTPField.Name("svix-timestamp")!: "\(timestamp)",
                HTTPField.Name("svix-signature")!: signature ?? signer.signature(id: id, timestamp: timestamp, body: body),
            ]
            return (headers, ByteBuffer(bytes: body))
        }

        func rows(_ sql: SQLQuery) async throws -> [SQLRow] {
            try await admin.unscoped(reason: "clerk webhook tests: read", actor: .system("tests")) { tx in try await tx.query(sql) }
        }

        func count(_ table: String) async throws -> Int {
            try await rows("SELECT count(*) AS n FROM \(unsafeRaw: table)").first!.decode("n", as: Int.self)
        }
    }

    func withAPI(configured: Bool = true, _ body: @escaping @Sendable (any TestClientProtocol, Fixture) async throws -> Void) async throws {
        let (app, directory, _, configuration) = try await DemoAPI.make("core-clerk") { configuration in
            if configured { configuration.clerkWebhookVerifier = try? WebhookVerifier(secrets: [Self.secret]) }
        }
        defer { directory.remove() }
        let admin = AdminDatabase(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await admin.shutdown() } }
        let fixture = Fixture(admin: admin, signer: try WebhookVerifier(secrets: [Self.secret]))
        try await app.test(.router) { client in try await body(client, fixture) }
    }

    static func status(_ response: TestResponse) -> String? {
        (try? JSONDecoder().decode(WebhookReceipt.self, from: Data(String(buffer: response.body).utf8)))?.status
    }

    static func user(_ id: String, email: String = "ana.popescu@example.com", type: String = "user.created") -> [String: Any] {
        ["type": type, "object": "event", "data": [
            "id": id, "first_name": "Ana", "last_name": "Popescu", "primary_email_address_id": "idn_1",
            "email_addresses": [["id": "idn_1", "email_address": email], ["id": "idn_2", "email_address": "other@example.com"]],
            "image_url": "https://img.example/x.png",
        ]]
    }

    static func membership(org: String, user: String, role: String = "org:admin", type: String = "organizationMembership.created") -> [String: Any] {
        ["type": type, "data": [
            "id": "orgmem_\(org)_\(user)", "role": role,
            "organization": ["id": org, "name": "Physio Bucharest", "slug": "Physio Bucharest!"],
            "public_user_data": ["user_id": user, "identifier": "someone@example.com"],
        ]]
    }

    @Test("a membership Clerk removes is refused at once: the memberships this instance keeps are asked again")
    func removalTakesEffect() async throws {
        let (app, directory, tokens, configuration) = try await DemoAPI.make("core-clerk-removal") { configuration in
            configuration.clerkWebhookVerifier = try? WebhookVerifier(secrets: [Self.secret])
            configuration.principalCacheTTL = .seconds(60)  // long: only the invalidation can explain a refusal
        }
        defer { directory.remove() }
        let admin = AdminDatabase(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await admin.shutdown() } }
        let fixture = Fixture(admin: admin, signer: try WebhookVerifier(secrets: [Self.secret]))
        let owner = try #require(DemoData.person("demo-owner"))
        let auth: HTTPFields = [.authorization: "Bearer \(tokens["demo-owner"]!)"]
        try await app.test(.router) { client in
            // (The application migrated and seeded the database as it started.)
            try await admin.unscoped(reason: "clerk webhook tests: link the demo owner to Clerk ids", actor: .system("tests")) { tx in
                try await tx.execute("UPDATE organizations SET clerk_organization_id = 'org_demo' WHERE id = \(owner.organizationID)")
                try await tx.execute("UPDATE users SET clerk_user_id = 'user_demo_owner' WHERE id = \(owner.userID)")
            }
            try await client.execute(uri: "/v1/me", method: .get, headers: auth) { #expect($0.status == .ok) }
            let (headers, body) = fixture.delivery(Self.membership(org: "org_demo", user: "user_demo_owner", type: "organizationMembership.deleted"))
            try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { #expect(Self.status($0) == "applied") }
            try await client.execute(uri: "/v1/me", method: .get, headers: auth) { response in
                #expect(response.status == .forbidden && String(buffer: response.body).contains("tenancy.notAMember"))
            }
        }
    }

    @Test("a user, replayed: applied once, then duplicate; only the id, the primary e-mail and a display name are kept")
    func userOnce() async throws {
        try await withAPI { client, fixture in
            let (headers, body) = fixture.delivery(Self.user("user_ana"))
            try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .ok && Self.status(response) == "applied")
            }
            let before = try await fixture.count("users")
            for _ in 0..<3 {
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { #expect(Self.status($0) == "duplicate") }
            }
            #expect(try await fixture.count("users") == before)
            let row = try #require(try await fixture.rows("SELECT primary_email, display_name, deleted_at FROM users WHERE clerk_user_id = 'user_ana'").first)
            #expect(try row.decode("primary_email", as: String?.self) == "ana.popescu@example.com")
            #expect(try row.decode("display_name", as: String?.self) == "Ana Popescu")
            // An update changes the row; the e-mail follows the primary address.
            let (h2, b2) = fixture.delivery(Self.user("user_ana", email: "Ana.New@Example.com", type: "user.updated"))
            try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: h2, body: b2) { #expect(Self.status($0) == "applied") }
            #expect(try await fixture.rows("SELECT primary_email FROM users WHERE clerk_user_id = 'user_ana'").first?.decode("primary_email", as: String?.self) == "ana.new@example.com")
            #expect(try await fixture.count("users") == before)
        }
    }

    @Test("ten copies of one delivery at once: one applied, nine duplicates, one membership")
    func concurrentCopies() async throws {
        try await withAPI { client, fixture in
            let (headers, body) = fixture.delivery(Self.membership(org: "org_race", user: "user_race"))
            let statuses = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<10 {
                    group.addTask { try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { Self.status($0) } }
                }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == "applied" }.count == 1 && statuses.filter { $0 == "duplicate" }.count == 9, "\(statuses)")
            #expect(try await fixture.rows("""
                SELECT m.id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.clerk_user_id = 'user_race'
                """).count == 1)
        }
    }

    @Test("any order: a membership before its organization and user makes both; the organization's event then fills it in; roles map")
    func reordered() async throws {
        try await withAPI { client, fixture in
            for event in [Self.membership(org: "org_pb", user: "user_b", role: "org:admin"),
                          ["type": "organization.created", "data": ["id": "org_pb", "name": "Physio Bucharest SRL", "slug": "physio-bucharest"]] as [String: Any],
                          Self.user("user_b"),
                          Self.membership(org: "org_pb", user: "user_c", role: "org:member")] {
                let (headers, body) = fixture.delivery(event)
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .ok && Self.status(response) == "applied", "\(event["type"] ?? "")")
                }
            }
            let orgs = try await fixture.rows("SELECT id, slug, name, status FROM organizations WHERE clerk_organization_id = 'org_pb'")
            #expect(orgs.count == 1)
            let slug = try orgs.first?.decode("slug", as: String.self), name = try orgs.first?.decode("name", as: String.self)
            #expect(slug == "physio-bucharest" && name == "Physio Bucharest SRL")
            let roles = try await fixture.rows("""
                SELECT u.clerk_user_id AS who, m.role AS role FROM memberships m JOIN users u ON u.id = m.user_id \
                JOIN organizations o ON o.id = m.organization_id WHERE o.clerk_organization_id = 'org_pb' ORDER BY u.clerk_user_id
                """).map { "\(try $0.decode("who", as: String.self))=\(try $0.decode("role", as: String.self))" }
            #expect(roles == ["user_b=admin", "user_c=patient"])
            // A role change, then the membership's removal.
            for event in [Self.membership(org: "org_pb", user: "user_c", role: "org:specialist", type: "organizationMembership.updated"),
                          Self.membership(org: "org_pb", user: "user_b", type: "organizationMembership.deleted")] {
                let (headers, body) = fixture.delivery(event)
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { #expect(Self.status($0) == "applied") }
            }
            let after = try await fixture.rows("""
                SELECT u.clerk_user_id AS who, m.role AS role FROM memberships m JOIN users u ON u.id = m.user_id \
                JOIN organizations o ON o.id = m.organization_id WHERE o.clerk_organization_id = 'org_pb'
                """).map { "\(try $0.decode("who", as: String.self))=\(try $0.decode("role", as: String.self))" }
            #expect(after == ["user_c=specialist"])
        }
    }

    @Test("late retries are stale: a membership removed stays removed, a role lowered stays lowered")
    func staleRetries() async throws {
        try await withAPI { client, fixture in
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            func at(_ event: [String: Any], _ offset: Int64) -> [String: Any] { event.merging(["timestamp": now + offset]) { $1 } }
            let sequence: [([String: Any], String)] = [
                // Delivered in this order; made in the order of the offsets.
                (at(Self.membership(org: "org_late", user: "user_gone", type: "organizationMembership.deleted"), 2_000), "applied"),
                (at(Self.membership(org: "org_late", user: "user_gone", role: "org:admin"), 1_000), "stale"),
                (at(Self.membership(org: "org_late", user: "user_down", role: "org:assistant", type: "organizationMembership.updated"), 3_000), "applied"),
                (at(Self.membership(org: "org_late", user: "user_down", role: "org:admin"), 1_500), "stale"),
                (at(Self.membership(org: "org_late", user: "user_down", role: "org:admin", type: "organizationMembership.updated"), 2_500), "stale"),
                // A later event applies as usual.
                (at(Self.membership(org: "org_late", user: "user_gone", role: "org:specialist"), 4_000), "applied"),
            ]
            for (event, expected) in sequence {
                let (headers, body) = fixture.delivery(event)
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .ok && Self.status(response) == expected, "\(event["type"] ?? "") at +\((event["timestamp"] as? Int64 ?? 0) - now)")
                }
            }
            let roles = try await fixture.rows("""
                SELECT u.clerk_user_id AS who, m.role AS role FROM memberships m JOIN users u ON u.id = m.user_id \
                JOIN organizations o ON o.id = m.organization_id WHERE o.clerk_organization_id = 'org_late' ORDER BY u.clerk_user_id
                """).map { "\(try $0.decode("who", as: String.self))=\(try $0.decode("role", as: String.self))" }
            #expect(roles == ["user_down=assistant", "user_gone=specialist"])
        }
    }

    @Test("deletions are final, even when they arrive first")
    func deletions() async throws {
        try await withAPI { client, fixture in
            for event in [["type": "user.deleted", "data": ["id": "user_gone", "deleted": true]] as [String: Any],
                          Self.user("user_gone"),
                          ["type": "organization.deleted", "data": ["id": "org_gone", "deleted": true]],
                          ["type": "organization.updated", "data": ["id": "org_gone", "name": "Back Again", "slug": "back"]]] {
                let (headers, body) = fixture.delivery(event)
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { #expect(Self.status($0) == "applied") }
            }
            let user = try await fixture.rows("SELECT deleted_at, primary_email FROM users WHERE clerk_user_id = 'user_gone'")
            let deletedAt = try user.first?.decode("deleted_at", as: Date?.self)
            #expect(user.count == 1 && deletedAt != nil)
            #expect(try user.first?.decode("primary_email", as: String?.self) == nil, "a deleted user's later update writes nothing")
            let org = try await fixture.rows("SELECT status, name FROM organizations WHERE clerk_organization_id = 'org_gone'")
            let status = try org.first?.decode("status", as: String.self), name = try org.first?.decode("name", as: String.self)
            #expect(status == "deleted" && name != "Back Again")
        }
    }

    @Test("forged, stale, unsigned, tampered, malformed and unmappable deliveries: refused, nothing written, the delivery not spent")
    func refusals() async throws {
        try await withAPI { client, fixture in
            let users = try await fixture.count("users")
            let events = try await fixture.count("inbound_webhook_events")
            let (good, body) = fixture.delivery(Self.user("user_x"), id: "msg_forged")
            var forged = good
            forged[HTTPField.Name("svix-signature")!] = "v1," + Data(repeating: 1, count: 32).base64EncodedString()
            var unsigned = good
            unsigned[HTTPField.Name("svix-signature")!] = nil
            let other = try WebhookVerifier(secrets: ["whsec_" + Data(repeating: 9, count: 32).base64EncodedString()])
            var wrongKey = good
            let timestamp = good[HTTPField.Name("svix-timestamp")!]!
            wrongKey[HTTPField.Name("svix-signature")!] = other.signature(id: "msg_forged", timestamp: Int64(timestamp)!, body: Data(body.readableBytesView))
            let (stale, staleBody) = fixture.delivery(Self.user("user_x"), id: "msg_stale", age: 600)
            let tampered = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: Self.user("user_x", email: "attacker@evil.example")))
            for (name, headers, payload) in [("forged", forged, body), ("unsigned", unsigned, body), ("wrong key", wrongKey, body),
                                            ("stale", stale, staleBody), ("tampered", good, tampered)] {
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: payload) { response in
                    #expect(response.status == .unauthorized, "\(name)")
                    #expect(!String(buffer: response.body).contains("attacker"), "\(name): never echoed")
                }
            }
            // Signed but unusable: 422, and the delivery id is not spent (a fixed retry applies).
            for (name, event) in [("unknown role", Self.membership(org: "org_x", user: "user_x", role: "org:superuser")),
                                  ("no data", ["type": "user.created"] as [String: Any]),
                                  ("wrong shape", ["type": "user.created", "data": ["id": 42]])] {
                let (headers, payload) = fixture.delivery(event, id: "msg_\(name.replacingOccurrences(of: " ", with: "_"))")
                try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: payload) { response in
                    #expect(response.status == .unprocessableContent, "\(name): \(String(buffer: response.body))")
                }
            }
            #expect(try await fixture.count("users") == users)
            #expect(try await fixture.count("inbound_webhook_events") == events)
            #expect(try await fixture.count("organizations") == 2, "only the demo clinics")
            // The genuine delivery still applies.
            try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: good, body: body) { #expect(Self.status($0) == "applied") }
            // An event type this service does not handle: recorded, nothing else.
            let (h, b) = fixture.delivery(["type": "session.created", "data": ["id": "sess_1"]])
            try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: h, body: b) { #expect(Self.status($0) == "ignored") }
        }
    }

    @Test("without CLERK_WEBHOOK_SECRET every delivery is 503, so Clerk retries until it is set")
    func notConfigured() async throws {
        try await withAPI(configured: false) { client, fixture in
            let (headers, body) = fixture.delivery(Self.user("user_y"))
            try await client.execute(uri: "/v1/webhooks/clerk", method: .post, headers: headers, body: body) { response in
                #expect(response.status == .serviceUnavailable)
            }
        }
        let error = #expect(throws: ConfigurationError.self) {
            try CoreAPIConfiguration(environment: ["APP_ENV": "development", "CLERK_WEBHOOK_SECRET": "whsec_not-base64!"])
        }
        #expect(error?.description.contains("CLERK_WEBHOOK_SECRET") == true && error?.description.contains("not-base64") == false)
    }
}
