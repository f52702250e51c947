import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import RestartixAWS
import RestartixCrypto
import RestartixKit
import RestartixProviders
import Synchronization
import RestartixTestSupport
import Testing

/// A real HTTP server on 127.0.0.1 that answers every request with the status the test sets,
/// and remembers the last request's headers.
final class FlakyEndpoint: Sendable {
    private let state = Mutex<(status: Int, delay: Duration)>((200, .zero))
    private let server = Mutex<StubHTTPServer?>(nil)

    var url: String { server.withLock { $0?.baseURL } ?? "" }
    func answer(_ status: Int) { state.withLock { $0.status = status } }
    /// Answers only after `delay` (to make two probes overlap for certain).
    func delay(_ delay: Duration) { state.withLock { $0.delay = delay } }
    var lastAuthorization: String? { server.withLock { $0?.requests.last?.headers["authorization"] } }
    var paths: [String] { server.withLock { $0?.requests.map(\.path) } ?? [] }

    static func start() async throws -> FlakyEndpoint {
        let endpoint = FlakyEndpoint()
        let stub = try await StubHTTPServer.start { _ in
            let (status, delay) = endpoint.state.withLock { ($0.status, $0.delay) }
            return StubHTTPServer.Reply(status: status, body: #"{"error":"body the checker must not copy"}"#, delay: delay)
        }
        endpoint.server.withLock { $0 = stub }
        return endpoint
    }

    func stop() { server.withLock { $0?.stop() } }
}

@Suite("check-providers", .timeLimit(.minutes(3)))
struct ProviderCheckTests {
    static var motoURL: String? {
        guard RequiredServices.shouldRun("AWS_ENDPOINT_URL") else { return nil }
        return try? RequiredServices.require("AWS_ENDPOINT_URL")
    }

    static func status(_ world: ProviderTests.World, _ id: UUID) async throws -> (String, Int, String?) {
        let row = try #require(try await world.database.query("SELECT status, consecutive_failures, last_error FROM platform_service_providers WHERE id = \(id)").first)
        return (try row.decode("status", as: String.self), try row.decode("consecutive_failures", as: Int.self), try row.decode("last_error", as: String?.self))
    }

