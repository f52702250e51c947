@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// The platform administrators' provider routes: a principal path with no clinic membership,
/// secrets never shown, rotation guarded by If-Match, audited, and seen by the resolver at once.
@Suite("Core API platform admin: providers", .timeLimit(.minutes(3)))
struct AdminProviderTests {
    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(type, from: Data(String(buffer: response.body).utf8))
    }

    @Test("list and rotate: admins only, secrets by name, If-Match on the version, audited, no value in any answer")
    func rotate() async throws {
        let (app, directory, tokens, configuration) = try await DemoAPI.make("core-admin")
        defer { directory.remove() }
        let admin = AdminDatabase(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await admin.shutdown() } }
        let platform = Database(configuration: configuration.database, logger: Logger(label: "test"))
        defer { Task { await platform.shutdown() } }

        let operatorID = UUIDv7.generate()
        try await app.test(.router) { client in
            // The app's boot has migrated the database by now.
            try await admin.unscoped(reason: "admin provider tests: a platform administrator", actor: .system("tests")) { tx in
                try await tx.execute("INSERT INTO users (id, is_platform_admin) VALUES (\(operatorID), \(true))")
            }
            let secret = try #require(configuration.devTokenSecret)
            // A platform administrator is a member of no clinic; the token's organization is ignored.
            let operatorToken = try await LocalDevIssuer(environment: .development, secret: secret).issue(user: operatorID, organization: DemoData.demoClinic)
            let keyring = try await PlatformBoot.localKeyring(in: directory.url.appendingPathComponent("data"), logger: Logger(label: "test"))
            let registry = ProviderRegistry(database: platform, cipher: ColumnCipher(keyring: keyring, logger: Logger(label: "test")))
            try await registry.insertIfAbsent(.email, kind: .ses, config: ["from_address": "clinic@restartix.example", "region": "eu-central-1"],
                                              secrets: ProviderSecrets(["access_key_id": "AKIAOLDKEY", "secret_access_key": "old-secret-value-123"]))
            let auth: HTTPFields = [.authorization: "Bearer \(operatorToken)", .contentType: "application/json"]
            let listed = try await client.execute(uri: "/v1/admin/platform-service-providers", method: .get, headers: auth) { response -> ProviderList? in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains("old-secret-value"), "never a secret value")
                return Self.decode(ProviderList.self, response)
            }
            let email = try #require(listed?.providers.first { $0.capability == "email" })
            #expect(email.secrets == ["access_key_id", "secret_access_key"] && email.version == 1 && email.provider_kind == "ses")

            // Clinic staff, patients and no token: refused.
            for who in ["demo-owner", "demo-patient"] {
                try await client.execute(uri: "/v1/admin/platform-service-providers", method: .get, headers: [.authorization: "Bearer \(tokens[who]!)"]) { response in
                    #expect(response.status == .forbidden && Self.decode(Problem.self, response)?.code == "tenancy.roleNotAllowed", "\(who)")
                }
            }
            try await client.execute(uri: "/v1/admin/platform-service-providers", method: .get) { #expect($0.status == .unauthorized) }

            let rotation = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["secrets": ["access_key_id": "AKIANEWKEY", "secret_access_key": "new-secret-value-456"]]))
            // No If-Match: 428; a stale one: 412 with the current ETag; nothing changed.
            var noMatch = auth
            noMatch[.ifMatch] = nil
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: noMatch, body: rotation) { #expect($0.status == .preconditionRequired) }
            var stale = auth
            stale[.ifMatch] = "\"7\""
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: stale, body: rotation) { response in
                #expect(response.status == .preconditionFailed && response.headers[.eTag] == "\"1\"")
            }
            #expect(try await registry.lookup(.email, organization: nil)?.secrets["secret_access_key"] == "old-secret-value-123")

            var current = auth
            current[.ifMatch] = "\"1\""
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: current, body: rotation) { response in
                #expect(response.status == .ok && response.headers[.eTag] == "\"2\"")
                #expect(Self.decode(ProviderBody.self, response)?.version == 2)
                #expect(!String(buffer: response.body).contains("new-secret-value"))
            }
            #expect(try await registry.lookup(.email, organization: nil)?.secrets["secret_access_key"] == "new-secret-value-456")
            // The same If-Match again is now stale: two admins cannot overwrite each other.
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: current, body: rotation) { #expect($0.status == .preconditionFailed) }
            // Bad input: an unknown capability row 404, an invalid setting 422, a bad name 400.
            try await client.execute(uri: "/v1/admin/platform-service-providers/video", method: .patch, headers: current, body: rotation) { #expect($0.status == .notFound) }
            var two = auth
            two[.ifMatch] = "\"2\""
            let invalid = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["config": ["from_address": "not-an-address"]]))
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: two, body: invalid) { #expect($0.status == .unprocessableContent) }
            try await client.execute(uri: "/v1/admin/platform-service-providers/Not-A-Name", method: .patch, headers: two, body: rotation) { #expect($0.status == .badRequest) }
            // An If-Match that is no entity tag is 400, whatever version it might mean.
            for tag in ["2", "\"2", "\"two\"", "\"\"", "W/2", "\"-2\""] {
                var bad = auth
                bad[.ifMatch] = tag
                try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: bad, body: rotation) { response in
                    #expect(response.status == .badRequest, "\(tag)")
                }
            }
            // A key the client chose (a secret's name) is never echoed: it can hold data.
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: two, body: ByteBuffer(string: #"{"secrets": {"AKIAEXAMPLEKEY123": 5}}"#)) { response in
                #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.detail == "secrets[key] must be a string")
                #expect(!String(buffer: response.body).contains("AKIAEXAMPLEKEY123"))
            }
            // A null field is refused by name; leaving it out is how a field keeps its value.
            try await client.execute(uri: "/v1/admin/platform-service-providers/email", method: .patch, headers: two, body: ByteBuffer(string: #"{"secrets": null}"#)) { response in
                #expect(response.status == .badRequest && Self.decode(Problem.self, response)?.detail == "secrets must not be null")
            }
        }
        // Audited with the operator as actor and the fields that changed, never their values.
        let audit = try await admin.unscoped(reason: "admin provider tests: audit rows", actor: .system("tests")) { tx in
            try await tx.query("SELECT actor_user_id, CAST(metadata AS TEXT) AS metadata FROM audit_log WHERE action = 'provider.rotate'")
        }
        #expect(audit.count == 1)
        #expect(try audit.first?.decode("actor_user_id", as: UUID?.self) == operatorID)
        let metadata = try audit.first?.decode("metadata", as: String.self) ?? ""
        #expect(metadata.contains("secrets.secret_access_key") && !metadata.contains("new-secret-value"))
    }
}
