import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1
public import RestartixCrypto
import RestartixKit
public import RestartixTelemetry
import Synchronization

/// The Telemetry API's way to the Core API: `POST /internal/v1/telemetry/sessions/{id}/aggregates`
/// with a service-account token (``ServiceAccountTokens``, audience `restartix-core-api`, scope
/// `telemetry:aggregates:write`, minted here for an hour and renewed before it runs out) and
/// `Idempotency-Key: <session id>` (the Core API records a session once, whatever the key; the
/// header says so to any proxy between). One attempt per call: ``TelemetryIngest`` retries.
///
/// 201 and 200 are delivered (200 is a session recorded before: `duplicate`); 401 and 403 (the
/// services' secrets or scopes disagree: a configuration to fix), 408, 429, 5xx and no answer
/// within ``timeout`` are `retryLater`; any other 4xx is `rejected` (the session is unknown to
/// the Core API, the aggregates broke a rule): trying again would not help. The
/// client follows no redirect, so the token never goes to another host.
public final class CoreAPIAggregatesClient: AggregatesSink {
    /// The audience and scope of the tokens this client mints.
    public static let audience = "restartix-core-api"
    public static let scope = "telemetry:aggregates:write"

    let baseURL: URL
    let tokens: ServiceAccountTokens
    let service: String
    let timeout: Duration
    let client: HTTPClient
    private let cached = Mutex<(token: String, renewAt: Date)?>(nil)

    /// A client for the Core API at `baseURL` (`http://127.0.0.1:8080` on one machine), signing
    /// its tokens with `tokens` as `service`.
    public init(baseURL: URL, tokens: ServiceAccountTokens, service: String = "telemetry-api", timeout: Duration = .seconds(10)) {
        self.baseURL = baseURL
        self.tokens = tokens
        self.service = service
        self.timeout = timeout
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(2))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    deinit { try? client.syncShutdown() }

    /// A token for the next call: the cached one until 5 minutes before it expires.
    func token() throws -> String {
        let now = Date()
        if let cached = cached.withLock({ $0 }), cached.renewAt > now { return cached.token }
        let token = try tokens.issue(service: service, audience: Self.audience, scopes: [Self.scope], lifetime: .seconds(3600))
        cached.withLock { $0 = (token, now.addingTimeInterval(3300)) }
        return token
    }

    public func deliver(_ aggregates: SessionAggregates, session: UUID) async -> AggregatesDelivery {
        let body: Data
        do { body = try JSONEncoder().encode(aggregates) } catch { return .rejected("the aggregates could not be encoded") }
        let token: String
        do { token = try self.token() } catch { return .retryLater("no service-account token could be minted") }
        var base = baseURL.absoluteString
        if base.hasSuffix("/") { base.removeLast() }
        var request = HTTPClientRequest(url: "\(base)/internal/v1/telemetry/sessions/\(session.lowercasedString)/aggregates")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: session.lowercasedString)
        request.body = .bytes(ByteBuffer(bytes: body))
        let status: UInt
        do {
            let response = try await client.execute(request, timeout: TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
            status = response.status.code
            // Drain (and drop) the answer, so the connection can be reused.
            _ = try? await response.body.collect(upTo: 1 << 20)
        } catch {
            return .retryLater("the Core API could not be reached or did not answer in time")
        }
        switch status {
        case 201: return .delivered(duplicate: false)
        case 200: return .delivered(duplicate: true)
        // 401 and 403 are this deployment's secrets or scopes (a rotation half done), not the
        // aggregates: they are retried, and the log says so, until an operator fixes it.
        case 401, 403, 408, 429, 500...599: return .retryLater("the Core API answered HTTP \(status)")
        default: return .rejected("the Core API refused the aggregates with HTTP \(status)")
        }
    }
}