    @Test("an HTTP provider failing on demand: degraded, degraded, down after 3; one success brings it back; no secret or body in last_error", arguments: ProviderTests.Backend.all)
    func hysteresis(backend: ProviderTests.Backend) async throws {
        let endpoint = try await FlakyEndpoint.start()
        defer { endpoint.stop() }
        let capability = ProviderTests.capability()
        try await ProviderTests.withWorld(backend, removing: [capability]) { world in
            try await world.registry.insertIfAbsent(capability, kind: .anthropic, config: ["api_url": endpoint.url], secrets: ProviderSecrets(["api_key": "sk-ant-secret-123"]))
            let checker = ProviderHealthCheck(registry: world.registry, logger: ProviderTests.logger)
            func check() async throws -> ProviderHealthCheck.Outcome { try #require(try await checker.run(capabilities: [capability]).first { $0.capability == capability.name }) }
            let id = try #require(try await world.registry.lookup(capability, organization: nil)).id

            let ok = try await check()
            #expect(ok.failure == nil && ok.status == .active && !ok.skipped)
            #expect(endpoint.paths.last == "/v1/models?limit=1")
            endpoint.answer(500)
            for (attempt, expected) in [(1, "degraded"), (2, "degraded"), (3, "down"), (4, "down")] {
                let outcome = try await check()
                #expect(outcome.status.rawValue == expected && outcome.consecutiveFailures == attempt, "attempt \(attempt)")
                let (status, failures, lastError) = try await Self.status(world, id)
                #expect(status == expected && failures == attempt)
                #expect(lastError == "HTTP 500 from 127.0.0.1")
                #expect(lastError?.contains("secret") == false && lastError?.contains("body") == false)
            }
            // Two runs at once count one failure between them (the endpoint answers slowly, so
            // the second run starts before the first records; 3 s, because a loaded machine once
            // took longer than one to start the second).
            endpoint.delay(.seconds(3))
            async let one = checker.run(capabilities: [capability])
            async let two = checker.run(capabilities: [capability])
            let both = try await [one, two].flatMap { $0 }
            #expect(both.filter { !$0.skipped }.count == 1, "\(both)")
            #expect(try await Self.status(world, id).1 == 5)
            endpoint.delay(.zero)
            endpoint.answer(200)
            let back = try await check()
            #expect(back.status == .active && back.consecutiveFailures == 0)
            let (status, failures, lastError) = try await Self.status(world, id)
            #expect(status == "active" && failures == 0 && lastError == nil)
        }
    }

    @Test("Clerk and Daily use their own authenticated GETs; an unreachable endpoint is a failure, not a crash; unknown kinds are skipped", arguments: ProviderTests.Backend.all)
    func kinds(backend: ProviderTests.Backend) async throws {
        let endpoint = try await FlakyEndpoint.start()
        defer { endpoint.stop() }
        let clerk = ProviderTests.capability(), daily = ProviderTests.capability(), dead = ProviderTests.capability(), other = ProviderTests.capability()
        try await ProviderTests.withWorld(backend, removing: [clerk, daily, dead, other]) { world in
            try await world.registry.insertIfAbsent(clerk, kind: .clerk, config: ["api_url": endpoint.url], secrets: ProviderSecrets(["secret_key": "sk_test_clerk"]))
            try await world.registry.insertIfAbsent(daily, kind: .daily, config: ["api_url": endpoint.url + "/v1"], secrets: ProviderSecrets(["api_key": "daily-key"]))
            try await world.registry.insertIfAbsent(dead, kind: .daily, config: ["api_url": "http://127.0.0.1:9"], secrets: ProviderSecrets(["api_key": "daily-key"]))
            try await world.registry.insertIfAbsent(other, kind: "smtp_relay", config: [:], secrets: ProviderSecrets())
            var options = ProviderHealthCheck.Options()
            // Generous for the local endpoint (a loaded machine); the dead port is refused at once.
            options.timeout = .seconds(10)
            let outcomes = try await ProviderHealthCheck(registry: world.registry, options: options, logger: ProviderTests.logger).run(capabilities: [clerk, daily, dead, other])
            func outcome(_ capability: ProviderCapability) -> ProviderHealthCheck.Outcome? { outcomes.first { $0.capability == capability.name } }
            #expect(outcome(clerk)?.failure == nil && outcome(daily)?.failure == nil)
            #expect(endpoint.paths.contains("/v1/jwks") && endpoint.paths.contains("/v1/rooms?limit=1"))
            #expect(endpoint.lastAuthorization == "Bearer sk_test_clerk" || endpoint.lastAuthorization == "Bearer daily-key")
            #expect(outcome(dead)?.failure?.contains("unreachable") == true && outcome(dead)?.status == .degraded)
            #expect(outcome(other)?.skipped == true && outcome(other)?.status == .active)
        }
    }

    @Test("S3 HeadBucket and SES GetSendQuota, SigV4-signed, against moto: a missing bucket fails, created it passes")
    func awsAgainstMoto() async throws {
        guard let moto = Self.motoURL else { return }
        let bucket = "restartix-check-" + UUID().uuidString.prefix(8).lowercased()
        let files = ProviderTests.capability(), email = ProviderTests.capability()
        try await ProviderTests.withWorld(.sqlite, removing: [files, email]) { world in
            let keys = ProviderSecrets(["access_key_id": "testing", "secret_access_key": "testing"])
            try await world.registry.insertIfAbsent(files, kind: .s3, config: ["bucket": bucket, "endpoint_url": moto, "use_path_style": "true", "region": "us-east-1"], secrets: keys)
            try await world.registry.insertIfAbsent(email, kind: .ses, config: ["from_address": "care@clinic.example", "endpoint_url": moto, "region": "us-east-1"], secrets: keys)
            let checker = ProviderHealthCheck(registry: world.registry, logger: ProviderTests.logger)
            let first = try await checker.run(capabilities: [files, email])
            let s3 = try #require(first.first { $0.capability == files.name }), ses = try #require(first.first { $0.capability == email.name })
            #expect(s3.failure?.contains("HTTP 404") == true, "\(s3)")
            #expect(s3.status == .degraded)
            #expect(ses.failure == nil, "\(ses)")

            // Create the bucket (a signed PUT, as any S3 client would).
            let url = URL(string: "\(moto)/\(bucket)")!
            let headers = [("host", AWSJSONClient.hostHeader(url)), ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]
            let signed = AWSSigner(credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), region: "us-east-1", service: "s3")
                .sign(method: "PUT", path: url.path, headers: headers, body: Data())
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = .PUT
            for (name, value) in headers + signed { request.headers.add(name: name, value: value) }
            let created = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(created.status.code == 200)

            let second = try await checker.run(capabilities: [files, email])
            let after = try #require(second.first { $0.capability == files.name })
            #expect(after.failure == nil && after.status == .active, "\(after)")
        }
    }
}
