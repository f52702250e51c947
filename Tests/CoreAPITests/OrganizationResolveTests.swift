@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import RestartixKit
import RestartixPlatform
import RestartixRedis
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// `GET /v1/public/organizations/resolve` and the library's ``OrganizationDirectory`` behind it:
/// subdomains and verified custom domains, active clinics only, cached aside and invalidated by
/// every change the directory makes.
@Suite("Organization resolution", .timeLimit(.minutes(3)))
struct OrganizationResolveTests {
    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(type, from: Data(String(buffer: response.body).utf8))
    }

    @Test("the route: a subdomain resolves without a token; unknown addresses 404; addresses that are not host names 400")
    func route() async throws {
        let (app, directory, _, _) = try await DemoAPI.make("core-resolve")
        defer { directory.remove() }
        try await app.test(.router) { client in
            for domain in ["demo-clinic.clinic.localhost", "Demo-Clinic.Portal.LOCALHOST.", "demo-clinic.clinic.localhost:8443"] {
                try await client.execute(uri: "/v1/public/organizations/resolve?domain=\(domain)", method: .get) { response in
                    #expect(response.status == .ok, "\(domain)")
                    let body = Self.decode(ResolvedOrganizationBody.self, response)
                    #expect(body?.organization_id == DemoData.demoClinic.lowercasedString && body?.slug == "demo-clinic" && body?.name == "Demo Clinic", "\(domain)")
                    #expect(body?.via == "subdomain" && body?.surface?.hasSuffix(".localhost") == true)
                    #expect(response.headers[HTTPField.Name("RateLimit-Limit")!] != nil, "rate limited per address")
                }
            }
            for domain in ["nobody.clinic.localhost", "a.demo-clinic.clinic.localhost", "physio-nowhere.example.ro", "clinic.localhost"] {
                try await client.execute(uri: "/v1/public/organizations/resolve?domain=\(domain)", method: .get) { response in
                    #expect(response.status == .notFound, "\(domain)")
                    #expect(Self.decode(Problem.self, response)?.code == "request.notFound")
                }
            }
            let long = String(repeating: "a", count: 250) + ".ro"
            for query in ["", "domain=", "domain=ab", "domain=bad_name.example.com", "domain=-x.example.com", "domain=a..b.com",
                          "domain=x.com%27%20OR%201%3D1", "domain=\(long)", "domain=\(String(repeating: "a", count: 64)).com", "domain=localhost"] {
                try await client.execute(uri: "/v1/public/organizations/resolve?\(query)", method: .get) { response in
                    #expect(response.status == .badRequest, "\(query.prefix(40))")
                    let problem = Self.decode(Problem.self, response)
                    #expect(["request.invalidField", "directory.invalidDomain"].contains(problem?.code ?? ""), "\(query.prefix(40))")
                    #expect(problem?.detail.contains("bad_name") == false && problem?.detail.contains("OR 1") == false, "never echoed")
                }
            }
        }
    }

    /// A directory over a fresh embedded database with the demo clinics.
    func withDirectory(cache: (Logger) throws -> Aside = { Aside(logger: $0) }, _ body: (OrganizationDirectory, AdminDatabase) async throws -> Void) async throws {
        let scratch = try TemporaryDirectory("directory")
        defer { scratch.remove() }
        let configuration = DatabaseConfiguration(sqlitePath: scratch.path("d.sqlite"))
        let owner = Database(configuration: configuration, logger: Logger(label: "test"))
        _ = try await Migrator(platformSchemaOn: owner, logger: Logger(label: "test")).migrate()
        await owner.shutdown()
        let admin = AdminDatabase(configuration: configuration, logger: Logger(label: "test"))
        try await DemoData.seed(admin, environment: .test)
        let directory = OrganizationDirectory(admin: admin, cache: try cache(Logger(label: "test")), suffixes: ["clinic.localhost"], ttl: .seconds(60))
        do { try await body(directory, admin) } catch {
            await admin.shutdown()
            throw error
        }
        await admin.shutdown()
    }

    @Test("custom domains: found once verified, gone once removed, at once though misses are cached; a suspended clinic resolves to nothing")
    func customDomains() async throws {
        try await withDirectory { directory, admin in
            let actor = PlatformActor.service("tests")
            #expect(try await directory.resolve(domain: "physio-bucharest.example.ro") == nil, "a miss, now cached")
            try await directory.addDomain("Physio-Bucharest.example.ro", to: DemoData.demoClinic, actor: actor)
            #expect(try await directory.resolve(domain: "physio-bucharest.example.ro") == nil, "not verified yet")
            try await directory.verifyDomain("physio-bucharest.example.ro", of: DemoData.demoClinic, actor: actor)
            let found = try await directory.resolve(domain: "PHYSIO-BUCHAREST.example.ro.")
            #expect(found?.organizationID == DemoData.demoClinic && found?.via == "custom" && found?.surface == nil)

            // Cached: a change behind the directory's back is not seen until the TTL...
            try await admin.withOrganization(DemoData.demoClinic, actor: actor) { tx in
                try await tx.execute("UPDATE organizations SET name = 'Renamed Behind The Back' WHERE id = \(DemoData.demoClinic)")
            }
            #expect(try await directory.resolve(domain: "physio-bucharest.example.ro")?.name == "Demo Clinic")
            // ...while every change through it is seen at once.
            try await directory.setStatus("suspended", of: DemoData.demoClinic, actor: actor)
            #expect(try await directory.resolve(domain: "physio-bucharest.example.ro") == nil)
            #expect(try await directory.resolve(domain: "demo-clinic.clinic.localhost") == nil)
            try await directory.setStatus("active", of: DemoData.demoClinic, actor: actor)
            #expect(try await directory.resolve(domain: "demo-clinic.clinic.localhost")?.name == "Renamed Behind The Back")
            #expect(try await directory.removeDomain("physio-bucharest.example.ro", of: DemoData.demoClinic, actor: actor))
            #expect(try await directory.resolve(domain: "physio-bucharest.example.ro") == nil)
            #expect(try await directory.removeDomain("physio-bucharest.example.ro", of: DemoData.demoClinic, actor: actor) == false)

            // Another clinic cannot verify or remove clinic A's domain, nor add it twice.
            try await directory.addDomain("shared-name.example.ro", to: DemoData.demoClinic, verified: true, actor: actor)
            try await directory.verifyDomain("shared-name.example.ro", of: DemoData.otherClinic, actor: actor)
            #expect(try await directory.removeDomain("shared-name.example.ro", of: DemoData.otherClinic, actor: actor) == false)
            await #expect(throws: DatabaseError.self) { try await directory.addDomain("shared-name.example.ro", to: DemoData.otherClinic, actor: actor) }
            #expect(try await directory.resolve(domain: "shared-name.example.ro")?.organizationID == DemoData.demoClinic)
            await #expect(throws: DirectoryError.self) { try await directory.setStatus("gone", of: DemoData.demoClinic, actor: actor) }

            // Each change left its audit row.
            let actions = try await admin.unscoped(reason: "test: audit rows", actor: actor) { tx in
                try await tx.query("SELECT action FROM audit_log WHERE action LIKE 'organization%' ORDER BY created_at").map { try $0.decode("action", as: String.self) }
            }
            #expect(actions.filter { $0 == "organization_domain.add" }.count == 2 && actions.contains("organization_domain.verify")
                && actions.contains("organization_domain.remove") && actions.filter { $0 == "organization.status" }.count == 2, "\(actions)")
        }
    }

    @Test("through Redis, one instance's change is every instance's at once")
    func sharedCache() async throws {
        guard RequiredServices.shouldRun("REDIS_URL") else { return }
        let url = try RequiredServices.require("REDIS_URL")
        let prefix = "aside-test-\(UUIDv7.generate().lowercasedString):"
        let redis = try RedisClient(url: url, logger: Logger(label: "test"))
        defer { redis.shutdown() }
        try await withDirectory(cache: { Aside(redis: redis, prefix: prefix, logger: $0) }) { first, admin in
            let second = OrganizationDirectory(admin: admin, cache: Aside(redis: redis, prefix: prefix, logger: Logger(label: "test")), suffixes: ["clinic.localhost"])
            let actor = PlatformActor.service("tests")
            #expect(try await second.resolve(domain: "shared.example.ro") == nil, "a miss, cached in Redis")
            try await first.addDomain("shared.example.ro", to: DemoData.otherClinic, verified: true, actor: actor)
            #expect(try await second.resolve(domain: "shared.example.ro")?.organizationID == DemoData.otherClinic)
            try await first.setStatus("deleted", of: DemoData.otherClinic, actor: actor)
            #expect(try await second.resolve(domain: "other-clinic.clinic.localhost") == nil)
            #expect(try await second.resolve(domain: "shared.example.ro") == nil)
        }
    }
}
