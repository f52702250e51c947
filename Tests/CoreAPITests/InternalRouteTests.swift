@testable import CoreAPI
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Testing

/// The `/internal` routes and their service-account tokens: who may call, and every way a token
/// is refused.
@Suite("Core API internal routes", .timeLimit(.minutes(3)))
struct InternalRouteTests {
    static let current = "internal-routes-current-secret-0123456789abcdef"
    static let previous = "internal-routes-previous-secret-0123456789abcdef"

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(type, from: Data(String(buffer: response.body).utf8))
    }

    static func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }

    @Test("a service-account token for the Core API is answered with its service and scopes; the previous secret verifies during a rotation")
    func whoami() async throws {
        let (app, directory, _, _) = try await DemoAPI.make("core-internal") { configuration in
            configuration.serviceAccounts = try? ServiceAccountTokens(secrets: [Self.current, Self.previous])
        }
        defer { directory.remove() }
        let signer = try ServiceAccountTokens(secrets: [Self.current])
        try await app.test(.router) { client in
            // Issued once the API is up: on a loaded machine its boot can outlast a short lifetime.
            let token = try signer.issue(service: "telemetry-api", audience: "restartix-core-api", scopes: ["telemetry:aggregates:write", "b:read"], lifetime: .seconds(300))
            let rotated = try ServiceAccountTokens(secrets: [Self.previous]).issue(service: "jobs", audience: "restartix-core-api", scopes: [], lifetime: .seconds(60))
            try await client.execute(uri: "/internal/v1/whoami", method: .get, headers: Self.bearer(token)) { response in
                #expect(response.status == .ok)
                let body = Self.decode(ServiceWhoAmI.self, response)
                #expect(body?.service == "telemetry-api")
                #expect(body?.scopes == ["b:read", "telemetry:aggregates:write"])
                #expect(body?.expires_at.hasSuffix("Z") == true)
            }
            try await client.execute(uri: "/internal/v1/whoami", method: .get, headers: Self.bearer(rotated)) { response in
                #expect(response.status == .ok && Self.decode(ServiceWhoAmI.self, response)?.service == "jobs")
            }
        }
    }

    @Test("refused: no token, a user's session token, another audience, another secret, an expired token, a tampered one; and a service token on /v1")
    func refusals() async throws {
        let (app, directory, tokens, _) = try await DemoAPI.make("core-internal-refusals") { configuration in
            configuration.serviceAccounts = try? ServiceAccountTokens(secrets: [Self.current])
        }
        defer { directory.remove() }
        let signer = try ServiceAccountTokens(secrets: [Self.current])
        let good = try signer.issue(service: "telemetry-api", audience: "restartix-core-api", scopes: [], lifetime: .seconds(300))
        let otherAudience = try signer.issue(service: "telemetry-api", audience: "restartix-telemetry-api", scopes: [], lifetime: .seconds(300))
        let otherSecret = try ServiceAccountTokens(secrets: [String(repeating: "z", count: 40)])
            .issue(service: "telemetry-api", audience: "restartix-core-api", scopes: [], lifetime: .seconds(300))
        let expired = try ServiceAccountTokens(secrets: [Self.current], clock: { Date().addingTimeInterval(-600) })
            .issue(service: "telemetry-api", audience: "restartix-core-api", scopes: [], lifetime: .seconds(60))
        var parts = good.split(separator: ".").map(String.init)
        parts[1] = Base64URL.encode(Data(#"{"iss":"restartix","sub":"telemetry-api","aud":"restartix-core-api","scope":"admin","exp":9999999999}"#.utf8))
        let tampered = parts.joined(separator: ".")
        // A development token signed with the very same secret is still no service-account token.
        let sameSecretUser = try await LocalDevIssuer(environment: .development, secret: Self.current)
            .issue(user: UUID(), organization: UUID())
        let cases: [(String, HTTPFields, String)] = [
            ("no token", [:], "request.missingToken"),
            ("a user's session token", Self.bearer(tokens["demo-owner"]!), "token.invalidSignature"),
            ("another audience", Self.bearer(otherAudience), "token.wrongAudience"),
            ("another secret", Self.bearer(otherSecret), "token.invalidSignature"),
            ("expired", Self.bearer(expired), "token.expired"),
            ("tampered claims", Self.bearer(tampered), "token.invalidSignature"),
            ("a user's token under the same secret", Self.bearer(sameSecretUser), "token.wrongIssuer"),
        ]
        try await app.test(.router) { client in
            for (name, headers, code) in cases {
                try await client.execute(uri: "/internal/v1/whoami", method: .get, headers: headers) { response in
                    #expect(response.status == .unauthorized, "\(name)")
                    #expect(response.headers[.wwwAuthenticate] == "Bearer", "\(name)")
                    #expect(Self.decode(Problem.self, response)?.code == code, "\(name): \(String(buffer: response.body))")
                    #expect(!String(buffer: response.body).contains(Self.current), "\(name)")
                }
            }
            // A service-account token is no user's session.
            try await client.execute(uri: "/v1/me", method: .get, headers: Self.bearer(good)) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test("on the embedded default without TELEMETRY_INTERNAL_SVC_ACCT_TOKEN the local secret beside the SQLite file verifies (the Telemetry API on the machine signs with it); another secret's token is 401, no token 401")
    func embeddedLocalSecret() async throws {
        let (app, directory, _, _) = try await DemoAPI.make("core-internal-local")
        defer { directory.remove() }
        let local = try PlatformBoot.localServiceAccountSecret(in: URL(fileURLWithPath: directory.path("data")))
        let good = try ServiceAccountTokens(secrets: [local]).issue(service: "telemetry-api", audience: "restartix-core-api", scopes: [], lifetime: .seconds(3600))
        let other = try ServiceAccountTokens(secrets: [Self.current]).issue(service: "telemetry-api", audience: "restartix-core-api", scopes: [], lifetime: .seconds(3600))
        try await app.test(.router) { client in
            try await client.execute(uri: "/internal/v1/whoami", method: .get, headers: Self.bearer(good)) { response in
                #expect(response.status == .ok && Self.decode(ServiceWhoAmI.self, response)?.service == "telemetry-api", "\(response.status) \(String(buffer: response.body))")
            }
            try await client.execute(uri: "/internal/v1/whoami", method: .get, headers: Self.bearer(other)) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/internal/v1/whoami", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    @Test("outside the embedded default without TELEMETRY_INTERNAL_SVC_ACCT_TOKEN every internal call with a token is 503 service.notConfigured, naming the setting; without one, 401")
    func notConfigured() async throws {
        let token = try ServiceAccountTokens(secrets: [Self.current]).issue(service: "telemetry-api", audience: "restartix-core-api", scopes: [], lifetime: .seconds(60))
        let router = Router(context: CoreRequestContext.self)
        _ = addServiceEdge(to: router)
        router.group("internal/v1").add(middleware: ServiceAccountAuthMiddleware(tokens: nil)).get("whoami") { _, _ in "unreachable" }
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: "/internal/v1/whoami", method: .get, headers: Self.bearer(token)) { response in
                #expect(response.status == .serviceUnavailable)
                let problem = Self.decode(Problem.self, response)
                #expect(problem?.code == "service.notConfigured")
                #expect(problem?.detail.contains("TELEMETRY_INTERNAL_SVC_ACCT_TOKEN") == true)
            }
            // Without a token it is 401 all the same: nothing of the configuration shows.
            try await client.execute(uri: "/internal/v1/whoami", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    @Test("the secret is read from the environment: a short one or a previous without a current stops boot, naming the variable and never the value")
    func configuration() throws {
        let base = ["APP_ENV": "development"]
        let configured = try CoreAPIConfiguration(environment: base.merging(["TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": Self.current]) { $1 })
        #expect(configured.serviceAccounts != nil)
        #expect(try CoreAPIConfiguration(environment: base).serviceAccounts == nil)
        for (variables, named) in [
            (["TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": "short-secret-value"], "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN is 18 bytes"),
            (["TELEMETRY_INTERNAL_SVC_ACCT_TOKEN_PREVIOUS": Self.previous], "_PREVIOUS is set without TELEMETRY_INTERNAL_SVC_ACCT_TOKEN"),
        ] {
            let error = #expect(throws: ConfigurationError.self) { try CoreAPIConfiguration(environment: base.merging(variables) { $1 }) }
            #expect(error?.description.contains(named) == true, "\(String(describing: error))")
            #expect(error?.description.contains("short-secret-value") == false)
        }
    }
}
